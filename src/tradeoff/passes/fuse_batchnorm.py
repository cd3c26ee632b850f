"""fuse.batchnorm: fold inference-mode batch norm into the conv or linear layer before it."""

from __future__ import annotations

from typing import Any

from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register


class FuseConfig(PassConfig):
    pass


def _batchnorms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@register
class BatchNormFolding(Pass[FuseConfig]):
    """Uses torch.fx's fuser, which folds the Conv/BN and Linear/BN pairs a symbolic trace finds.

    A model without such pairs comes back unchanged; a model fx cannot trace is refused by name.
    """

    name = "fuse.batchnorm"
    stage = "fuse"
    tags = frozenset({"speed", "lossless", "opt-in"})
    accepts = frozenset({"torch"})

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        module = model.torch_module()
        if _batchnorms(module) == 0:
            return model
        return model.with_module(self.restructure(module, {}), structure_step=self.step())

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        try:
            return fuse(module.eval(), inplace=True)
        except (fx.proxy.TraceError, TypeError) as exc:
            raise ModelError(f"fuse.batchnorm cannot trace {type(module).__name__}: {str(exc).splitlines()[0]}",
                             "remove data-dependent control flow from forward, or leave batch norm unfused") from None
