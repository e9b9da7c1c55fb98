"""Section 0: norms, the fp32 solve sweep, machine epsilon."""

import torch

from autograder.testing import check, number, vector
from reference import krylov_hessian as ref


def _notebook_matrix() -> torch.Tensor:
    """The 20x20 matrix of Exercise 0.1: the cell seeds the global generator itself."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.randn(20, 20)


@check(exercise="0.1", weight=1)
def test_op_norm(student):
    """op_norm is the spectral norm of A"""
    value = number(student.get("op_norm"), "op_norm")
    # fp32 SVD of a 20x20 matrix: relative error ~1e-6; 1e-4 also accepts fp64 work.
    assert abs(value - ref.op_norm(_notebook_matrix())) <= 1e-4 * value, \
        "op_norm is not the largest singular value of A (torch.linalg.matrix_norm(A, ord=2))"


@check(exercise="0.1", weight=1)
def test_fro_norm(student):
    """fro_norm is the Frobenius norm of A"""
    value = number(student.get("fro_norm"), "fro_norm")
    assert abs(value - ref.fro_norm(_notebook_matrix())) <= 1e-4 * value, \
        "fro_norm is not sqrt(sum of squared entries) of A"


@check(exercise="0.2", weight=2)
def test_x_hat_solves_the_last_system(student):
    """x_hat solves A x = b for kappa = 1e8 to fp32 backward accuracy"""
    x_hat = vector(student.get("x_hat"), "x_hat", length=30)
    b = vector(student.get("b"), "b", length=30)
    A = ref.make_conditioned_spd(30, 1e8).double()
    # A backward-stable fp32 solve leaves a relative residual of a few 1e-7 for
    # every kappa; x = inv(A) @ b or normal equations leave ~kappa * 1e-7 here.
    residual = ((A @ x_hat - b).norm() / b.norm()).item()
    assert residual < 1e-5, \
        "A @ x_hat is far from b for kappa = 1e8: solve with torch.linalg.solve, not inv(A) @ b"


@check(exercise="0.2", weight=1)
def test_residuals_recorded_for_every_kappa(student):
    """residuals holds the 9 relative residuals, all at fp32 level"""
    residuals = vector(student.get("residuals"), "residuals", length=9)
    assert (residuals >= 0).all(), "residuals should be norms, hence non-negative"
    assert (residuals < 1e-5).all(), \
        "some relative residuals are large: a backward-stable solve keeps all of them ~1e-7"


@check(exercise="0.3", weight=1)
def test_eps32(student):
    """eps32 is the fp32 machine epsilon"""
    value = number(student.get("eps32"), "eps32")
    assert value == torch.finfo(torch.float32).eps, \
        "eps32 is not the gap between 1 and the next fp32 number: call find_eps(torch.float32)"


@check(exercise="0.3", weight=1)
def test_eps64(student):
    """eps64 is the fp64 machine epsilon"""
    value = number(student.get("eps64"), "eps64")
    assert value == torch.finfo(torch.float64).eps, \
        "eps64 is not the gap between 1 and the next fp64 number: call find_eps(torch.float64)"
