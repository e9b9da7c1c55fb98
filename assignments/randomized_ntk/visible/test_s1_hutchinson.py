"""Visible checks, Section 1: Hutchinson on a diagonal matrix, and the notebook's errors."""

import math

import torch
from visible_checks import counted, notebook_hessian

from autograder.testing import check, number, numbers


@check(exercise="1.1", weight=1)
def test_rademacher_exact_on_a_diagonal(student):
    """Rademacher probes give the trace of a diagonal matrix exactly, one matvec each"""
    D = torch.diag(torch.linspace(-1.0, 4.0, 20, dtype=torch.float64))
    op = counted(student, D, 5, "one matvec per probe")
    got = number(student.call("hutchinson_trace", op, 20, 5, seed=0), "the estimate")
    assert op.calls == 5, f"hutchinson_trace(matvec, 20, 5) called the matvec {op.calls} times"
    assert abs(got - 30.0) <= 1e-4, \
        f"hutchinson_trace on diag(linspace(-1, 4, 20)) returned {got:.6g}, not its trace 30"


@check(exercise="1.2", weight=1)
def test_rms_errors_near_the_theory(student):
    """rms_errors are within a factor 2 of sqrt(Var / m) / |tr H|"""
    H, eigs = notebook_hessian()
    V = 2 * ((H ** 2).sum() - (H.diagonal() ** 2).sum()).item()
    rms = numbers(student.get("rms_errors"), "rms_errors", length=7)
    for m, got in zip([1, 2, 4, 8, 16, 32, 64], rms):
        theory = math.sqrt(V / m) / abs(eigs.sum().item())
        assert 0.5 <= got / theory <= 2, \
            f"rms_errors at m = {m} is {got:.3g}, the theory {theory:.3g}"
