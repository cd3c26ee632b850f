"""What a candidate costs to run, measured before it is trained: size, parameters, multiply-adds and (where an
objective or a ceiling needs it) latency on the task's runtime.

None of these depends on the weights, so they are measured on the untrained model, once per architecture, and a
candidate over a ceiling is pruned before a single epoch is spent on it: over a size or parameter ceiling, before it
is even timed. Each architecture is timed in rounds interleaved with the task's own model, and its latency kept as
the ratio to it from the same rounds: what the sampler is told and what `max_latency_ratio` bounds, so that workers
on machines of different speeds compare fairly, and a candidate is not admitted or refused by how busy the machine
was when it was timed (docs/NOTES.md, trap 19). Where latency only bounds the search (no latency objective), the
timing ends after SCREEN_ROUNDS rounds that put a candidate far from every latency ceiling, on either side; one
near a ceiling gets every round, and the best trials are timed again before the choice (tuning/run.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tradeoff.context import Context
from tradeoff.evaluation import Evaluator, latency_values
from tradeoff.measure import Latency, artifact_size, count_macs, count_parameters
from tradeoff.model import ModelHandle
from tradeoff.objectives import CONSTRAINTS, Violation, value_key, violations
from tradeoff.passes import build_pass
from tradeoff.search.study import Pruned

ONNX_RUNTIMES = ("onnxruntime", "openvino")
LATENCY_CEILINGS = ("max_latency_ms", "max_latency_ratio")
SCREEN_ROUNDS = 3
# how far from a ceiling SCREEN_ROUNDS rounds must put a candidate to settle it: 3 rounds put one pair of CNNs at
# 0.96-1.20x the reference where 10 put it at 1.09-1.14x (docs/NOTES.md, trap 19)
SCREEN_MARGIN = 0.25

Values = dict[str, float | None]


@dataclass
class CostMeter:
    evaluator: Evaluator
    reference: ModelHandle  # the task's own model: the one latency ratios are taken against
    limits: dict[str, float | None]  # the ceilings: max_latency_ms, max_latency_ratio, max_size_bytes, max_params
    timed: bool  # whether latency is needed besides a latency ceiling's (an objective, or a search that reports it)
    runtime: str = "torch"  # where latency is measured: torch, or an ONNX runtime after export.onnx
    screen: bool = False  # end a candidate's timing early once it is far from every latency ceiling
    _counts: dict[str, Values] = field(default_factory=dict, init=False)
    _costs: dict[str, tuple[Values, Latency | None]] = field(default_factory=dict, init=False)
    _deployed_reference: ModelHandle | None = field(default=None, init=False)

    @property
    def first_batch(self) -> int:
        return self.evaluator.batch_sizes[0]

    def admit(self, model: ModelHandle, ctx: Context) -> Values:
        """The model's cost; Pruned where it breaks a ceiling, so no epoch is spent on it (and no timing where what
        is counted already breaks one)."""
        key = _architecture(model)
        if key not in self._costs:
            self._refuse_over(self._counted(key, model))
        values = self._measured(key, model, ctx)
        self._refuse_over(values)
        return values

    def cost(self, model: ModelHandle) -> Values:
        return self._costs[_architecture(model)][0]

    def latency_of(self, model: ModelHandle) -> Latency | None:
        return self._costs[_architecture(model)][1]

    def measure(self, model: ModelHandle, ctx: Context) -> Values:
        return self._measured(_architecture(model), model, ctx)

    @property
    def latency_bounded(self) -> bool:
        return any(self.limits.get(name) is not None for name in LATENCY_CEILINGS)

    def retimed(self, models: list[ModelHandle], ctx: Context, rounds: int) -> list[tuple[Values, list[Violation]]]:
        """Each model's cost with its latency timed again, all beside the task's model in the same `rounds`, and
        the ceilings it breaks so. A search that admits many candidates near a latency ceiling admits some by a
        lucky timing (docs/NOTES.md, trap 19); a longer timing of its finalists catches them before one is chosen."""
        reference, *timed = self.evaluator.interleaved_latency(
            [self._reference_deployed(ctx), *(self._deployed(m, ctx) for m in models)], "val", rounds=rounds)
        costs = [self._counted(_architecture(m), m) | latency_values(t, reference)
                 for m, t in zip(models, timed, strict=True)]
        return [(values, violations(self.limits, values, self.first_batch)) for values in costs]

    def _measured(self, key: str, model: ModelHandle, ctx: Context) -> Values:
        if key not in self._costs:
            values, latency = self._counted(key, model), None
            if self.timed or self.latency_bounded:
                reference, timed = self.evaluator.interleaved_latency(
                    [self._reference_deployed(ctx), self._deployed(model, ctx)], "val",
                    settled=self._far_from_ceilings if self.screen and self.latency_bounded else None)
                latency = timed[self.first_batch]
                values = values | latency_values(timed, reference)
            self._costs[key] = (values, latency)
        return self._costs[key][0]

    def _far_from_ceilings(self, rounds: int, latencies: list[dict[int, Latency]]) -> bool:
        """Whether `rounds` rounds already put the candidate (the second of `latencies`) far over or far under
        every latency ceiling."""
        if rounds < SCREEN_ROUNDS:
            return False
        reference, candidate = latencies
        values = latency_values(candidate, reference)
        for name in LATENCY_CEILINGS:
            limit, value = self.limits.get(name), values.get(value_key(CONSTRAINTS[name], self.first_batch))
            if limit is not None and value is not None and abs(value - limit) < SCREEN_MARGIN * limit:
                return False
        return True

    def _reference_deployed(self, ctx: Context) -> ModelHandle:
        if self._deployed_reference is None:
            self._deployed_reference = self._deployed(self.reference, ctx)
        return self._deployed_reference

    def _counted(self, key: str, model: ModelHandle) -> Values:
        """What is counted rather than timed: parameters, bytes, multiply-adds."""
        if key not in self._counts:
            params, _ = count_parameters(model)
            self._counts[key] = {"params": float(params), "size_bytes": float(artifact_size(model).bytes),
                                 "macs": _float(count_macs(model, self.evaluator.data.val.x[:1]))}
        return self._counts[key]

    def _refuse_over(self, values: Values) -> None:
        if broken := violations(self.limits, values, self.first_batch):
            said = "; ".join(f"{v.constraint} {v.value:.4g} over the limit {v.limit:.4g}" for v in broken)
            raise Pruned(f"not trained: {said}", dict(values))

    def _deployed(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        if self.runtime not in ONNX_RUNTIMES:
            return model
        return build_pass({"pass": "export.onnx"}).apply(model, ctx).with_runtime(self.runtime)


def _architecture(model: ModelHandle) -> str:
    """Equal for models of the same structure, whatever their weights: what their cost depends on."""
    return str(model.module) if model.module is not None else str(hash(model.onnx_bytes))


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)
