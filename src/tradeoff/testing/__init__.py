"""Test suites shipped with tradeoff, for passes written outside it as much as for its own."""

from tradeoff.testing.passes import PassCase, conformance_checks

__all__ = ["PassCase", "conformance_checks"]
