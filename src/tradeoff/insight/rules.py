"""Surrogate rules: a shallow decision tree and an ordered rule list fitted to a classifier's own predictions, so a
reader sees which thresholds on which features decide its classes, and how often the rules agree with it (fidelity).

Both are fitted on the training split's inputs labelled by the network's predicted class, the tree also on jittered
copies of them the network labels (queries); their size (at most MAX_RULES rules) is chosen on held-out agreement
(validation and folds of train); their fidelity is read once on test. Queries, measured on seven MLPs each of
breast_cancer and wine: the tree's mean test fidelity went 0.922 -> 0.959 and 0.845 -> 0.918; the rule list's went
0.946 -> 0.955 and 0.931 -> 0.878, so it is fitted without them. The rule list is our own sequential covering over
scikit-learn trees: imodels' rule lists (GreedyRuleList, OneR, Skope, BayesianRuleList) and RuleFit accept two
classes only (imodels 3.0.4 raises ValueError on wine's three).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, computed_field, model_validator
from sklearn.model_selection import KFold
from sklearn.tree import DecisionTreeClassifier

from tradeoff.data import DataBundle

MAX_RULES = 15  # the readability bound: a reader takes in fifteen rules, not fifty
COVER_DEPTH = 3  # conditions per rule list rule: each rule is one path of a depth-3 tree
FOLDS = 5
QUERIES = 5  # jittered copies of each training sample the network labels for the tree
JITTER = 0.1  # their noise, in standard deviations of each feature on train
LOW_FIDELITY = 0.95  # below the target the rules are a rough sketch of the network, and said to be one

Predict = Callable[[np.ndarray], np.ndarray]  # inputs -> the predicted class of each


Family = Callable[[np.ndarray, np.ndarray, "_Units"], list[tuple["Rule", ...]]]  # surrogates of each size


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Condition(_Frozen):
    feature: int  # index into the flattened sample
    name: str
    op: Literal["<=", ">"]
    threshold: float  # in what the model reads (standardized where the data was)
    value: float  # the same threshold in the data's own units

    def holds(self, flat: np.ndarray) -> np.ndarray:
        column = flat[:, self.feature]
        return column <= self.threshold if self.op == "<=" else column > self.threshold


class Rule(_Frozen):
    conditions: tuple[Condition, ...]  # none: the rule list's default
    label: int
    support: int  # training samples the rule decides (0: a region only the tree's queries reached)
    precision: float | None  # of those, the share the network gives `label`; None where there are none

    @model_validator(mode="before")
    @classmethod
    def _derived_text(cls, data: Any) -> Any:
        """`text` is written to explain.json for its readers and derived again when the file is read back."""
        return {k: v for k, v in data.items() if k != "text"} if isinstance(data, dict) else data

    def holds(self, flat: np.ndarray) -> np.ndarray:
        held = np.ones(len(flat), dtype=bool)
        for condition in self.conditions:
            held &= condition.holds(flat)
        return held

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text(self) -> str:
        """'if worst radius <= 16.8 and 0.03 < mean concave points <= 0.0512 then class 1 (n=210, 98%)'."""
        share = "" if self.precision is None else f", {100 * self.precision:.0f}%"
        then = f"class {self.label} (n={self.support}{share})"
        if not self.conditions:
            return f"else {then}"
        bounds: dict[str, dict[str, float]] = {}
        for c in self.conditions:
            bounds.setdefault(c.name, {})[c.op] = c.value
        return "if " + " and ".join(_bounded(name, b) for name, b in bounds.items()) + f" then {then}"


def _bounded(name: str, bounds: dict[str, float]) -> str:
    if len(bounds) == 2:
        return f"{bounds['>']:.3g} < {name} <= {bounds['<=']:.3g}"
    ((op, value),) = bounds.items()
    return f"{name} {op} {value:.3g}"


class Surrogate(_Frozen):
    kind: Literal["decision tree", "rule list"]
    rules: tuple[Rule, ...]  # tree leaves (any order), or the list in order (first match decides)
    validation_fidelity: float
    fidelity: float  # agreement with the network's predicted class on the test split

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _predict(self.rules, _flat(x))

    @property
    def low_fidelity(self) -> bool:
        return self.fidelity < LOW_FIDELITY


def feature_names(data: DataBundle) -> tuple[str, ...]:
    """The data's own column names, else names from the sample's place: x[i] for a flat sample, pixel (row, col)
    for an image (channel c, pixel (row, col) with several channels)."""
    if data.feature_names is not None:
        return data.feature_names
    shape = data.sample_shape
    if len(shape) == 1:
        return tuple(f"x[{i}]" for i in range(shape[0]))
    places = np.ndindex(*shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[0] == 1):
        return tuple(f"pixel ({p[-2]}, {p[-1]})" for p in places)
    if len(shape) == 3:
        return tuple(f"channel {c}, pixel ({r}, {k})" for c, r, k in places)
    return tuple(f"x{list(p)}" for p in places)


def fit_surrogates(predict: Predict, data: DataBundle) -> tuple[Surrogate, ...]:
    """The decision tree and the rule list of the classifier `predict`, each fitted to its predictions on train
    (and on queries around it), sized on held-out agreement (validation and a 5-fold split of train: validation
    alone is a few dozen samples on small tables), scored on test."""
    units, shape = _Units(data), data.sample_shape
    x, labels = _flat(data.train.x), predict(data.train.x)
    val, val_labels = _flat(data.val.x), predict(data.val.x)
    test, test_labels = _flat(data.test.x), predict(data.test.x)
    scale = JITTER * x.std(axis=0)

    def fitted(family: Family, rows: np.ndarray, queries: int) -> list[tuple[Rule, ...]]:
        if not queries:
            return family(x[rows], labels[rows], units)
        queried = _queries(x[rows], scale, queries, data.spec.seed)
        asked = predict(queried.reshape(-1, *shape).astype(np.float32))
        return family(np.concatenate([x[rows], queried]), np.concatenate([labels[rows], asked]), units)

    everything = np.arange(len(x))
    folds = list(KFold(FOLDS, shuffle=True, random_state=data.spec.seed).split(x)) if len(x) >= 2 * FOLDS else []
    chosen = []
    for kind, family, queries in (("decision tree", _tree_family, QUERIES), ("rule list", _list_family, 0)):
        sizes = fitted(family, everything, queries)
        held_out = np.array([_agreed(_predict(rules, val), val_labels) for rules in sizes])
        for rows, scored in folds:
            fold_sizes = fitted(family, rows, queries)
            held_out += [_agreed(_predict(fold_sizes[min(i, len(fold_sizes) - 1)], x[scored]), labels[scored])
                         for i in range(len(sizes))]
        best = max(range(len(sizes)), key=lambda i: (held_out[i], -len(sizes[i])))
        chosen.append(Surrogate(kind=kind, rules=_restated(sizes[best], x, labels),  # type: ignore[arg-type]
                                validation_fidelity=_agreed(_predict(sizes[best], val), val_labels) / len(val),
                                fidelity=_agreed(_predict(sizes[best], test), test_labels) / len(test)))
    return tuple(chosen)


def _queries(x: np.ndarray, scale: np.ndarray, copies: int, seed: int) -> np.ndarray:
    """`copies` of each training sample moved by Gaussian noise (JITTER of each feature's spread), for the
    network to label: the surrogate then sees where the network's boundary runs between the training samples, not
    only at them (TREPAN's queries, Craven and Shavlik 1996)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([x + rng.normal(size=x.shape) * scale for _ in range(copies)])


def _restated(rules: tuple[Rule, ...], x: np.ndarray, labels: np.ndarray) -> tuple[Rule, ...]:
    """Each rule's support and precision on the training samples themselves (not the queries): the samples it
    decides, first match first, and the share the network gives its class."""
    undecided = np.ones(len(x), dtype=bool)
    restated = []
    for rule in rules:
        decided = rule.holds(x) & undecided
        undecided &= ~decided
        restated.append(rule.model_copy(update={"support": int(decided.sum()), "precision": float(
            np.mean(labels[decided] == rule.label)) if decided.any() else None}))
    return tuple(restated)


def _agreed(predicted: np.ndarray, labels: np.ndarray) -> int:
    return int(np.sum(predicted == labels))


def _predict(rules: tuple[Rule, ...], flat: np.ndarray) -> np.ndarray:
    """The first rule that holds decides; a tree's leaves are disjoint, so for a tree any order is the tree."""
    labels = np.full(len(flat), -1)
    for rule in reversed(rules):  # earlier rules overwrite later ones
        labels[rule.holds(flat)] = rule.label
    return labels


def _flat(x: np.ndarray) -> np.ndarray:
    """Samples as rows of features: float32 as scikit-learn's trees read them, compared in float64 as they compare
    (a float32 comparison would round the threshold and could send a sample down the other branch)."""
    return np.asarray(x, dtype=np.float32).reshape(len(x), -1).astype(np.float64)


class _Units:
    """Names features and turns thresholds on what the model reads back into the data's own units."""

    def __init__(self, data: DataBundle) -> None:
        self.names = feature_names(data)
        size = len(self.names)
        mean, std = data.standardization or (np.zeros(size), np.ones(size))
        self.mean, self.std = np.ravel(mean), np.ravel(std)

    def condition(self, feature: int, op: Literal["<=", ">"], threshold: float) -> Condition:
        return Condition(feature=feature, name=self.names[feature], op=op, threshold=threshold,
                         value=float(threshold * self.std[feature] + self.mean[feature]))


def _path_rules(tree: DecisionTreeClassifier, x: np.ndarray, labels: np.ndarray, units: _Units,
                splits: int | None = None) -> list[Rule]:
    """One rule per leaf of `tree` cut back to its first `splits` splits (all by default): the conditions on the
    leaf's path (the tightest bound per feature and side), the network's majority among the training samples that
    reach it. scikit-learn numbers nodes as it creates them, so a split's children number its turn, and a best-first
    tree cut back to its first k - 1 splits is the tree that growth would give with k leaves."""
    structure, reached = tree.tree_, tree.decision_path(x).tocsc()
    internal = sorted((n for n in range(structure.node_count) if structure.children_left[n] != -1),
                      key=lambda n: structure.children_left[n])
    kept = set(internal[:splits])
    found: list[Rule] = []

    def walk(node: int, bounds: dict[tuple[int, str], float]) -> None:
        if node not in kept:
            found.append(_leaf_rule(bounds, labels[reached[:, node].nonzero()[0]], units))
            return
        feature, threshold = int(structure.feature[node]), float(structure.threshold[node])
        below = bounds.get((feature, "<="), np.inf)
        above = bounds.get((feature, ">"), -np.inf)
        walk(int(structure.children_left[node]), {**bounds, (feature, "<="): min(below, threshold)})
        walk(int(structure.children_right[node]), {**bounds, (feature, ">"): max(above, threshold)})

    walk(0, {})
    return found


def _leaf_rule(bounds: dict[tuple[int, str], float], decided: np.ndarray, units: _Units) -> Rule:
    label = int(np.bincount(decided).argmax()) if len(decided) else 0
    conditions = tuple(units.condition(feature, op, t) for (feature, op), t in bounds.items())  # type: ignore[arg-type]
    return Rule(conditions=conditions, label=label, support=len(decided),
                precision=float(np.mean(decided == label)) if len(decided) else None)


def _tree_family(x: np.ndarray, labels: np.ndarray, units: _Units) -> list[tuple[Rule, ...]]:
    """Trees of 2 to MAX_RULES leaves (best-first growth), each as its leaves' rules: one tree grown to MAX_RULES
    leaves, cut back."""
    tree = DecisionTreeClassifier(max_leaf_nodes=MAX_RULES, random_state=0).fit(x, labels)
    return [tuple(_path_rules(tree, x, labels, units, splits)) for splits in range(1, tree.get_n_leaves())]


def _list_family(x: np.ndarray, labels: np.ndarray, units: _Units) -> list[tuple[Rule, ...]]:
    """The covering's first k rules and the default after them, for every k."""
    cover = _covering(x, labels, units)
    return [(*cover[:k], _default(x, labels, cover[:k], units)) for k in range(len(cover) + 1)]


def _covering(x: np.ndarray, labels: np.ndarray, units: _Units) -> list[Rule]:
    """Sequential covering: the best leaf of a shallow tree on the samples no rule decides yet becomes the next
    rule (best: Laplace-corrected precision, which favours large pure leaves), until MAX_RULES - 1 rules or one
    class is left; the default rule comes after them."""
    classes = int(labels.max()) + 1
    undecided = np.ones(len(x), dtype=bool)
    rules: list[Rule] = []
    while len(rules) < MAX_RULES - 1 and len(np.unique(labels[undecided])) > 1:
        rest, rest_labels = x[undecided], labels[undecided]
        tree = DecisionTreeClassifier(max_depth=COVER_DEPTH, min_samples_leaf=max(2, len(x) // 100),
                                      random_state=0).fit(rest, rest_labels)
        candidates = _path_rules(tree, rest, rest_labels, units)
        best = max(candidates, key=lambda r: ((r.precision or 0.0) * r.support + 1) / (r.support + classes))
        rules.append(best)
        undecided &= ~best.holds(x)
    return rules


def _default(x: np.ndarray, labels: np.ndarray, rules: list[Rule], units: _Units) -> Rule:
    """The rule list's last rule: the network's majority among the training samples the rules before it leave
    (among all of them where none is left)."""
    undecided = np.ones(len(x), dtype=bool)
    for rule in rules:
        undecided &= ~rule.holds(x)
    majority = _leaf_rule({}, labels[undecided] if undecided.any() else labels, units)
    return majority.model_copy(update={"support": int(undecided.sum())})
