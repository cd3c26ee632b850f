"""Dataset distillation: a few samples per class that stand in for a whole training split.

`dm` is distribution matching (Zhao & Bilen, "Dataset Condensation with Distribution Matching", WACV 2023): the
synthetic images start as random real images of their class, and every iteration draws a randomly initialised
ConvNet and moves them so that their mean embedding matches the mean embedding of a batch of real images of the same
class. `herding` is the coreset baseline of those papers (Welling 2009): real samples picked greedily so that their
running mean embedding stays closest to the class mean. `random` is random real samples, the papers' floor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from tradeoff.data import Split
from tradeoff.errors import ConfigError, DataError
from tradeoff.training.convnet import ConvNet

Method = Literal["dm", "herding", "random"]
METHODS: tuple[Method, ...] = ("dm", "herding", "random")
EMBED_CHUNK = 256  # images per forward when a whole class is embedded (herding)


def distill_dataset(train: Split, per_class: int, *, method: Method = "dm", seed: int = 0, iterations: int = 200,
                    lr: float = 1.0, real_per_class: int = 64, width: int = 128, depth: int | None = None,
                    image_shape: tuple[int, int, int] | None = None,
                    on_iteration: Callable[[int], None] | None = None) -> Split:
    """`per_class` samples of every class in `train`, ordered by class, in `train`'s sample shape.

    Samples are images (N, C, H, W), or flat vectors that `image_shape` says how to view as images; herding and
    random also take plain vectors (herding then compares the raw values). DM runs `iterations` steps of SGD
    (momentum 0.5, `lr` on images standardized per channel, as in the paper) against `real_per_class` real images
    per class and a fresh ConvNet of `width` channels each step; herding embeds with one such ConvNet.
    `on_iteration(i)` is told after each DM step. The same arguments give the same samples."""
    classes, members = _classes(train, per_class)
    if method not in METHODS:
        raise ConfigError(f"unknown dataset distillation method '{method}'", f"choose one of {', '.join(METHODS)}")
    images = _as_images(train.x, image_shape, needed=method == "dm")
    rng = np.random.default_rng(seed)
    if method == "herding":
        features = _herding_features(train.x, images, seed, width, depth)
        picked = np.concatenate([rows[_herding_order(features[rows], per_class)] for rows in members])
    else:
        picked = np.concatenate([np.sort(rng.choice(rows, size=per_class, replace=False)) for rows in members])
    labels = np.repeat(classes, per_class).astype(train.y.dtype)
    if method != "dm":
        return Split(train.x[picked], labels)
    if iterations < 0 or real_per_class < 1 or lr <= 0:
        raise ConfigError(f"distribution matching needs iterations >= 0, real_per_class >= 1 and lr > 0, got "
                          f"{iterations}, {real_per_class}, {lr}", "give positive settings")
    assert images is not None
    synthetic = _match_distributions(images, members, picked, per_class, rng, seed, iterations, lr,
                                     min(real_per_class, min(len(rows) for rows in members)), width, depth,
                                     on_iteration)
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


def _standardizer(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation: the embedders see standardized images, as in the paper."""
    mean = images.mean(axis=(0, 2, 3), keepdims=True)[0]
    std = images.std(axis=(0, 2, 3), keepdims=True)[0] + 1e-8
    return torch.from_numpy(mean), torch.from_numpy(std)


def _embedder(shape: tuple[int, ...], width: int, depth: int | None) -> ConvNet:
    """A randomly initialised ConvNet (from torch's current random state) whose weights take no gradient."""
    net = ConvNet(shape, 1, width, depth)
    net.requires_grad_(False)
    return net


def _herding_features(x: np.ndarray, images: np.ndarray | None, seed: int, width: int,
                      depth: int | None) -> np.ndarray:
    """What herding compares: images by the embedding of a ConvNet initialised at random from `seed` (the same
    one for every class), vectors by their raw values."""
    if images is None:
        return x.reshape(len(x), -1).astype(np.float64)
    mean, std = _standardizer(images)
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        net = _embedder(images.shape[1:], width, depth)
        batch = (torch.from_numpy(images) - mean) / std
        return torch.cat([net.embed(chunk) for chunk in batch.split(EMBED_CHUNK)]).double().numpy()


def _herding_order(features: np.ndarray, count: int) -> np.ndarray:
    """Herding over one class: greedily add the sample that brings the mean of those picked closest to the class
    mean; the rows picked, in order."""
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
                         width: int, depth: int | None, on_iteration: Callable[[int], None] | None) -> np.ndarray:
    """DM's loop: per step, a fresh random embedder; the loss is the sum over classes of the squared distance
    between the mean embeddings of a batch of real images and of the synthetic images of that class."""
    mean, std = _standardizer(images)
    synthetic = ((torch.from_numpy(images[start]) - mean) / std).requires_grad_(True)
    optimizer = torch.optim.SGD([synthetic], lr=lr, momentum=0.5)
    shape, classes = images.shape[1:], len(members)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(iterations):
            net = _embedder(shape, width, depth)
            rows = np.concatenate([rng.choice(r, size=real_per_class, replace=False) for r in members])
            with torch.no_grad():
                real = net.embed((torch.from_numpy(images[rows]) - mean) / std)
            real_means = real.reshape(classes, real_per_class, -1).mean(dim=1)
            synthetic_means = net.embed(synthetic).reshape(classes, per_class, -1).mean(dim=1)
            loss = ((real_means - synthetic_means) ** 2).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_iteration is not None:
                on_iteration(step + 1)
    return (synthetic.detach() * std + mean).numpy()
