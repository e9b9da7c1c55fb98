"""What the visible checks of several sections share: the matrices and Hessians
they compare answers with, and the helpers that call your functions on a
counting matvec and read their answers (the generic answer readers live in
`autograder.testing`)."""

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian

from autograder.testing import vector


def rotated(eigs: list[float], seed: int) -> torch.Tensor:
    """Q diag(eigs) Q^T in fp64 for a random orthogonal Q drawn from `seed`."""
    n = len(eigs)
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    return Q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ Q.T


def dense_hessian(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy Hessian by torch.func.hessian, in fp64."""
    model = copy.deepcopy(model).double()
    shapes = [(name, p.shape) for name, p in model.named_parameters()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in shapes:
            params[name] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, params, (X.double(),)), y)

    return hessian(loss)(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))


def signed_top(eigs: torch.Tensor, k: int) -> torch.Tensor:
    """The k eigenvalues of largest magnitude, signed, in descending magnitude."""
    return eigs[eigs.abs().argsort(descending=True)][:k]


def _signature(name: str, n: int, kwargs: dict) -> str:
    return f"{name}(matvec, {n}" + "".join(f", {k}={v!r}" for k, v in kwargs.items()) + ")"


def call_with_matvec(student, name: str, A: torch.Tensor, *args, budget: int, **kwargs):
    """Call `name(matvec, n, *args, **kwargs)` with a matvec for A that counts its calls."""
    n = A.shape[0]
    op = student.operator(lambda v: A @ v, dim=n, dtype=A.dtype, budget=budget,
                          name="the matvec", hint="spend one matvec per iteration")
    call = _signature(name, n, dict(zip(("k",), args)) | kwargs)
    return student.call(name, op, n, *args, **kwargs), op, call


def lanczos(student, name: str, A: torch.Tensor, k: int, *, seed: int = 0,
            budget: int | None = None, **kwargs):
    """Run lanczos_no_reorth or lanczos_track_orth on a matvec for A (in A's dtype).

    The default budget, 2k + 2 matvecs, lets a wasteful loop through (only the
    matvec-count check is strict) but not reading the matrix out of the matvec.
    """
    dim = A.shape[0]
    op = student.operator(lambda v: A @ v, dim=dim, dtype=A.dtype,
                          budget=budget if budget is not None else 2 * k + 2, name="the matvec",
                          hint="Lanczos spends one matvec per step")
    call = f"{name}(matvec, {dim}, {k}" + "".join(
        f", {key}={value!r}" for key, value in kwargs.items()) + f", seed={seed})"
    result = student.call(name, op, dim, k, seed=seed, **kwargs)
    count, names = (2, "(ritz_vals, Q)") if name == "lanczos_no_reorth" \
        else (3, "(ritz, Q, orth_history)")
    assert isinstance(result, (tuple, list)) and len(result) == count, \
        f"{call} should return a tuple {names}, got {type(result).__name__}" + (
            f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
    return tuple(result), op, call


def ritz_values(value, k: int, call: str) -> torch.Tensor:
    """The Ritz values, ascending, whatever order or container was used."""
    return vector(value, f"the Ritz values returned by {call}", k).sort().values


def basis(value, dim: int, k: int, call: str) -> torch.Tensor:
    """Q as a (dim, k) fp64 tensor; a list of k basis vectors is stacked as columns."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, torch.Tensor) and tuple(v.shape) == (dim,) for v in value):
        value = torch.stack(list(value), dim=1)
    assert isinstance(value, torch.Tensor), \
        f"the basis Q returned by {call} should be a tensor, got {type(value).__name__}"
    shape = tuple(value.shape)
    assert not (shape == (k, dim) and k != dim), \
        f"Q returned by {call} has shape {shape}: return the basis vectors as the columns " \
        f"of a ({dim}, {k}) tensor"
    assert shape == (dim, k), \
        f"Q returned by {call} should have shape ({dim}, {k}), one column per step, got {shape}"
    Q = value.detach().double()
    assert torch.isfinite(Q).all(), f"Q returned by {call} contains NaN or infinite entries"
    return Q


def orth_error(Q: torch.Tensor) -> float:
    """max |(Q^T Q - I)_ij|."""
    return (Q.T @ Q - torch.eye(Q.shape[1], dtype=Q.dtype)).abs().max().item()


def assert_whole_spectrum(ritz: torch.Tensor, A: torch.Tensor, call: str,
                          advice: str = "check how T is assembled from the alphas and "
                                        "betas") -> None:
    eigs = torch.linalg.eigvalsh(A.double())
    # Correct fp32 work: ~1e-6 of the largest |eigenvalue|.
    assert (ritz - eigs).abs().max().item() <= 1e-3 * eigs.abs().max().item(), \
        f"with k = dim, the Ritz values returned by {call} are not all the eigenvalues of " \
        f"the matrix: {advice}"


def top_magnitudes(values: torch.Tensor, n: int) -> torch.Tensor:
    return values.abs().sort(descending=True).values[:n]


def notebook_toy(student) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model, X, y = student.get("model"), student.get("X"), student.get("y")
    assert isinstance(model, nn.Module) and isinstance(X, torch.Tensor) \
        and isinstance(y, torch.Tensor), \
        "model, X and y should still be Section 1's toy MLP and its batch when the notebook " \
        "ends: do not reassign them"
    return model, X, y.long()
