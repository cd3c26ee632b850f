"""prune.structured: remove whole channels and neurons, so the model is smaller and faster on any runtime.

Torch-Pruning's dependency graph keeps coupled layers consistent: a channel removed from a convolution is also
removed from its batch norm, from every layer that reads it, and from every branch a residual sum or a
concatenation ties it to. The result is an ordinary dense model with fewer channels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
import torch_pruning as tp
from pydantic import Field
from torch import nn

from tradeoff.data import Split
from tradeoff.distributions import Choice, Float
from tradeoff.errors import ModelError
from tradeoff.inputs import as_tensors
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, FinetuneConfig, Pass, register
from tradeoff.training import task_loss

# Layers that root a pruning group; a group whose root feeds the model's output directly is never pruned.
ROOT_TYPES = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_LSTM)
TAYLOR_SAMPLES = 256
TAYLOR_BATCH_SIZE = 64

IMPORTANCE: dict[str, Callable[[], tp.importance.Importance]] = {
    "l1": lambda: tp.importance.MagnitudeImportance(p=1),
    "l2": lambda: tp.importance.MagnitudeImportance(p=2),
    "taylor": tp.importance.TaylorImportance,
    "bn_scale": tp.importance.BNScaleImportance,
}


class StructuredConfig(FinetuneConfig):
    amount: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of each layer's channels/neurons to remove")
    criterion: Literal["l1", "l2", "taylor", "bn_scale"] = "l2"
    global_pruning: bool = Field(False, description="rank channels across layers instead of within each layer")
    iterative_steps: int = Field(1, ge=1, le=20, description="reach `amount` in this many prune + fine-tune steps")


@contextmanager
def _naming_failed_layer(module: nn.Module, doing: str) -> Iterator[None]:
    """Turn a failure inside a forward pass into a ModelError naming the last layer entered."""
    entered = ["(model input)"]

    def hook_for(name: str) -> Callable[[nn.Module, Any], None]:
        def hook(_module: nn.Module, _inputs: Any) -> None:
            entered[0] = name

        return hook

    hooks = [m.register_forward_pre_hook(hook_for(name)) for name, m in module.named_modules() if name]
    try:
        yield
    except Exception as exc:  # the tracer and a forward broken by pruning raise assorted error types
        raise ModelError(
            f"{doing} failed at or just after layer '{entered[0]}': {str(exc).splitlines()[0]}",
            "torch-pruning cannot follow the graph there: compute reshapes from tensor shapes instead of "
            "hard-coded sizes, and call layers rather than using their weights directly",
        ) from None
    finally:
        for hook in hooks:
            hook.remove()


def _trace(module: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    with _naming_failed_layer(module, "tracing the model for structured pruning"), torch.enable_grad():
        return tp.DependencyGraph().build_dependency(module, example_inputs=example, verbose=False)


def _output_layers(graph: tp.DependencyGraph) -> list[nn.Module]:
    """The Conv/Linear layers whose channels reach the model's output; pruning them would change its size."""
    stack = [node for node in graph.module2node.values() if not node.outputs]
    found: list[nn.Module] = []
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, ROOT_TYPES):
            found.append(node.module)
        else:
            stack.extend(node.inputs)
    return found


def _accumulate_gradients(module: nn.Module, train: Split, seed: int) -> None:
    """Taylor importance scores |w * dL/dw|: sum the task loss's gradients over a seeded subset of train."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(train), size=min(len(train), TAYLOR_SAMPLES), replace=False))
    module.eval()  # gradients without updating batch-norm statistics
    module.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for start in range(0, len(chosen), TAYLOR_BATCH_SIZE):
            batch = chosen[start : start + TAYLOR_BATCH_SIZE]
            task_loss(module(*as_tensors(train.x[batch])), torch.from_numpy(train.y[batch])).backward()


@register
class StructuredPruning(Pass[StructuredConfig]):
    name = "prune.structured"
    stage = "prune"
    tags = frozenset({"speed", "size", "retrains"})
    accepts = frozenset({"torch"})
    space = {"amount": Float(0.2, 0.7), "criterion": Choice(("l1", "l2", "taylor"))}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        module = model.torch_module()
        if config.criterion == "bn_scale" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                      for m in module.modules()):
            raise ModelError("criterion 'bn_scale' ranks channels by batch-norm scales but the model has no "
                             "batch norm", "use criterion l1, l2 or taylor")
        example = torch.zeros((1, *ctx.data.sample_shape))
        with torch.no_grad():
            output_shape = module(example).shape
        keep = _output_layers(_trace(module, example))
        with torch.enable_grad():  # the pruner traces the model again through autograd
            pruner = tp.pruner.BasePruner(
                module, example, importance=IMPORTANCE[config.criterion](), pruning_ratio=config.amount,
                global_pruning=config.global_pruning, iterative_steps=config.iterative_steps, ignored_layers=keep)
        for _ in range(config.iterative_steps):
            if config.criterion == "taylor":
                _accumulate_gradients(module, ctx.data.train, ctx.seed)
            pruner.step()
            if not pruner.pruning_history():  # no layer it can cut (a recurrent model): nothing to fine-tune either
                return model
            module.zero_grad(set_to_none=True)
            with _naming_failed_layer(module, "running the pruned model"), torch.no_grad():
                pruned_shape = module(example).shape
            if pruned_shape != output_shape:
                raise ModelError(f"structured pruning changed the output shape from {tuple(output_shape)} to "
                                 f"{tuple(pruned_shape)}", "report this model: its output layer was not detected")
            ctx.trainer.finetune(module, ctx, config)  # after each step
        removed = [[name, bool(out), [int(i) for i in idxs]] for name, out, idxs in pruner.pruning_history()]
        state = {"sample_shape": list(ctx.data.sample_shape), "removed": removed}
        return model.with_module(module, structure_step=self.step(), structure_state=state)

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        """Replay the recorded channel removals on a freshly built module, through its own dependency graph."""
        layers = dict(module.named_modules())
        for name, _, _ in state["removed"]:
            if name not in layers:
                raise ModelError(f"layer '{name}' pruned by prune.structured is not in the rebuilt model",
                                 "check that the factory builds the architecture that was pruned")
        graph = _trace(module, torch.zeros((1, *state["sample_shape"])))
        try:
            graph.load_pruning_history(state["removed"])
        except (IndexError, RuntimeError) as exc:
            raise ModelError(f"cannot replay prune.structured on the rebuilt model: {str(exc).splitlines()[0]}",
                             "check that the factory builds the architecture that was pruned") from None
        return module
