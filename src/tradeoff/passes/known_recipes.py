"""Recipes the field's papers found, by name: what a search may measure before it explores (`search.try_first`).

A short search samples few recipes of two or more steps; where the literature already says where the answer lies,
measuring that first costs a trial or two and saves the budget.
"""

from __future__ import annotations

import difflib
from typing import Any

from tradeoff.errors import ConfigError

Steps = tuple[dict[str, Any], ...]

KNOWN_RECIPES: dict[str, tuple[Steps, ...]] = {
    # Han et al. 2016: most weights pruned, gradually with fine-tuning, the rest shared among a few values; sparse
    # storage keeps only the survivors' indices (40x on LeNet-300-100, with Huffman coding)
    "deep-compression": (
        ({"pass": "prune.magnitude", "sparsity": 0.95, "schedule": "gradual"}, {"pass": "cluster.weights", "bits": 4}),
        ({"pass": "prune.magnitude", "sparsity": 0.9, "schedule": "gradual"}, {"pass": "cluster.weights", "bits": 5}),
    ),
}


def recipes_to_try(entries: tuple[str | Steps, ...]) -> list[Steps]:
    """The steps of each recipe `search.try_first` gives: a list of steps as it is, a name as the recipes it names."""
    found: list[Steps] = []
    for entry in entries:
        if not isinstance(entry, str):
            found.append(entry)
        elif entry in KNOWN_RECIPES:
            found.extend(KNOWN_RECIPES[entry])
        else:
            close = difflib.get_close_matches(entry, list(KNOWN_RECIPES), n=1)
            raise ConfigError(f"search.try_first names '{entry}', which is no known recipe",
                              f"did you mean '{close[0]}'?" if close else
                              f"known: {', '.join(KNOWN_RECIPES)}, or write the recipe's steps")
    return found
