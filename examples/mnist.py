"""The bundled example models for 28x28 MNIST digits: LeNet-300-100, a small CNN, a residual CNN with batch norm.

`python -m examples.mnist` trains them on MNIST-5k (training split only) and writes their safetensors
weights next to this file; the demo task files point at them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

import tradeoff as to

HERE = Path(__file__).resolve().parent


class LeNet300(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                                    nn.Linear(100, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    """Expects inputs of shape (N, 1, 28, 28)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ResidualCNN(nn.Module):
    """Conv + batch norm with a residual block, for structured pruning: expects (N, 1, 28, 28)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        self.head = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        return self.head(stem + self.block(stem))


def train(factory: type[nn.Module], shape: tuple[int, ...] | None, path: Path, seed: int = 0) -> Path:
    """Train on the training split the task files use (split seed 0), early-stopping on a holdout of it, so the
    validation split (the search's) and the test split (the report's) are never seen in training."""
    if path.exists():
        return path
    data = to.data.mnist(shape=shape, seed=0)
    torch.manual_seed(seed)
    model = factory()
    train_part, holdout = data.train_holdout()
    result = to.training.fit(model, train_part, holdout, epochs=20, seed=seed)
    tmp = path.with_suffix(".tmp")
    save_file(model.state_dict(), str(tmp))
    tmp.rename(path)
    print(f"trained {factory.__name__} for {result.epochs_run} epochs -> {path}")
    return path


if __name__ == "__main__":
    train(LeNet300, None, HERE / "lenet300.safetensors")
    train(SmallCNN, (1, 28, 28), HERE / "smallcnn.safetensors")
    train(ResidualCNN, (1, 28, 28), HERE / "residualcnn.safetensors")
