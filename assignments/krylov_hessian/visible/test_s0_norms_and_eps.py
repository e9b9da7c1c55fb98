"""Visible checks, Section 0: norms, the fp32 solve sweep, machine epsilon.

These run on the notebook's own matrices, rebuilt here from the seeds the
cells use, with the truth computed by torch in fp64. Passing them is a
sanity check, not a guarantee: the grader runs further hidden checks.
"""


import torch

from autograder.testing import check, number, vector


def _exercise_matrix() -> torch.Tensor:
    """The 20 x 20 matrix of Exercise 0.1 (its cell seeds the global generator with 0)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.randn(20, 20)


def _conditioned_spd(n: int, kappa: float, seed: int = 0) -> torch.Tensor:
    """make_conditioned_spd from the cell of Exercise 0.2."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(n, n, generator=g))[0]
    eigs = torch.ones(n)
    eigs[-1] = 1.0 / kappa
    return Q @ torch.diag(eigs) @ Q.T


@check(exercise="0.1", weight=1)
def test_op_norm(student):
    """op_norm is the spectral norm of the matrix A of Exercise 0.1"""
    value = number(student.get("op_norm"), "op_norm")
    truth = torch.linalg.svdvals(_exercise_matrix().double())[0].item()
    assert abs(value - truth) <= 1e-4 * truth, \
        "op_norm is not the largest singular value of A: use " \
        "torch.linalg.matrix_norm(A, ord=2) (not the largest |eigenvalue|, A is not symmetric)"


@check(exercise="0.1", weight=1)
def test_fro_norm(student):
    """fro_norm is the Frobenius norm of the matrix A of Exercise 0.1"""
    value = number(student.get("fro_norm"), "fro_norm")
    truth = _exercise_matrix().double().square().sum().sqrt().item()
    assert abs(value - truth) <= 1e-4 * truth, \
        "fro_norm is not sqrt(sum of the squared entries) of A: use " \
        "torch.linalg.matrix_norm(A, ord='fro')"


@check(exercise="0.2", weight=2)
def test_x_hat_solves_the_last_system(student):
    """x_hat solves the last system of the sweep (kappa = 1e8) to fp32 accuracy"""
    x_hat = vector(student.get("x_hat"), "x_hat", 30)
    b = vector(student.get("b"), "b", 30)
    A = _conditioned_spd(30, 1e8).double()
    # A backward-stable fp32 solve leaves a relative residual of ~1e-7 whatever kappa is.
    residual = ((A @ x_hat - b).norm() / b.norm()).item()
    assert residual < 1e-5, \
        "for kappa = 1e8, A @ x_hat is far from b (relative residual above 1e-5): solve with " \
        "torch.linalg.solve(A, b), not with inv(A) @ b or the normal equations"


@check(exercise="0.2", weight=1)
def test_residuals_of_the_sweep(student):
    """residuals holds the 9 relative residuals of the sweep, all at fp32 level"""
    residuals = vector(student.get("residuals"), "residuals", 9)
    assert (residuals >= 0).all(), "residuals should hold norms, which are non-negative"
    assert (residuals < 1e-5).all(), \
        "some relative residuals ||A x_hat - b|| / ||b|| are above 1e-5: a backward-stable " \
        "solve (torch.linalg.solve) keeps every one of them near fp32 roundoff"


@check(exercise="0.3", weight=1)
def test_eps32(student):
    """eps32 is the fp32 machine epsilon"""
    value = number(student.get("eps32"), "eps32")
    assert value == torch.finfo(torch.float32).eps, \
        "eps32 is not the gap between 1 and the next fp32 number: halve eps while " \
        "1 + eps / 2 > 1 in fp32, i.e. find_eps(torch.float32)"


@check(exercise="0.3", weight=1)
def test_eps64(student):
    """eps64 is the fp64 machine epsilon"""
    value = number(student.get("eps64"), "eps64")
    assert value == torch.finfo(torch.float64).eps, \
        "eps64 is not the gap between 1 and the next fp64 number: call find_eps(torch.float64)"
