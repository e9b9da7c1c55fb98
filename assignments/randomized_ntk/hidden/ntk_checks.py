"""What the hidden checks of several sections share: counted operators over known
matrices, the notebook's own problem rebuilt in the grader, and the statistics
the randomized checks use.

Statistical tolerances. The grader's seeds are fixed, so a verdict never
changes between two gradings of one notebook; but a correct implementation
may draw its probes in any order or precision, so each random check must pass
for (almost) every way of drawing them. Each bound below is stated with its
failure probability for one correct implementation, and
tests/test_verdicts_robustness_ntk.py re-grades correct styles over many
seed offsets to show no flaky verdict.
"""

import functools
import math

import torch

from autograder.testing import Operator
from fixtures import ntk_models as fx
from reference import randomized_ntk as ref


def matrix_operator(student, A: torch.Tensor, budget: int, hint: str,
                    name: str = "the matvec") -> Operator:
    """A counted, budgeted operator for A that takes one vector of shape (n,)."""
    return student.operator(lambda v: A @ v, dim=A.shape[0], dtype=A.dtype, budget=budget,
                            name=name, hint=hint)


@functools.cache
def notebook_problem():
    """Section 0's model, batch, Hessian and its eigenvalues (fp64), rebuilt in the grader."""
    model, X, y = fx.notebook_problem()
    H = ref.dense_hessian(model.double(), X.double(), y)
    return model, X, y, H, torch.linalg.eigvalsh(H)


@functools.cache
def notebook_gauss_newton() -> torch.Tensor:
    """The eigenvalues of Section 4's Gauss-Newton matrix, descending, fp64, clamped at 0."""
    model, X, y = fx.notebook_problem()
    G = ref.dense_gauss_newton(model.double(), X.double(), y)
    return torch.linalg.eigvalsh(G).flip(0).clamp_min(0.0)


def top_by_magnitude(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k values of largest magnitude, signed, in descending magnitude."""
    return values[values.abs().argsort(descending=True)][:k]


def rms_over(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))
