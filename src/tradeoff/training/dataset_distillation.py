"""Dataset distillation: a few samples per class that stand in for a whole training split.

`dm` is distribution matching (Zhao & Bilen, "Dataset Condensation with Distribution Matching", WACV 2023): the
synthetic images start as random real images of their class, and every iteration draws a randomly initialised
ConvNet and moves them so that their mean embedding matches the mean embedding of a batch of real images of the same
class. `herding` is the coreset baseline of those papers (Welling 2009): real samples picked greedily so that their
running mean embedding stays closest to the class mean. `random` is random real samples, the papers' floor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from tradeoff.config import AugmentSpec
from tradeoff.data import Split
from tradeoff.errors import ConfigError, DataError
from tradeoff.training.convnet import ConvNet
from tradeoff.training.trainer import training_device

Method = Literal["dm", "herding", "random"]
# DSA's warp (Zhao & Bilen, ICML 2021) for digits: scale by up to +-20%, rotate by up to 15 degrees, shift by up to
# an eighth of the side. Matching warps each class's real and synthetic images alike with it; the DM paper's
# judge also trains with it, which is what its figures measure (JUDGE_AUGMENTATION).
DSA_SCALE, DSA_DEGREES, DSA_SHIFT = 0.2, 15.0, 0.125
JUDGE_AUGMENTATION = AugmentSpec(kind="image", scale=DSA_SCALE, rotation=DSA_DEGREES, shift=DSA_SHIFT)
METHODS: tuple[Method, ...] = ("dm", "herding", "random")
EMBED_CHUNK = 256  # images per forward when a whole class is embedded (herding)


def distill_dataset(train: Split, per_class: int, *, method: Method = "dm", seed: int = 0, iterations: int = 100,
                    lr: float = 1.0, real_per_class: int = 32, width: int = 128, depth: int | None = None,
                    image_shape: tuple[int, int, int] | None = None, augment: bool = False,
                    on_iteration: Callable[[int], None] | None = None) -> Split:
    """`per_class` samples of every class in `train`, ordered by class, in `train`'s sample shape.

    Samples are images (N, C, H, W), or flat vectors that `image_shape` says how to view as images; herding and
    random also take plain vectors (herding then compares the raw values). DM runs `iterations` steps of SGD
    (momentum 0.5, `lr` on images standardized per channel, as in the paper) against `real_per_class` real images
    per class and a fresh ConvNet of `width` channels each step, with `augment` warping each class's real and
    synthetic images alike (DSA's siamese augmentation); herding embeds with one such ConvNet. Both run
    on a GPU when torch sees one. `on_iteration(i)` is told after each DM step. The same arguments give the same
    samples (on the same kind of device)."""
    classes, members = _classes(train, per_class)
    if method not in METHODS:
        raise ConfigError(f"unknown dataset distillation method '{method}'", f"choose one of {', '.join(METHODS)}")
    if method == "dm" and (iterations < 0 or real_per_class < 1 or lr <= 0):
        raise ConfigError(f"distribution matching needs iterations >= 0, real_per_class >= 1 and lr > 0, got "
                          f"{iterations}, {real_per_class}, {lr}", "give positive settings")
    images = _as_images(train.x, image_shape, needed=method == "dm")
    rng, device = np.random.default_rng(seed), training_device()
    if method == "herding":
        features = _herding_features(train.x, images, seed, width, depth, device)
        picked = np.concatenate([rows[_herding_order(features[rows], per_class)] for rows in members])
    else:
        picked = np.concatenate([np.sort(rng.choice(rows, size=per_class, replace=False)) for rows in members])
    labels = np.repeat(classes, per_class).astype(train.y.dtype)
    if method != "dm":
        return Split(train.x[picked], labels)
    assert images is not None
    synthetic = _match_distributions(images, members, picked, per_class, rng, seed, iterations, lr,
                                     min(real_per_class, min(len(rows) for rows in members)), width, depth,
                                     device, augment, on_iteration)
    return Split(synthetic.reshape((len(synthetic), *train.x.shape[1:])), labels)


def _classes(train: Split, per_class: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The class labels and the rows of each; refuses real-valued targets and classes too small for `per_class`."""
    if train.y.dtype.kind not in "iub":
        raise DataError("dataset distillation needs class labels, and these targets are real values",
                        "distil a classification task")
    if per_class < 1:
        raise ConfigError(f"per_class must be at least 1, got {per_class}", "ask for 1 or more samples per class")
    classes, counts = np.unique(train.y, return_counts=True)
    if per_class > counts.min():
        smallest = classes[counts.argmin()]
        raise DataError(f"per_class {per_class} exceeds the {counts.min()} training samples of class {smallest}",
                        f"ask for {counts.min()} or fewer per class")
    return classes, [np.flatnonzero(train.y == c) for c in classes]


def _as_images(x: np.ndarray, image_shape: tuple[int, int, int] | None, needed: bool) -> np.ndarray | None:
    """The samples as float32 images (N, C, H, W); None for vectors where images are not needed."""
    if image_shape is not None:
        if int(np.prod(image_shape)) != int(np.prod(x.shape[1:])):
            raise DataError(f"image shape {list(image_shape)} does not hold the {int(np.prod(x.shape[1:]))} values "
                            "of a sample", "give a shape whose product is the sample size")
        return np.ascontiguousarray(x.reshape((len(x), *image_shape)), dtype=np.float32)
    if x.ndim == 4:
        return np.ascontiguousarray(x, dtype=np.float32)
    if needed:
        raise DataError(f"distribution matching needs image samples (channels, height, width), got samples of shape "
                        f"{list(x.shape[1:])}", "give the image shape (data.shape in the task file, e.g. [1, 8, 8])")
    return None


@dataclass(frozen=True)
class _Standardization:
    """Per-channel mean and standard deviation over the whole split: the embedders see standardized images, and
    DM's learning rate means what it means in the paper whatever the data's scale."""

    mean: np.ndarray
    std: np.ndarray
    device: torch.device

    @classmethod
    def of(cls, images: np.ndarray, device: torch.device) -> _Standardization:
        return cls(images.mean(axis=(0, 2, 3), keepdims=True)[0], images.std(axis=(0, 2, 3), keepdims=True)[0] + 1e-8,
                   device)

    def apply(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((images - self.mean) / self.std).to(self.device)

    def undo(self, standardized: torch.Tensor) -> np.ndarray:
        return standardized.detach().cpu().numpy() * self.std + self.mean


def _embedder(shape: tuple[int, ...], width: int, depth: int | None, device: torch.device) -> ConvNet:
    """A randomly initialised ConvNet (from torch's CPU random state) whose weights take no gradient."""
    net = ConvNet(shape, 1, width, depth)
    net.requires_grad_(False)
    return net.to(device)


def _herding_features(x: np.ndarray, images: np.ndarray | None, seed: int, width: int, depth: int | None,
                      device: torch.device) -> np.ndarray:
    """What herding compares: images by the embedding of a ConvNet initialised at random from `seed` (the same
    one for every class), vectors by their raw values."""
    if images is None:
        return x.reshape(len(x), -1).astype(np.float64)
    standardized = _Standardization.of(images, device).apply
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.default_generator.manual_seed(seed)
        net = _embedder(images.shape[1:], width, depth, device)
        return torch.cat([net.embed(standardized(images[i : i + EMBED_CHUNK])).cpu()
                          for i in range(0, len(images), EMBED_CHUNK)]).double().numpy()


def _herding_order(features: np.ndarray, count: int) -> np.ndarray:
    """Herding over one class: greedily add the sample that brings the mean of those picked closest to the class
    mean; the positions picked, sorted."""
    target, total = features.mean(axis=0), np.zeros(features.shape[1])
    chosen: list[int] = []
    available = np.ones(len(features), dtype=bool)
    for k in range(1, count + 1):
        distance = np.linalg.norm(target - (total + features) / k, axis=1)
        distance[~available] = np.inf
        best = int(distance.argmin())
        chosen.append(best)
        available[best] = False
        total += features[best]
    return np.sort(np.array(chosen))


def _match_distributions(images: np.ndarray, members: list[np.ndarray], start: np.ndarray, per_class: int,
                         rng: np.random.Generator, seed: int, iterations: int, lr: float, real_per_class: int,
                         width: int, depth: int | None, device: torch.device, augment: bool,
                         on_iteration: Callable[[int], None] | None) -> np.ndarray:
    """DM's loop: per step, a fresh random embedder; the loss is the sum over classes of the squared distance
    between the mean embeddings of a batch of real images and of the synthetic images of that class."""
    standardization = _Standardization.of(images, device)
    synthetic = standardization.apply(images[start]).requires_grad_(True)
    optimizer = torch.optim.SGD([synthetic], lr=lr, momentum=0.5)
    shape, classes = images.shape[1:], len(members)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for step in range(iterations):
            net = _embedder(shape, width, depth, device)
            rows = np.concatenate([rng.choice(r, size=real_per_class, replace=False) for r in members])
            real_batch, synthetic_batch = standardization.apply(images[rows]), synthetic
            if augment:
                real_batch, synthetic_batch = _siamese_affine(real_batch, synthetic_batch, classes, rng)
            with torch.no_grad():
                real = net.embed(real_batch)
            real_means = real.reshape(classes, real_per_class, -1).mean(dim=1)
            synthetic_means = net.embed(synthetic_batch).reshape(classes, per_class, -1).mean(dim=1)
            loss = ((real_means - synthetic_means) ** 2).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_iteration is not None:
                on_iteration(step + 1)
    return standardization.undo(synthetic)


def _siamese_affine(real: torch.Tensor, synthetic: torch.Tensor, classes: int,
                    rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """DSA's siamese augmentation as one differentiable affine warp per class: the real and the synthetic images of a
    class are scaled, rotated and shifted alike (DSA_SCALE, DSA_DEGREES, DSA_SHIFT)."""
    scale = rng.uniform(1 - DSA_SCALE, 1 + DSA_SCALE, (classes, 2))
    angle = np.deg2rad(rng.uniform(-DSA_DEGREES, DSA_DEGREES, classes))
    shift = rng.uniform(-2 * DSA_SHIFT, 2 * DSA_SHIFT, (classes, 2))  # affine_grid spans [-1, 1]: twice the fraction
    theta = np.stack([np.stack([scale[:, 0] * np.cos(angle), -scale[:, 0] * np.sin(angle), shift[:, 0]], axis=1),
                      np.stack([scale[:, 1] * np.sin(angle), scale[:, 1] * np.cos(angle), shift[:, 1]], axis=1)],
                     axis=1)
    per_class = torch.from_numpy(theta.astype(np.float32)).to(real.device)

    def warp(images: torch.Tensor) -> torch.Tensor:
        each = per_class.repeat_interleave(len(images) // classes, dim=0)
        grid = torch.nn.functional.affine_grid(each, list(images.shape), align_corners=False)
        return torch.nn.functional.grid_sample(images, grid, align_corners=False)

    return warp(real), warp(synthetic)
