"""Helpers shared by the visible checks: reading a student's answers as
numbers, and the matrices and Hessians the checks compare them with."""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian


def _real(value: torch.Tensor, what: str) -> torch.Tensor:
    """Complex with rounding-noise imaginary parts (eigvals of a symmetric matrix)
    is accepted as its real part; anything more is a wrong answer."""
    if not value.is_complex() or not value.numel():
        return value
    scale = max(1.0, value.real.abs().max().item())
    assert value.imag.abs().max().item() <= 1e-6 * scale, \
        f"{what} has non-zero imaginary parts; the values should be real"
    return value.real


def number(value, what: str) -> float:
    """A scalar answer (float, int, or a one-element tensor) as a float."""
    if isinstance(value, torch.Tensor):
        assert value.numel() == 1, \
            f"{what} should be a single number, got a tensor of shape {tuple(value.shape)}"
        value = _real(value, what).item()
    assert isinstance(value, (int, float)) and not isinstance(value, bool), \
        f"{what} should be a number, got {type(value).__name__}"
    assert math.isfinite(value), f"{what} is NaN or infinite"
    return float(value)


def vector(value, what: str, length: int | None = None) -> torch.Tensor:
    """A list, tuple or tensor of numbers as a flat, finite fp64 tensor."""
    if isinstance(value, (list, tuple)):
        value = torch.tensor([number(v, f"each entry of {what}") for v in value],
                             dtype=torch.float64)
    assert isinstance(value, torch.Tensor), \
        f"{what} should be a list or tensor of numbers, got {type(value).__name__}"
    value = _real(value.detach(), what).reshape(-1).double()
    if length is not None:
        assert value.numel() == length, \
            f"{what} should have {length} entries, got {value.numel()}"
    assert torch.isfinite(value).all(), f"{what} contains NaN or infinite entries"
    return value


def rotated(eigs: list[float], seed: int) -> torch.Tensor:
    """Q diag(eigs) Q^T in fp64 for a random orthogonal Q drawn from `seed`."""
    n = len(eigs)
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    return Q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ Q.T


def dense_hessian(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy Hessian by torch.func.hessian, in fp64."""
    model = copy.deepcopy(model).double()
    shapes = [(name, p.shape) for name, p in model.named_parameters()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in shapes:
            params[name] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, params, (X.double(),)), y)

    return hessian(loss)(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
