"""Section 5: the loss of orthogonality, and its repair by full and 0.717 reorthogonalization.

Every check holds for any start vector and allows fp32 work: the rule and the
tolerances' derivation are in `krylov_checks` ("Lanczos checks").
"""

import functools

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

from autograder.testing import check, vector
from reference import krylov_hessian as ref

# --- fixtures: hidden matrices, all built from private generators --------------------


@functools.cache
def _random_symmetric(seed: int, n: int = 40) -> torch.Tensor:
    """B + B^T with Gaussian B in fp32, like the notebook's Section 5 matrix (seed 7)."""
    B = torch.randn(n, n, generator=torch.Generator().manual_seed(seed))
    return B + B.T


@functools.cache
def _shifted(seed: int, n: int = 40, shift: float = 10.0) -> torch.Tensor:
    """shift * I + a random symmetric matrix of norm ~1.4, in fp32.

    alpha_j is ~shift at every step, so the recurrence cancels all but ~10% of
    A q_j: ||r|| < 0.717 ||A q_j|| on every step for every start (measured:
    30 of 30 steps), and without reorthogonalization fp32 orthogonality is
    lost to ~0.3 within 30 steps.
    """
    B = torch.randn(n, n, generator=torch.Generator().manual_seed(seed))
    return (B + B.T) / (2 * n ** 0.5) + shift * torch.eye(n)


class _Contaminating:
    """v -> A v + gamma (z . v) u, where u is the direction of the operator's first input.

    Lanczos applies the operator to q_0 first, so from then on every A q_j
    carries a component of size ~gamma |z . q_j| along q_0: it lies in the span
    of the basis, but from step j = 1 on the three-term recurrence does not
    remove it. So at j = 1 ||r|| stays ~||A q_j||, the 0.717 test must not
    fire, and q_2 comes out nearly parallel to q_0, for good. A single
    Gram-Schmidt pass against the whole basis leaves an error of ~eps times
    that component (Kahan's case for doing it twice); a second pass removes it.
    """

    def __init__(self, A: torch.Tensor, gamma: float, seed: int):
        z = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(seed))
        self.A, self.gamma, self.z = A, gamma, z / z.norm()
        self.first: list[torch.Tensor] = []

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        v = v.float()
        if not self.first:
            self.first.append(v / v.norm())
        return self.A @ v + self.gamma * (self.z @ v) * self.first[0]

    def apply(self, Q: torch.Tensor) -> torch.Tensor:
        """The operator (linear once its first input is known) on Q's columns, in fp64."""
        u = self.first[0].double() if self.first else torch.zeros_like(self.z).double()
        return self.A.double() @ Q + self.gamma * torch.outer(u, self.z.double()) @ Q


# --- calling the student's Lanczos ----------------------------------------------------


def _leading_errors(Q: torch.Tensor, entrywise: bool) -> torch.Tensor:
    """||Q[:, :j+1]^T Q[:, :j+1] - I||_inf for j = 0..k-1."""
    return torch.tensor([ref.orthogonality_error(Q[:, :j + 1], entrywise=entrywise)
                         for j in range(Q.shape[1])], dtype=torch.float64)


def _track(student, A, k, reorth, *, dtype=torch.float32, seed, budget=None, fn=None):
    result, op, call = call_lanczos(student, "lanczos_track_orth", A, k, dtype=dtype,
                                    seed=seed, budget=budget, fn=fn, reorth=reorth)
    ritz, Q, history = unpack(result, 3, call, "(ritz, Q, orth_history)")
    return ritz, Q, history, op, call


def _lanczos_basis(Q, dim: int, k: int, call: str, apply) -> torch.Tensor:
    """The first k columns of Q, which must be a Lanczos basis (the real-work gate)."""
    return lanczos_basis(Q, dim, k, call, apply)


# --- 5.1 tracking the loss of orthogonality --------------------------------------------


@check(exercise="5.1", weight=1)
def test_track_orth_returns_k_values_a_basis_and_k_errors(student):
    """lanczos_track_orth returns k Ritz values, a (dim, k) basis and k orthogonality errors"""
    # Catches: verdicts_track_orth_k_plus_one_columns (the one check its extra
    # column costs in Section 5; the other checks read the first k columns).
    A, _ = hidden_matrix("spread")
    k = 10
    ritz, Q, history, _, call = _track(student, A, k, "none", dtype=torch.float64, seed=3)
    ritz_values(ritz, k, call)
    vector(history, f"orth_history returned by {call}", length=k)
    _lanczos_basis(Q, A.shape[0], k, call, matrix_apply(A))
    assert_basis_shape(Q, A.shape[0], k, call)


@check(exercise="5.1", weight=2)
def test_orth_history_measures_the_returned_basis(student):
    """orth_history[j] is ||Q[:, :j+1]^T Q[:, :j+1] - I||_inf of the returned Q"""
    # Catches: bug_orth_history_of_whole_preallocated_Q; the gate, trivial_noise
    # (a random orthonormal Q with its own history).
    A = _random_symmetric(13)
    k = 40
    _, Q, history, _, call = _track(student, A, k, "none", seed=23)
    Q = _lanczos_basis(Q, 40, k, call, matrix_apply(A))
    # One entry per step j = 0..k-1, for the first j+1 columns, as the notebook defines it.
    history = vector(history, f"orth_history returned by {call}", length=k)
    assert history[0].item() <= 1e-5, \
        f"orth_history[0] from {call} is {history[0].item():.3g}, where a single unit " \
        "vector is orthonormal (~0)"
    # Either infinity norm is accepted. fp32 Gram matrices carry ~1e-7 per entry,
    # ~4e-6 per row sum of 40; entries grow ~2x per step while orthogonality is
    # lost, so an entry for the wrong number of columns is off by far more than 1%.
    expectations = (_leading_errors(Q, entrywise=True), _leading_errors(Q, entrywise=False))
    matches = [bool(((history - expected).abs() <= 1e-5 + 1e-2 * expected).all())
               for expected in expectations]
    first = int(((history - expectations[0]).abs() > 1e-5 + 1e-2 * expectations[0])
                .nonzero()[0].item()) if not matches[0] else 0
    assert any(matches), \
        f"orth_history from {call} does not match ||Q[:, :j+1]^T Q[:, :j+1] - I||_inf " \
        f"recomputed from the returned Q (max |entry| or max row sum): at step j = {first} " \
        f"it holds {history[first].item():.3g} where the first j+1 columns give " \
        f"{expectations[0][first].item():.3g}; record one value per step j, for the j+1 " \
        "columns built so far"


@check(exercise="5.1", weight=2)
def test_orthogonality_is_lost_without_reorthogonalization(student):
    """with reorth='none', fp32 Lanczos loses orthogonality on a 40 x 40 matrix"""
    # Catches: verdicts_none_reorthogonalizes (reorth='none' treated as 'full');
    # the gate, trivial_zeros (Q = 0 is as far from orthonormal as it gets).
    A = _random_symmetric(17)
    _, Q, _, _, call = _track(student, A, 40, "none", seed=29)
    Q = _lanczos_basis(Q, 40, 40, call, matrix_apply(A))
    # Measured over 5 matrices x 8 starts, in fp32 and with fp64 arithmetic around
    # the fp32 operator: at least 0.35 after 40 steps.
    error = orth_error(Q)
    assert error > 1e-3, \
        f"{call} kept Q orthonormal (max |(Q^T Q - I)_ij| = {error:.2g}) over 40 fp32 steps, " \
        "which plain Lanczos does not do: reorth='none' must not reorthogonalize"


@check(exercise="5.1", weight=2)
def test_track_orth_ritz_values_and_matvecs(student):
    """lanczos_track_orth's Ritz values are eig(Q^T A Q), one matvec per step"""
    # Catches: verdicts_track_orth_off_by_one_beta; the gate, trivial_noise.
    A, _ = hidden_matrix("spread")
    k = 12
    ritz, Q, _, op, call = _track(student, A, k, "none", dtype=torch.float64, seed=31,
                                  budget=k + 1)
    ritz = ritz_values(ritz, k, call)
    Q = _lanczos_basis(Q, A.shape[0], k, call, matrix_apply(A))
    assert_consistent(ritz, Q, A, call)
    assert_one_matvec_per_step(op, k, call)


# --- 5.2 full reorthogonalization -----------------------------------------------------


@check(exercise="5.2", weight=2)
def test_full_reorth_keeps_the_basis_orthonormal(student):
    """reorth='full' keeps Q orthonormal to fp32 accuracy over 40 steps"""
    # Catches: verdicts_full_reorth_ignored (the 'full' branch never taken); the
    # gate, trivial_constants (the identity's columns are orthonormal).
    A = _random_symmetric(19)
    _, Q, _, _, call = _track(student, A, 40, "full", seed=37)
    Q = _lanczos_basis(Q, 40, 40, call, matrix_apply(A))
    # Reference: ~2e-7 on every matrix and start tried; 'none' gives ~0.4.
    error = orth_error(Q)
    assert error <= 1e-5, \
        f"{call} returned a Q with max |(Q^T Q - I)_ij| = {error:.2g}, not orthonormal to " \
        "fp32 accuracy: subtract the projection of r onto every previous q_i, twice"


@check(exercise="5.2", weight=2)
def test_full_reorth_with_k_equal_to_dim_finds_the_spectrum(student):
    """reorth='full' with k = dim recovers every eigenvalue"""
    # Catches: verdicts_full_reorth_ignored; the gate, trivial_echo (Rayleigh-Ritz on
    # the identity's columns gets every eigenvalue at k = dim).
    A, eigs = hidden_matrix("indefinite30")
    ritz, Q, _, _, call = _track(student, A.float(), 30, "full", seed=41)
    _lanczos_basis(Q, 30, 30, call, matrix_apply(A))
    ritz = ritz_values(ritz, 30, call)
    # Worst over 20 starts: 8e-6 on eigenvalues up to 12 ('none' is off by ~9).
    error = (ritz - eigs).abs().max().item() / eigs.abs().max().item()
    assert error <= 1e-4, \
        f"{call} on a 30 x 30 fp32 matrix returned Ritz values up to {error:.2g} ||A|| away " \
        "from its 30 eigenvalues, which full reorthogonalization recovers to fp32 accuracy"


@check(exercise="5.2", weight=1)
def test_full_reorth_twice_is_enough(student):
    """reorth='full' stays orthonormal when r lies mostly in span(Q) (twice is enough)"""
    # Catches: bug_full_reorth_only_once; the gate, trivial_noise.
    A = _random_symmetric(43, 60) / (2 * 60 ** 0.5)
    fn = _Contaminating(A, 1e4, seed=47)
    _, Q, _, _, call = _track(student, A, 20, "full", seed=53, fn=fn)
    Q = _lanczos_basis(Q, 60, 20, call, fn.apply)
    # An operator that adds ~1e3 times a vector already in span(Q) to every A q_j:
    # two Gram-Schmidt passes give <= 3e-7 (30 starts, classical or modified),
    # one pass ~1 (classical) or >= 1.4e-4 (modified).
    error = orth_error(Q)
    assert error <= 1e-5, \
        f"{call} returned a Q with max |(Q^T Q - I)_ij| = {error:.2g} when the new vector " \
        "lies mostly in the span of the previous ones: one projection pass is not enough " \
        "in fp32, do it twice"


@check(exercise="5.2", weight=1)
def test_full_reorth_uses_one_matvec_per_step(student):
    """reorth='full' still spends one matvec per step"""
    # Catches: verdicts_full_reorth_extra_matvec (A q_j recomputed after the
    # projections); the gate, trivial_noise.
    A = _random_symmetric(59)
    k = 20
    _, Q, _, op, call = _track(student, A, k, "full", seed=61, budget=k + 1)
    _lanczos_basis(Q, 40, k, call, matrix_apply(A))
    assert_one_matvec_per_step(op, k, call)


# --- 5.3 the 0.717 test ---------------------------------------------------------------


@check(exercise="5.3", weight=2)
def test_selective_reorth_keeps_the_basis_orthonormal(student):
    """reorth='selective' keeps Q orthonormal on a random 40 x 40 fp32 matrix"""
    # Catches: bug_selective_threshold_inverted; the gate, trivial_constants.
    A = _random_symmetric(67)
    _, Q, _, _, call = _track(student, A, 40, "selective", seed=71)
    Q = _lanczos_basis(Q, 40, 40, call, matrix_apply(A))
    # Reference: <= 1.1e-6 over 6 matrices x 10 starts; 'none' gives >= 0.35.
    error = orth_error(Q)
    assert error <= 1e-4, \
        f"{call} lost orthogonality (max |(Q^T Q - I)_ij| = {error:.2g}): reorthogonalize " \
        "whenever ||r|| < 0.717 ||A q_j||"


@check(exercise="5.3", weight=1)
def test_selective_reorthogonalizes_after_cancellation(student):
    """reorth='selective' reorthogonalizes when the recurrence cancels most of A q_j"""
    # Catches: bug_selective_threshold_inverted; the gate, trivial_constants.
    A = _shifted(73)
    _, Q, _, _, call = _track(student, A, 30, "selective", seed=79)
    Q = _lanczos_basis(Q, 40, 30, call, matrix_apply(A))
    # Here ||r|| ~ 0.1 ||A q_j|| on every step, so the test fires every time:
    # reference ~2e-7; no reorthogonalization (or the test inverted) ~0.3.
    error = orth_error(Q)
    assert error <= 1e-4, \
        f"{call} lost orthogonality (max |(Q^T Q - I)_ij| = {error:.2g}) on a matrix where " \
        "||r|| < 0.717 ||A q_j|| at every step: the test should fire there and " \
        "reorthogonalize"


@check(exercise="5.3", weight=1)
def test_selective_skips_steps_without_cancellation(student):
    """reorth='selective' does not reorthogonalize when ||r|| >= 0.717 ||A q_j||"""
    # Catches: bug_selective_reorthogonalizes_every_step; the gate, trivial_zeros
    # (Q = 0 is as far from orthonormal as it gets).
    A = _random_symmetric(83, 60) / (2 * 60 ** 0.5)
    fn = _Contaminating(A, 100.0, seed=89)
    _, Q, _, _, call = _track(student, A, 20, "selective", seed=97, fn=fn)
    Q = _lanczos_basis(Q, 60, 20, call, fn.apply)
    # On this operator r keeps ~all of A q_j, so the 0.717 test must not fire
    # and orthogonality is lost (>= 0.99 over 30 starts, fp32 or fp64 arithmetic);
    # reorthogonalizing every step keeps it (~2e-7 twice, <= 7e-4 once).
    error = orth_error(Q)
    assert error > 0.1, \
        f"{call} kept Q orthonormal (max |(Q^T Q - I)_ij| = {error:.2g}) on an operator where " \
        "||r|| >= 0.717 ||A q_j|| at every step, where it is lost without " \
        "reorthogonalization, so it reorthogonalized on those steps: the 0.717 test " \
        "should reorthogonalize only when the recurrence has cancelled most of A q_j " \
        "(that is what makes it cheaper than 'full')"


@check(exercise="5.3", weight=1)
def test_selective_reorth_with_k_equal_to_dim_finds_the_spectrum(student):
    """reorth='selective' with k = dim recovers every eigenvalue"""
    # Catches: bug_selective_threshold_inverted; the gate, trivial_echo.
    A, eigs = hidden_matrix("indefinite30")
    ritz, Q, _, _, call = _track(student, A.float(), 30, "selective", seed=101)
    _lanczos_basis(Q, 30, 30, call, matrix_apply(A))
    ritz = ritz_values(ritz, 30, call)
    # Worst over 20 starts: 5e-6 on eigenvalues up to 12.
    error = (ritz - eigs).abs().max().item() / eigs.abs().max().item()
    assert error <= 1e-4, \
        f"{call} on a 30 x 30 fp32 matrix returned Ritz values up to {error:.2g} ||A|| away " \
        "from its 30 eigenvalues, which the 0.717 test recovers to fp32 accuracy"


@check(exercise="5.3", weight=1)
def test_selective_reorth_uses_one_matvec_per_step(student):
    """reorth='selective' still spends one matvec per step"""
    # Catches: verdicts_selective_extra_matvec (||A q_j|| of the test from a
    # second matvec); the gate, trivial_noise.
    A = _random_symmetric(103)
    k = 20
    _, Q, _, op, call = _track(student, A, k, "selective", seed=107, budget=k + 1)
    _lanczos_basis(Q, 40, k, call, matrix_apply(A))
    assert_one_matvec_per_step(op, k, call)
