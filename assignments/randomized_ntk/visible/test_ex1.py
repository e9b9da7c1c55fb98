"""Visible checks of exercise 1.1: students run these with `autograder check`."""

import torch

from autograder.testing import check, vector


@check(exercise="1.1", weight=1)
def test_scale_of_ones(student):
    """scale(ones, 3) is all threes"""
    got = vector(student.call("scale", torch.ones(3, dtype=torch.float64), 3.0),
                 "scale(ones(3), 3.0)", length=3)
    assert torch.equal(got, torch.full((3,), 3.0, dtype=torch.float64)), \
        f"scale(ones(3), 3.0) returned {got.tolist()}; expected [3.0, 3.0, 3.0]"


@check(exercise="1.2", weight=1)
def test_power_step_of_a_diagonal_matrix(student):
    """power_step on diag(2, 1) keeps a unit vector along the first axis"""
    op = student.operator(lambda x: torch.tensor([2.0, 1.0], dtype=x.dtype) * x, dim=2,
                          budget=1, name="the matvec", hint="one matvec per step")
    got = vector(student.call("power_step", op, torch.tensor([1.0, 0.0])),
                 "power_step(matvec, e1)", length=2)
    assert torch.allclose(got, torch.tensor([1.0, 0.0], dtype=torch.float64)), \
        f"power_step(matvec, e1) returned {got.tolist()}; expected [1.0, 0.0]"
