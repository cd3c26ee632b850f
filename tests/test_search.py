"""Recipe spaces and Pareto selection: which candidates the search measures and which one ships."""

from __future__ import annotations

import pytest

from tradeoff.config import QUANTIZATION_PASSES
from tradeoff.errors import ConfigError
from tradeoff.passes import get_pass
from tradeoff.search.pareto import pareto_front, pick_best
from tradeoff.search.space import default_space


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    points = {0: (1.0, 5.0), 1: (2.0, 2.0), 2: (3.0, 3.0), 3: (5.0, 1.0), 4: (1.0, 6.0)}
    assert pareto_front(points) == [0, 1, 3]


def test_near_tie_on_the_first_objective_is_settled_by_the_second() -> None:
    # 2% smaller but 3.5x slower loses when size comes first.
    assert pick_best({0: (95.0, 0.021), 1: (93.1, 0.074)}) == 0
    assert pick_best({0: (95.0, 0.021), 1: (50.0, 0.074)}) == 1


BF16 = int(get_pass("quantize.bf16").available())  # only where OpenVINO runs bf16 natively on this CPU


@pytest.mark.parametrize(("target", "count"), [("auto", 13 + BF16), ("torch", 2), ("onnxruntime", 11),
                                               ("openvino", 11 + BF16)])
def test_default_space_respects_the_runtime_target(target: str, count: int) -> None:
    grid = default_space(QUANTIZATION_PASSES, target, "torch").grid("torch")
    assert len(grid) == count
    if target == "torch":
        assert all(point.get("export", "none") == "none" for point in grid)


def test_an_onnx_model_is_never_exported_again() -> None:
    space = default_space(QUANTIZATION_PASSES, "auto", "onnx")
    assert "export.onnx" not in space.passes
    assert len(space.grid("onnx")) == 10 + BF16


def test_menu_with_an_unknown_pass_is_refused() -> None:
    with pytest.raises(ConfigError, match="did you mean 'quantize.fp16'"):
        default_space(("quantize.fp61",), "auto", "torch")


def test_a_new_search_first_measures_each_quantization_pass_alone() -> None:
    from tradeoff.config import PRESETS

    space = default_space(tuple(PRESETS["balanced"]["search"]["passes"]), "auto", "torch")
    points = space.single_pass_points("quantize", "torch")
    recipes = [space.recipe_at({**p, "quantize__per_channel": True, "quantize__calibration": "minmax",
                                "quantize__bits": 8}, "torch").passes for p in points]
    assert recipes == [["quantize.dynamic"], ["export.onnx", "quantize.dynamic"], ["export.onnx", "quantize.static"],
                       ["export.onnx", "quantize.nncf"], ["export.onnx", "quantize.fp16"],
                       *([["export.onnx", "quantize.bf16"]] if BF16 else []), ["export.onnx", "quantize.weight_only"]]


def test_finalists_come_front_by_front() -> None:
    from tradeoff.search.pareto import pareto_layers

    points = {0: (1.0, 1.0), 1: (2.0, 2.0), 2: (3.0, 1.5), 3: (4.0, 4.0)}
    assert pareto_layers(points, 1) == [0]
    assert pareto_layers(points, 3) == [0, 1, 2]


def test_the_best_single_pass_is_then_tried_with_one_more_step_after_it() -> None:
    from tradeoff.config import SIZE_PASSES
    from tradeoff.search.space import NONE

    space = default_space(SIZE_PASSES, "auto", "torch", transformer=True)
    nncf = {**{slot: NONE for slot in space.slots}, "export": "export.onnx", "quantize": "quantize.nncf"}
    assert space.extensions(nncf, "torch") == [{**nncf, "embedding": "quantize.embedding"}]
    assert space.extensions({**nncf, "embedding": "quantize.embedding"}, "torch") == []
    pruned = {**{slot: NONE for slot in space.slots}, "prune": "prune.ffn", "prune__amount": 0.3}
    added = [(slot, p[slot]) for p in space.extensions(pruned, "torch") for slot in p if p[slot] != pruned.get(slot)]
    assert ("export", "export.onnx") in added and ("quantize", "quantize.dynamic") in added  # torch.ao int8
    assert ("embedding", "quantize.embedding") not in added  # it needs an exported graph first


def test_passes_that_cannot_read_fused_graphs_are_never_paired_with_fusion() -> None:
    space = default_space(QUANTIZATION_PASSES, "auto", "torch", transformer=True)
    recipes = [space.recipe_at(p, "torch").passes for p in space.grid("torch")]  # type: ignore[union-attr]
    assert ["export.onnx", "fuse.transformer", "quantize.dynamic"] in recipes
    assert ["export.onnx", "quantize.nncf"] in recipes
    assert not any("fuse.transformer" in r and ("quantize.nncf" in r or "quantize.bf16" in r) for r in recipes)
