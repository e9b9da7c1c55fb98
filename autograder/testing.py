"""What a suite author imports: the one public module for hidden and visible checks.

A check is a pytest test marked with `check`::

    from autograder.testing import Student, check, vector

    @check(exercise="2.1", weight=2)
    def test_power_iteration_finds_the_top_eigenvalue(student: Student):
        \"\"\"power_iteration returns the largest-magnitude eigenvalue\"\"\"
        A = ...
        op = student.operator(lambda v: A @ v, dim=30, budget=610, name="the matvec",
                              hint="power iteration spends one matvec per iteration")
        eig, vec, history = student.call("power_iteration", op, 30, seed=0)
        ...
        assert abs(number(eig, "the eigenvalue") - 8.0) < 1e-4, "the eigenvalue is off by ..."

The exercise scores its points times the weight fraction of its checks that
pass. The test's docstring (first line) names the check for the student;
an `AssertionError`'s text, or a `StudentError` raised for you by the
engine, is the message the student reads. Asserts run in plain mode, so no
hidden value is introspected into a message: say what was observed on the
student's answer (a norm, a count, a shape) in the sentence you write.

Fixtures the engine provides:

- `student` (`Student`): a fresh fork of the executed notebook per check.
  `student.call(name, *args, **kwargs)` calls a notebook function with plain
  data (tensors, numbers, strings, containers, small `nn.Sequential` models)
  and `Operator`s made by `student.operator(...)`; `student.get(name)`
  reads a variable. What comes back is plain data, never a student object.
  After a call, `student.changed` names what the call changed of its inputs
  (`["v", "model's 0.weight"]`), beyond the rounding an undone in-place
  perturbation leaves: a function that must not change its inputs is
  checked with it.
- `notebook` (`Notebook`): how the cells ran (`notebook.cells`, `CellRun`
  records) and what they drew (`notebook.figures`, `Figure` records with
  line data).

A reference computation whose result depends only on its arguments (an
exact Hessian's spectrum) is marked `@answer`: its results are stored by the
content of the arguments, in the assignment's answer key (written when the
master is graded by `autograder costs` or `validate`) and in memory, so
that a cohort computes each truth once::

    @answer
    def spectrum(model, X, y):
        return torch.linalg.eigvalsh(reference.dense_hessian(model, X, y))

The readers (`number`, `vector`, `numbers`, `matrix`) turn an answer into
plain floats or float64 tensors, accepting every container a correct style
may return, or fail the check with a sentence that says what was found.
"""

import math

import pytest
import torch

from .answers import answer
from .sandbox.calls import (
    MissingName,
    Operator,
    OperatorBudgetExceeded,
    StudentCrash,
    StudentError,
    StudentProxy,
    StudentTimeout,
    UnsupportedReturn,
)
from .sandbox.records import CellRun, CellStatus, Figure
from .sandbox.session import NotebookSession

__all__ = ["CellRun", "CellStatus", "Figure", "MissingName", "Notebook", "Operator",
           "OperatorBudgetExceeded", "Student", "StudentCrash", "StudentError",
           "StudentTimeout", "UnsupportedReturn", "answer", "check", "matrix", "number", "numbers",
           "vector"]

check = pytest.mark.check
"""`@check(exercise="2.1", weight=1)`: the test is a graded check of that exercise."""

Student = StudentProxy
Notebook = NotebookSession

# Imaginary parts up to this fraction of the largest real part are rounding noise
# (torch.linalg.eigvals of a symmetric matrix returns complex values with ~1e-16 of it).
IMAGINARY_NOISE = 1e-6


def _real(value: torch.Tensor, what: str) -> torch.Tensor:
    """A complex tensor whose imaginary parts are rounding noise, as its real part."""
    if not value.is_complex() or not value.numel():
        return value
    scale = max(1.0, value.real.abs().max().item())
    largest = value.imag.abs().max().item()
    assert largest <= IMAGINARY_NOISE * scale, \
        f"{what} has imaginary parts up to {largest:.2g}; the values should be real"
    return value.real


def number(value, what: str) -> float:
    """A scalar answer (int, float, or a one-element tensor of any dtype) as a finite float."""
    if isinstance(value, torch.Tensor):
        assert value.numel() == 1, \
            f"{what} should be a single number, got a tensor of shape {tuple(value.shape)}"
        value = _real(value, what).item()
    assert isinstance(value, (int, float)) and not isinstance(value, bool), \
        f"{what} should be a number, got {type(value).__name__}"
    assert math.isfinite(value), f"{what} is NaN or infinite"
    return float(value)


def vector(value, what: str, length: int | None = None) -> torch.Tensor:
    """A list, tuple or tensor of numbers (any float dtype, any shape) as a flat,
    finite float64 tensor, of `length` entries if given."""
    if isinstance(value, (list, tuple)):
        value = torch.tensor([number(v, f"each entry of {what}") for v in value],
                             dtype=torch.float64)
    assert isinstance(value, torch.Tensor), \
        f"{what} should be a list or tensor of numbers, got {type(value).__name__}"
    value = _real(value.detach(), what).reshape(-1).double()
    if length is not None:
        assert value.numel() == length, \
            f"{what} should have {length} entries, got {value.numel()}"
    assert torch.isfinite(value).all(), f"{what} contains NaN or infinite entries"
    return value


def numbers(value, what: str, length: int | None = None) -> list[float]:
    """A sequence of numbers as a list of floats (see `vector`)."""
    return vector(value, what, length).tolist()


def matrix(value, what: str, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """A 2-D answer as a finite float64 tensor of `shape` if given; a list of
    equal-length rows (lists or tensors) is stacked."""
    if isinstance(value, (list, tuple)):
        rows = [vector(row, f"each row of {what}") for row in value]
        assert rows and len({r.numel() for r in rows}) == 1, \
            f"{what} should have rows of equal length"
        value = torch.stack(rows)
    assert isinstance(value, torch.Tensor), \
        f"{what} should be a matrix (a 2-D tensor), got {type(value).__name__}"
    assert value.dim() == 2, f"{what} should be 2-D, got shape {tuple(value.shape)}"
    if shape is not None:
        assert tuple(value.shape) == tuple(shape), \
            f"{what} should have shape {tuple(shape)}, got {tuple(value.shape)}"
    value = _real(value.detach(), what).double()
    assert torch.isfinite(value).all(), f"{what} contains NaN or infinite entries"
    return value
