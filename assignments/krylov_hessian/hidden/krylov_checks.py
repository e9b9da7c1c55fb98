"""Shared helpers for the hidden checks of Notebook 1.

Tolerances are derived from the numerics: fp32 unit roundoff is 6e-8 and
fp64 1.1e-16; sums of n terms grow that by ~sqrt(n) typically, n at worst.
Messages say what was called and what was wrong, never the expected value.
"""

import math

import torch


def _real(value: torch.Tensor, what: str) -> torch.Tensor:
    """A complex tensor whose imaginary parts are rounding noise (eigvals of a
    symmetric matrix) is accepted as its real part; anything more is wrong."""
    if not value.is_complex() or not value.numel():
        return value
    scale = max(1.0, value.real.abs().max().item())
    assert value.imag.abs().max().item() <= 1e-6 * scale, \
        f"{what} has non-zero imaginary parts; the values should be real"
    return value.real


def as_float(value, what: str) -> float:
    """A student's scalar answer (float, int, 0-d or 1-element tensor) as a float."""
    if isinstance(value, torch.Tensor):
        assert value.numel() == 1, f"{what} should be a single number, got a tensor of shape " \
                                   f"{tuple(value.shape)}"
        value = _real(value, what).item()
    assert isinstance(value, (int, float)) and not isinstance(value, bool), \
        f"{what} should be a number, got {type(value).__name__}"
    assert math.isfinite(value), f"{what} is NaN or infinite"
    return float(value)


def as_vector(value, what: str, length: int | None = None) -> torch.Tensor:
    """A student's sequence of numbers (list, tuple or tensor) as a 1-D float64 tensor."""
    if isinstance(value, (list, tuple)):
        value = [as_float(v, f"each entry of {what}") for v in value]
        value = torch.tensor(value, dtype=torch.float64)
    assert isinstance(value, torch.Tensor), \
        f"{what} should be a list or tensor of numbers, got {type(value).__name__}"
    value = _real(value.detach(), what)
    value = value.to(torch.float64).reshape(-1) if value.numel() else value.double()
    if length is not None:
        assert value.numel() == length, f"{what} should have {length} entries, got {value.numel()}"
    assert torch.isfinite(value).all(), f"{what} contains NaN or infinite entries"
    return value


def eigenvalues_from(*parts) -> torch.Tensor:
    """fp64 eigenvalues from fixed values (floats) and linspace tuples (low, high, count)."""
    pieces = []
    for part in parts:
        if isinstance(part, tuple):
            pieces.append(torch.linspace(*part, dtype=torch.float64))
        else:
            pieces.append(torch.tensor([part], dtype=torch.float64))
    return torch.cat(pieces)
