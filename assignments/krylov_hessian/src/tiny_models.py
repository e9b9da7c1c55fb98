"""Tiny MLPs whose loss Hessians (and NTKs) are small enough to materialize and check.

The activations are smooth (tanh) so the loss is twice differentiable
everywhere and a central finite difference of the gradient is a fair
approximation of a Hessian-vector product. Parameters are drawn from a
private generator, so building a model never disturbs the global RNG that
the notebook's training loop draws from.
"""

from itertools import pairwise

import torch
from torch import nn


def _mlp(sizes: list[int], seed: int) -> nn.Sequential:
    """Build Linear/Tanh layers initialized from `seed` alone."""
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws globally
        for i, (fan_in, fan_out) in enumerate(pairwise(sizes)):
            if i:
                layers.append(nn.Tanh())
            layers.append(nn.Linear(fan_in, fan_out))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Linear):
                bound = layer.in_features ** -0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return nn.Sequential(*layers)


def toy_mlp(seed: int = 0) -> nn.Sequential:
    """20 inputs -> 10 tanh units -> 4 classes: 254 parameters."""
    return _mlp([20, 10, 4], seed)


def tiny_mlp(seed: int = 0) -> nn.Sequential:
    """49 inputs (7x7 MNIST) -> 32 tanh units -> 10 classes: 1,930 parameters."""
    return _mlp([49, 32, 10], seed)


def small_mlp(seed: int = 0, hidden: int = 12) -> nn.Sequential:
    """49 inputs (7x7 MNIST) -> `hidden` tanh units -> 10 classes: 730 parameters at 12.

    Notebook 2's running example: its loss Hessian (730 x 730) is materialized
    and diagonalized in a fraction of a second, which lets every randomized
    estimate be compared with the exact answer.
    """
    return _mlp([49, hidden, 10], seed)


def count_params(model: nn.Module) -> int:
    """Number of scalar parameters, i.e. the side length of the Hessian."""
    return sum(p.numel() for p in model.parameters())
