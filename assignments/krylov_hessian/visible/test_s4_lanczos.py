"""Visible checks, Section 4: Lanczos, and which Ritz values converge first.

Ritz values depend on the start vector, so every check holds for any start:
the Ritz values must be the eigenvalues of Q^T A Q for the Q you return,
the basis must be orthonormal where it should be, and k = dim must give
the whole spectrum. The matrices (exact spectra from torch.linalg.eigvalsh)
reach your code only as matvecs, which count their calls. Tolerances allow
fp32 work (roundoff 6e-8; a fp32 basis is orthonormal to a few 1e-7).
"""

import functools

import torch
from visible_checks import (
    assert_whole_spectrum,
    basis,
    lanczos,
    orth_error,
    ritz_values,
    rotated,
)

from autograder.testing import check


@functools.cache
def _spread() -> torch.Tensor:
    """100 x 100, eigenvalues evenly spread over [-3, 5]: nothing converges in a few steps."""
    return rotated(torch.linspace(-3.0, 5.0, 100).tolist(), seed=41)


@functools.cache
def _small() -> torch.Tensor:
    """10 x 10, eigenvalues evenly spaced in [-2, 5]."""
    return rotated(torch.linspace(-2.0, 5.0, 10).tolist(), seed=43)


@functools.cache
def _extremes() -> torch.Tensor:
    """100 x 100, isolated extreme eigenvalues 7 and -5 over a bulk in [-2, 3]."""
    return rotated([7.0, -5.0] + torch.linspace(-2.0, 3.0, 98).tolist(), seed=47)


# --- Exercise 4.1 ----------------------------------------------------------------------


@check(exercise="4.1", weight=1)
def test_lanczos_returns_k_ritz_values_and_a_dim_by_k_basis(student):
    """lanczos_no_reorth returns k Ritz values and a (dim, k) basis"""
    (ritz, Q), _, call = lanczos(student, "lanczos_no_reorth", _spread(), 12)
    ritz_values(ritz, 12, call)
    basis(Q, 100, 12, call)


@check(exercise="4.1", weight=2)
def test_lanczos_basis_is_orthonormal_for_small_k(student):
    """Q has orthonormal columns after 12 steps on an evenly spread spectrum"""
    (_, Q), _, call = lanczos(student, "lanczos_no_reorth", _spread(), 12)
    Q = basis(Q, 100, 12, call)
    # Correct fp32 work: ~3e-7 here; a missing beta_j q_(j-1) term gives O(1).
    assert orth_error(Q) <= 1e-3, \
        f"the columns of Q returned by {call} are not orthonormal: normalize each new " \
        "vector by beta and subtract both alpha_j q_j and beta_j q_(j-1)"


@check(exercise="4.1", weight=2)
def test_ritz_values_are_the_eigenvalues_of_the_projected_matrix(student):
    """the Ritz values are the eigenvalues of Q^T A Q for the returned Q"""
    A = _spread()
    (ritz, Q), _, call = lanczos(student, "lanczos_no_reorth", A, 12)
    ritz = ritz_values(ritz, 12, call)
    Q = basis(Q, 100, 12, call)
    projected = torch.linalg.eigvalsh(Q.T @ A @ Q)
    # Correct fp32 work: ~2e-6 ||A||; a misplaced beta moves them by ~1e-2 ||A|| or more.
    assert (ritz - projected).abs().max().item() <= 1e-3 * 5.0, \
        f"the Ritz values returned by {call} are not the eigenvalues of Q^T A Q for the Q it " \
        "returned: check the alphas and betas that go into T (beta_j links steps j-1 and j) " \
        "and the beta_j q_(j-1) term of the recurrence"


@check(exercise="4.1", weight=1)
def test_lanczos_with_k_equal_to_dim_finds_the_whole_spectrum(student):
    """with k = dim = 10 the Ritz values are the whole spectrum"""
    A = _small()
    (ritz, _), _, call = lanczos(student, "lanczos_no_reorth", A, 10)
    assert_whole_spectrum(ritz_values(ritz, 10, call), A, call)


@check(exercise="4.1", weight=1)
def test_lanczos_uses_one_matvec_per_step(student):
    """lanczos_no_reorth spends one matvec per step"""
    k = 15
    _, op, call = lanczos(student, "lanczos_no_reorth", _spread(), k, budget=k + 1)
    assert k <= op.calls <= k + 1, \
        f"{call} called the matvec {op.calls} times; Lanczos uses exactly one matvec per " \
        f"step, so k = {k} steps should cost {k}"


# --- Exercise 4.2 ----------------------------------------------------------------------


@check(exercise="4.2", weight=2)
def test_extreme_ritz_values_converge_first(student):
    """the extreme Ritz values converge as k grows 5 -> 20, before the interior ones"""
    A = _extremes()
    eigs = torch.linalg.eigvalsh(A).flip(0)  # descending
    errors = {}
    for k in (5, 20):
        (ritz, _), _, call = lanczos(student, "lanczos_no_reorth", A, k, seed=1)
        ritz = ritz_values(ritz, k, call).flip(0)
        # The i-th largest Ritz value lies below the i-th largest eigenvalue (interlacing).
        errors[k] = ((eigs[0] - ritz[0]).abs().item(), (ritz[-1] - eigs[-1]).abs().item(),
                     (eigs[k // 2] - ritz[k // 2]).abs().item())
    for index, which in ((0, "largest"), (1, "smallest")):
        assert errors[20][index] <= 7e-3, \
            f"after 20 steps of lanczos_no_reorth on a 100 x 100 matrix with well-separated " \
            f"extreme eigenvalues, the {which} Ritz value has not converged to the {which} " \
            "eigenvalue"
        assert errors[20][index] <= errors[5][index] + 1e-3, \
            f"the error of the {which} Ritz value of lanczos_no_reorth grew from k = 5 to " \
            "k = 20 (same seed): the extremes should only improve"
    assert max(errors[20][:2]) < errors[20][2], \
        "with k = 20 the extreme Ritz values of lanczos_no_reorth are no more accurate than " \
        "the middle one; Lanczos resolves the extremes first"
