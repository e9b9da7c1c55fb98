"""Visible checks, Section 5: loss of orthogonality and its repair.

Ritz values depend on the start vector, so every check holds for any start:
the Ritz values must be the eigenvalues of Q^T A Q for the Q you return,
the basis must be orthonormal where it should be, and k = dim must give
the whole spectrum. The matrices (exact spectra from torch.linalg.eigvalsh)
reach your code only as matvecs, which count their calls. Tolerances allow
fp32 work (roundoff 6e-8; a fp32 basis is orthonormal to a few 1e-7).
"""

import functools

import torch
from visible_checks import assert_whole_spectrum, basis, lanczos, orth_error, ritz_values

from autograder.testing import check, vector


@functools.cache
def _notebook_a40() -> torch.Tensor:
    """The 40 x 40 fp32 matrix A40 of Section 5, as the notebook builds it."""
    B = torch.randn(40, 40, generator=torch.Generator().manual_seed(7))
    return B + B.T


# --- Exercise 5.1 ----------------------------------------------------------------------


def _history_errors(Q: torch.Tensor, entrywise: bool) -> torch.Tensor:
    """||Q[:, :j+1]^T Q[:, :j+1] - I||_inf for j = 0..k-1 (max |entry| or max row sum)."""
    values = []
    for j in range(Q.shape[1]):
        E = (Q[:, :j + 1].T @ Q[:, :j + 1] - torch.eye(j + 1, dtype=Q.dtype)).abs()
        values.append(E.max().item() if entrywise else E.sum(dim=1).max().item())
    return torch.tensor(values, dtype=torch.float64)


@check(exercise="5.1", weight=2)
def test_orth_history_measures_the_returned_basis(student):
    """orth_history[j] is ||Q[:, :j+1]^T Q[:, :j+1] - I||_inf of the returned Q (A40)"""
    (_, Q, history), _, call = lanczos(student, "lanczos_track_orth", _notebook_a40(), 40,
                                       reorth="none")
    Q = basis(Q, 40, 40, call)
    history = vector(history, f"the orth_history returned by {call}", 40)
    assert history[0].item() <= 1e-5, \
        f"orth_history[0] from {call} should be ~0: one unit vector is orthonormal"
    matches = [bool(((history - expected).abs() <= 1e-4 + 5e-2 * expected).all())
               for expected in (_history_errors(Q, True), _history_errors(Q, False))]
    assert any(matches), \
        f"the orth_history from {call} does not match ||Q[:, :j+1]^T Q[:, :j+1] - I||_inf " \
        "recomputed from the returned Q (max |entry| or max row sum): record one value per " \
        "step j, for the j+1 columns built so far"


@check(exercise="5.1", weight=1)
def test_orthogonality_is_lost_without_reorthogonalization(student):
    """with reorth='none', 40 steps on A40 in fp32 lose orthogonality"""
    (_, Q, _), _, call = lanczos(student, "lanczos_track_orth", _notebook_a40(), 40,
                                 reorth="none")
    Q = basis(Q, 40, 40, call)
    # Plain Lanczos ends with max |Q^T Q - I| of order 0.1-1 here, for any start vector.
    assert orth_error(Q) > 1e-3, \
        f"{call} kept Q orthonormal, which plain Lanczos in fp32 does not do after 40 steps: " \
        "reorth='none' must not reorthogonalize"


# --- Exercises 5.2 and 5.3 -------------------------------------------------------------


def _check_orthonormal(student, reorth: str, tol: float, advice: str) -> None:
    (_, Q, _), _, call = lanczos(student, "lanczos_track_orth", _notebook_a40(), 40,
                                 reorth=reorth)
    Q = basis(Q, 40, 40, call)
    assert orth_error(Q) <= tol, \
        f"{call} on the notebook's A40 returned a Q that is not orthonormal to within " \
        f"{tol:g}: {advice}"


def _check_whole_spectrum(student, reorth: str) -> None:
    A = _notebook_a40()
    (ritz, _, _), _, call = lanczos(student, "lanczos_track_orth", A, 40, reorth=reorth)
    assert_whole_spectrum(ritz_values(ritz, 40, call), A, call,
                          "while the basis stays orthonormal, T = Q^T A Q has exactly the "
                          "eigenvalues of A at k = dim; check the reorthogonalization and "
                          "the alphas and betas that go into T")


@check(exercise="5.2", weight=2)
def test_full_reorth_keeps_the_basis_orthonormal(student):
    """reorth='full' keeps Q orthonormal to fp32 accuracy over 40 steps (A40)"""
    _check_orthonormal(student, "full", 1e-5, "subtract the projection of r onto every "
                       "previous q_i, twice, on every step")


@check(exercise="5.2", weight=1)
def test_full_reorth_with_k_equal_to_dim_finds_the_spectrum(student):
    """reorth='full' with k = dim = 40 recovers every eigenvalue of A40"""
    _check_whole_spectrum(student, "full")


@check(exercise="5.3", weight=2)
def test_selective_reorth_keeps_the_basis_orthonormal(student):
    """reorth='selective' keeps Q orthonormal over 40 steps (A40)"""
    _check_orthonormal(student, "selective", 1e-4, "reorthogonalize r against every previous "
                       "q_i whenever ||r|| < 0.717 ||A q_j||")


@check(exercise="5.3", weight=1)
def test_selective_reorth_with_k_equal_to_dim_finds_the_spectrum(student):
    """reorth='selective' with k = dim = 40 recovers every eigenvalue of A40"""
    _check_whole_spectrum(student, "selective")
