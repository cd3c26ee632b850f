"""A uniform soup: each parameter the ingredients' mean, batch-norm statistics measured again on the inputs."""

from __future__ import annotations

import copy

import torch
from torch import nn

from tradeoff.architectures import CNN
from tradeoff.data import DataBundle
from tradeoff.training.soup import uniform_soup


def test_a_soup_of_batch_norm_models_has_statistics_of_its_own_weights(digits_images: DataBundle) -> None:
    torch.manual_seed(0)
    first = CNN(input_shape=(1, 8, 8), classes=10, channels=(8,), norm="batch")
    second = copy.deepcopy(first)
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    inputs = digits_images.train.x[:256]
    soup = uniform_soup([first, second], inputs, batch_size=len(inputs))

    for name, value in soup.named_parameters():
        assert torch.allclose(value, (first.get_parameter(name) + second.get_parameter(name)) / 2), name
    conv = next(m for m in soup.modules() if isinstance(m, nn.Conv2d))
    norm = next(m for m in soup.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        activations = conv(torch.from_numpy(inputs))
    assert torch.allclose(norm.running_mean, activations.mean(dim=(0, 2, 3)), atol=1e-5)
    untouched = next(m for m in first.modules() if isinstance(m, nn.BatchNorm2d))
    assert not soup.training and torch.equal(untouched.running_mean, torch.zeros(8))  # the ingredients stay as given
