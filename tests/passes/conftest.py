"""What the pass tests share: the context passes run in on the digits data."""

from __future__ import annotations

import pytest

from tradeoff.data import DataBundle
from tradeoff.passes import Context


@pytest.fixture(scope="session")
def ctx(digits: DataBundle) -> Context:
    return Context(data=digits, seed=0, threads=2)
