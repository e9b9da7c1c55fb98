"""Visible checks, Section 4: Nystrom on a low-rank PSD matrix, and G v."""

import itertools

import torch
from visible_checks import counted, spectrum

from autograder.testing import check, matrix, numbers, vector


@check(exercise="4.1", weight=1)
def test_exact_on_low_rank_psd(student):
    """nystrom is exact on a rank-3 PSD matrix, in rank matvecs"""
    A = spectrum([4.0, 2.0, 1.0] + [0.0] * 27, seed=4)
    op = counted(student, A, 5, "rank matvecs")
    U, lam = student.call("nystrom", op, 30, 5, seed=0)
    U, lam = matrix(U, "U", shape=(30, 5)), vector(lam, "lam", length=5)
    error = torch.linalg.matrix_norm((U * lam) @ U.T - A).item()
    assert op.calls == 5, f"nystrom(matvec, 30, 5) called the matvec {op.calls} times"
    # fp32 Nystrom of a rank-deficient matrix is accurate to ~1e-3 of its norm at worst.
    assert error <= 1e-1, f"||U diag(lam) U^T - A||_F = {error:.2g} on a rank-3 PSD matrix"


@check(exercise="4.2", weight=1)
def test_gauss_newton_of_a_linear_model(student):
    """on a linear model, v^T G v >= 0 and G (2v) = 2 G v"""
    g = torch.Generator().manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).double()
    X = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    v = torch.randn(15, generator=g, dtype=torch.float64)
    gv = vector(student.call("gauss_newton_vp", model, X, y, v), "G v", length=15)
    g2v = vector(student.call("gauss_newton_vp", model, X, y, 2 * v), "G (2v)", length=15)
    assert (v @ gv).item() >= -1e-12, f"v^T G v = {(v @ gv).item():.3g} < 0, but G is PSD"
    assert (g2v - 2 * gv).abs().max().item() <= 1e-10, "G (2v) is not 2 G v"
    assert gv.abs().max().item() > 0, "G v is zero"


@check(exercise="4.3", weight=1)
def test_nys_errors_decrease(student):
    """nys_errors decrease with the rank and stay below 1"""
    errors = numbers(student.get("nys_errors"), "nys_errors", length=4)
    assert all(1 > a > b > 0 for a, b in itertools.pairwise(errors)), \
        f"nys_errors {errors} should decrease, between 0 and 1"
