"""Trusted reference implementations for Notebook 2, "Randomized methods and the empirical NTK".

The grader runs these on the same hidden inputs it hands to a student's
functions and compares the answers, or the statistics of many answers, so
they favour clarity and numerical care over speed. They import nothing from
the notebook or from `src/`.

Every randomized method draws its probes from a private generator seeded by
its `seed` argument (never the global RNG), in the matvec's dtype, and
spends a fixed, stated number of matvecs: the checks budget exactly that.
A matvec takes one vector of shape (dim,); blocks are applied column by
column, as an HVP would be.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

Matvec = Callable[[torch.Tensor], torch.Tensor]

# --- shared helpers ------------------------------------------------------------------


def apply_block(matvec: Matvec, V: torch.Tensor) -> torch.Tensor:
    """A @ V for a (dim, k) block, one matvec per column (k matvecs)."""
    return torch.stack([matvec(V[:, j]) for j in range(V.shape[1])], dim=1)


def rademacher(shape: tuple[int, ...], generator: torch.Generator,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Entries +1 or -1 with probability 1/2 each."""
    return (2 * torch.randint(0, 2, shape, generator=generator) - 1).to(dtype)


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters as one detached flat vector, in model.parameters() order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _unflatten(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    params, start = {}, 0
    for name, p in model.named_parameters():
        params[name] = flat[start:start + p.numel()].view_as(p)
        start += p.numel()
    return params


def loss_at(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
            flat: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the model with its parameters replaced by `flat`."""
    return F.cross_entropy(functional_call(model, _unflatten(model, flat), (X,)), y)


def hvp(model: nn.Module, X: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Loss Hessian times v by double backward (the Pearlmutter trick)."""
    theta = flat_params(model).requires_grad_(True)
    (g,) = torch.autograd.grad(loss_at(model, X, y, theta), theta, create_graph=True)
    (hv,) = torch.autograd.grad(g @ v.to(g.dtype), theta)
    return hv


def dense_hessian(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss Hessian, materialized (forward over reverse); symmetrized."""
    theta = flat_params(model)
    H = torch.func.hessian(lambda t: loss_at(model, X, y, t))(theta)
    return (H + H.T) / 2


# --- Section 1: Hutchinson -------------------------------------------------------------


def hutchinson_trace(matvec: Matvec, dim: int, num_probes: int, dist: str = "rademacher",
                     seed: int = 0, dtype: torch.dtype = torch.float64) -> float:
    """Mean of z^T A z over `num_probes` probes z (Rademacher or standard Gaussian)."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(num_probes):
        if dist == "rademacher":
            z = rademacher((dim,), g, dtype)
        elif dist == "gaussian":
            z = torch.randn(dim, generator=g, dtype=dtype)
        else:
            raise ValueError(f"dist must be 'rademacher' or 'gaussian', got {dist!r}")
        total += (z @ matvec(z)).item()
    return total / num_probes


def hutchinson_variance(A: torch.Tensor, dist: str = "rademacher") -> float:
    """Variance of ONE probe's z^T A z for symmetric A.

    Gaussian: 2 ||A||_F^2. Rademacher: 2 (||A||_F^2 - sum_i A_ii^2), because
    z_i^2 = 1 exactly, so the diagonal contributes no noise.
    """
    A = A.double()
    fro2 = (A * A).sum().item()
    if dist == "gaussian":
        return 2 * fro2
    return 2 * (fro2 - (A.diagonal() ** 2).sum().item())


# --- Section 2: Hutch++ ------------------------------------------------------------------


def hutchpp(matvec: Matvec, dim: int, num_matvecs: int, seed: int = 0,
            dtype: torch.dtype = torch.float64) -> float:
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021), exactly `num_matvecs` matvecs.

    A third of the budget sketches the range (Q = orth(A S)), a third computes
    tr(Q^T A Q) exactly, and the last third runs Hutchinson on the deflated
    (I - QQ^T) A (I - QQ^T), whose Frobenius norm is small when the spectrum decays.
    """
    k = num_matvecs // 3
    m = num_matvecs - 2 * k
    g = torch.Generator().manual_seed(seed)
    S = rademacher((dim, k), g, dtype)
    G = rademacher((dim, m), g, dtype)
    Q = torch.linalg.qr(apply_block(matvec, S))[0]
    top = torch.trace(Q.T @ apply_block(matvec, Q)).item()
    G_perp = G - Q @ (Q.T @ G)
    rest = torch.trace(G_perp.T @ apply_block(matvec, G_perp)).item() / m
    return top + rest


# --- Section 3: randomized range finder and eigendecomposition ----------------------------


def randomized_range_finder(matvec: Matvec, dim: int, rank: int, oversample: int = 10,
                            power_iters: int = 0, seed: int = 0,
                            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal Q (dim x (rank + oversample)) whose span captures A's top range.

    Halko, Martinsson, Tropp (2011), Algorithm 4.4 (randomized subspace
    iteration) for symmetric A: Q = orth(A Omega), then `power_iters` times
    Q = orth(A Q) twice (A A^T = A^2), re-orthonormalizing after every product
    so the small directions are not lost to rounding. (2q + 1)(rank + oversample) matvecs.
    """
    g = torch.Generator().manual_seed(seed)
    omega = torch.randn(dim, rank + oversample, generator=g, dtype=dtype)
    Q = torch.linalg.qr(apply_block(matvec, omega))[0]
    for _ in range(2 * power_iters):
        Q = torch.linalg.qr(apply_block(matvec, Q))[0]
    return Q


def randomized_eigh(matvec: Matvec, dim: int, rank: int, oversample: int = 10,
                    power_iters: int = 1, seed: int = 0,
                    dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`rank` eigenpairs by magnitude (Halko et al. Algorithm 5.3), descending |lambda|.

    Q from the range finder, then the small projected matrix T = Q^T A Q
    (rank + oversample more matvecs) is diagonalized and its eigenvectors
    lifted by Q: (2q + 2)(rank + oversample) matvecs in all.
    """
    Q = randomized_range_finder(matvec, dim, rank, oversample, power_iters, seed, dtype)
    T = Q.T @ apply_block(matvec, Q)
    evals, W = torch.linalg.eigh((T + T.T) / 2)
    order = evals.abs().argsort(descending=True)[:rank]
    return evals[order], Q @ W[:, order]


def lanczos(matvec: Matvec, dim: int, k: int, seed: int = 0, start: torch.Tensor | None = None,
            dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k Lanczos steps with full reorthogonalization: (T, Q) and the k matvecs' basis.

    Returns (alphas, betas, Q): T = tridiag(betas, alphas, betas). Stops early
    (fewer than k matvecs) if the Krylov space is exhausted.
    """
    if start is None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randn(dim, generator=g, dtype=dtype)
    q = start.to(dtype) / start.to(dtype).norm()
    Q, alphas, betas = [q], [], []
    for j in range(k):
        w = matvec(Q[j]).to(dtype)
        alpha = torch.dot(Q[j], w)
        alphas.append(alpha)
        Qj = torch.stack(Q, dim=1)
        r = w - Qj @ (Qj.T @ w)
        r = r - Qj @ (Qj.T @ r)
        if j == k - 1:
            break
        beta = r.norm()
        if beta <= 1e-10 * max(1.0, abs(alpha.item())):
            break
        betas.append(beta)
        Q.append(r / beta)
    return torch.stack(alphas), torch.stack(betas) if betas else torch.zeros(0, dtype=dtype), \
        torch.stack(Q[:len(alphas)], dim=1)


def tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    T = torch.diag(alphas)
    if betas.numel():
        T = T + torch.diag(betas, 1) + torch.diag(betas, -1)
    return T


def lanczos_top(matvec: Matvec, dim: int, k: int, num: int, seed: int = 0,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The `num` largest-magnitude Ritz values of k Lanczos steps, descending |value|."""
    alphas, betas, _ = lanczos(matvec, dim, k, seed=seed, dtype=dtype)
    ritz = torch.linalg.eigvalsh(tridiagonal(alphas, betas))
    return ritz[ritz.abs().argsort(descending=True)][:num]


# --- Section 4: Nystrom and the Gauss-Newton matrix ------------------------------------


def nystrom(matvec: Matvec, dim: int, rank: int, seed: int = 0,
            dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-`rank` Nystrom approximation A ~ U diag(lam) U^T of a PSD operator.

    The numerically stable form of Tropp, Yurtsever, Udell, Cevher (2017),
    Algorithm 3: sketch Y = A Omega with an orthonormal Gaussian Omega
    (`rank` matvecs), shift by nu = eps ||Y|| so Omega^T Y is safely positive
    definite, factor, and remove the shift. lam is descending and >= 0.
    """
    g = torch.Generator().manual_seed(seed)
    omega = torch.linalg.qr(torch.randn(dim, rank, generator=g, dtype=dtype))[0]
    Y = apply_block(matvec, omega)
    nu = math.sqrt(dim) * torch.finfo(dtype).eps * torch.linalg.matrix_norm(Y, ord=2).item()
    Y_nu = Y + nu * omega
    M = omega.T @ Y_nu
    C = torch.linalg.cholesky((M + M.T) / 2)
    B = torch.linalg.solve_triangular(C, Y_nu.T, upper=False).T  # Y_nu C^{-T}
    U, s, _ = torch.linalg.svd(B, full_matrices=False)
    lam = (s ** 2 - nu).clamp_min(0.0)
    return U, lam


def gauss_newton_vp(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                    v: torch.Tensor) -> torch.Tensor:
    """G v = J^T H_out J v, the generalized Gauss-Newton matrix of the mean cross-entropy.

    J is the Jacobian of the logits (n x C) in the parameters, and H_out the
    Hessian of the loss in the logits: per example (diag(p) - p p^T) / n.
    One jvp, one vjp: G is PSD, unlike the Hessian.
    """
    theta = flat_params(model)
    n = X.shape[0]

    def logits(flat: torch.Tensor) -> torch.Tensor:
        return functional_call(model, _unflatten(model, flat), (X,))

    out, Jv = jvp(logits, (theta,), (v.to(theta.dtype),))
    p = torch.softmax(out, dim=1)
    HJv = (p * Jv - p * (p * Jv).sum(dim=1, keepdim=True)) / n
    _, pullback = vjp(logits, theta)
    return pullback(HJv)[0]


def dense_gauss_newton(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Gauss-Newton matrix materialized: J^T H_out J."""
    J = per_example_jacobians(model, X)  # (n, C, P)
    n, _C, _P = J.shape
    p = torch.softmax(model(X).detach(), dim=1)
    H_out = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / n  # (n, C, C)
    G = torch.einsum("nci,ncd,ndj->ij", J, H_out, J)
    return (G + G.T) / 2


# --- Section 5: stochastic Lanczos quadrature -----------------------------------------------


def gaussian_kernel(t: torch.Tensor, centers: torch.Tensor, weights: torch.Tensor,
                    sigma: float) -> torch.Tensor:
    """sum_j weights_j N(t; centers_j, sigma^2) at every t."""
    z = (t[:, None] - centers[None, :]) / sigma
    return (weights[None, :] * torch.exp(-0.5 * z ** 2)).sum(dim=1) / (sigma * math.sqrt(2 * math.pi))


def exact_density(eigenvalues: torch.Tensor, grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Gaussian-smoothed spectral density (1/n) sum_i N(t; lambda_i, sigma^2)."""
    eigs = eigenvalues.double()
    return gaussian_kernel(grid.double(), eigs, torch.full_like(eigs, 1.0 / eigs.numel()), sigma)


def slq_nodes(matvec: Matvec, dim: int, num_probes: int, k: int, seed: int = 0,
              dtype: torch.dtype = torch.float64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per probe, the Gauss quadrature (nodes, weights) of k Lanczos steps.

    Probes are Rademacher vectors scaled to unit norm, drawn one after another
    from the generator seeded by `seed`; nodes are the Ritz values, weights
    the squared first components of T's eigenvectors (they sum to 1).
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_probes):
        z = rademacher((dim,), g, dtype)
        alphas, betas, _ = lanczos(matvec, dim, k, start=z, dtype=dtype)
        nodes, Y = torch.linalg.eigh(tridiagonal(alphas, betas))
        out.append((nodes, Y[0, :] ** 2))
    return out


def slq_density(matvec: Matvec, dim: int, grid: torch.Tensor, num_probes: int = 10, k: int = 30,
                sigma: float = 0.05, seed: int = 0,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The SLQ estimate of the smoothed spectral density on `grid` (Ghorbani et al. 2019).

    The average over probes of sum_j tau_j N(t; theta_j, sigma^2): each probe's
    quadrature integrates any degree <= 2k-1 polynomial of the density exactly
    for that probe, and the probes average to the trace. num_probes * k matvecs.
    """
    grid = grid.double()
    total = torch.zeros_like(grid)
    for nodes, weights in slq_nodes(matvec, dim, num_probes, k, seed, dtype):
        total += gaussian_kernel(grid, nodes.double(), weights.double(), sigma)
    return total / num_probes


# --- Section 6: the empirical NTK -------------------------------------------------------------


def per_example_jacobians(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """(n, C, P): d logits_c(x_i) / d theta, parameters flattened in model.parameters() order."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def one(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(one), in_dims=(None, 0))(params, X)
    n = X.shape[0]
    return torch.cat([jac[name].reshape(n, jac[name].shape[1], -1) for name in params], dim=2)


def empirical_ntk(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The (nC x nC) NTK Gram matrix J J^T, rows ordered example-major (i * C + c)."""
    J = per_example_jacobians(model, X)
    J = J.reshape(-1, J.shape[2])
    return J @ J.T


def ntk_vp(model: nn.Module, X: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Theta v = J (J^T v) matrix-free: a vjp (J^T v), then a jvp (J u). Flat (nC,)."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def logits(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, p, (X,))

    out, pullback = vjp(logits, params)
    (u,) = pullback(v.reshape(out.shape).to(out.dtype))
    return jvp(logits, (params,), (u,))[1].reshape(-1)


def ntk_drift(before: torch.Tensor, after: torch.Tensor) -> float:
    """||Theta_after - Theta_before||_F / ||Theta_before||_F."""
    return (torch.linalg.matrix_norm(after - before) / torch.linalg.matrix_norm(before)).item()


def train_full_batch(model: nn.Module, X: torch.Tensor, y: torch.Tensor, steps: int,
                     lr: float) -> nn.Module:
    """Full-batch gradient descent on the mean cross-entropy: deterministic, no RNG."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
    return model
