"""Constraint checks shared by the search (on validation) and the final verification (on test)."""

from __future__ import annotations

from tradeoff.config import Constraints
from tradeoff.report.schema import Violation


def violations(constraints: Constraints, metric_drop: float, latency_ms: float | None,
               size_bytes: int | None) -> list[Violation]:
    """Each constraint the candidate breaks; a value not measured (None) cannot break its constraint."""
    checks = (("max_metric_drop", constraints.max_metric_drop, metric_drop),
              ("max_latency_ms", constraints.max_latency_ms, latency_ms),
              ("max_size_bytes", constraints.max_size_bytes, size_bytes))
    return [Violation(constraint=name, limit=limit, value=value, missed_by=value - limit)  # type: ignore[arg-type]
            for name, limit, value in checks if limit is not None and value is not None and value > limit]


def relative_miss(violation: Violation) -> float:
    """How far past its limit a value is, as a fraction of the limit (for picking the nearest miss)."""
    return violation.missed_by / max(abs(violation.limit), 1e-12)
