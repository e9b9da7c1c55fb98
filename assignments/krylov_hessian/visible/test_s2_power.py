"""Visible checks, Section 2: power iteration, its convergence rate, and the toy Hessian.

The matrices of Exercises 2.1 and 2.2 are diagonal, or Q diag(eigs) Q^T for
a seeded random orthogonal Q, so their eigenvalues are known exactly. Your
functions get them as a matvec (which counts its calls), never as a matrix.
Tolerances allow fp32 work: a converged fp32 Rayleigh quotient is within a
few 1e-7 (relative) of the eigenvalue.

For Exercise 2.3 the truth is the toy MLP's loss Hessian, materialized here
in fp64 by torch.func.hessian and handed to torch.linalg.eigvalsh.
"""

import math

import torch
from visible_checks import (
    call_with_matvec,
    dense_hessian,
    notebook_toy,
    rotated,
    signed_top,
    top_magnitudes,
)

from autograder.testing import check, number, vector


def _diag(eigs: list[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.diag(torch.tensor(eigs, dtype=dtype))


def _power(student, A: torch.Tensor, **kwargs):
    """power_iteration on A; returns (result, operator, call) with result a 3-tuple."""
    budget = 3 * kwargs.get("num_iters", 200) + 10
    result, op, call = call_with_matvec(student, "power_iteration", A, budget=budget, **kwargs)
    assert isinstance(result, (tuple, list)) and len(result) == 3, \
        f"{call} should return a tuple (eig, vec, history), got {type(result).__name__}"
    return result, op, call


# --- Exercise 2.1 ----------------------------------------------------------------------

POWER_CASES = (
    ("diag(5, 2, 1, ..., 1) in fp32", _diag([5.0, 2.0] + [1.0] * 8)),
    ("a 30 x 30 fp64 matrix whose dominant eigenvalue is negative",
     rotated([-8.0, 5.0] + torch.linspace(-2.0, 2.0, 28).tolist(), seed=21)),
)


@check(exercise="2.1", weight=2)
def test_top_eigenvalue_with_its_sign(student):
    """power_iteration returns the largest-magnitude eigenvalue, with its sign"""
    for label, A in POWER_CASES:
        result, _, call = _power(student, A, num_iters=300, seed=0)
        eig = number(result[0], f"the eigenvalue returned by {call}")
        truth = signed_top(torch.linalg.eigvalsh(A.double()), 1).item()
        assert abs(eig - truth) <= 1e-4 * abs(truth), \
            f"{call} on {label} did not return its largest-magnitude eigenvalue with its " \
            "sign: return the Rayleigh quotient v . A v of the unit iterate v (not |v . A v| " \
            "or ||A v||)"


@check(exercise="2.1", weight=1)
def test_unit_top_eigenvector(student):
    """the returned vector is a unit eigenvector of the top eigenvalue (either sign)"""
    for label, A in POWER_CASES:
        result, _, call = _power(student, A, num_iters=300, seed=0)
        vec = vector(result[1], f"the vector returned by {call}", A.shape[0])
        assert abs(vec.norm().item() - 1) < 1e-3, \
            f"the vector returned by {call} on {label} does not have unit norm"
        truth = signed_top(torch.linalg.eigvalsh(A.double()), 1).item()
        residual = ((A.double() @ vec - truth * vec).norm() / abs(truth)).item()
        assert residual < 1e-2, \
            f"the vector returned by {call} on {label} is not an eigenvector of the top " \
            "eigenvalue (||A v - lambda v|| is large): return the last normalized iterate"


@check(exercise="2.1", weight=1)
def test_large_and_small_eigenvalues(student):
    """power_iteration works when the eigenvalues are huge or tiny (fp32)"""
    for scale in (1e4, 1e-5):
        A = _diag([5.0 * scale, 2.0 * scale] + [scale] * 8)
        result, _, call = _power(student, A, num_iters=200, seed=0)
        where = f"{call} on diag(5, 2, 1, ..., 1) * {scale:g} in fp32"
        vec = result[1]
        norm = vec.double().norm().item() if isinstance(vec, torch.Tensor) else float("nan")
        # The observation first: a vector of norm 0.98 comes from a guard added to
        # the norm (w / (w.norm() + 1e-6)), which "normalize" would not fix.
        assert not (0 < norm < 1 - 1e-4), \
            f"{where} returned a vector of norm {norm:.6g}: a guard added to the norm, such " \
            "as w / (w.norm() + 1e-6), shrinks v when ||A v|| is that small; divide by " \
            "w.norm() itself"
        eig = result[0]
        if isinstance(eig, torch.Tensor) and eig.numel() == 1:
            eig = eig.item()
        ok = isinstance(eig, (int, float)) and not isinstance(eig, bool) \
            and math.isfinite(eig) and abs(eig - 5.0 * scale) <= 1e-4 * 5.0 * scale
        assert ok, \
            f"{where} returned the eigenvalue {eig!r:.40}, not its top eigenvalue: normalize " \
            "v after every matvec, or |lambda|^k over- or underflows fp32"


@check(exercise="2.1", weight=1)
def test_history_and_tol(student):
    """history holds per-step |changes| of the estimate and the loop stops below tol"""
    A = _diag([10.0, 9.0] + [1.0] * 8)
    result, _, call = _power(student, A, num_iters=200, tol=1e-2, seed=0)
    history = vector(result[2], f"the history returned by {call}")
    assert 1 <= history.numel() <= 200, \
        f"the history returned by {call} should hold one entry per iteration, at most num_iters"
    assert (history >= 0).all(), \
        f"the history returned by {call} has negative entries: record |lambda_k - lambda_(k-1)|"
    # With ratio 0.9 the changes shrink like 0.81^k and pass 1e-2 after a few dozen steps.
    assert history[-1].item() < 1e-2 and (history[:-1] >= 1e-2).all(), \
        f"{call} did not stop at the first change below tol: record the absolute change " \
        "|lambda_k - lambda_(k-1)| of the estimate each step, and break once it is below the " \
        "tol argument"


@check(exercise="2.1", weight=1)
def test_one_matvec_per_iteration(student):
    """power_iteration spends one matvec per iteration"""
    # Ratio 0.99: far from converged after 30 steps, so nothing stops early.
    A = _diag([10.0, 9.9] + [1.0] * 8)
    _, op, call = _power(student, A, num_iters=30, seed=0)
    assert op.calls <= 32, \
        f"{call} called the matvec {op.calls} times: one matvec per iteration is enough " \
        "(reuse A v for both the Rayleigh quotient and the next iterate)"


# --- Exercise 2.2 ----------------------------------------------------------------------


def _decay_slope(history: torch.Tensor, eig: float, points: int = 8) -> float | None:
    """Least-squares slope of log10(history) over its last `points` entries above 1e-5 |eig|.

    Below that floor fp32 rounding of the quotient (~1e-7 |eig|) takes over;
    above it, once the transient is over, the decay is geometric.
    """
    h = history.tolist()
    floor = 1e-5 * abs(eig)
    above = [i for i, x in enumerate(h) if x > floor]
    if not above or above[-1] + 1 < points + 1:
        return None
    window = list(range(above[-1] + 1 - points, above[-1] + 1))
    if any(h[i] <= floor for i in window):
        return None
    logs = [math.log10(h[i]) for i in window]
    mean_i, mean_l = sum(window) / len(window), sum(logs) / len(logs)
    return (sum((i - mean_i) * (y - mean_l) for i, y in zip(window, logs))
            / sum((i - mean_i) ** 2 for i in window))


@check(exercise="2.2", weight=2)
def test_changes_decay_at_the_rayleigh_rate(student):
    """the changes of the estimate decay like |l2/l1|^(2k) (l1 = 10, l2 = 8)"""
    # Both eigenvalues are repeated (5 and 10 times), so any random start vector has a
    # sizeable part in each eigenspace and the decay reaches its asymptotic rate early.
    A = rotated([10.0] * 5 + [8.0] * 10 + torch.linspace(0.0, 1.0, 25).tolist(), seed=22)
    result, _, call = _power(student, A, num_iters=200, seed=0)
    eig = number(result[0], f"the eigenvalue returned by {call}")
    history = vector(result[2], f"the history returned by {call}")
    slope = _decay_slope(history, eig)
    assert slope is not None, \
        f"the history returned by {call} does not hold enough decreasing changes to " \
        "measure a convergence rate: record one |change| per iteration until a change " \
        "drops below tol"
    expected = 2 * math.log10(0.8)
    assert abs(slope - expected) <= 0.15 * abs(expected), \
        f"the per-step changes in the history of {call} do not decay at the rate " \
        "|lambda_2/lambda_1|^(2k) of the Rayleigh quotient v . A v: check which estimate " \
        "you record (a component ratio or a norm converges at a different rate)"


# --- Exercise 2.3 ----------------------------------------------------------------------


@check(exercise="2.3", weight=2)
def test_top_eig_of_thedense_hessian(student):
    """top_eig is the largest-magnitude eigenvalue of the toy MLP's Hessian"""
    model, X, y = notebook_toy(student)
    value = student.get("top_eig")
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    assert isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value), f"top_eig should be a finite number, got {value!r:.60}"
    truth = top_magnitudes(torch.linalg.eigvalsh(dense_hessian(model, X, y)), 1).item()
    # fp32 power iteration on this Hessian gets ~1e-6 relative.
    assert abs(abs(value) - truth) <= 1e-3 * truth, \
        "top_eig is not the largest-magnitude eigenvalue of the Hessian of the toy model's " \
        "loss on (X, y): run power_iteration on a matvec that calls hvp_double_backward"
