"""What a candidate costs to run, measured before it is trained: size, parameters, multiply-adds and (where an
objective or a ceiling needs it) latency on the task's runtime.

None of these depends on the weights, so they are measured on the untrained model, once per architecture, and a
candidate over a ceiling is pruned before a single epoch is spent on it. Latency is also kept as the ratio to the
task's own model, timed by this process before any candidate: what the sampler is told, so that workers on
machines of different speeds compare fairly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tradeoff.context import Context
from tradeoff.evaluation import Evaluator, latency_values
from tradeoff.measure import Latency, artifact_size, count_macs, count_parameters
from tradeoff.model import ModelHandle
from tradeoff.objectives import violations
from tradeoff.passes import build_pass
from tradeoff.search.study import Pruned

ONNX_RUNTIMES = ("onnxruntime", "openvino")


@dataclass
class CostMeter:
    evaluator: Evaluator
    reference: ModelHandle  # the task's own model: the baseline latency ratios are taken against
    limits: dict[str, float | None]  # max_latency_ms, max_size_bytes
    timed: bool  # whether latency is needed (an objective or a ceiling)
    runtime: str = "torch"  # where latency is measured: torch, or an ONNX runtime after export.onnx
    _costs: dict[str, tuple[dict[str, float | None], Latency | None]] = field(default_factory=dict, init=False)
    _baseline: dict[int, Latency] | None = field(default=None, init=False)

    @property
    def first_batch(self) -> int:
        return self.evaluator.batch_sizes[0]

    def admit(self, model: ModelHandle, ctx: Context) -> dict[str, float | None]:
        """The model's cost; Pruned where it breaks a ceiling, so no epoch is spent on it."""
        values = self.measure(model, ctx)
        if broken := violations(self.limits, values, self.first_batch):
            said = "; ".join(f"{v.constraint} {v.value:.4g} over the limit {v.limit:.4g}" for v in broken)
            raise Pruned(f"not trained: {said}", values)
        return values

    def cost(self, model: ModelHandle) -> dict[str, float | None]:
        return self._costs[_architecture(model)][0]

    def latency_of(self, model: ModelHandle) -> Latency | None:
        return self._costs[_architecture(model)][1]

    def measure(self, model: ModelHandle, ctx: Context) -> dict[str, float | None]:
        key = _architecture(model)
        if key not in self._costs:
            params, _ = count_parameters(model)
            size = artifact_size(model)
            values: dict[str, float | None] = {
                "params": float(params), "size_bytes": float(size.bytes),
                "macs": _float(count_macs(model, self.evaluator.data.val.x[:1]))}
            latency = None
            if self.timed:
                if self._baseline is None:  # once, before any candidate is timed
                    self._baseline = self.evaluator.latency(self._deployed(self.reference, ctx), "val")
                timed = self.evaluator.latency(self._deployed(model, ctx), "val")
                latency = timed[self.first_batch]
                values |= latency_values(timed, self._baseline)
            self._costs[key] = (values, latency)
        return self._costs[key][0]

    def _deployed(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        if self.runtime not in ONNX_RUNTIMES:
            return model
        return build_pass({"pass": "export.onnx"}).apply(model, ctx).with_runtime(self.runtime)


def _architecture(model: ModelHandle) -> str:
    """Equal for models of the same structure, whatever their weights: what their cost depends on."""
    return str(model.module) if model.module is not None else str(hash(model.onnx_bytes))


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)
