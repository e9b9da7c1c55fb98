"""Section 2: power iteration, its convergence rate, and power iteration on the Hessian.

Every matrix of Exercises 2.1 and 2.2 is Q diag(eigs) Q^T from
fixtures.spectra, so the exact eigenvalues are known. It reaches the
student's code only as an opaque operator, which counts the matvecs.
The notebook's own solution works in fp32 whatever the operator's precision
(its start vector is fp32, and the operator's answer comes back in the
caller's dtype), so the tolerances below allow fp32 work: an fp32 Rayleigh
quotient of size |lambda| carries noise of a few 1e-7 |lambda|, and power
iteration stops as soon as two successive quotients round to the same float,
which leaves the eigenvector with an error of about sqrt(1e-7) times the gap
ratio.

Exercise 2.3 runs power iteration on the loss Hessian of a toy MLP, whose
top eigenpair is computed here from the Hessian materialized in fp64.
"""

import math

import torch
from krylov_checks import (
    EIG_RTOL,
    count_params,
    eigenvalues_from,
    notebook_toy_problem,
    signed_top,
)
from torch import nn

from autograder.testing import answer, check, number, vector
from fixtures import spectra
from fixtures.models import hvp_case
from reference import krylov_hessian as ref


def _cluster(top: float, second: float, size: int, rest: tuple) -> torch.Tensor:
    """A top eigenvalue over a `size`-fold second one and a spread-out rest.

    A random start vector always has a sizeable component in a 15-dimensional
    eigenspace, so the history reaches its asymptotic rate whatever the
    student's start vector (one second eigenvector could start near zero).
    """
    return torch.cat([eigenvalues_from(top), torch.full((size,), second, dtype=torch.float64),
                      eigenvalues_from(rest)])


class _PowerResult:
    """What power_iteration returned, each part checked only when a test reads it.

    A check about the eigenvalue must not fail because the history has an
    unexpected type, and vice versa.
    """

    def __init__(self, result, dim: int, op):
        assert isinstance(result, (tuple, list)) and len(result) == 3, \
            "power_iteration should return a tuple (eig, vec, history)"
        self._result, self._dim, self.op = result, dim, op

    @property
    def eig(self) -> float:
        return number(self._result[0], "the eigenvalue returned by power_iteration")

    @property
    def vec(self) -> torch.Tensor:
        return vector(self._result[1], "the eigenvector returned by power_iteration",
                         length=self._dim)

    @property
    def history(self) -> torch.Tensor:
        return vector(self._result[2], "the history returned by power_iteration")

    def assert_iterated(self, call: str) -> None:
        """The real-work gate of the checks about counts, the history and the seed.

        Power iteration spends one matvec per iteration and records one change
        per iteration after the first: `calls - 1` entries, `calls - 2` for a
        loop that forms one more quotient at the end, `calls` for a first
        change measured from 0. A function that returns constants, zeros or its
        start vector (trivial_zeros, trivial_constants, trivial_echo in
        tests/corpus) iterates nothing and gets none of those checks.
        """
        calls, entries = self.op.calls, self.history.numel()
        assert calls >= 2 and calls - 2 <= entries <= calls, \
            f"{call} called the matvec {calls} times and returned a history of {entries} " \
            "entries: power iteration spends one matvec per iteration and records the " \
            "change of the eigenvalue estimate at every iteration after the first"


def _power(student, A: torch.Tensor, *, budget: int | None = None, **kwargs) -> _PowerResult:
    """Run the student's power_iteration on an operator for A (in A's dtype)."""
    n = A.shape[0]
    num_iters = kwargs.get("num_iters", 200)
    op = student.operator(lambda v: A @ v, dim=n, dtype=A.dtype,
                          budget=budget or 3 * num_iters + 10, name="the matvec",
                          hint="power iteration spends one matvec per iteration")
    result = student.call("power_iteration", op, n, **kwargs)
    return _PowerResult(result, n, op)


def _close(value: float, exact: float, rtol: float) -> bool:
    return abs(value - exact) <= rtol * abs(exact)


# --- Exercise 2.1: power iteration --------------------------------------------


@check(exercise="2.1", weight=1)
def test_top_eigenvalue_fp32_and_fp64(student):
    """power_iteration finds the top eigenvalue of wide-gap matrices (fp64 and fp32 operators)"""
    # Scaled by 1.37: the fixture's top eigenvalue is 10, the number on the
    # notebook's own diagonal matrices, which a constant answer could echo.
    for n, seed, dtype in ((60, 101, torch.float64), (35, 107, torch.float32)):
        spectrum = spectra.make("wide_gap", n, seed)
        eig = _power(student, (spectrum.matrix * 1.37).to(dtype), num_iters=200, seed=3).eig
        assert _close(eig, signed_top(spectrum.eigenvalues).item() * 1.37, EIG_RTOL), \
            f"power_iteration(matvec, {n}, num_iters=200, seed=3) on a {str(dtype)[6:]} " \
            f"matrix with a wide spectral gap returned {eig:.6g}, not its top eigenvalue " \
            "(v . A v for the converged unit vector v)"


@check(exercise="2.1", weight=2)
def test_negative_dominant_eigenvalue(student):
    """power_iteration keeps the sign of a negative dominant eigenvalue"""
    for n, seed, dtype in ((50, 102, torch.float64), (30, 108, torch.float32)):
        spectrum = spectra.make("indefinite", n, seed, dtype)
        eig = _power(student, spectrum.matrix, num_iters=200, seed=1).eig
        assert _close(eig, signed_top(spectrum.eigenvalues).item(), EIG_RTOL), \
            f"on a matrix whose largest-magnitude eigenvalue is negative, power_iteration " \
            f"returned {eig:.6g}, not that eigenvalue with its sign" + (
                ": return the Rayleigh quotient v . A v, not its absolute value or the norm "
                "of A v" if eig > 0 else "")


@check(exercise="2.1", weight=1)
def test_large_and_small_scales(student):
    """power_iteration works for very large and very small eigenvalues"""
    # Catches: power_bug_unnormalized (overflow at 1e3, underflow at 1e-5) and
    # verdicts_power_norm_guard (w / (w.norm() + 1e-6): a vector of norm 0.99 when
    # ||A v|| ~ 1e-4, and an eigenvalue 2% low).
    # The Hessian's scale is arbitrary: without normalizing v every step,
    # fp32 overflows (|lambda|^k) within a dozen iterations at 1e4, or
    # underflows at 1e-4, before power iteration has converged.
    for name, scale, n, seed in (("narrow_gap", 1e3, 40, 109), ("wide_gap", 1e-5, 40, 110)):
        spectrum = spectra.make(name, n, seed)
        A = (spectrum.matrix * scale).float()
        result = _power(student, A, num_iters=200, seed=2)
        where = f"on a matrix whose eigenvalues are of order {scale:g} times the usual, " \
                "power_iteration"
        norm = result.vec.norm().item()
        # An fp32 unit vector has norm 1 to ~1e-7.
        assert abs(norm - 1) < 1e-4, \
            f"{where} returned a vector of norm {norm:.6g}: " + (
                "a guard added to the norm, such as w / (w.norm() + 1e-6), shrinks v when "
                "||A v|| is that small; divide by w.norm() itself"
                if 0 < norm < 1 else "normalize v = w / w.norm() after every matvec")
        exact = signed_top(spectrum.eigenvalues).item() * scale
        error = abs(result.eig - exact) / abs(exact)
        assert error <= EIG_RTOL, \
            f"{where} returned an eigenvalue {error:.2g} relative away from the top " \
            "eigenvalue, with a vector of unit norm: normalize v after every matvec (so it " \
            "neither overflows nor underflows) and return the Rayleigh quotient v . A v"


@check(exercise="2.1", weight=2)
def test_eigenvector(student):
    """the returned vector is a unit top eigenvector (either sign)"""
    cases = (spectra.make("wide_gap", 60, 101).matrix,
             spectra.with_spectrum(eigenvalues_from(-10.0, 3.0, (-1.5, 1.5, 43)), 111))
    for A in cases:
        top = signed_top(torch.linalg.eigvalsh(A)).item()
        vec = _power(student, A, num_iters=200, seed=4).vec
        norm = vec.norm().item()
        assert abs(norm - 1) < 1e-4, \
            f"the vector returned by power_iteration has norm {norm:.6g}, not 1"
        # Gap ratios <= 0.3: when two fp32 Rayleigh quotients first agree, the
        # vector error is ~1e-4 and the last matvec shrinks it further; the
        # notebook's solution leaves residuals of ~1e-7 here.
        residual = ((A @ vec - top * vec).norm() / abs(top)).item()
        assert residual < 1e-3, \
            f"the vector returned by power_iteration is not an eigenvector for the top " \
            f"eigenvalue (||A v - lambda v|| = {residual:.2g} |lambda|): return the last " \
            "normalized iterate"


# On _cluster(10, 9.5 x 15, [0, 1]) every start vector's Rayleigh quotient is
# above 9.49 after 4 iterations (the part in [0, 1] shrinks by (1/9.5)^8), and
# no quotient exceeds 10: an answer outside this band did not iterate.
ITERATED_BAND = (9.4, 10.0 + 1e-3)


def _assert_iterated_eig(result: _PowerResult, call: str) -> None:
    low, high = ITERATED_BAND
    assert low <= result.eig <= high, \
        f"{call} returned the eigenvalue {result.eig:.6g}, which no power iteration of that " \
        "length reaches on this matrix (its Rayleigh quotient is within 1% of the top " \
        "eigenvalue after 4 iterations from any start): this check counts only for an " \
        "answer that did the iterations"


@check(exercise="2.1", weight=2)
def test_one_matvec_per_iteration(student):
    """power_iteration spends one matvec per iteration and honours num_iters"""
    # Catches: power_bug_two_matvecs_per_step, verdicts_power_ignores_num_iters
    # (a fixed 200 iterations); the gate, trivial_zeros and trivial_constants
    # (no matvec at all, a history of [0.0], which once passed as "converged").
    # Top 10 over a 15-fold 9.5: after 40 steps the Rayleigh quotient usually
    # still changes by ~1e-2 per step, far above tol. From a start with little
    # of the top eigenvector it settles near 9.5 first, where fp32 quotients
    # can repeat exactly (a change of 0 < tol, measured on ~1% of starts): a
    # correct loop stops there, so a last change below tol excuses the count.
    A = spectra.with_spectrum(_cluster(10.0, 9.5, 15, (0.0, 1.0, 14)), 121)
    for num_iters in (40, 5):
        result = _power(student, A, num_iters=num_iters, seed=0)
        call = f"power_iteration(matvec, dim, num_iters={num_iters})"
        _assert_iterated_eig(result, call)
        result.assert_iterated(call)
        calls, history = result.op.calls, result.history
        # One matvec per iteration, plus at most two for a start or a final quotient.
        assert calls <= num_iters + 2, \
            f"{call} called the matvec {calls} times: it should call it once per iteration " \
            "(reuse A v for both the Rayleigh quotient and the next iterate)"
        assert calls >= num_iters - 1 or history[-1].item() < 1e-10, \
            f"{call} called the matvec {calls} times and stopped at a change of " \
            f"{history[-1].item():.2g}, above tol: run num_iters iterations unless a change " \
            "drops below tol"


@check(exercise="2.1", weight=1)
def test_history_of_changes(student):
    """history holds the per-step |change| of the eigenvalue, and tol stops the loop"""
    # Catches: power_bug_history_of_estimates, verdicts_power_unnormalized_start
    # (its first change is measured from the quotient of a vector of norm ~8),
    # power_bug_fixed_threshold; the gate, trivial_constants.
    spectrum = spectra.make("wide_gap", 60, 101)
    result = _power(student, spectrum.matrix, num_iters=200, tol=1e-10, seed=5)
    call = "power_iteration(matvec, 60, num_iters=200, tol=1e-10)"
    result.assert_iterated(call)
    eig, history, op = result.eig, result.history, result.op
    # A history of the estimates themselves ends at the eigenvalue (10 here);
    # a history of changes ends at a change below tol.
    assert abs(history[-1].item() - eig) > 1e-3 * abs(eig), \
        f"the history returned by {call} ends at {history[-1].item():.6g}, the eigenvalue " \
        f"itself ({eig:.6g}): it records the estimates; record the changes " \
        "|lambda_k - lambda_(k-1)| instead"
    assert history.numel() <= 200, \
        f"{call} returned a history of {history.numel()} entries: one per iteration, at " \
        "most num_iters"
    assert (history >= 0).all(), \
        f"the history returned by {call} has negative entries; record the absolute " \
        "changes |lambda_k - lambda_(k-1)|"
    # Whether tol = 1e-10 is ever reached depends on the working precision
    # (fp32 quotients stop by rounding to equal values, an fp64 quotient of
    # fp32 matvecs never does), so only the stopping rule itself is checked.
    stopped_early = op.calls < 199
    assert (history[:-1] >= 1e-10).all() and (history[-1].item() < 1e-10
                                                or not stopped_early), \
        f"{call} stopped after {op.calls} matvecs with a last change of " \
        f"{history[-1].item():.2g}: it should stop at the first change below tol, and " \
        "that change should be the last entry of history"
    # Telescoping: on a positive-definite matrix the Rayleigh quotient rises
    # monotonically, so eig minus the summed changes is the first quotient,
    # which lies in [lambda_min, lambda_max] (up to fp32 noise of ~1e-5).
    # Also accepted: a first entry measured from an initial estimate of 0, which
    # is then the first quotient itself (eig minus the sum is ~0).
    low, high = spectrum.eigenvalues.min().item(), spectrum.eigenvalues.max().item()
    first = eig - history.sum().item()
    from_zero = abs(first) <= 1e-2 and low - 1e-2 <= history[0].item() <= high + 1e-2
    assert low - 1e-2 <= first <= high + 1e-2 or from_zero, \
        f"the eigenvalue {eig:.6g} minus the sum of the history gives {first:.6g} as the " \
        "first estimate of the eigenvalue, outside the matrix's spectrum: the first " \
        "estimate v . A v is not the Rayleigh quotient of a unit vector; normalize the " \
        "start vector before the first matvec"
    A = spectra.with_spectrum(_cluster(10.0, 9.5, 15, (0.0, 1.0, 14)), 122)
    result = _power(student, A, num_iters=200, tol=1e-3, seed=5)
    # Changes reach 1e-3 after ~60-100 steps for any start vector (ratio 0.95
    # under a 15-fold second eigenvalue); 200 steps leave no doubt.
    history = result.history
    assert history.numel() >= 1 and history[-1].item() < 1e-3 \
        and (history[:-1] >= 1e-3).all(), \
        f"power_iteration(..., tol=1e-3) returned a history of {history.numel()} changes " \
        f"ending at {history[-1].item() if history.numel() else float('nan'):.2g}: it " \
        "should stop at the first change below 1e-3; use the tol argument rather than a " \
        "fixed threshold"


@check(exercise="2.1", weight=1)
def test_seed(student):
    """the seed alone fixes the start vector"""
    # Catches: power_bug_ignores_seed; the gate, trivial_echo (the seeded start
    # vector and its quotient, returned without iterating).
    A = spectra.with_spectrum(_cluster(10.0, 9.5, 15, (0.0, 1.0, 14)), 123)
    # Five steps keep most of the start vector's part in the 15-fold eigenspace
    # of 9.5, so different starts leave vectors far from parallel (their
    # quotients can agree to 1e-7: seen once in 300 draws); the same seed must
    # reproduce the answer exactly.
    first = _power(student, A, num_iters=5, seed=4)
    _assert_iterated_eig(first, "power_iteration(matvec, dim, num_iters=5, seed=4)")
    again = _power(student, A, num_iters=5, seed=4)
    other = _power(student, A, num_iters=5, seed=5)
    assert first.eig == again.eig and torch.equal(first.vec, again.vec), \
        "two calls of power_iteration with the same seed gave different answers: draw " \
        "the start vector from torch.Generator().manual_seed(seed)"
    overlap = abs(torch.dot(first.vec, other.vec).item()) / max(
        first.vec.norm().item() * other.vec.norm().item(), 1e-300)
    assert overlap < 1 - 1e-6, \
        "power_iteration returned the same 5-step vector (up to sign) for seeds 4 and 5: " \
        "the seed should choose the random start vector"


# --- Exercise 2.2: convergence rate --------------------------------------------


def _asymptotic_slope(history: torch.Tensor, eig: float, points: int = 8) -> float | None:
    """Least-squares slope of log10(history) over the last `points` entries above noise.

    The window ends where the history last stands above its noise floor, so
    it lies in the final, asymptotic decay. (Ending it at the *first* entry
    below the floor, as this check once did, fitted the early stall that
    some start vectors show: with little of the top eigenvector in v, the
    quotient first settles near the second eigenvalue, its changes dip
    below the floor, then it climbs to the top one.) The floor is the larger
    of 1e-4 of the largest change (scale-free, so absolute and relative
    changes give the same window) and 1e-5 |eig|: fp32 quotients of size
    |eig| carry ~1e-6 |eig| of rounding, which the changes show from ~5e-6
    |eig| down (measured on these matrices).
    """
    h = history.tolist()
    if not h or max(h) <= 0:
        return None
    floor = max(1e-4 * max(h), 1e-5 * abs(eig))
    above = [i for i, x in enumerate(h) if x > floor]
    if not above:
        return None
    end = above[-1] + 1
    window = list(range(max(0, end - points), end))
    if len(window) < 6 or any(h[i] <= floor for i in window):
        return None
    mean_i = sum(window) / len(window)
    logs = [math.log10(h[i]) for i in window]
    mean_l = sum(logs) / len(logs)
    return (sum((i - mean_i) * (y - mean_l) for i, y in zip(window, logs))
            / sum((i - mean_i) ** 2 for i in window))


def _check_rate(student, A: torch.Tensor, ratio: float) -> None:
    result = _power(student, A, num_iters=200, seed=6)
    history = result.history
    slope = _asymptotic_slope(history, result.eig)
    assert slope is not None, \
        f"the history of power_iteration has {history.numel()} entries, too few above " \
        "rounding noise in its final decay to measure a convergence rate: it should " \
        "record one |change| of the eigenvalue estimate per iteration until a change " \
        "drops below tol"
    # The Rayleigh quotient's error decays like |l2/l1|^(2k). Over 2,000 start
    # vectors (fp32 and fp64 work) the fitted slope was within 1.3% of
    # 2 log10|l2/l1|; 10% still rejects the vector's rate |l2/l1|^k (half the
    # slope: the component-ratio estimate, power_bug_component_ratio).
    expected = 2 * math.log10(ratio)
    assert abs(slope - expected) <= 0.1 * abs(expected), \
        f"the per-step changes in the history of power_iteration decay by a factor " \
        f"{10 ** slope:.3f} per step at the end, where the Rayleigh quotient v . A v " \
        f"changes by |lambda_2/lambda_1|^2 = {ratio ** 2:.3f} per step: check which " \
        "estimate you record (a component ratio or a norm converges at a different rate)"


@check(exercise="2.2", weight=2)
def test_rate_moderate_gap(student):
    """the eigenvalue changes decay like |l2/l1|^(2k) (ratio 0.8, fp64 operator)"""
    _check_rate(student, spectra.with_spectrum(_cluster(10.0, 8.0, 15, (0.0, 1.0, 14)), 201),
                0.8)


@check(exercise="2.2", weight=1)
def test_rate_negative_dominant(student):
    """the same rate with a negative dominant eigenvalue (ratio 0.7, fp32 operator)"""
    A = spectra.with_spectrum(_cluster(-10.0, 7.0, 15, (-1.0, 1.0, 14)), 202, torch.float32)
    _check_rate(student, A, 0.7)


@check(exercise="2.2", weight=1)
def test_tied_top_pair(student):
    """with a tied top pair the eigenvalue still converges"""
    # Catches: power_bug_history_of_estimates (estimates of ~10 never fall to
    # rounding level); the gate, trivial_constants (10.0 and a history of [0.0]
    # without a matvec would pass the rest).
    spectrum = spectra.make("tied", 40, 204)
    result = _power(student, spectrum.matrix, num_iters=200, seed=7)
    result.assert_iterated("power_iteration(matvec, 40, num_iters=200)")
    eig, history = result.eig, result.history
    # Every vector of the tied plane has Rayleigh quotient 10; the rest decays
    # at (1.5/10)^(2k), so within ~10 steps the changes reach rounding level:
    # exactly 0 in fp32, ~1e-6 for an fp64 quotient of fp32 matvecs, ~1e-15 in fp64.
    assert _close(eig, 10.0, EIG_RTOL) and history.numel() > 0 \
        and history.min().item() < 1e-4, \
        f"with two equal top eigenvalues, power_iteration returned the eigenvalue {eig:.6g} " \
        f"and a history whose smallest change is " \
        f"{history.min().item() if history.numel() else float('nan'):.2g}: the eigenvalue " \
        "estimate should still converge (its changes fall to rounding level); only the " \
        "eigenvector is not unique"


# --- Exercise 2.3: power iteration on the Hessian ------------------------------


@answer
def _dominant(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Largest-magnitude eigenpair of the loss Hessian, exact in fp64 (cached by content)."""
    values, vectors = torch.linalg.eigh(ref.dense_hessian(model, X, y))
    i = values.abs().argmax()
    return values[i].item(), vectors[:, i]


# fp32 power iteration on these Hessians reaches ~1e-6 relative (measured
# 1e-7..2e-6); the second-largest magnitude is >= 5% away, so 1e-4 separates.
TOP_EIG_RTOL = 1e-4


@check(exercise="2.3", weight=2)
def test_top_eig_of_notebook_hessian(student):
    """top_eig is the dominant eigenvalue of the notebook's own toy Hessian"""
    model, X, y = notebook_toy_problem(student)
    top_eig = number(student.get("top_eig"), "top_eig")
    truth, _ = _dominant(model, X, y)
    # On this model the dominant eigenvalue is positive, and then the signed
    # Rayleigh quotient and |lambda| agree; if it were negative either sign is
    # accepted here (the notebook compares magnitudes; 2.1 grades the sign).
    value = top_eig if truth > 0 else abs(top_eig)
    error = abs(value - abs(truth)) / abs(truth)
    assert error <= TOP_EIG_RTOL, \
        f"top_eig = {top_eig:.6g} is {error:.2g} relative away from the largest-magnitude " \
        "eigenvalue of the Hessian of the toy model's loss on (X, y): run power_iteration on " \
        "a matvec that calls hvp_double_backward"


@check(exercise="2.3", weight=2)
def test_power_iteration_on_hidden_hessian(student):
    """power_iteration on a hidden Hessian operator finds its top eigenpair"""
    case = hvp_case(21, 30, torch.float32, "toy")
    dim = count_params(case.model)
    truth, u = _dominant(case.model, case.X, case.y)
    num_iters = 300
    # Generous budget: exactly one matvec per step is graded in 2.1.
    op = student.operator(ref.hessian_matvec(case.model, case.X, case.y), dim=dim,
                          dtype=torch.float32, budget=2 * num_iters + 2)
    result = student.call("power_iteration", op, dim, num_iters=num_iters, seed=5)
    assert isinstance(result, (list, tuple)) and len(result) == 3, \
        "power_iteration should return (eig, vec, history)"
    eig = number(result[0], "the eigenvalue power_iteration returns")
    vec = vector(result[1], "the eigenvector power_iteration returns", length=dim)
    where = f"power_iteration(hessian_matvec, {dim}, num_iters={num_iters}, seed=5) on the " \
            "loss Hessian of a hidden toy MLP"
    error = abs(eig - truth) / abs(truth)
    assert error <= TOP_EIG_RTOL, \
        f"{where} returned an eigenvalue {error:.2g} relative away from its largest-magnitude " \
        "eigenvalue"
    # The eigenvector lags the Rayleigh quotient (sin^2 of its angle ~ the
    # eigenvalue error / gap ~ 1e-6); |cos| >= 0.999 accepts either sign.
    cosine = abs(torch.dot(vec, u)).item() / max(vec.norm().item(), 1e-300)
    assert cosine >= 0.999, \
        f"{where} returned a vector at |cos| = {cosine:.4f} to the top eigenvector"
