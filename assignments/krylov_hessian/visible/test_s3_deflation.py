"""Visible checks, Section 3: deflation, and deflation to k = 10 on the toy Hessian.

The matrix of Exercise 3.1 is Q diag(eigs) Q^T for a seeded random
orthogonal Q, so its eigenvalues are known exactly. Your function gets it as
a matvec (which counts its calls), never as a matrix. Tolerances allow fp32
work: a converged fp32 Rayleigh quotient is within a few 1e-7 (relative) of
the eigenvalue.

For Exercise 3.2 the truth is the toy MLP's loss Hessian, materialized here
in fp64 by torch.func.hessian and handed to torch.linalg.eigvalsh.
"""

import torch
from visible_checks import (
    call_with_matvec,
    dense_hessian,
    notebook_toy,
    rotated,
    signed_top,
    top_magnitudes,
)

from autograder.testing import check, vector

# --- Exercise 3.1 ----------------------------------------------------------------------

DEFLATION_EIGS = [9.0, -6.0, 4.0] + torch.linspace(-1.5, 1.5, 27).tolist()


def _deflated(student, k: int, num_iters_per: int = 300):
    A = rotated(DEFLATION_EIGS, seed=31)
    result, _, call = call_with_matvec(student, "power_iteration_deflated", A, k,
                                       budget=3 * k * (num_iters_per + 2) + 10,
                                       num_iters_per=num_iters_per, seed=0)
    assert isinstance(result, (tuple, list)) and len(result) == 2, \
        f"{call} should return a tuple (eigvals, eigvecs), got {type(result).__name__}"
    eigvals = vector(result[0], f"the eigenvalues returned by {call}")
    assert eigvals.numel() == k, f"{call} returned {eigvals.numel()} eigenvalues, not k = {k}"
    return A, eigvals, result[1], call


@check(exercise="3.1", weight=2)
def test_deflation_finds_the_signed_top_3(student):
    """deflation finds the 3 largest-magnitude eigenvalues, with their signs"""
    _, eigvals, _, call = _deflated(student, 3)
    exact = signed_top(torch.tensor(DEFLATION_EIGS, dtype=torch.float64), 3)
    found = signed_top(eigvals, 3)
    assert ((found - exact).abs() <= 1e-4 * exact.abs()).all(), \
        f"{call} on a 30 x 30 matrix whose 3 largest-magnitude eigenvalues have mixed signs " \
        "did not return those 3 eigenvalues with their signs: deflate with " \
        "out - lam * (u . v) * u, for every pair found so far, with the signed lam"


@check(exercise="3.1", weight=1)
def test_deflation_eigenvectors(student):
    """eigvecs holds orthonormal eigenvectors of those eigenvalues (dim x k)"""
    A, _, eigvecs, call = _deflated(student, 3)
    n, k = A.shape[0], 3
    layout = f"the eigenvectors returned by {call} should be a ({n}, {k}) tensor with the " \
             f"eigenvectors as columns (a ({k}, {n}) tensor or a list of {k} vectors is " \
             "also accepted)"
    if isinstance(eigvecs, (list, tuple)):
        assert len(eigvecs) == k and all(isinstance(v, torch.Tensor) and v.numel() == n
                                         for v in eigvecs), layout
        eigvecs = torch.stack([v.reshape(-1) for v in eigvecs], dim=1)
    assert isinstance(eigvecs, torch.Tensor) and eigvecs.dim() == 2, layout
    V = eigvecs.detach().double()
    if tuple(V.shape) == (k, n):
        V = V.T
    assert tuple(V.shape) == (n, k), layout
    assert torch.isfinite(V).all(), f"the eigenvectors returned by {call} contain NaN or inf"
    assert ((V.norm(dim=0) - 1).abs() < 1e-3).all(), \
        f"the eigenvectors returned by {call} do not have unit norm"
    assert (V.T @ V - torch.eye(k, dtype=torch.float64)).abs().max().item() < 1e-2, \
        f"the eigenvectors returned by {call} are not orthogonal to each other"
    rayleigh = (V * (A @ V)).sum(dim=0)
    residual = (A @ V - V * rayleigh).norm(dim=0).max().item() / 9.0
    assert residual < 1e-2, \
        f"some vector returned by {call} is not an eigenvector (||A v - (v . A v) v|| is large)"


# --- Exercise 3.2 ----------------------------------------------------------------------


def _toy_errors(student) -> torch.Tensor:
    """Relative errors of |eigvals_k| (in the order found) against the true top-10 |lambda|."""
    model, X, y = notebook_toy(student)
    eigvals_k = vector(student.get("eigvals_k"), "eigvals_k")
    assert eigvals_k.numel() == 10, \
        f"eigvals_k should hold the k = 10 deflated eigenvalues, got {eigvals_k.numel()}"
    truth = top_magnitudes(torch.linalg.eigvalsh(dense_hessian(model, X, y)), 10)
    return (eigvals_k.abs() - truth).abs() / truth


@check(exercise="3.2", weight=1)
def test_rel_err_matches_eigvals_k(student):
    """rel_err holds the relative errors of eigvals_k against the true top-10 |lambda|"""
    rel_err = vector(student.get("rel_err"), "rel_err")
    assert rel_err.numel() == 10, f"rel_err should have 10 entries, got {rel_err.numel()}"
    assert (rel_err >= 0).all(), "rel_err should hold non-negative relative errors"
    expected = _toy_errors(student)
    # The notebook's truth is an fp32 eigvalsh: ~1e-6 of the largest |lambda| off.
    assert ((rel_err - expected).abs() <= 1e-4 + 1e-2 * expected).all(), \
        "rel_err is not | |eigvals_k[i]| - true_topk[i] | / true_topk[i] for your eigvals_k: " \
        "run the cell as given, after your power_iteration_deflated"


@check(exercise="3.2", weight=1)
def test_deflation_to_k10_is_mostly_accurate(student):
    """at least half of the 10 deflated eigenvalues of the toy Hessian are accurate"""
    errors = _toy_errors(student)
    # Correct code gets about 8 of 10 to ~1e-6; the others sit at near-ties in magnitude.
    assert int((errors < 1e-3).sum()) >= 5, \
        "fewer than 5 of the 10 eigenvalues from power_iteration_deflated(matvec_H, P, " \
        "k=10) are within 1e-3 of the true magnitudes: check the deflation"
