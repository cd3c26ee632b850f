"""The conformance suite every registered pass runs, ours and third parties' alike.

Each check is a plain function that raises AssertionError (or the pass's own error) when the pass breaks the
contract a recipe relies on: options round-trip through YAML with a version and refuse unknown keys, the input
is never mutated, a seed makes the result reproducible, the output runs and is finite, a saved artifact loads
back with the same outputs, and a model the pass cannot take is refused with the fix. A pass author runs them
from pytest with `conformance_checks()`, on a small real model of their own:

    @pytest.mark.parametrize("check", conformance_checks(), ids=lambda check: check.__name__)
    def test_my_pass_conforms(check, tmp_path):
        check(PassCase("my.pass", model=my_model, ctx=Context(data=my_data, threads=2)), tmp_path)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tradeoff.artifact import load_artifact
from tradeoff.context import Context
from tradeoff.errors import ConfigError, ModelError
from tradeoff.model import ModelHandle
from tradeoff.passes import build_pass, get_pass
from tradeoff.runtimes import runtime_for

ROWS = 8  # inputs the outputs are compared on


@dataclass
class PassCase:
    """A pass, the options to run it with, a model in a format it accepts, and the context to run it in.

    `wrong` is a model in a format it does not accept (None where it takes both formats)."""

    name: str
    model: ModelHandle
    ctx: Context
    options: dict[str, Any] = field(default_factory=dict)
    wrong: ModelHandle | None = None
    atol: float = 1e-5  # how close a reloaded artifact's outputs must be

    def apply(self) -> ModelHandle:
        return build_pass({"pass": self.name, **self.options}).apply(self.model, self.ctx)

    @cached_property
    def output(self) -> ModelHandle:
        return self.apply()

    @property
    def batch(self) -> np.ndarray:
        return self.ctx.data.val.x[:ROWS]


def outputs(model: ModelHandle, batch: np.ndarray) -> np.ndarray:
    return runtime_for(model).load(model, 2)(batch)


def fingerprint(model: ModelHandle) -> bytes:
    if model.onnx_bytes is not None:
        return model.onnx_bytes
    return b"".join(v.detach().cpu().numpy().tobytes() for v in model.torch_module().state_dict().values())


def config_round_trips_with_a_version(case: PassCase, tmp_path: Path) -> None:
    step = build_pass({"pass": case.name, **case.options}).step()
    assert step.get("version") == get_pass(case.name).Config.model_fields["version"].default, step
    assert build_pass(yaml.safe_load(yaml.safe_dump(step))).step() == step


def unknown_option_is_refused_by_name(case: PassCase, tmp_path: Path) -> None:
    try:
        build_pass({"pass": case.name, "no_such_option": 1})
    except ConfigError as exc:
        assert "no_such_option" in str(exc), exc
    else:
        raise AssertionError(f"{case.name} accepted an unknown option")


def input_is_untouched_and_result_deterministic(case: PassCase, tmp_path: Path) -> None:
    before = fingerprint(case.model)
    first, second = case.output, case.apply()
    assert fingerprint(case.model) == before, f"{case.name} changed its input model"
    np.testing.assert_array_equal(outputs(first, case.batch), outputs(second, case.batch),
                                  err_msg=f"{case.name} gave two results under one seed")


def output_runs_and_is_finite(case: PassCase, tmp_path: Path) -> None:
    result = outputs(case.output, case.batch)
    assert result.shape == outputs(case.model, case.batch).shape, result.shape
    assert np.all(np.isfinite(result)), f"{case.name} made a model with non-finite outputs"


def saved_artifact_loads_with_the_same_outputs(case: PassCase, tmp_path: Path) -> None:
    case.output.save(tmp_path)
    reloaded = load_artifact(tmp_path)
    assert reloaded.runtime == case.output.runtime
    np.testing.assert_allclose(outputs(reloaded, case.batch), outputs(case.output, case.batch), atol=case.atol)


def wrong_input_is_refused_with_the_fix(case: PassCase, tmp_path: Path) -> None:
    if case.wrong is None:
        return
    try:
        build_pass({"pass": case.name, **case.options}).apply(case.wrong, case.ctx)
    except ModelError as exc:
        assert "export.onnx" in str(exc), exc
    else:
        raise AssertionError(f"{case.name} took a {case.wrong.format} model it does not accept")


def conformance_checks() -> list[Callable[[PassCase, Path], None]]:
    return [config_round_trips_with_a_version, unknown_option_is_refused_by_name,
            input_is_untouched_and_result_deterministic, output_runs_and_is_finite,
            saved_artifact_loads_with_the_same_outputs, wrong_input_is_refused_with_the_fix]
