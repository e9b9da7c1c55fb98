"""Section 1: Hutchinson's trace estimator, and its 1/sqrt(m) law on the notebook's Hessian.

The matrices reach the student's code only as counted operators. One probe is
one matvec; the budget is exactly `num_probes`, so materializing the matrix
(dim matvecs) fails by construction.

Statistics (1.1). For symmetric A one probe's z^T A z has variance
V = 2(||A||_F^2 - sum A_ii^2) (Rademacher) or 2||A||_F^2 (Gaussian). Over R
seeds of an m-probe estimate, the mean is within 5 sqrt(V / (m R)) of tr A
except with probability 6e-7 (normal tail; the mean of m R = 480 or more
quadratic forms is normal to within the Berry-Esseen error), and the sample
variance s^2 of the R estimates satisfies (R - 1) s^2 / (V / m) ~ chi2(R - 1)
for normal estimates: with R = 60, the band [0.35, 2.2] of s^2 / (V / m) fails
with probability below 1e-5 (chi2(59) < 20.7 or > 129.8); the estimates of
8 probes are close to normal (their excess kurtosis, measured, is below 1),
which the robustness test confirms over 200 seed offsets.
"""

import math

import numpy as np
import torch
from ntk_checks import matrix_operator, notebook_problem

from autograder.testing import check, number, numbers
from fixtures import ntk_models as fx
from reference import randomized_ntk as ref

HINT = "Hutchinson spends one matvec per probe"


def _estimate(student, A: torch.Tensor, m: int, **kwargs) -> tuple[float, int]:
    op = matrix_operator(student, A, budget=m, hint=HINT)
    call = f"hutchinson_trace(matvec, {A.shape[0]}, {m}, ...)"
    value = number(student.call("hutchinson_trace", op, A.shape[0], m, **kwargs),
                   f"the estimate returned by {call}")
    return value, op.calls


def _diagonal() -> torch.Tensor:
    """A hidden diagonal of mixed signs and scales (trace 20.9...)."""
    g = torch.Generator().manual_seed(2101)
    return torch.diag(torch.randn(37, generator=g, dtype=torch.float64) * 2.0 + 0.6)


@check(exercise="1.1", weight=2)
def test_rademacher_probes_are_exact_on_a_diagonal(student):
    """with Rademacher probes, hutchinson_trace is exact on a diagonal matrix"""
    # Catches: gaussian_for_rademacher (torch.randn probes), bernoulli_probes (entries
    # 0/1, not -1/+1: a quarter of the weight), divided_by_dim; zeros and constants.
    # z_i^2 = 1 exactly, so every probe gives tr D; fp32 sums of 37 terms of size
    # ~5 carry ~1e-5 of rounding, 1e-4 relative is 10x that.
    D = _diagonal()
    exact = torch.trace(D).item()
    got, _ = _estimate(student, D, 6, dist="rademacher", seed=4)
    assert abs(got - exact) <= 1e-4 * max(1.0, abs(exact)), \
        f"hutchinson_trace(matvec, 37, 6, dist='rademacher', seed=4) on a diagonal matrix " \
        f"returned {got:.6g}, {abs(got - exact):.3g} away from its trace, where Rademacher " \
        "probes (entries +1 or -1) give the trace exactly"


@check(exercise="1.1", weight=1)
def test_one_matvec_per_probe(student):
    """hutchinson_trace spends exactly num_probes matvecs"""
    # Catches: two_matvecs_per_probe, materialized (the budget refuses the dim-th call);
    # the value gate (within 6 sd of the trace) keeps a function that only calls the
    # matvec from scoring.
    A = fx.with_spectrum(torch.linspace(-1.0, 3.0, 50), seed=2102)
    got, calls = _estimate(student, A, 12, seed=1)
    assert calls == 12, f"hutchinson_trace(matvec, 50, 12, seed=1) called the matvec " \
                        f"{calls} times; one probe costs one matvec"
    sd = math.sqrt(ref.hutchinson_variance(A) / 12)
    assert abs(got - torch.trace(A).item()) <= 6 * sd, \
        f"hutchinson_trace(matvec, 50, 12, seed=1) returned {got:.6g}, more than 6 standard " \
        "deviations of a 12-probe estimate away from the trace"


def _runs(student, A: torch.Tensor, m: int, reps: int, dist: str) -> np.ndarray:
    return np.array([_estimate(student, A, m, dist=dist, seed=s)[0] for s in range(reps)])


def _assert_unbiased_with_variance(runs: np.ndarray, A: torch.Tensor, m: int, dist: str) -> None:
    reps, exact = len(runs), torch.trace(A).item()
    V = ref.hutchinson_variance(A, dist)
    call = f"hutchinson_trace(matvec, {A.shape[0]}, {m}, dist='{dist}', seed=s)"
    sd_mean = math.sqrt(V / (m * reps))
    assert abs(runs.mean() - exact) <= 5 * sd_mean, \
        f"over seeds s = 0..{reps - 1}, {call} averages {runs.mean():.5g}, " \
        f"{abs(runs.mean() - exact) / sd_mean:.1f} standard errors from the trace: the " \
        "estimate should be unbiased, the mean of z^T A z over the probes"
    ratio = runs.var(ddof=1) / (V / m)
    assert 0.35 <= ratio <= 2.2, \
        f"over seeds s = 0..{reps - 1}, the variance of {call} is {ratio:.3g} times that of " \
        f"{m} independent {dist} probes" + (
            ": draw fresh probes from a generator seeded by `seed`" if ratio < 0.35 else
            ": draw a new probe for every matvec, and average (do not sum) them")


@check(exercise="1.1", weight=2)
def test_rademacher_estimates_are_unbiased_with_the_right_variance(student):
    """over 60 seeds, Rademacher estimates average to the trace with variance V / m"""
    # Catches: seed_ignored (zero variance), one_probe_reused (m times the variance),
    # sum_not_mean (biased); see the module docstring for the bounds.
    A = fx.with_spectrum(torch.linspace(-2.0, 4.0, 40), seed=2103)
    _assert_unbiased_with_variance(_runs(student, A, 8, 60, "rademacher"), A, 8, "rademacher")


@check(exercise="1.1", weight=2)
def test_gaussian_probes_when_asked(student):
    """dist='gaussian' draws Gaussian probes: unbiased, variance 2 ||A||_F^2 / m"""
    # Catches: dist_ignored (Rademacher for 'gaussian': exact on a diagonal, so the variance
    # ratio is 0), unit_gaussian (probes normalized to norm 1: biased by a factor 1/dim).
    D = _diagonal()
    _assert_unbiased_with_variance(_runs(student, D, 8, 60, "gaussian"), D, 8, "gaussian")


# --- 1.2 the 1/sqrt(m) law ----------------------------------------------------------


@check(exercise="1.2", weight=3)
def test_rms_errors_follow_the_theory(student):
    """rms_errors match sqrt(Var / m) / |tr H| at every probe count"""
    # Catches: absolute_errors (not relative), mean_error_not_rms (signed errors cancel),
    # one_seed_for_all_reps; zeros, constants and fabricated 1/sqrt(m) curves of the
    # wrong height. With reps = 40, 40 * rms^2 / sigma_m^2 ~ chi2(40) for normal
    # estimates: the band [0.5, 1.7] on rms / sigma_m fails with probability 2e-4
    # (chi2(40) < 10 or > 115.6) at each of the 7 counts, 1.4e-3 in all, the Berry-Esseen
    # error of a single probe's quadratic form in 730 coordinates included.
    _, _, _, H, eigs = notebook_problem()
    counts = [int(c) for c in numbers(student.get("probe_counts"), "probe_counts")]
    assert counts == [1, 2, 4, 8, 16, 32, 64], \
        f"probe_counts is {counts}; keep the notebook's [1, 2, 4, ..., 64]"
    rms = numbers(student.get("rms_errors"), "rms_errors", length=len(counts))
    tr, V = eigs.sum().item(), ref.hutchinson_variance(H)
    for m, got in zip(counts, rms):
        ratio = got / (math.sqrt(V / m) / abs(tr))
        assert 0.5 <= ratio <= 1.7, \
            f"rms_errors at m = {m} probes is {got:.4g}, {ratio:.3g} times the theory " \
            "sqrt(Var / m) / |tr H|: it should be the root mean square, over the seeds " \
            "0..reps-1, of the relative error |estimate - tr H| / |tr H|"


@check(exercise="1.2", weight=1)
def test_the_plot_shows_the_measured_errors(notebook, student):
    """the log-log figure plots rms_errors against probe_counts"""
    # Catches: the plot left out or drawn from other numbers.
    rms = numbers(student.get("rms_errors"), "rms_errors")
    found = False
    for figure in notebook.figures:
        for axes in figure.axes:
            for line in axes.get("lines", []):
                ys = [float(v) for v in line.get("y", [])]
                if len(ys) == len(rms) and all(abs(a - b) <= 1e-6 * max(abs(b), 1e-12)
                                               for a, b in zip(ys, rms)):
                    found = axes.get("xscale") == "log" and axes.get("yscale") == "log"
    assert found, "no log-log figure of the notebook plots rms_errors (the cell's " \
                  "plt.loglog(probe_counts, rms_errors, ...))"


@check(exercise="1.2", weight=1)
def test_fitted_slope_is_near_minus_one_half(student):
    """the fitted log-log slope of rms_errors is near -1/2"""
    # Catches: errors that do not fall with m (one probe reused, variance fixed).
    rms = numbers(student.get("rms_errors"), "rms_errors", length=7)
    assert min(rms) > 0, "rms_errors has zero or negative entries"
    slope = float(np.polyfit(np.log([1, 2, 4, 8, 16, 32, 64]), np.log(rms), 1)[0])
    assert -0.7 <= slope <= -0.3, \
        f"the log-log slope of rms_errors against the probe counts is {slope:+.3f}; " \
        "Hutchinson's error falls like 1/sqrt(m), a slope of -0.5"
