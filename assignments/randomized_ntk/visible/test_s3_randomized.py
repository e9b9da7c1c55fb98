"""Visible checks, Section 3: the range finder, randomized eigh, and the comparison."""

import torch
from visible_checks import counted, notebook_hessian, spectrum

from autograder.testing import check, matrix, vector


@check(exercise="3.1", weight=1)
def test_range_of_a_low_rank_matrix(student):
    """Q is orthonormal, spans a rank-3 matrix's range, in (2q + 1)(k + p) matvecs"""
    A = spectrum([5.0, -3.0, 1.0] + [0.0] * 37, seed=2)
    op = counted(student, A, 15, "(2q + 1)(rank + oversample) matvecs")
    Q = matrix(student.call("randomized_range_finder", op, 40, 3, oversample=2,
                            power_iters=1, seed=0), "Q", shape=(40, 5))
    assert op.calls == 15, f"the range finder called the matvec {op.calls} times, not 15"
    assert (Q.T @ Q - torch.eye(5, dtype=torch.float64)).abs().max().item() <= 1e-4, \
        "Q's columns are not orthonormal"
    residual = torch.linalg.matrix_norm(A - Q @ (Q.T @ A)).item()
    assert residual <= 1e-4, f"||A - QQ^T A||_F = {residual:.2g} on a rank-3 matrix"


@check(exercise="3.2", weight=1)
def test_eigenpairs_of_a_low_rank_matrix(student):
    """randomized_eigh finds the eigenvalues of a rank-3 matrix by magnitude, with signs"""
    A = spectrum([5.0, -3.0, 1.0] + [0.0] * 37, seed=3)
    op = counted(student, A, 20, "(2q + 2)(rank + oversample) matvecs")
    vals, vecs = student.call("randomized_eigh", op, 40, 3, oversample=2, power_iters=1, seed=0)
    vals = vector(vals, "eigvals", length=3)
    matrix(vecs, "eigvecs", shape=(40, 3))
    want = torch.tensor([5.0, -3.0, 1.0], dtype=torch.float64)
    assert (vals - want).abs().max().item() <= 1e-4, \
        f"randomized_eigh returned {[round(v, 4) for v in vals.tolist()]}, not [5, -3, 1]"


@check(exercise="3.3", weight=1)
def test_lanczos_top5(student):
    """lanczos_top5 match the Hessian's top-5 by magnitude"""
    _, eigs = notebook_hessian()
    want = eigs[eigs.abs().argsort(descending=True)][:5]
    got = vector(student.get("lanczos_top5"), "lanczos_top5", length=5)
    assert ((got - want).abs() / want.abs()).max().item() <= 1e-4, \
        "lanczos_top5 differ from the Hessian's top-5 by magnitude"
