"""Hidden checks of exercise 1.1, on inputs the student never sees."""

import torch

from autograder.testing import check, vector
from reference import randomized_ntk as ref


@check(exercise="1.1", weight=2)
def test_scale_matches_the_reference(student):
    """scale(v, c) is c times v, for any v and c"""
    v = torch.randn(7, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    got = vector(student.call("scale", v, -2.5), "scale(v, c)", length=7)
    error = (got - ref.scale(v, -2.5)).abs().max().item()
    assert error <= 1e-12, f"scale(v, -2.5) is {error:.2g} away from -2.5 v at worst"


@check(exercise="1.1", weight=1)
def test_scale_does_no_work_for_zero(student):
    """scale(v, 0) is the zero vector (a constant answer is not scaling)"""
    v = torch.arange(1.0, 5.0, dtype=torch.float64)
    got = vector(student.call("scale", v, 0.0), "scale(v, 0)", length=4)
    assert got.abs().max().item() == 0.0, \
        f"scale(v, 0) has largest entry {got.abs().max().item():.3g}; it should be all zeros"


@check(exercise="1.2", weight=2)
def test_power_step_spends_one_matvec(student):
    """power_step(matvec, v) is the normalized matvec(v), for one matvec"""
    g = torch.Generator().manual_seed(12)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = A + A.T
    v = torch.randn(6, generator=g, dtype=torch.float64)
    op = student.operator(lambda x: A @ x, dim=6, budget=1, name="the matvec",
                          hint="one step of power iteration costs one matvec")
    got = vector(student.call("power_step", op, v), "power_step(matvec, v)", length=6)
    error = (got - ref.power_step(lambda x: A @ x, v)).abs().max().item()
    assert error <= 1e-12, f"power_step(matvec, v) is {error:.2g} away from A v / |A v|"
