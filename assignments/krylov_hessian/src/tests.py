"""Visible inline tests the notebook calls after each exercise.

They check behaviour on small inputs of their own (never the notebook's),
and every failure says what was called, what came back and what to look
at. Passing them is necessary, not sufficient: the grader runs further
hidden checks on other models, sizes and spectra.
"""

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .tiny_models import count_params, toy_mlp


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _dense_hessian(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss Hessian, materialized the slow way; fine for 254 parameters."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, params, (X,)), y)

    return torch.autograd.functional.hessian(loss, theta)


def test_hvp(hvp_fn, atol: float = 1e-4) -> None:
    """Check hvp_fn(model, X, y, v) against H @ v for a materialized Hessian."""
    name = getattr(hvp_fn, "__name__", "your HVP")
    g = torch.Generator().manual_seed(1234)
    model = toy_mlp(seed=3)
    X = torch.randn(16, 20, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    P = count_params(model)
    H = _dense_hessian(model, X, y)
    before = [p.detach().clone() for p in model.parameters()]
    u, v = torch.randn(P, generator=g), torch.randn(P, generator=g)
    v_copy = v.clone()

    hv = hvp_fn(model, X, y, v)
    _check(isinstance(hv, torch.Tensor),
           f"{name}(model, X, y, v) returned {type(hv).__name__}; return a torch.Tensor.")
    _check(hv.shape == (P,),
           f"{name}(model, X, y, v) returned shape {tuple(hv.shape)}; expected a flat vector of "
           f"shape ({P},), one entry per parameter (concatenate in model.parameters() order).")
    _check(bool(torch.isfinite(hv).all()), f"{name} returned NaN or inf entries.")
    _check(torch.equal(v, v_copy), f"{name} modified its input v in place; work on a copy.")
    _check(all(torch.equal(a, b.detach()) for a, b in zip(before, model.parameters())),
           f"{name} changed the model's parameters; an HVP must leave the model as it was.")
    expected = H @ v
    err = (hv.detach() - expected).abs().max().item()
    scale = expected.abs().max().item()
    _check(err <= atol + 1e-3 * scale,
           f"{name} disagrees with H @ v: max abs error {err:.2e} (tolerance {atol:.0e}, "
           f"entries up to {scale:.2e}). Check that you differentiate the mean cross-entropy "
           f"loss and that the second gradient is of g . v, not of g.")
    hu = hvp_fn(model, X, y, u)
    asym = abs(torch.dot(u, hv.detach()) - torch.dot(v, hu.detach())).item()
    _check(asym <= 1e-3 * (1 + abs(torch.dot(u, hv.detach()).item())),
           f"{name} is not symmetric: u.(Hv) and v.(Hu) differ by {asym:.2e}; a Hessian is.")
    h2v = hvp_fn(model, X, y, 2 * v)
    _check(torch.allclose(h2v.detach(), 2 * hv.detach(), atol=2 * atol, rtol=1e-3),
           f"{name} is not linear in v: H(2v) != 2 Hv. Do not normalize v inside the HVP.")
    print(f"✓ test_hvp passed for {name}")


def _rotated(eigs: list[float], seed: int) -> torch.Tensor:
    """Symmetric matrix with the given spectrum in a random orthonormal basis."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g))[0]
    return Q @ torch.diag(torch.tensor(eigs)) @ Q.T


def test_power_iteration(power_fn) -> None:
    """Check power_fn(matvec, dim, num_iters, seed) -> (eigenvalue, eigenvector)."""
    cases = [
        ("diagonal, top eigenvalue 5", torch.diag(torch.tensor([5.0, 2.0] + [1.0] * 8)), 5.0),
        ("rotated, top eigenvalue 4", _rotated([4.0, 1.5, 1.0, 0.5, 0.2, 0.1], seed=5), 4.0),
        ("negative dominant eigenvalue -6", _rotated([-6.0, 3.0, 2.0, 1.0, -1.0], seed=6), -6.0),
    ]
    for label, A, lam in cases:
        dim = A.shape[0]
        calls = []

        def matvec(x, A=A, calls=calls):
            calls.append(1)
            return A @ x

        out = power_fn(matvec, dim, 300, 0)
        _check(isinstance(out, (tuple, list)) and len(out) == 2,
               f"power_iteration must return (eigenvalue, eigenvector, history); on the "
               f"{label} case got {type(out).__name__}.")
        eig, vec = out
        eig = float(eig)
        _check(abs(eig - lam) < 1e-3 * abs(lam),
               f"On the {label} case power_iteration returned eigenvalue {eig:.5f}, expected "
               f"{lam}. Use the Rayleigh quotient v.(Av) of a unit v: it keeps the sign.")
        _check(isinstance(vec, torch.Tensor) and vec.shape == (dim,),
               f"On the {label} case the eigenvector should be a tensor of shape ({dim},).")
        _check(abs(vec.norm().item() - 1) < 1e-3,
               f"On the {label} case the eigenvector has norm {vec.norm().item():.4f}; "
               f"normalize it to unit length.")
        residual = (A @ vec - lam * vec).norm().item()
        _check(residual < 1e-2 * abs(lam),
               f"On the {label} case ||A v - lambda v|| = {residual:.2e}: the vector returned "
               f"is not the top eigenvector.")
        _check(len(calls) <= 302,
               f"On the {label} case power_iteration made {len(calls)} matvec calls for "
               f"num_iters=300; use one matvec per iteration.")
    # Gap ratio 0.99: far from converged after 80 steps, so nothing stops early,
    # and 40 more iterations must cost exactly 40 more matvecs.
    A = _rotated([10.0, 9.9] + [1.0] * 6, seed=7)
    counts = []
    for num_iters in (40, 80):
        calls = []
        power_fn(lambda x, calls=calls: calls.append(1) or A @ x, A.shape[0], num_iters, 0)
        counts.append(len(calls))
    _check(counts[1] - counts[0] == 40,
           f"power_iteration made {counts[0]} matvec calls for num_iters=40 and {counts[1]} "
           f"for num_iters=80; each iteration should cost exactly one matvec.")
    print("✓ test_power_iteration passed")
