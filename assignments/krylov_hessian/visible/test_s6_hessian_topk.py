"""Visible checks, Section 6: the tiny MLP's Hessian, at initialization and after training.

The truth is the loss Hessian materialized here in fp64 and handed to
torch.linalg.eigvalsh: in closed form (the chain rule written out for
Linear-Tanh-Linear, the same matrix as torch.func.hessian in a fraction of
the time) for the 1,930-parameter tiny MLP on the 500 MNIST samples.
"""

import functools

import torch
import torch.nn.functional as F
from src.data import load_mnist_7x7
from src.tiny_models import tiny_mlp
from torch import nn
from visible_checks import top_magnitudes

from autograder.testing import check, vector


def mlp_hessian(model: nn.Sequential, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy Hessian of Linear -> Tanh -> Linear, in closed form, fp64.

    Entries are in model.parameters() order, as torch.func.hessian gives them.
    Each layer's weight and bias are handled together as U = [W | b] acting on
    the input with a 1 appended. With z the logits, p = softmax(z), S = diag(p)
    - p p^T and delta = p - onehot(y), the Hessian is the mean over samples of
    J^T S J (J = dz/dtheta) plus the terms where the loss is curved through
    tanh: delta^T W2 diag(tanh'') on the first layer, and delta times tanh'
    between the two layers.
    """
    first, _, second = model
    W1, b1 = first.weight.detach().double(), first.bias.detach().double()
    W2, b2 = second.weight.detach().double(), second.bias.detach().double()
    X = X.detach().double()
    n, (hid, inp), out = len(y), W1.shape, W2.shape[0]
    ones = torch.ones(n, 1, dtype=torch.float64)
    xt = torch.cat([X, ones], dim=1)                      # (n, inp + 1)
    h = torch.tanh(X @ W1.T + b1)
    ht = torch.cat([h, ones], dim=1)                      # (n, hid + 1)
    p = torch.softmax(h @ W2.T + b2, dim=1)
    S = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    delta = p - F.one_hot(y, out).double()
    d1 = 1 - h ** 2                                       # tanh'
    d2 = -2 * h * d1                                      # tanh''
    # dz_k / dU1[a, i] = W2[k, a] d1[a] xt[i];  dz_k / dU2[l, m] = [k = l] ht[m]
    C = d1[:, :, None] * torch.einsum("ka,nkl->nal", W2, S)          # diag(d1) W2^T S
    B = torch.einsum("nal,lb->nab", C, W2) * d1[:, None, :]          # ... W2 diag(d1)

    def outer(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (u[:, :, None] * w[:, None, :]).reshape(n, -1)

    def summed(coef: torch.Tensor, features: torch.Tensor, shape: tuple) -> torch.Tensor:
        """sum_n coef[n, r, s] features[n, i, j], as (r, i, s, j)."""
        return (coef.reshape(n, -1).T @ features).reshape(shape).permute(0, 2, 1, 3)

    i1, i2, rows = inp + 1, hid + 1, torch.arange(hid)
    H11 = summed(B, outer(xt, xt), (hid, hid, i1, i1)).contiguous()
    H11[rows, :, rows, :] += ((delta @ W2) * d2).T.matmul(outer(xt, xt)).reshape(hid, i1, i1)
    H12 = summed(C, outer(xt, ht), (hid, out, i1, i2)).contiguous()
    H12[rows, :, :, rows] += (outer(d1, xt).T @ delta).reshape(hid, i1, out)
    H22 = summed(S, outer(ht, ht), (out, out, i2, i2))
    n1, n2 = hid * i1, out * i2
    H11, H12, H22 = H11.reshape(n1, n1), H12.reshape(n1, n2), H22.reshape(n2, n2)
    H = torch.cat([torch.cat([H11, H12], dim=1), torch.cat([H12.T, H22], dim=1)]) / n
    # From [W1 | b1], [W2 | b2] row by row to W1, b1, W2, b2 flattened in turn.
    a, i = torch.meshgrid(torch.arange(hid), torch.arange(i1), indexing="ij")
    k, j = torch.meshgrid(torch.arange(out), torch.arange(i2), indexing="ij")
    offset = hid * inp + hid
    order = torch.cat([torch.where(i < inp, a * inp + i, hid * inp + a).reshape(-1),
                       torch.where(j < hid, offset + k * hid + j,
                                   offset + out * hid + k).reshape(-1)])
    result = torch.empty_like(H)
    result[order[:, None], order[None, :]] = H
    return result


@functools.cache
def _mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The notebook's training data, load_mnist_7x7(n=500, seed=0)."""
    return load_mnist_7x7(500, 0)


@functools.cache
def _init_top(n: int) -> torch.Tensor:
    """The n largest |eigenvalues| of the Hessian of tiny_mlp(seed=0) on the 500 samples."""
    X, y = _mnist()
    return top_magnitudes(torch.linalg.eigvalsh(mlp_hessian(tiny_mlp(seed=0), X, y)), n)


def _model_mnist(student) -> nn.Sequential:
    model = student.get("model_mnist")
    assert isinstance(model, nn.Sequential) and len(model) == 3 \
        and [type(m) for m in model] == [nn.Linear, nn.Tanh, nn.Linear] \
        and sum(p.numel() for p in model.parameters()) == 1930, \
        "model_mnist should still be the tiny_mlp of Exercise 6.0 (1,930 parameters) " \
        "when the notebook ends: do not reassign it"
    return model


# --- Exercises 6.0 and 6.1 -------------------------------------------------------------


def _ritz_top(student, name: str, n: int) -> torch.Tensor:
    values = vector(student.get(name), name)
    assert values.numel() >= 10, \
        f"{name} should hold the 30 Ritz values (at least 10), got {values.numel()}"
    return top_magnitudes(values, n)


@check(exercise="6.0", weight=1)
def test_ritz_init_holds_the_ritz_values(student):
    """ritz_init holds at least 10 finite Ritz values"""
    _ritz_top(student, "ritz_init", 10)


@check(exercise="6.0", weight=2)
def test_ritz_init_top5_match_the_hessian(student):
    """the 5 largest |ritz_init| match the Hessian's top-5 |eigenvalues| at initialization"""
    got = _ritz_top(student, "ritz_init", 5)
    want = _init_top(5)
    # 30 selective-reorth steps resolve the top 5 to ~1e-5; without reorthogonalization
    # a ghost copy of the top eigenvalue shifts the others by ~20%.
    assert ((got - want).abs() <= 1e-2 * want).all(), \
        "the 5 largest |ritz_init| do not match the top-5 |eigenvalues| of the Hessian of " \
        "tiny_mlp(seed=0) on the 500 samples: run lanczos_track_orth with reorth='selective', " \
        "k=30, on hvp_double_backward of the untrained model"


@check(exercise="6.1", weight=1)
def test_ritz_trained_holds_the_ritz_values_of_a_trained_model(student):
    """ritz_trained holds at least 10 finite Ritz values, and model_mnist has been trained"""
    _ritz_top(student, "ritz_trained", 10)
    model = _model_mnist(student)
    X, y = _mnist()
    with torch.no_grad():
        trained = F.cross_entropy(model(X), y).item()
        initial = F.cross_entropy(tiny_mlp(seed=0)(X), y).item()
    # 200 SGD steps at lr 0.1 take the loss from ~2.3 to ~0.5.
    assert trained < 0.9 * initial, \
        "model_mnist still looks untrained: run the 200 SGD steps of Exercise 6.1 on it"


@check(exercise="6.1", weight=3)
def test_ritz_trained_top5_match_the_trained_hessian(student):
    """the 5 largest |ritz_trained| match the Hessian of your trained model_mnist"""
    got = _ritz_top(student, "ritz_trained", 5)
    X, y = _mnist()
    want = top_magnitudes(torch.linalg.eigvalsh(mlp_hessian(_model_mnist(student), X, y)), 5)
    # Correct code: ~1e-5 relative; the init model or a minibatch Hessian is >= 20% off.
    assert ((got - want).abs() <= 2e-2 * want).all(), \
        "the 5 largest |ritz_trained| do not match the Hessian of your trained model_mnist on " \
        "X_train, y_train: after the SGD steps run lanczos_track_orth with " \
        "reorth='selective', k=30, on hvp_double_backward of model_mnist over all 500 samples"
