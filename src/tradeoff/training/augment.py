"""Seeded augmentation of training batches in plain torch (torchvision does not install beside this torch).

Every random number comes from the CPU torch.Generator the caller passes and is moved to the batch's device
afterwards, so one generator state gives one augmented batch, bit for bit, and the global RNG is never touched.
Which knob applies to which kind is checked where the spec is validated (config.AUGMENT_KNOBS); the sample shape
a kind can take is checked here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional

from tradeoff.config import AugmentSpec
from tradeoff.errors import ConfigError, DataError


class Augmentation:
    """The augmentations `spec` turns on, applied to one training batch at a time.

    - image: samples (C, H, W), (H, W) or flat squares (H*H,), the last two read as 1-channel images (a LeNet on
      MNIST takes (784,)); one affine warp per batch for shift, rotation and zoom (zero fill; a shift alone moves
      whole pixels, as torchvision's RandomAffine does, rather than blur them), then Gaussian noise, cutout (one
      zeroed box per sample, each side `cutout` of the image's), then mixup or cutmix (a coin picks one per batch
      when both are on).
    - signal: samples (L,) or (C, L); a circular shift by whole steps (MNIST-1D's translate is the same roll of
      a zero-padded signal: no value is lost or interpolated), amplitude scaling, noise, mixup.
    - tabular: per-value scaling and noise, mixup.
    - text: inputs (input_ids, attention_mask); span swaps, then token dropout (the token becomes padding id 0
      and is masked out). The first and last attended tokens ([CLS], [SEP]) are never touched.

    Mixing draws a Beta(alpha, alpha) weight per sample and a shuffled partner; for classification the targets
    come back as soft class probabilities (N, num_classes), for regression (num_classes None) the float targets
    are mixed by the same weight. Without mixing the targets come back unchanged.
    """

    def __init__(self, spec: AugmentSpec, sample_shape: tuple[int, ...], num_classes: int | None) -> None:
        self.spec = spec
        self.num_classes = num_classes
        self._shape = _working_shape(spec.kind, tuple(sample_shape))

    @property
    def mixes(self) -> bool:
        """Mixup or cutmix is on: the targets come back mixed (soft class probabilities for classification)."""
        return self.spec.mixup > 0 or self.spec.cutmix > 0

    def __call__(self, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        if self.spec.kind == "text":
            return _augment_text(self.spec, inputs, generator), targets
        if len(inputs) != 1:
            raise DataError(f"augment kind {self.spec.kind} takes one input tensor, the batch has {len(inputs)}",
                            "set train.augment.kind to text for tokenized text")
        (x,) = inputs
        batch = x.reshape(len(x), *self._shape)
        if self.spec.kind == "image":
            batch = self._image(batch, generator)
        elif self.spec.kind == "signal":
            batch = self._signal(batch, generator)
        else:
            batch = _scaled(batch, self.spec.scale, batch.shape, generator)
        batch = _noisy(batch, self.spec.noise, generator)
        if self.spec.kind == "image" and self.spec.cutout:
            batch = _cut_out(batch, self.spec.cutout, generator)
        if self.mixes:
            batch, targets = self._mix(batch, targets, generator)
        return (batch.reshape(x.shape),), targets

    def _image(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        spec, count = self.spec, len(images)
        if not (spec.shift or spec.rotation or spec.scale):
            return images
        degrees = _uniform(count, spec.rotation, generator)
        zoom = 1 + _uniform(count, spec.scale, generator)
        shift = torch.stack([_uniform(count, spec.shift, generator), _uniform(count, spec.shift, generator)], 1)
        if not (spec.rotation or spec.scale):  # nothing else resamples: whole pixels, moved as they are
            sides = torch.tensor(images.shape[:-3:-1], dtype=torch.float64)  # width, height
            shift = torch.round(shift * sides) / sides
        return warp(images, degrees, zoom, shift)

    def _signal(self, signals: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        count, channels, length = signals.shape
        if self.spec.shift:
            most = round(self.spec.shift * length)
            steps = torch.randint(-most, most + 1, (count, 1), generator=generator)
            index = (torch.arange(length) - steps) % length
            signals = signals.gather(2, index[:, None, :].expand(count, channels, length).to(signals.device))
        return _scaled(signals, self.spec.scale, (count, 1, 1), generator)

    def _mix(self, batch: torch.Tensor, targets: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample mixed with a shuffled partner; `weight` is the share of the sample itself."""
        count = len(batch)
        partner = torch.randperm(count, generator=generator).to(batch.device)
        # with both on, each batch takes one of them, half the time each
        cutmix = self.spec.cutmix > 0 and (self.spec.mixup == 0 or bool(torch.rand(1, generator=generator) < 0.5))
        if cutmix:
            height, width = batch.shape[-2:]
            pasted = _cutmix_boxes(count, self.spec.cutmix, height, width, generator)
            weight = 1 - pasted.float().mean((1, 2))  # the share actually kept once a box is clipped at the edge
            batch = torch.where(pasted[:, None].to(batch.device), batch[partner], batch)
        else:
            weight = torch.from_numpy(_beta(self.spec.mixup, count, generator))
            share = weight.to(batch.device, batch.dtype).reshape(count, *[1] * (batch.dim() - 1))
            batch = share * batch + (1 - share) * batch[partner]
        if self.num_classes is None:
            mixed = targets.to(batch.dtype)
        else:
            mixed = functional.one_hot(targets, self.num_classes).to(batch.dtype)
        share = weight.to(mixed.device, mixed.dtype).reshape(count, *[1] * (mixed.dim() - 1))
        return batch, share * mixed + (1 - share) * mixed[partner]


def warp(images: torch.Tensor, degrees: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) each rotated counter-clockwise by `degrees` about its centre, zoomed by `zoom` (> 1
    enlarges) and moved by `shift` (N, 2): fractions of the width and height, positive right and down; what comes
    into view is zero. One affine_grid + grid_sample for the batch; the parameters live on the CPU."""
    height, width = images.shape[-2:]
    radians = torch.deg2rad(degrees.double())
    cos, sin = torch.cos(radians), torch.sin(radians)
    # affine_grid maps each output pixel to the input point it samples, in coordinates normalised to [-1, 1] per
    # axis (y down): the inverse of the forward warp, with the aspect ratio undone so a rotation stays rigid.
    inverse = torch.stack([torch.stack([cos, -sin * height / width], 1),
                           torch.stack([sin * width / height, cos], 1)], 1) / zoom.double()[:, None, None]
    offset = -inverse @ (2 * shift.double())[:, :, None]
    theta = torch.cat([inverse, offset], 2).to(images.device, images.dtype)
    grid = functional.affine_grid(theta, list(images.shape), align_corners=False)
    return functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _working_shape(kind: str, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape each sample is augmented in: (C, H, W) for images, (C, L) for signals."""
    if kind == "text":
        return sample_shape
    if kind == "image":
        if len(sample_shape) == 1 and math.isqrt(sample_shape[0]) ** 2 == sample_shape[0]:
            return (1, math.isqrt(sample_shape[0]), math.isqrt(sample_shape[0]))
        if len(sample_shape) in (2, 3):
            return (1, *sample_shape) if len(sample_shape) == 2 else sample_shape
        raise ConfigError(f"augment kind image takes samples of shape (C, H, W), (H, W) or a flat square (H*H,), "
                          f"not {sample_shape}", "give the data its image shape (data.shape: [C, H, W]) "
                          "or augment it as kind signal or tabular")
    if kind == "signal":
        if len(sample_shape) in (1, 2):
            return (1, *sample_shape) if len(sample_shape) == 1 else sample_shape
        raise ConfigError(f"augment kind signal takes samples of shape (L,) or (C, L), not {sample_shape}",
                          "give the data a signal shape (data.shape: [C, L]) or augment it as kind image")
    if not sample_shape:
        raise ConfigError("augment kind tabular takes numeric samples, and these are tokenized text",
                          "set train.augment.kind to text")
    return sample_shape


def _uniform(count: int, half_width: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform draws in [-half_width, half_width]."""
    return (2 * torch.rand(count, generator=generator, dtype=torch.float64) - 1) * half_width


def _beta(alpha: float, count: int, generator: torch.Generator) -> np.ndarray:
    """Beta(alpha, alpha) draws; torch's Beta takes no generator, so numpy draws them, seeded from `generator`."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return np.random.default_rng(seed).beta(alpha, alpha, count).astype(np.float32)


def _scaled(batch: torch.Tensor, scale: float, factor_shape: tuple[int, ...],
            generator: torch.Generator) -> torch.Tensor:
    """`batch` times factors in [1 - scale, 1 + scale], drawn in `factor_shape` (broadcast over the rest)."""
    if not scale:
        return batch
    factors = 1 + (2 * torch.rand(factor_shape, generator=generator) - 1) * scale
    return batch * factors.to(batch.device, batch.dtype)


def _noisy(batch: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    if not std:
        return batch
    return batch + std * torch.randn(batch.shape, generator=generator).to(batch.device, batch.dtype)


def _boxes(corners: torch.Tensor, sides: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean masks (N, H, W), true inside each sample's box: `corners` (N, 2) top-left rows and columns,
    `sides` (N, 2) heights and widths."""
    rows = torch.arange(height)[None, :]
    cols = torch.arange(width)[None, :]
    in_rows = (rows >= corners[:, :1]) & (rows < corners[:, :1] + sides[:, :1])
    in_cols = (cols >= corners[:, 1:]) & (cols < corners[:, 1:] + sides[:, 1:])
    return in_rows[:, :, None] & in_cols[:, None, :]


def _cut_out(images: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor, 2017): each image with one box, `fraction` of its height and width, set to 0;
    the box lies wholly inside the image, so every sample loses the same area."""
    height, width = images.shape[-2:]
    sides = torch.tensor([max(1, round(fraction * height)), max(1, round(fraction * width))])
    corners = (torch.rand(len(images), 2, generator=generator) * (torch.tensor([height, width]) - sides + 1)).long()
    boxes = _boxes(corners, sides.expand(len(images), 2), height, width)
    return images.masked_fill(boxes[:, None].to(images.device), 0)


def _cutmix_boxes(count: int, alpha: float, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """CutMix's boxes (Yun et al., 2019): area 1 - Beta(alpha, alpha) of the image around a uniform centre,
    clipped at the edges."""
    ratio = torch.from_numpy(np.sqrt(1 - _beta(alpha, count, generator)))
    size = torch.tensor([height, width])
    sides = (ratio[:, None] * size).long()
    centres = (torch.rand(count, 2, generator=generator) * size).long()
    low = (centres - sides // 2).clamp(min=0)
    high = torch.minimum(centres + sides // 2, size)
    return _boxes(low, high - low, height, width)


def _augment_text(spec: AugmentSpec, inputs: tuple[torch.Tensor, ...],
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if len(inputs) != 2 or inputs[0].is_floating_point() or inputs[0].shape != inputs[1].shape:
        raise DataError("augment kind text takes tokenized text: input_ids and an attention_mask of one shape",
                        "set train.augment.kind to the kind of the data (image, signal or tabular)")
    ids, mask = inputs
    attended = mask.cpu() != 0
    if spec.span_swap:
        order = _span_swap_order(attended, spec.span_swap, generator).to(ids.device)
        ids, mask = ids.gather(1, order), mask.gather(1, order)
    if spec.token_dropout:
        length = ids.shape[1]
        positions = torch.arange(length).expand_as(attended)
        first = torch.where(attended, positions, length).min(1, keepdim=True).values
        last = torch.where(attended, positions, -1).max(1, keepdim=True).values
        inner = attended & (positions > first) & (positions < last)
        dropped = (inner & (torch.rand(attended.shape, generator=generator) < spec.token_dropout)).to(ids.device)
        ids, mask = ids.masked_fill(dropped, 0), mask.masked_fill(dropped, 0)
    return ids, mask


def _span_swap_order(attended: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Per row, the column order that swaps two non-overlapping spans of the attended tokens between the first
    and the last (each span up to a quarter of them long), with `probability`; other rows keep their order."""
    count, length = attended.shape
    order = torch.arange(length).repeat(count, 1)
    draws = torch.rand(count, 5, generator=generator)  # swap?, two lengths, the gap before, the gap between
    for row in range(count):
        inner = attended[row].nonzero()[1:-1, 0]
        size = len(inner)
        if size < 2 or draws[row, 0] >= probability:
            continue
        longest = max(1, size // 4)
        first, second = (1 + (draws[row, 1:3] * longest).long()).tolist()
        free = size - first - second
        start = int(draws[row, 3] * (free + 1))
        between = int(draws[row, 4] * (free - start + 1))
        a, b = start, start + first
        c, d = b + between, b + between + second
        order[row, inner] = torch.cat([inner[:a], inner[c:d], inner[b:c], inner[a:b], inner[d:]])
    return order
