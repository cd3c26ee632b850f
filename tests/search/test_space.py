"""Recipe spaces derived from the pass catalogue: which candidates the search measures, and in what order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import needs_bf16

import tradeoff
from tradeoff.config import PRESETS
from tradeoff.distributions import Choice
from tradeoff.errors import ConfigError
from tradeoff.passes import get_pass, registered_passes
from tradeoff.search.record import TrialRecord
from tradeoff.search.space import NONE, RecipeSpace, default_space, select_passes

TORCH, ONNX, TEXT = frozenset({"torch"}), frozenset({"onnx"}), frozenset({"torch", "transformer"})


def preset_menu(preset: str) -> list[str]:
    search = PRESETS[preset]["search"]
    return select_passes(None, tuple(search["tags"]), tuple(search["exclude_tags"]))


def recipes(space: RecipeSpace) -> list[list[str]]:
    return [space.at(point).passes for point in space.grid()]  # type: ignore[union-attr]


def test_presets_select_passes_by_their_tags() -> None:
    realtime, careful, mobile = preset_menu("realtime"), preset_menu("accuracy-critical"), preset_menu("mobile")
    kinds = registered_passes()
    assert all(kinds[n].tags & {"speed", "export"} and "opt-in" not in kinds[n].tags for n in realtime)
    assert {n for n, k in kinds.items() if "speed" in k.tags and "opt-in" not in k.tags} <= set(realtime)
    assert not any(kinds[n].tags & {"retrains", "low-bit", "opt-in"} for n in careful)
    assert "export.onnx" in careful and "quantize.dynamic" in careful and "quantize.static" in careful
    assert all(kinds[n].tags & {"size", "export", "lossless"} for n in mobile)
    assert set(preset_menu("balanced")) == set(realtime) | set(mobile) | set(careful)


def test_no_pass_name_is_written_into_config_or_the_search() -> None:
    names = set(registered_passes())
    source = Path(tradeoff.__file__).parent
    for path in [source / "config.py", *sorted((source / "search").glob("*.py"))]:
        quoted = set(re.findall(r"[\"']([a-z_]+\.[a-z_0-9]+)[\"']", path.read_text()))
        assert not quoted & names, f"{path.name} names passes {sorted(quoted & names)}"


@pytest.mark.parametrize("target", ["auto", "torch", "onnxruntime", "openvino"])
def test_default_space_respects_the_runtime_target(target: str) -> None:
    found = recipes(default_space(preset_menu("accuracy-critical"), target, TORCH))
    assert found, target
    for passes in found:
        kinds = [get_pass(p) for p in passes]
        if target == "torch":
            assert all("torch" in k.accepts for k in kinds) and "export.onnx" not in passes
        if target in ("onnxruntime", "openvino"):
            assert "export.onnx" in passes  # an ONNX runtime needs the exported graph
        assert all(k.runs_only_on in (None, target) for k in kinds) or target == "auto"


def test_an_onnx_model_is_never_exported_again() -> None:
    space = default_space(preset_menu("accuracy-critical"), "auto", ONNX)
    assert not any(get_pass(p).produces == "onnx" for p in space.passes)
    assert all(all("onnx" in get_pass(p).accepts for p in passes) for passes in recipes(space))


def test_passes_that_need_a_transformer_are_left_out_for_other_models() -> None:
    assert not any(get_pass(p).requires for p in default_space(preset_menu("balanced"), "auto", TORCH).passes)
    assert any(get_pass(p).requires for p in default_space(preset_menu("balanced"), "auto", TEXT).passes)


def test_menu_with_an_unknown_pass_or_tag_is_refused() -> None:
    with pytest.raises(ConfigError, match="did you mean 'quantize.fp16'"):
        select_passes(("quantize.fp61",), (), ())
    with pytest.raises(ConfigError, match="unknown pass tags \\['fast'\\]"):
        select_passes(None, ("fast",), ())


def _spelled(space: RecipeSpace, point: dict) -> list[str]:
    defaults = {k: d.values[0] if isinstance(d, Choice) else d.low for k, d in space.params.items()}
    return space.at({**defaults, **point}).passes  # type: ignore[union-attr]


def test_a_new_search_first_measures_each_quantization_pass_alone_then_the_model_only_exported() -> None:
    space = default_space(preset_menu("balanced"), "auto", TORCH)
    quantizers = set(space.slots["quantize"]) | set(space.slots.get("precision", ()))  # bf16 where the CPU has it
    *seeds, (lossless, last) = space.queued([])
    assert {strategy for _, strategy in seeds} == {"seed"}
    found = [_spelled(space, point) for point, _ in seeds]
    assert all(len(set(p) & quantizers) == 1 and set(p) - quantizers <= {"export.onnx"} for p in found)
    assert {q for p in found for q in p if q in quantizers} == quantizers
    assert (_spelled(space, lossless), last) == (["export.onnx"], "lossless")
    for point, _ in seeds:  # each pass at its defaults, its tool's own: what a user, and a peer, runs by hand
        for step in space.at(point).steps:  # type: ignore[union-attr]
            config = get_pass(step["pass"]).Config
            assert config(**{k: v for k, v in step.items() if k != "pass"}) == config()


def test_a_transformer_is_measured_exported_and_fused_and_an_onnx_file_as_given_is_not_measured_again() -> None:
    space = default_space(preset_menu("balanced"), "auto", TEXT)
    assert [_spelled(space, p) for p, s in space.queued([]) if s == "lossless"] == [["export.onnx", "fuse.transformer"]]
    assert not [p for p, s in default_space(preset_menu("balanced"), "auto", ONNX).queued([]) if s == "lossless"]


@needs_bf16
def test_bf16_is_measured_alone_and_after_the_best_int8_seed() -> None:
    space = default_space(preset_menu("balanced"), "auto", TORCH)
    seeds = [point for point, _ in space.queued([])]
    assert any(point["precision"] == "quantize.bf16" and point["quantize"] == NONE for point in seeds)
    nncf = {**space._nothing_chosen(), "export": "export.onnx", "quantize": "quantize.nncf"}
    assert any(point.get("precision") == "quantize.bf16" for point in space.extensions(nncf))


def _seed(number: int, params: dict, objectives: tuple[float, ...], strategy: str = "seed") -> TrialRecord:
    return TrialRecord(number=number, state="complete", params=params, strategy=strategy, objectives=objectives)


def test_the_best_single_pass_is_then_tried_once_with_one_more_step() -> None:
    space = default_space(preset_menu("mobile"), "auto", TEXT)
    base = space._nothing_chosen()
    nncf = {**base, "export": "export.onnx", "quantize": "quantize.nncf"}
    static = {**base, "export": "export.onnx", "quantize": "quantize.static"}
    queued = space.queued([_seed(0, static, (2.0,)), _seed(1, nncf, (1.0,))])
    assert queued[0] == ({**nncf, "embedding": "quantize.embedding"}, "extension")  # after its last step
    # before its first step: the passes that retrain the encoder to fewer multiply-adds, each once
    assert sorted(p["prune"] for p, _ in queued[1:]) == ["prune.ffn", "prune.heads", "prune.layers", "prune.structured"]
    assert all({**p, "prune": NONE} == nncf and strategy == "extension" for p, strategy in queued[1:])
    assert space.queued([_seed(1, nncf, (1.0,)), _seed(2, queued[0][0], (0.5,), "extension")]) == []
    pruned = {**base, "prune": "prune.ffn", "prune__amount": 0.3}
    added = [(slot, p[slot]) for p in space.extensions(pruned) for slot in p if p[slot] != pruned.get(slot)]
    assert ("export", "export.onnx") in added and ("quantize", "quantize.dynamic") in added  # torch.ao int8
    assert ("embedding", "quantize.embedding") not in added  # it needs an exported graph first


def test_a_cnn_or_mlp_quantized_by_the_best_seed_is_tried_pruned_to_fewer_channels_first() -> None:
    space = default_space(preset_menu("balanced"), "auto", TORCH)
    static = next(p for p in space.single_pass_points("quantize")  # the seed, as the study measured it
                  if p["quantize"] == "quantize.static" and p["export"] == "export.onnx")
    before = [p["prune"] for p in space.extensions(static) if p["prune"] != NONE]
    assert before == ["prune.structured"]  # magnitude pruning removes no multiply-add a dense kernel skips
    pruned = {**static, "prune": "prune.structured", **space._defaults("prune", "prune.structured")}
    assert space.at(pruned).passes == ["prune.structured", "export.onnx", "quantize.static"]  # type: ignore[union-attr]


def test_passes_that_cannot_read_fused_graphs_are_never_paired_with_fusion() -> None:
    space = default_space(preset_menu("accuracy-critical"), "auto", TEXT)
    found = recipes(space)
    fusers = {p for p in space.passes if "ort_fused" in get_pass(p).provides}
    refusers = {p for p in space.passes if "ort_fused" in get_pass(p).refuses}
    assert fusers and refusers
    assert any(set(r) & fusers for r in found) and any(set(r) & refusers for r in found)
    assert not any(set(r) & fusers and set(r) & refusers for r in found)


def test_a_task_declares_its_own_ranges_and_unknown_names_are_refused_with_those_that_exist() -> None:
    space = default_space(["export.onnx", "quantize.static", "prune.structured"], "auto", TORCH,
                          {"prune__amount": {"low": 0.2, "high": 0.9}, "quantize__calibration": ["minmax", "entropy"],
                           "quantize__per_channel": True, "prune__iterative_steps": {"low": 1, "high": 3}})
    assert (space.params["prune__amount"].low, space.params["prune__amount"].high) == (0.2, 0.9)  # type: ignore
    assert space.params["quantize__calibration"].values == ("minmax", "entropy")  # type: ignore[union-attr]
    assert space.params["quantize__per_channel"].values == (True,)  # type: ignore[union-attr]
    assert type(space.params["prune__iterative_steps"]).__name__ == "Int"
    with pytest.raises(ConfigError, match="'quantize__sparsity'.*names that exist: .*prune__amount"):
        default_space(["export.onnx", "quantize.static", "prune.structured"], "auto", TORCH,
                      {"quantize__sparsity": {"low": 0.1, "high": 0.5}})
    with pytest.raises(ConfigError, match="search.space.quantize__calibration for pass 'quantize.static'.*'minmaxx'"):
        default_space(["export.onnx", "quantize.static"], "auto", TORCH, {"quantize__calibration": ["minmaxx"]})
    with pytest.raises(ConfigError, match="low <= high"):
        default_space(["prune.structured"], "auto", TORCH, {"prune__amount": {"low": 0.9, "high": 0.2}})


def test_a_size_first_search_measures_the_recipes_the_field_found_before_anything_else() -> None:
    from tradeoff.passes.known_recipes import KNOWN_RECIPES, recipes_to_try
    from tradeoff.recipe import Recipe

    space = default_space(preset_menu("mobile"), "auto", TORCH)
    known = [Recipe(steps=steps) for steps in recipes_to_try(tuple(PRESETS["mobile"]["search"]["try_first"]))]
    assert len(known) == len(KNOWN_RECIPES["deep-compression"])
    off_range = Recipe(steps=({"pass": "prune.magnitude", "sparsity": 0.99},))  # the space stops at 0.98
    unsearched = Recipe(steps=({"pass": "prune.magnitude", "sparsity": 0.9, "finetune_epochs": 1},))
    twice = Recipe(steps=({"pass": "prune.magnitude"}, {"pass": "prune.structured"}))
    trying, outside = space.trying_first([*known, off_range, unsearched, twice])
    assert outside == [off_range, unsearched, twice]
    queued = trying.queued([])
    assert [strategy for _, strategy in queued[:len(known)]] == ["first"] * len(known)
    assert [trying.at(point) for point, _ in queued[:len(known)]] == known  # the very recipes, options and all
    assert [strategy for _, strategy in queued[len(known):]][-2:] == ["seed", "lossless"]
    assert space.trying_first(known)[0].first == trying.first
    guided, _ = space.guided({"keep_dense": ("layers.0", "layers.2")}, 2).trying_first(known)
    assert all(point["prune__keep_dense"] == 0 for point in guided.first)  # the recipe as written: nothing spared
    with pytest.raises(ConfigError, match="'deep-compresion'.*did you mean 'deep-compression'"):
        recipes_to_try(("deep-compresion",))


def test_a_known_recipe_that_does_not_suit_the_model_is_left_out() -> None:
    from tradeoff.passes.known_recipes import KNOWN_RECIPES
    from tradeoff.recipe import Recipe

    onnx_space = default_space(preset_menu("mobile"), "auto", ONNX)  # pruning and sharing need torch weights
    _, outside = onnx_space.trying_first(Recipe(steps=s) for s in KNOWN_RECIPES["deep-compression"])
    assert len(outside) == len(KNOWN_RECIPES["deep-compression"])
