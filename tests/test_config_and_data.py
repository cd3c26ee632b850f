"""Task files, presets and data sources: what a user writes and what they get back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tradeoff as to
from tradeoff.config import DataSpec, task_from_dict
from tradeoff.data import load_data
from tradeoff.errors import ConfigError, DataError
from tradeoff.search.space import select_passes

MINIMAL = {"name": "t", "model": {"source": "onnx", "path": "m.onnx"}, "data": {"source": "builtin", "name": "wine"}}


@pytest.mark.parametrize(("preset", "first_objective", "max_drop"),
                         [("realtime", "latency", 0.01), ("mobile", "size", 0.01),
                          ("accuracy-critical", "latency", 0.002), ("balanced", "latency", 0.01)])
def test_presets_set_objectives_and_constraints(preset: str, first_objective: str, max_drop: float) -> None:
    task = task_from_dict({**MINIMAL, "preset": preset})
    assert task.objectives[0] == first_objective
    assert task.constraints.max_metric_drop == max_drop


def test_task_file_overrides_its_preset() -> None:
    task = task_from_dict({**MINIMAL, "preset": "mobile", "objectives": ["latency"],
                           "constraints": {"max_latency_ms": 5}})
    assert task.objectives == ("latency",)
    assert task.constraints.max_latency_ms == 5 and task.constraints.max_metric_drop == 0.01
    search = task.search
    assert "quantize.fp16" in select_passes(search.passes, search.tags, search.exclude_tags)  # by the preset's tags
    named = task_from_dict({**MINIMAL, "preset": "mobile", "search": {"passes": ["quantize.dynamic"]}}).search
    assert select_passes(named.passes, named.tags, named.exclude_tags) == ["quantize.dynamic"]


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="realtime"):
        task_from_dict({**MINIMAL, "preset": "fastest"})


def test_split_must_be_a_partition() -> None:
    with pytest.raises(ConfigError, match="sum"):
        task_from_dict({**MINIMAL, "data": {"source": "builtin", "name": "wine", "split": [0.5, 0.5, 0.5]}})


@pytest.mark.parametrize("name", ["mnist5k", "digits", "breast_cancer", "wine"])
def test_builtin_splits_are_seeded_disjoint_and_complete(name: str) -> None:
    first, again = (load_data(DataSpec(source="builtin", name=name, seed=3)) for _ in range(2))
    np.testing.assert_array_equal(first.test.x, again.test.x)
    rows = {r.tobytes() for split in (first.train, first.val) for r in split.x}
    total = len(first.train) + len(first.val) + len(first.test)
    assert total == {"mnist5k": 5000, "digits": 1797, "breast_cancer": 569, "wine": 178}[name]
    assert sum(r.tobytes() in rows for r in first.test.x) <= 0.05 * len(first.test)  # only true duplicates
    assert load_data(DataSpec(source="builtin", name=name, seed=4)).test.y.tolist() != first.test.y.tolist()


def test_a_builtin_set_that_takes_seconds_to_make_is_made_once_per_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mnist1d.data

    monkeypatch.setattr("tradeoff.data.DATASET_CACHE", tmp_path / "cache")
    made = load_data(DataSpec(source="builtin", name="mnist1d"))
    assert [p.name.split("-")[:2] for p in (tmp_path / "cache").iterdir()] == [["mnist1d", "mnist1d"]]
    make_dataset = mnist1d.data.make_dataset

    def refuse(*_: object) -> None:
        raise AssertionError("MNIST-1D was made again")

    monkeypatch.setattr(mnist1d.data, "make_dataset", refuse)
    again = load_data(DataSpec(source="builtin", name="mnist1d"))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(again, split).x, getattr(made, split).x)
        np.testing.assert_array_equal(getattr(again, split).y, getattr(made, split).y)
    monkeypatch.setattr(mnist1d.data, "make_dataset", make_dataset)
    (tmp_path / "home").write_text("")  # a cache that cannot be written (here: under a file): made, no error
    monkeypatch.setattr("tradeoff.data.DATASET_CACHE", tmp_path / "home" / "cache")
    np.testing.assert_array_equal(load_data(DataSpec(source="builtin", name="mnist1d")).test.x, made.test.x)


def test_npz_and_csv_files_load_like_builtins(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    y = np.arange(50) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    rows = "\n".join(",".join(f"{v}" for v in (*row, label)) for row, label in zip(x, y, strict=True))
    (tmp_path / "d.csv").write_text("a,b,c,d,label\n" + rows + "\n")
    from_npz = load_data(DataSpec(source="file", path=tmp_path / "d.npz"))
    from_csv = load_data(DataSpec(source="file", path=tmp_path / "d.csv", target="label"))
    np.testing.assert_allclose(from_npz.train.x, from_csv.train.x, rtol=1e-6)
    assert from_csv.train.y.dtype == np.int64


def test_the_csv_column_named_target_is_the_label_wherever_it_stands(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,target,b\n1,0,5\n2,1,6\n3,0,7\n4,1,8\n5,0,9\n6,1,10\n7,0,11\n8,1,12\n"
                                    "9,0,13\n10,1,14\n")
    data = load_data(DataSpec(source="file", path=tmp_path / "d.csv"))
    rows = np.concatenate([data.train.x, data.val.x, data.test.x])
    labels = np.concatenate([data.train.y, data.val.y, data.test.y])
    assert rows.shape == (10, 2) and set(labels.tolist()) == {0, 1}
    pairs = zip(rows.tolist(), labels.tolist(), strict=True)
    assert all(b - a == 4 and label == (a + 1) % 2 for (a, b), label in pairs)  # features a, b; label from target
    (tmp_path / "e.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="column 'target' not in .*set data.target to one of \\['a', 'b', 'c'\\]"):
        load_data(DataSpec(source="file", path=tmp_path / "e.csv"))


def test_csv_with_an_absent_target_column_names_the_columns(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DataError, match=r"\['a', 'b'\]"):
        load_data(DataSpec(source="file", path=tmp_path / "d.csv", target="label"))


def test_unlabeled_inputs_are_read_by_column_name_and_prepared_as_the_splits_were(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(5.0, 2.0, size=(40, 3))
    rows = "\n".join(f"{a},{b},{c},{i % 2}" for i, (a, b, c) in enumerate(x))
    (tmp_path / "d.csv").write_text("a,b,c,target\n" + rows + "\n")
    (tmp_path / "u.csv").write_text("c,a,b\n" + "\n".join(f"{c},{a},{b}" for a, b, c in x[:12]) + "\n")
    spec = DataSpec(source="file", path=tmp_path / "d.csv", standardize=True, unlabeled=tmp_path / "u.csv")
    data = load_data(spec)
    mean, std = data.standardization  # type: ignore[misc]
    assert data.unlabeled is not None and data.unlabeled.dtype == np.float32
    np.testing.assert_allclose(data.unlabeled, (x[:12] - mean) / std, rtol=1e-5)  # columns by name, standardized
    (tmp_path / "v.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks the training column\\(s\\) 'c'"):
        load_data(spec.model_copy(update={"unlabeled": tmp_path / "v.csv"}))
    with pytest.raises(DataError, match="data.unlabeled file not found"):
        load_data(spec.model_copy(update={"unlabeled": tmp_path / "absent.csv"}))


def digits_dataset() -> torch.utils.data.Dataset:
    bundle = to.data.digits()
    return torch.utils.data.TensorDataset(torch.from_numpy(bundle.train.x), torch.from_numpy(bundle.train.y))


def test_python_source_accepts_a_torch_dataset() -> None:
    bundle = load_data(DataSpec(source="python", factory="test_config_and_data:digits_dataset"))
    assert bundle.sample_shape == (64,)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == len(to.data.digits().train)


def test_calibration_samples_come_from_the_training_split_only(digits) -> None:
    train_rows = {r.tobytes() for r in digits.train.x}
    assert all(r.tobytes() in train_rows for r in digits.calibration())


def test_fine_tuning_holdout_is_cut_from_train_and_never_touches_validation(digits) -> None:
    fitting, holdout = digits.train_holdout()
    assert len(fitting) + len(holdout) == len(digits.train) and 0.08 < len(holdout) / len(digits.train) < 0.12
    val_rows = {r.tobytes() for r in digits.val.x}
    train_rows = {r.tobytes() for r in digits.train.x}
    assert all(r.tobytes() in train_rows for r in holdout.x)
    assert sum(r.tobytes() in val_rows for r in holdout.x) <= 2  # only digits that occur twice in the data


def test_cross_validation_holds_out_each_sample_of_train_and_val_once_and_never_test(digits) -> None:
    def rows(*splits: to.data.Split) -> list[bytes]:
        return sorted(r.tobytes() + bytes([int(label)]) for split in splits for r, label in zip(split.x, split.y,
                                                                                                strict=True))

    folds = digits.cross_validation(3, seed=0)
    both = rows(digits.train, digits.val)
    assert rows(*(fold.val for fold in folds)) == both  # each sample held out exactly once
    assert all(rows(fold.train, fold.val) == both for fold in folds)  # trained on all the others
    assert all(fold.test is digits.test for fold in folds)
    assert max(len(f.val) for f in folds) - min(len(f.val) for f in folds) <= 1
    assert rows(digits.cross_validation(3, seed=0)[0].val) == rows(folds[0].val)  # seeded
    assert rows(digits.cross_validation(3, seed=1)[0].val) != rows(folds[0].val)
