"""Visible checks, Section 6: Jacobians, the NTK and its product on a tiny MLP."""

import itertools

import torch

from autograder.testing import check, matrix, numbers, vector


def _tiny():
    g = torch.Generator().manual_seed(6)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                                torch.nn.Linear(4, 2)).double()
    return model, torch.randn(3, 3, generator=g, dtype=torch.float64)


def _jacobian(model, X):
    rows = []
    for i in range(X.shape[0]):
        for c in range(2):
            model.zero_grad()
            model(X[i:i + 1])[0, c].backward()
            rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return torch.stack(rows)


@check(exercise="6.1", weight=1)
def test_jacobians(student):
    """per_example_jacobians matches backward passes, one per output"""
    model, X = _tiny()
    J = torch.as_tensor(student.call("per_example_jacobians", model, X))
    assert tuple(J.shape) == (3, 2, 26), f"shape {tuple(J.shape)}, not (3, 2, 26)"
    assert torch.allclose(J.double().reshape(6, 26), _jacobian(model, X), atol=1e-10)


@check(exercise="6.2", weight=1)
def test_ntk(student):
    """empirical_ntk is J J^T, example-major"""
    model, X = _tiny()
    J = _jacobian(model, X)
    K = matrix(student.call("empirical_ntk", model, X), "the NTK", shape=(6, 6))
    assert torch.allclose(K, J @ J.T, atol=1e-10), "empirical_ntk is not J J^T"


@check(exercise="6.3", weight=1)
def test_ntk_vp(student):
    """ntk_vp(model, X, v) is J J^T v"""
    model, X = _tiny()
    J = _jacobian(model, X)
    v = torch.arange(6, dtype=torch.float64)
    got = vector(student.call("ntk_vp", model, X, v), "ntk_vp", length=6)
    assert torch.allclose(got, J @ (J.T @ v), atol=1e-10), "ntk_vp is not J J^T v"


@check(exercise="6.4", weight=1)
def test_ntk_top5_descending(student):
    """ntk_top5 holds five positive values, descending"""
    values = numbers(student.get("ntk_top5"), "ntk_top5", length=5)
    assert all(a >= b > 0 for a, b in itertools.pairwise(values)), f"ntk_top5 = {values}"


@check(exercise="6.5", weight=1)
def test_drift_shrinks_with_width(student):
    """the widest network's kernel drifts least"""
    drifts = numbers(student.get("drifts"), "drifts", length=4)
    assert drifts[-1] < drifts[0], f"drifts = {drifts}"
