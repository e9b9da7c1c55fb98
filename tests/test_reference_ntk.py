"""Notebook 2's reference, and every numerical claim its text makes, measured on
the notebook's own model (small_mlp(seed=0) on 256 7x7 MNIST images) and matrices."""

import copy
import functools
import math

import numpy as np
import pytest
import torch

from fixtures import ntk_models as fx
from reference import randomized_ntk as ref


@functools.cache
def _problem():
    """The notebook's problem in fp64 (the notebook works in fp32; the claims are about
    the problem, and fp32 changes nothing at the tolerances below)."""
    model, X, y = fx.notebook_problem()
    model, X = model.double(), X.double()
    H = ref.dense_hessian(model, X, y)
    return model, X, y, H, torch.linalg.eigvalsh(H)


def _mv(A: torch.Tensor):
    return lambda v: A.to(v.dtype) @ v


class _Counted:
    """A matvec that counts its calls."""

    def __init__(self, A: torch.Tensor):
        self.A, self.calls = A, 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.A.to(v.dtype) @ v


# --- Section 0 -------------------------------------------------------------------------


def test_running_example_has_730_parameters_and_an_indefinite_hessian():
    model, X, y, H, eigs = _problem()
    assert H.shape == (730, 730)
    assert eigs[0] < -0.5 and eigs[-1] > 1.5  # "[-0.727, 1.884]"
    v = torch.randn(730, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(ref.hvp(model, X, y, v), H @ v, atol=1e-12)


# --- Section 1 -------------------------------------------------------------------------


def test_rademacher_is_exact_on_a_diagonal_and_gaussian_is_not():
    D = torch.diag(torch.linspace(1.0, 3.0, 30, dtype=torch.float64))
    assert ref.hutchinson_trace(_mv(D), 30, 3, seed=1) == pytest.approx(60.0, abs=1e-12)
    assert abs(ref.hutchinson_trace(_mv(D), 30, 3, dist="gaussian", seed=1) - 60.0) > 0.1


def test_variance_formulas_match_many_probes():
    """Var of one probe: 2(||A||_F^2 - sum A_ii^2) (Rademacher), 2||A||_F^2 (Gaussian)."""
    A = fx.with_spectrum(torch.linspace(-1.0, 2.0, 25), seed=3) + torch.diag(torch.linspace(0, 1, 25,
                                                                                  dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    n = 40_000
    Z = {"rademacher": ref.rademacher((n, 25), g), "gaussian": torch.randn(n, 25, generator=g,
                                                                           dtype=torch.float64)}
    for dist, z in Z.items():
        samples = ((z @ A) * z).sum(1)
        want = ref.hutchinson_variance(A, dist)
        # The sample variance of 40,000 draws is within 5% of the truth (its relative sd is
        # sqrt((kurtosis - 1) / n) < 1.5% for these bounded-kurtosis quadratic forms).
        assert samples.var().item() == pytest.approx(want, rel=0.05), dist
    assert ref.hutchinson_variance(A, "rademacher") < ref.hutchinson_variance(A, "gaussian")


def test_hutchinson_rms_error_falls_like_one_over_sqrt_m_on_the_hessian():
    """Exercise 1.2: the fitted log-log slope is close to -1/2 and the points follow theory."""
    _model, _X, _y, H, eigs = _problem()
    tr = eigs.sum().item()
    var_one = ref.hutchinson_variance(H)
    counts, reps = [1, 2, 4, 8, 16, 32, 64], 40
    mv = _mv(H)
    rms = [math.sqrt(np.mean([(ref.hutchinson_trace(mv, 730, m, seed=r) - tr) ** 2
                              for r in range(reps)])) / tr for m in counts]
    slope = np.polyfit(np.log(counts), np.log(rms), 1)[0]
    assert -0.6 <= slope <= -0.4
    for m, r in zip(counts, rms):
        assert 0.6 <= r / (math.sqrt(var_one / m) / tr) <= 1.5


# --- Section 2 -------------------------------------------------------------------------


def test_hutchpp_spends_its_budget_and_is_exact_on_low_rank():
    A = fx.with_spectrum(fx.low_rank(50, [5.0, 3.0, 2.0, 1.0]), seed=4)
    op = _Counted(A)
    est = ref.hutchpp(op, 50, 30, seed=0)
    assert op.calls == 30 and est == pytest.approx(11.0, abs=1e-9)


def test_hutchpp_slope_is_about_minus_two_on_inverse_square_eigenvalues():
    """Exercise 2.2: Hutchinson about -1/2, Hutch++ about -2 on eigenvalues j^-2 (n = 400)."""
    eigs = fx.decaying(400, 2.0)
    A = fx.with_spectrum(eigs, seed=1, dtype=torch.float32)
    tr = eigs.sum().item()
    budgets, reps = [12, 24, 48, 96, 192], 10
    hutch = [np.mean([abs(ref.hutchinson_trace(_mv(A), 400, b, seed=r, dtype=torch.float32) - tr)
                      for r in range(reps)]) / tr for b in budgets]
    hpp = [np.mean([abs(ref.hutchpp(_mv(A), 400, b, seed=r, dtype=torch.float32) - tr)
                    for r in range(reps)]) / tr for b in budgets]
    s_hutch = np.polyfit(np.log(budgets), np.log(hutch), 1)[0]
    s_hpp = np.polyfit(np.log(budgets), np.log(hpp), 1)[0]
    assert -0.75 <= s_hutch <= -0.25
    assert -2.5 <= s_hpp <= -1.5
    assert hpp[-1] < hutch[-1] / 50


def test_hutchpp_buys_little_on_the_flat_indefinite_hessian():
    _model, _X, _y, H, eigs = _problem()
    tr = eigs.sum().item()
    hutch = np.mean([abs(ref.hutchinson_trace(_mv(H), 730, 96, seed=r) - tr) for r in range(30)])
    hpp = np.mean([abs(ref.hutchpp(_mv(H), 730, 96, seed=r) - tr) for r in range(30)])
    assert hpp > 0.5 * hutch


# --- Section 3 -------------------------------------------------------------------------


def test_range_finder_bound_and_power_iterations_on_the_hessian():
    """The Halko et al. bound holds, and q = 1, 2 bring the error toward sigma_{k+1}."""
    _model, _X, _y, H, eigs = _problem()
    sigma = eigs.abs().sort(descending=True).values
    errors = []
    for q in (0, 1, 2):
        op = _Counted(H)
        Q = ref.randomized_range_finder(op, 730, 10, 5, q)
        assert op.calls == (2 * q + 1) * 15
        assert torch.allclose(Q.T @ Q, torch.eye(15, dtype=torch.float64), atol=1e-12)
        err = torch.linalg.matrix_norm(H - Q @ (Q.T @ H), ord=2).item()
        assert err <= (1 + 11 * math.sqrt(15) * math.sqrt(730)) ** (1 / (2 * q + 1)) * sigma[10]
        errors.append(err)
    assert errors[0] > 1.5 * sigma[10] and errors[2] < 1.1 * sigma[10]
    assert errors[0] > errors[1] > errors[2]


def test_lanczos_beats_randomized_eigh_at_60_matvecs_on_the_hessian():
    """Exercise 3.3: 'Lanczos wins by orders of magnitude', for every seed tried."""
    _model, _X, _y, H, eigs = _problem()
    exact = eigs[eigs.abs().argsort(descending=True)][:5]
    for seed in range(5):
        op = _Counted(H)
        rand = ref.randomized_eigh(op, 730, 5, 5, 2, seed=seed)[0]
        assert op.calls == 60
        lan = ref.lanczos_top(_mv(H), 730, 60, 5, seed=seed)
        rel_rand = ((rand - exact).abs() / exact.abs()).max().item()
        rel_lan = ((lan - exact).abs() / exact.abs()).max().item()
        assert rel_lan < 1e-5 and rel_rand > 1e-3 and rel_lan < rel_rand / 100


# --- Section 4 -------------------------------------------------------------------------


def test_nystrom_is_exact_on_low_rank_psd_and_nonnegative():
    A = fx.with_spectrum(fx.low_rank(40, [4.0, 2.0, 1.0, 0.5]), seed=6)
    U, lam = ref.nystrom(_mv(A), 40, 6)
    assert torch.allclose((U * lam) @ U.T, A, atol=1e-10)
    assert (lam >= 0).all() and torch.allclose(U.T @ U, torch.eye(6, dtype=torch.float64))


def test_gauss_newton_is_psd_and_matches_its_product():
    model, X, y, _H, _eigs = _problem()
    G = ref.dense_gauss_newton(model, X, y)
    v = torch.randn(730, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(ref.gauss_newton_vp(model, X, y, v), G @ v, atol=1e-12)
    assert torch.linalg.eigvalsh(G)[0] > -1e-12


def test_nystrom_of_the_gauss_newton_matrix_nears_the_optimum():
    """Exercise 4.3: relative nuclear error decreases with rank, above the optimum, and
    within a small factor of it at the largest rank."""
    model, X, y, _, _ = _problem()
    m, Xd = model, X
    G = ref.dense_gauss_newton(m, Xd, y)
    eg = torch.linalg.eigvalsh(G).flip(0).clamp_min(0)
    ratios, errs = [], []
    for r in (5, 10, 20, 40):
        U, lam = ref.nystrom(lambda v: ref.gauss_newton_vp(m, Xd, y, v), 730, r)
        err = (torch.linalg.matrix_norm(G - (U * lam) @ U.T, "nuc") / eg.sum()).item()
        best = (eg[r:].sum() / eg.sum()).item()
        assert err >= best * (1 - 1e-9)
        errs.append(err)
        ratios.append(err / best)
    assert errs == sorted(errs, reverse=True)
    assert ratios[-1] < 2.0


# --- Section 5 -------------------------------------------------------------------------


def test_slq_is_exact_on_a_diagonal_with_k_equal_n():
    eigs = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    grid = torch.linspace(-2.0, 4.0, 121, dtype=torch.float64)
    got = ref.slq_density(_mv(torch.diag(eigs)), 6, grid, num_probes=3, k=6, sigma=0.2)
    assert torch.allclose(got, ref.exact_density(eigs, grid, 0.2), atol=1e-10)


def test_slq_quadrature_is_exact_for_low_degree_moments():
    """Each probe's k-point quadrature integrates t^j exactly for j <= 2k - 1."""
    A = fx.with_spectrum(torch.linspace(-1.0, 2.0, 50), seed=2)
    (nodes, weights), = ref.slq_nodes(_mv(A), 50, 1, 4, seed=3)
    g = torch.Generator().manual_seed(3)
    v = ref.rademacher((50,), g) / math.sqrt(50)
    for j in range(8):
        want = (v @ torch.linalg.matrix_power(A, j) @ v).item()
        assert (weights * nodes ** j).sum().item() == pytest.approx(want, abs=1e-10)


def test_hessian_density_claims():
    """Exercise 5.2: SLQ (8 probes, k = 40, sigma 0.02) within L1 0.15 of the exact density;
    a bulk near 0, the top three eigenvalues apart, a sizeable negative part."""
    _model, _X, _y, H, eigs = _problem()
    grid = torch.linspace(eigs[0].item() - 0.2, eigs[-1].item() + 0.2, 500, dtype=torch.float64)
    dt = (grid[1] - grid[0]).item()
    slq = ref.slq_density(_mv(H.float()), 730, grid, 8, 40, 0.02, dtype=torch.float32)
    exact = ref.exact_density(eigs, grid, 0.02)
    assert (slq - exact).abs().sum().item() * dt < 0.15
    assert exact.sum().item() * dt == pytest.approx(1.0, abs=1e-4)
    assert (eigs.abs() < 0.1).double().mean() > 0.5
    top = eigs.flip(0)
    assert top[2] - top[3] > 0.3 and top[3] - top[4] < 0.1
    assert (eigs < -0.1).double().mean() > 0.05


# --- Section 6 -------------------------------------------------------------------------


def test_ntk_pieces_agree():
    model, X, _, _, _ = _problem()
    m, Xn = copy.deepcopy(model), X[:32]
    J = ref.per_example_jacobians(m, Xn)
    assert J.shape == (32, 10, 730)
    m.zero_grad()
    m(Xn[:1])[0, 3].backward()
    g3 = torch.cat([p.grad.reshape(-1) for p in m.parameters()])
    assert torch.allclose(J[0, 3], g3, atol=1e-12)
    K = ref.empirical_ntk(m, Xn)
    v = torch.randn(320, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(ref.ntk_vp(m, Xn, v), K @ v, atol=1e-9)
    top = torch.linalg.eigvalsh(K).flip(0)[:5]
    lan = ref.lanczos_top(lambda u: ref.ntk_vp(m, Xn, u), 320, 40, 5)
    assert torch.allclose(lan, top, rtol=1e-8)


def test_ntk_drift_shrinks_with_width():
    """Exercise 6.5: the narrowest kernel moves by more than its size, the widest far less."""
    _, X, y, _, _ = _problem()
    drifts = []
    for width in (12, 64, 256, 1024):
        net = fx.small_mlp(0, width)
        K0 = ref.empirical_ntk(net, X[:32].float())
        ref.train_full_batch(net, X.float(), y, 100, 0.5)
        drifts.append(ref.ntk_drift(K0, ref.empirical_ntk(net, X[:32].float())))
    assert drifts == sorted(drifts, reverse=True)
    assert drifts[0] > 1.0 and drifts[-1] < 0.5
