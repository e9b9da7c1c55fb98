"""Lanczos with full reorthogonalization, given (Notebook 1, Exercise 5.2), and
test matrices with a chosen spectrum.

Randomized methods are compared with Lanczos at the same number of matvecs,
and stochastic Lanczos quadrature needs Lanczos from a given start vector.
"""

from collections.abc import Callable

import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]


def lanczos(matvec: Matvec, dim: int, k: int, start: torch.Tensor | None = None,
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k Lanczos steps (k matvecs) from `start` (or a seeded Gaussian vector).

    Returns (alphas, betas, Q): the tridiagonal T = tridiagonal(alphas, betas)
    is Q^T A Q for the orthonormal basis Q (dim x k) of the Krylov space,
    and Q[:, 0] is the normalized start vector. Every step reorthogonalizes
    twice against all previous vectors. If the Krylov space is exhausted
    early (beta ~ 0), fewer than k steps are returned.
    """
    if start is None:
        start = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    q = start / start.norm()
    Q, alphas, betas = [q], [], []
    for j in range(k):
        w = matvec(Q[j])
        alphas.append(torch.dot(Q[j], w))
        basis = torch.stack(Q, dim=1)
        r = w - basis @ (basis.T @ w)
        r = r - basis @ (basis.T @ r)
        if j == k - 1:
            break
        beta = r.norm()
        if beta <= 1e-10 * max(1.0, alphas[-1].abs().item()):
            break
        betas.append(beta)
        Q.append(r / beta)
    betas_t = torch.stack(betas) if betas else torch.zeros(0, dtype=q.dtype)
    return torch.stack(alphas), betas_t, torch.stack(Q[:len(alphas)], dim=1)


def tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """The symmetric tridiagonal matrix with diagonal alphas and off-diagonal betas."""
    T = torch.diag(alphas)
    if betas.numel():
        T = T + torch.diag(betas, 1) + torch.diag(betas, -1)
    return T


def with_spectrum(eigs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(eigs) Q^T for a random orthogonal Q: a symmetric matrix with known eigenvalues."""
    eigs = torch.as_tensor(eigs, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))[0]
    A = (Q * eigs) @ Q.T
    return ((A + A.T) / 2).float()
