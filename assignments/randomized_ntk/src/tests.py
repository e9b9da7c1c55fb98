"""Visible inline tests the notebook calls after some exercises.

They check behaviour on small inputs of their own (never the notebook's),
and every failure says what was called, what came back and what to look
at. Passing them is necessary, not sufficient: the grader runs further
hidden checks on other matrices, models, sizes and seeds.
"""

import torch

from .krylov import with_spectrum


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class _Counted:
    """A matvec that counts its calls and takes only vectors, like an HVP."""

    def __init__(self, A: torch.Tensor):
        self.A, self.calls = A, 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        _check(v.dim() == 1 and v.shape[0] == self.A.shape[0],
               f"the matvec takes one vector of shape ({self.A.shape[0]},), got {tuple(v.shape)}; "
               "apply it column by column")
        return self.A.to(v.dtype) @ v


def test_hutchinson(fn) -> None:
    """hutchinson_trace(matvec, dim, num_probes, dist, seed) on a diagonal and a dense matrix."""
    D = torch.diag(torch.linspace(1.0, 3.0, 30))
    op = _Counted(D)
    est = float(fn(op, 30, 5, dist="rademacher", seed=1))
    _check(op.calls == 5, f"hutchinson_trace(..., num_probes=5) called the matvec {op.calls} "
                          "times; one probe is one matvec")
    _check(abs(est - 60.0) < 1e-3,
           f"on diag(linspace(1, 3, 30)) Rademacher probes give z^T D z = tr D = 60 exactly "
           f"(z_i^2 = 1), but hutchinson_trace returned {est:.6g}")
    est_g = float(fn(_Counted(D), 30, 5, dist="gaussian", seed=1))
    _check(abs(est_g - 60.0) > 1e-3,
           "with dist='gaussian' the estimate on a diagonal matrix should not be exact; "
           "draw torch.randn probes for 'gaussian'")
    A = with_spectrum(torch.linspace(0.5, 2.0, 40), seed=3)
    runs = torch.tensor([float(fn(_Counted(A), 40, 50, seed=s)) for s in range(20)])
    # sd of one 50-probe mean: sqrt(2 (||A||_F^2 - sum A_ii^2) / 50) ~ 0.9; the
    # mean of 20 runs is within 5 sd of tr A = 50 with probability 1 - 6e-7.
    _check(abs(runs.mean().item() - 50.0) < 1.0,
           f"over 20 seeds hutchinson_trace averages {runs.mean().item():.4g}, far from "
           "tr A = 50: the estimator should be unbiased (mean of z^T A z)")
    _check(runs.std().item() > 1e-3, "hutchinson_trace gives the same answer for every seed; "
                                     "draw the probes from a generator seeded by `seed`")
    print("✓ test_hutchinson passed")


def test_hutchpp(fn) -> None:
    """hutchpp(matvec, dim, num_matvecs, seed) spends its budget and is exact on low rank."""
    eigs = torch.zeros(50)
    eigs[:4] = torch.tensor([5.0, 3.0, 2.0, 1.0])
    A = with_spectrum(eigs, seed=4)
    op = _Counted(A)
    est = float(fn(op, 50, 30, seed=0))
    _check(op.calls == 30, f"hutchpp(..., num_matvecs=30) called the matvec {op.calls} "
                           "times; spend exactly num_matvecs (a third each for S, Q and G)")
    _check(abs(est - 11.0) < 1e-3,
           f"on a rank-4 PSD matrix with 10 sketch columns Q captures the whole range, so "
           f"Hutch++ is exact (tr = 11), but hutchpp returned {est:.6g}; check the deflated "
           "part uses (I - QQ^T) G")
    print("✓ test_hutchpp passed")


def test_range_finder(fn) -> None:
    """randomized_range_finder(matvec, dim, rank, oversample, power_iters, seed) -> Q."""
    eigs = torch.cat([torch.tensor([9.0, -6.0, 4.0]), torch.zeros(37)])
    A = with_spectrum(eigs, seed=5)
    op = _Counted(A)
    Q = fn(op, 40, 3, oversample=2, power_iters=1, seed=0)
    _check(isinstance(Q, torch.Tensor) and tuple(Q.shape) == (40, 5),
           f"randomized_range_finder(matvec, 40, 3, oversample=2, ...) should return a 40 x 5 "
           f"tensor, got {getattr(Q, 'shape', type(Q).__name__)}")
    _check(op.calls == 15, f"with power_iters=1 and 5 columns it called the matvec {op.calls} "
                           "times; (2q + 1)(rank + oversample) = 15")
    err = (Q.T.double() @ Q.double() - torch.eye(5, dtype=torch.float64)).abs().max().item()
    _check(err < 1e-4, f"Q^T Q differs from I by {err:.2g}; orthonormalize with torch.linalg.qr")
    resid = (A - Q @ (Q.T @ A)).norm().item()
    _check(resid < 1e-3, f"||A - QQ^T A|| = {resid:.2g} on a rank-3 matrix: Q should capture "
                         "its whole range")
    print("✓ test_range_finder passed")


def test_nystrom(fn) -> None:
    """nystrom(matvec, dim, rank, seed) -> (U, lam), exact on a PSD matrix of low rank."""
    eigs = torch.cat([torch.tensor([4.0, 2.0, 1.0, 0.5]), torch.zeros(36)])
    A = with_spectrum(eigs, seed=6)
    op = _Counted(A)
    U, lam = fn(op, 40, 6, seed=0)
    _check(op.calls == 6, f"nystrom(matvec, 40, 6) called the matvec {op.calls} times; "
                          "the sketch A Omega costs exactly rank matvecs")
    lam = torch.as_tensor(lam).double()
    U = torch.as_tensor(U).double()
    _check(tuple(U.shape) == (40, 6) and lam.numel() == 6,
           f"expected U of shape (40, 6) and 6 eigenvalues, got {tuple(U.shape)} and {lam.numel()}")
    err = ((U * lam) @ U.T - A.double()).norm().item()
    # Exact in exact arithmetic; in fp32 the shifted core has condition ~1e6, which leaves
    # ~1e-3 of ||A||_F at worst.
    _check(err < 5e-2, f"||U diag(lam) U^T - A||_F = {err:.2g} on a rank-4 PSD matrix, where a "
                       "rank-6 Nystrom approximation is exact (up to fp32 rounding)")
    _check(bool((lam >= -1e-6).all()), "some lam are negative; a PSD approximation has lam >= 0")
    print("✓ test_nystrom passed")


def test_slq(fn) -> None:
    """slq_density on a diagonal matrix, where Rademacher probes and k = n are exact."""
    eigs = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0])
    A = torch.diag(eigs)
    grid = torch.linspace(-2.0, 4.0, 121)
    op = _Counted(A)
    got = torch.as_tensor(fn(op, 6, grid, num_probes=3, k=6, sigma=0.2, seed=0)).double()
    _check(op.calls <= 18, f"slq_density(num_probes=3, k=6) called the matvec {op.calls} "
                           "times; k Lanczos steps per probe")
    z = (grid.double()[:, None] - eigs.double()[None, :]) / 0.2
    want = torch.exp(-0.5 * z ** 2).sum(1) / (6 * 0.2 * (2 * torch.pi) ** 0.5)
    err = (got - want).abs().max().item()
    _check(err < 1e-3, f"on diag(-1, 0, 0.5, 1, 2, 3) with k = 6 SLQ is exact, but the density "
                       f"is off by up to {err:.2g}: weights are squared first components of T's "
                       "eigenvectors, probes have unit norm")
    print("✓ test_slq passed")


def test_ntk_vp(fn, ntk_fn) -> None:
    """ntk_vp(model, X, v) agrees with empirical_ntk(model, X) @ v on a small MLP."""
    g = torch.Generator().manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    X = torch.randn(4, 5, generator=g)
    v = torch.randn(12, generator=g)
    K = ntk_fn(model, X)
    _check(tuple(K.shape) == (12, 12), f"empirical_ntk on 4 examples and 3 outputs should be "
                                       f"12 x 12, got {tuple(K.shape)}")
    got = fn(model, X, v)
    err = (got.reshape(-1) - K @ v).abs().max().item()
    _check(err < 1e-4 * (1 + K.abs().max().item()),
           f"ntk_vp(model, X, v) differs from empirical_ntk(model, X) @ v by {err:.2g}")
    print("✓ test_ntk_vp passed")
