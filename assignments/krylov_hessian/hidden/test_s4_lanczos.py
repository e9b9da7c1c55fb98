"""Section 4: Lanczos without reorthogonalization; Ritz values converge to the extremes first.

Every check holds for any start vector and allows fp32 work: the rule and the
tolerances' derivation are in `krylov_checks` ("Lanczos checks").
"""

import torch
from krylov_checks import (
    assert_basis_shape,
    assert_consistent,
    assert_one_matvec_per_step,
    call_lanczos,
    hidden_matrix,
    lanczos_basis,
    matrix_apply,
    orth_error,
    ritz_values,
    unpack,
)

from autograder.testing import check

# Measured on the reference and on the notebook's solution over many start
# vectors; each tolerance below says how it relates to these numbers.
ORTH_TOL_SMALL_K = 1e-4  # fp32 basis before any Ritz value converges: ~3e-7


# --- calling the student's Lanczos ----------------------------------------------------


def _no_reorth(student, A, k, *, dtype, seed, budget=None):
    result, op, call = call_lanczos(student, "lanczos_no_reorth", A, k, dtype=dtype, seed=seed,
                                    budget=budget)
    ritz, Q = unpack(result, 2, call, "(ritz_vals, Q)")
    return ritz, Q, op, call


def _lanczos_basis(Q, A, k, call):
    """The first k columns of Q, which must be a Lanczos basis (the real-work gate)."""
    return lanczos_basis(Q, A.shape[0], k, call, matrix_apply(A))


# --- 4.1 lanczos_no_reorth --------------------------------------------------------------


@check(exercise="4.1", weight=2)
def test_lanczos_returns_k_ritz_values_and_a_dim_by_k_basis(student):
    """lanczos_no_reorth returns k Ritz values and a (dim, k) basis"""
    # Catches: bug_lanczos_k_plus_one_columns (the one check its extra column
    # costs; the others read the first k columns).
    A, _ = hidden_matrix("spread")
    ritz, Q, _, call = _no_reorth(student, A, 10, dtype=torch.float64, seed=3)
    ritz_values(ritz, 10, call)
    _lanczos_basis(Q, A, 10, call)
    assert_basis_shape(Q, A.shape[0], 10, call)


@check(exercise="4.1", weight=2)
def test_lanczos_basis_is_orthonormal_for_small_k(student):
    """Q has orthonormal columns while no Ritz value has converged"""
    # Catches: bug_lanczos_forgets_beta_q_prev.
    A, _ = hidden_matrix("spread90")
    _, Q, _, call = _no_reorth(student, A, 14, dtype=torch.float64, seed=5)
    Q = _lanczos_basis(Q, A, 14, call)
    # fp32 work gives ~3e-7 here; a missing beta * q_prev term gives ~1.
    error = orth_error(Q)
    assert error <= ORTH_TOL_SMALL_K, \
        f"the columns of Q returned by {call} are not orthonormal (max |(Q^T Q - I)_ij| = " \
        f"{error:.2g}) before any Ritz value has converged: subtract both alpha_j q_j and " \
        "beta_j q_{j-1} from A q_j"


@check(exercise="4.1", weight=3)
def test_ritz_values_are_the_eigenvalues_of_the_projected_matrix(student):
    """the Ritz values are the eigenvalues of Q^T A Q"""
    # Catches: bug_lanczos_off_by_one_beta.
    A, _ = hidden_matrix("spread")
    ritz, Q, _, call = _no_reorth(student, A, 12, dtype=torch.float64, seed=7)
    ritz = ritz_values(ritz, 12, call)
    Q = _lanczos_basis(Q, A, 12, call)
    assert_consistent(ritz, Q, A, call)


@check(exercise="4.1", weight=2)
def test_lanczos_with_k_equal_to_dim_finds_the_whole_spectrum(student):
    """with k = dim the Ritz values are the whole spectrum"""
    # Catches: bug_lanczos_off_by_one_beta; the gate, trivial_echo (Rayleigh-Ritz
    # on the identity's columns gets every eigenvalue at k = dim).
    A, eigs = hidden_matrix("small")
    ritz, Q, _, call = _no_reorth(student, A, 8, dtype=torch.float64, seed=11)
    _lanczos_basis(Q, A, 8, call)
    ritz = ritz_values(ritz, 8, call)
    # Worst correct fp32 error over 60 starts: 2e-6 on eigenvalues up to 4.
    error = (ritz - eigs).abs().max().item() / eigs.abs().max().item()
    assert error <= 1e-4, \
        f"{call} on an 8 x 8 matrix should return all 8 eigenvalues, but its Ritz values are " \
        f"up to {error:.2g} ||A|| away from them: check how T is assembled from the alphas " \
        "and betas"


@check(exercise="4.1", weight=2)
def test_extreme_ritz_values_converge_after_30_steps(student):
    """after 30 steps the extreme Ritz values match isolated extreme eigenvalues"""
    A, eigs = hidden_matrix("extremes")
    ritz, _, _, call = _no_reorth(student, A, 30, dtype=torch.float32, seed=13)
    ritz = ritz_values(ritz, 30, call)
    # Converged Ritz values are accurate to fp32 roundoff even after orthogonality
    # is lost (Paige): worst 6e-6 over 40 starts; tolerance 1e-4 of |lambda|.
    for got, want, which in ((ritz[-1], eigs[-1], "largest"), (ritz[0], eigs[0], "smallest")):
        error = abs(got - want).item() / abs(want).item()
        assert error <= 1e-4, \
            f"after {call} on a 200 x 200 matrix with well-separated extreme eigenvalues, " \
            f"the {which} Ritz value is {error:.2g} relative away from the {which} " \
            "eigenvalue, which 30 steps resolve to fp32 accuracy"


@check(exercise="4.1", weight=1)
def test_lanczos_uses_one_matvec_per_step(student):
    """lanczos_no_reorth spends one matvec per step"""
    # Catches: bug_lanczos_two_matvecs_per_step.
    A, _ = hidden_matrix("spread90")
    k = 15
    _, Q, op, call = _no_reorth(student, A, k, dtype=torch.float64, seed=17, budget=k + 1)
    _lanczos_basis(Q, A, k, call)
    assert_one_matvec_per_step(op, k, call)


# --- 4.2 Ritz values converge to the extremes first -----------------------------------


def _convergence_errors(student) -> dict[int, tuple[float, float, float]]:
    """k -> (error of the largest, of the smallest, of the middle Ritz value), rank-matched.

    The i-th largest Ritz value is compared with the i-th largest eigenvalue
    (by interlacing it lies below it), so the middle one measures how far the
    interior is from converging.
    """
    A, eigs = hidden_matrix("convergence")
    descending = eigs.flip(0)
    errors = {}
    for k in (5, 10, 20):
        ritz, Q, _, call = _no_reorth(student, A, k, dtype=torch.float64, seed=19)
        _lanczos_basis(Q, A, k, call)  # eigenvalues from anywhere else prove nothing here
        ritz = ritz_values(ritz, k, call).flip(0)
        middle = k // 2
        errors[k] = ((descending[0] - ritz[0]).abs().item(),
                     (ritz[-1] - eigs[0]).abs().item(),
                     (descending[middle] - ritz[middle]).abs().item())
    return errors


@check(exercise="4.2", weight=2)
def test_extreme_ritz_values_improve_with_k(student):
    """the errors of the extreme Ritz values shrink as k grows 5 -> 10 -> 20"""
    errors = _convergence_errors(student)
    scale = 6.0
    # In exact arithmetic they never grow (interlacing); in fp32 they grew by at
    # most 1.4e-6 over 100 starts, and reached <= 4e-6 at k = 20.
    slack = 1e-4 * scale
    for index, which in ((0, "largest"), (1, "smallest")):
        e5, e10, e20 = (errors[k][index] for k in (5, 10, 20))
        assert e10 <= e5 + slack and e20 <= e10 + slack, \
            f"the error of the {which} Ritz value of lanczos_no_reorth grew with k " \
            f"({e5:.2g}, {e10:.2g}, {e20:.2g} at k = 5, 10, 20, same seed): the extremes " \
            "should only improve"
        # Correct code: ~1e-6 at k = 20 for every start; 1e-3 relative is generous.
        assert e20 <= 1e-3 * scale, \
            f"the {which} Ritz value of lanczos_no_reorth is still {e20:.2g} away from the " \
            f"{which} eigenvalue after 20 steps on a 150 x 150 matrix whose extreme " \
            "eigenvalues are well separated"


@check(exercise="4.2", weight=1)
def test_extremes_converge_before_the_interior(student):
    """the extreme Ritz values are more accurate than the interior ones"""
    errors = _convergence_errors(student)
    for k in (10, 20):
        top, bottom, middle = errors[k]
        # Over 100 starts the extremes' error was at most a third of the middle
        # one's at k = 10, and ~1e-6 against ~2.7 at k = 20.
        assert max(top, bottom) < middle, \
            f"with k = {k} the extreme Ritz values of lanczos_no_reorth are off by " \
            f"{max(top, bottom):.2g}, no more accurate than the middle one ({middle:.2g}); " \
            "Lanczos should resolve the extremes first"
