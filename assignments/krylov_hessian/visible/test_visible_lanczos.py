"""Visible checks, Sections 4-5: Lanczos, loss of orthogonality and its repair.

Ritz values depend on the start vector, so every check holds for any start:
the Ritz values must be the eigenvalues of Q^T A Q for the Q you return,
the basis must be orthonormal where it should be, and k = dim must give
the whole spectrum. The matrices (exact spectra from torch.linalg.eigvalsh)
reach your code only as matvecs, which count their calls. Tolerances allow
fp32 work (roundoff 6e-8; a fp32 basis is orthonormal to a few 1e-7).
"""

import functools

import torch
from visible_checks import rotated

from autograder.testing import check, vector


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


@functools.cache
def _notebook_a40() -> torch.Tensor:
    """The 40 x 40 fp32 matrix A40 of Section 5, as the notebook builds it."""
    B = torch.randn(40, 40, generator=torch.Generator().manual_seed(7))
    return B + B.T


def _lanczos(student, name: str, A: torch.Tensor, k: int, *, seed: int = 0,
             budget: int | None = None, **kwargs):
    """Run lanczos_no_reorth or lanczos_track_orth on a matvec for A (in A's dtype).

    The default budget, 2k + 2 matvecs, lets a wasteful loop through (only the
    matvec-count check is strict) but not reading the matrix out of the matvec.
    """
    dim = A.shape[0]
    op = student.operator(lambda v: A @ v, dim=dim, dtype=A.dtype,
                          budget=budget if budget is not None else 2 * k + 2, name="the matvec",
                          hint="Lanczos spends one matvec per step")
    call = f"{name}(matvec, {dim}, {k}" + "".join(
        f", {key}={value!r}" for key, value in kwargs.items()) + f", seed={seed})"
    result = student.call(name, op, dim, k, seed=seed, **kwargs)
    count, names = (2, "(ritz_vals, Q)") if name == "lanczos_no_reorth" \
        else (3, "(ritz, Q, orth_history)")
    assert isinstance(result, (tuple, list)) and len(result) == count, \
        f"{call} should return a tuple {names}, got {type(result).__name__}" + (
            f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
    return tuple(result), op, call


def _ritz(value, k: int, call: str) -> torch.Tensor:
    """The Ritz values, ascending, whatever order or container was used."""
    return vector(value, f"the Ritz values returned by {call}", k).sort().values


def _basis(value, dim: int, k: int, call: str) -> torch.Tensor:
    """Q as a (dim, k) fp64 tensor; a list of k basis vectors is stacked as columns."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, torch.Tensor) and tuple(v.shape) == (dim,) for v in value):
        value = torch.stack(list(value), dim=1)
    assert isinstance(value, torch.Tensor), \
        f"the basis Q returned by {call} should be a tensor, got {type(value).__name__}"
    shape = tuple(value.shape)
    assert not (shape == (k, dim) and k != dim), \
        f"Q returned by {call} has shape {shape}: return the basis vectors as the columns " \
        f"of a ({dim}, {k}) tensor"
    assert shape == (dim, k), \
        f"Q returned by {call} should have shape ({dim}, {k}), one column per step, got {shape}"
    Q = value.detach().double()
    assert torch.isfinite(Q).all(), f"Q returned by {call} contains NaN or infinite entries"
    return Q


def _orth_error(Q: torch.Tensor) -> float:
    """max |(Q^T Q - I)_ij|."""
    return (Q.T @ Q - torch.eye(Q.shape[1], dtype=Q.dtype)).abs().max().item()


def _assert_whole_spectrum(ritz: torch.Tensor, A: torch.Tensor, call: str,
                           advice: str = "check how T is assembled from the alphas and "
                                         "betas") -> None:
    eigs = torch.linalg.eigvalsh(A.double())
    # Correct fp32 work: ~1e-6 of the largest |eigenvalue|.
    assert (ritz - eigs).abs().max().item() <= 1e-3 * eigs.abs().max().item(), \
        f"with k = dim, the Ritz values returned by {call} are not all the eigenvalues of " \
        f"the matrix: {advice}"


# --- Exercise 4.1 ----------------------------------------------------------------------


@check(exercise="4.1", weight=1)
def test_lanczos_returns_k_ritz_values_and_a_dim_by_k_basis(student):
    """lanczos_no_reorth returns k Ritz values and a (dim, k) basis"""
    (ritz, Q), _, call = _lanczos(student, "lanczos_no_reorth", _spread(), 12)
    _ritz(ritz, 12, call)
    _basis(Q, 100, 12, call)


@check(exercise="4.1", weight=2)
def test_lanczos_basis_is_orthonormal_for_small_k(student):
    """Q has orthonormal columns after 12 steps on an evenly spread spectrum"""
    (_, Q), _, call = _lanczos(student, "lanczos_no_reorth", _spread(), 12)
    Q = _basis(Q, 100, 12, call)
    # Correct fp32 work: ~3e-7 here; a missing beta_j q_(j-1) term gives O(1).
    assert _orth_error(Q) <= 1e-3, \
        f"the columns of Q returned by {call} are not orthonormal: normalize each new " \
        "vector by beta and subtract both alpha_j q_j and beta_j q_(j-1)"


@check(exercise="4.1", weight=2)
def test_ritz_values_are_the_eigenvalues_of_the_projected_matrix(student):
    """the Ritz values are the eigenvalues of Q^T A Q for the returned Q"""
    A = _spread()
    (ritz, Q), _, call = _lanczos(student, "lanczos_no_reorth", A, 12)
    ritz = _ritz(ritz, 12, call)
    Q = _basis(Q, 100, 12, call)
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
    (ritz, _), _, call = _lanczos(student, "lanczos_no_reorth", A, 10)
    _assert_whole_spectrum(_ritz(ritz, 10, call), A, call)


@check(exercise="4.1", weight=1)
def test_lanczos_uses_one_matvec_per_step(student):
    """lanczos_no_reorth spends one matvec per step"""
    k = 15
    _, op, call = _lanczos(student, "lanczos_no_reorth", _spread(), k, budget=k + 1)
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
        (ritz, _), _, call = _lanczos(student, "lanczos_no_reorth", A, k, seed=1)
        ritz = _ritz(ritz, k, call).flip(0)
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
    (_, Q, history), _, call = _lanczos(student, "lanczos_track_orth", _notebook_a40(), 40,
                                        reorth="none")
    Q = _basis(Q, 40, 40, call)
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
    (_, Q, _), _, call = _lanczos(student, "lanczos_track_orth", _notebook_a40(), 40,
                                  reorth="none")
    Q = _basis(Q, 40, 40, call)
    # Plain Lanczos ends with max |Q^T Q - I| of order 0.1-1 here, for any start vector.
    assert _orth_error(Q) > 1e-3, \
        f"{call} kept Q orthonormal, which plain Lanczos in fp32 does not do after 40 steps: " \
        "reorth='none' must not reorthogonalize"


# --- Exercises 5.2 and 5.3 -------------------------------------------------------------


def _check_orthonormal(student, reorth: str, tol: float, advice: str) -> None:
    (_, Q, _), _, call = _lanczos(student, "lanczos_track_orth", _notebook_a40(), 40,
                                  reorth=reorth)
    Q = _basis(Q, 40, 40, call)
    assert _orth_error(Q) <= tol, \
        f"{call} on the notebook's A40 returned a Q that is not orthonormal to within " \
        f"{tol:g}: {advice}"


def _check_whole_spectrum(student, reorth: str) -> None:
    A = _notebook_a40()
    (ritz, _, _), _, call = _lanczos(student, "lanczos_track_orth", A, 40, reorth=reorth)
    _assert_whole_spectrum(_ritz(ritz, 40, call), A, call,
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
