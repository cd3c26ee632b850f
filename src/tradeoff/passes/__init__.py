"""Passes: one module per technique, each registering itself; the registry discovers the modules on first use."""

from tradeoff.context import Context
from tradeoff.passes.base import (
    STAGES,
    TAGS,
    FinetuneConfig,
    Pass,
    PassConfig,
    build_pass,
    get_pass,
    load_plugins,
    register,
    registered_passes,
)

__all__ = ["STAGES", "TAGS", "Context", "FinetuneConfig", "Pass", "PassConfig", "build_pass", "get_pass",
           "load_plugins", "register", "registered_passes"]
