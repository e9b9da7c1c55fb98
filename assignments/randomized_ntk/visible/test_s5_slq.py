"""Visible checks, Section 5: SLQ on a diagonal matrix, and the Hessian density's mass."""

import math

import torch
from visible_checks import counted

from autograder.testing import check, vector


@check(exercise="5.1", weight=1)
def test_exact_on_a_diagonal(student):
    """k = n on a diagonal matrix gives the exact smoothed density"""
    eigs = torch.tensor([-1.0, 0.5, 2.0, 3.0], dtype=torch.float64)
    grid = torch.linspace(-3.0, 5.0, 100, dtype=torch.float64)
    op = counted(student, torch.diag(eigs), 8, "k matvecs per probe")
    got = vector(student.call("slq_density", op, 4, grid, num_probes=2, k=4, sigma=0.3, seed=0),
                 "the density", length=100)
    z = (grid[:, None] - eigs[None, :]) / 0.3
    want = torch.exp(-0.5 * z ** 2).sum(1) / (4 * 0.3 * math.sqrt(2 * math.pi))
    assert (got - want).abs().max().item() <= 1e-4, "slq_density is not exact here"


@check(exercise="5.2", weight=1)
def test_density_slq_has_mass_one(student):
    """density_slq integrates to about 1 over grid_H"""
    grid = vector(student.get("grid_H"), "grid_H")
    got = vector(student.get("density_slq"), "density_slq", length=grid.numel())
    mass = got.sum().item() * (grid[1] - grid[0]).item()
    assert abs(mass - 1.0) <= 1e-2, f"density_slq integrates to {mass:.3g}"
