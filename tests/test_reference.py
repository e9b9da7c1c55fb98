"""The trusted reference agrees with dense linear algebra on engineered inputs.

The grader compares students against `reference/krylov_hessian.py`, so the
reference itself is checked here against answers known independently: the
exact spectra of `fixtures.spectra`, `torch.linalg.eigvalsh`, numpy's norms
and a dense Hessian from `torch.autograd.functional.hessian`.

Every tolerance is derived from the numerics, and the comment beside it says
how. Notation: n is the matrix side, eps = torch.finfo(dtype).eps and ||A|| the
spectral norm. Two rounding scales recur:

* sqrt(n) * eps * ||A||, the typical rounding of one computed Rayleigh
  quotient v . (A v) (a length-n matvec and inner product, whose errors add
  like a random walk);
* n * eps (times ||A|| for eigenvalues), the usual worst-case gamma_n bound,
  used where errors accumulate over up to n steps, as in a Lanczos basis.
"""

import math
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures import spectra
from fixtures.models import hvp_case
from reference import krylov_hessian as ref

DTYPES = [pytest.param(torch.float64, id="fp64"), pytest.param(torch.float32, id="fp32")]
N = 50  # side of the fixture matrices


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def _exact_eigenvalues(A: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending) of A exactly as stored: an fp32 matrix is upcast
    first, so its own rounding is part of the truth and not of the error."""
    return torch.linalg.eigvalsh(A.double())


def _rayleigh_noise(n: int, dtype: torch.dtype, norm: float) -> float:
    return math.sqrt(n) * _eps(dtype) * norm


def _orth_error_entrywise_history(Q: torch.Tensor) -> list[float]:
    return [ref.orthogonality_error(Q[:, :j + 1], entrywise=True) for j in range(Q.shape[1])]


def _first_step_above(history: list[float], threshold: float) -> int | None:
    return next((j for j, h in enumerate(history) if h > threshold), None)


class RecordingOperator(spectra.CountingOperator):
    """A CountingOperator that also keeps every (input, output) pair."""

    def __init__(self, matrix: torch.Tensor, budget: int | None = None) -> None:
        super().__init__(matrix, budget)
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        w = super().__call__(v)
        self.pairs.append((v.clone(), w.clone()))
        return w


# --- The fixtures themselves ---------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", spectra.NAMES)
def test_fixture_matrix_has_its_nominal_spectrum(name, dtype):
    s = spectra.make(name, dtype=dtype)
    assert s.matrix.shape == (N, N) and s.matrix.dtype == dtype
    assert torch.equal(s.matrix, s.matrix.T)
    assert torch.equal(s.eigenvalues, s.eigenvalues.sort().values)
    # The fp64 build is exact up to eigvalsh's backward error (a few eps * ||A||);
    # the fp32 cast moves each entry by eps32/2 relative, so the eigenvalues by
    # at most about sqrt(n) * eps32 * ||A|| (the Frobenius norm of the rounding).
    norm = s.eigenvalues.abs().max().item()
    error = (_exact_eigenvalues(s.matrix) - s.eigenvalues).abs().max().item()
    assert error <= _rayleigh_noise(N, dtype, norm)


def test_fixture_spectra_have_their_defining_features():
    top = {name: ref.top_by_magnitude(spectra.make(name).eigenvalues, 3) for name in spectra.NAMES}
    assert top["wide_gap"][:2].tolist() == [10.0, 1.5]
    assert top["narrow_gap"][:2].tolist() == [10.0, 9.5]
    assert top["tied"][:3].tolist() == [10.0, 10.0, 1.5]
    indefinite = spectra.make("indefinite").eigenvalues
    assert indefinite[0] == -12.0 and indefinite[-1] == 8.0 and indefinite[1] == -3.0
    assert len(set(indefinite.abs().tolist())) == N  # no two share a magnitude
    clustered = spectra.make("clustered").eigenvalues
    for center in spectra.CLUSTER_CENTERS:
        members = clustered[(clustered - center).abs() <= spectra.CLUSTER_WIDTH / 2 + 1e-12]
        assert len(members) >= N // 3
    assert len(clustered) == N


def test_fixture_matrix_depends_on_seed_only():
    assert torch.equal(spectra.make("wide_gap", seed=3).matrix,
                       spectra.make("wide_gap", seed=3).matrix)
    assert not torch.equal(spectra.make("wide_gap", seed=3).matrix,
                           spectra.make("wide_gap", seed=4).matrix)


def test_fixtures_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    for name in spectra.NAMES:
        spectra.make(name)
    spectra.with_spectrum([1.0, 2.0, 3.0], seed=1)
    spectra.section5_matrix()
    hvp_case(0)
    hvp_case(0, model="tiny")
    assert torch.equal(torch.get_rng_state(), state)


def test_make_rejects_unknown_names_and_small_sizes():
    with pytest.raises(ValueError, match="wide_gap"):
        spectra.make("no_such_spectrum")
    with pytest.raises(ValueError, match="clustered"):
        spectra.make("clustered", n=5)
    spectra.make("clustered", n=6)


def test_counting_operator_counts_casts_and_enforces_its_budget():
    A = spectra.make("wide_gap").matrix
    op = spectra.CountingOperator(A, budget=2)
    w = op(torch.ones(N, dtype=torch.float32))
    assert w.dtype == torch.float64
    torch.testing.assert_close(w, A.sum(dim=1))
    op(torch.ones(N))
    assert op.calls == 2
    with pytest.raises(RuntimeError, match="budget of 2"):
        op(torch.ones(N))


def test_hvp_case_is_one_problem_at_two_precisions():
    case32, case64 = hvp_case(5), hvp_case(5, dtype=torch.float64)
    assert case32.X.shape == (16, 20) and case32.y.max() < 4 and case32.v.shape == (254,)
    assert torch.equal(case64.X, case32.X.double()) and torch.equal(case64.y, case32.y)
    assert torch.equal(case64.v, case32.v.double())
    assert torch.equal(ref.flat_params(case64.model), ref.flat_params(case32.model).double())
    assert case32.v.norm().item() == pytest.approx(1.0, abs=1e-6)
    tiny = hvp_case(0, n_samples=8, model="tiny")
    assert tiny.X.shape == (8, 49) and tiny.v.shape == (1930,)
    with pytest.raises(ValueError, match="toy"):
        hvp_case(0, model="large")


# --- Section 0: norms and machine epsilon --------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=["fp16", "bf16", "fp32", "fp64"])
def test_find_eps_is_the_gap_above_one(dtype):
    assert ref.find_eps(dtype) == torch.finfo(dtype).eps


def _norm_inputs():
    rectangular = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [spectra.make(name).matrix for name in spectra.NAMES] + [
        spectra.section5_matrix(torch.float64), rectangular]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", range(len(spectra.NAMES) + 2),
                         ids=[*spectra.NAMES, "section5", "rectangular"])
def test_norms_match_numpy(index, dtype):
    A = _norm_inputs()[index].to(dtype)
    array = A.numpy()
    # Both sides are backward-stable SVDs / sums of squares in the same
    # precision, so they agree to a small multiple of eps; n * eps is the
    # worst-case accumulation over a length-n sum.
    rtol = max(A.shape) * _eps(dtype)
    assert ref.op_norm(A) == pytest.approx(float(np.linalg.norm(array, 2)), rel=rtol)
    assert ref.fro_norm(A) == pytest.approx(float(np.linalg.norm(array, "fro")), rel=rtol)


def test_op_norm_of_symmetric_matrix_is_largest_eigenvalue_magnitude():
    s = spectra.make("indefinite")
    assert ref.op_norm(s.matrix) == pytest.approx(12.0, rel=N * _eps(torch.float64))


# --- Sections 2-3: power iteration and deflation -------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", spectra.NAMES)
def test_power_iteration_finds_the_dominant_signed_eigenpair(name, dtype):
    s = spectra.make(name, dtype=dtype)
    exact = _exact_eigenvalues(s.matrix)
    dominant = exact[exact.abs().argmax()].item()
    norm = abs(dominant)
    # tol=0 and 2000 steps: even narrow_gap's ratio 0.95 has shrunk the error
    # below eps (0.95^2000 ~ 1e-45), so only the rounding of the last Rayleigh
    # quotient is left.
    bound = _rayleigh_noise(N, dtype, norm)
    if name == "clustered":
        # The top cluster (width 1e-3, neighbours ~6e-5 apart) cannot be
        # resolved in 2000 steps; the iterate converges into the cluster's
        # invariant subspace, where the Rayleigh quotient lies inside the
        # cluster and the residual is at most the cluster's width.
        bound += spectra.CLUSTER_WIDTH
    lam, v, _ = ref.power_iteration(spectra.CountingOperator(s.matrix), N,
                                    num_iters=2000, tol=0.0, dtype=dtype)
    assert isinstance(lam, float) and v.dtype == dtype and v.shape == (N,)
    assert (lam < 0) == (dominant < 0)  # indefinite: the answer is -12, not 12
    assert abs(lam - dominant) <= bound
    assert v.norm().item() == pytest.approx(1.0, abs=N * _eps(dtype))
    A64, v64 = s.matrix.double(), v.double()
    assert (A64 @ v64 - lam * v64).norm().item() <= bound


@pytest.mark.parametrize("dtype", DTYPES)
def test_power_iteration_spends_one_matvec_per_iteration(dtype):
    # tol=0 never stops early, so the iteration count is exactly num_iters;
    # the budget makes a 51st call an error rather than a miscount.
    op = spectra.CountingOperator(spectra.make("narrow_gap", dtype=dtype).matrix, budget=50)
    _, _, history = ref.power_iteration(op, N, num_iters=50, tol=0.0, dtype=dtype)
    assert op.calls == 50
    assert len(history) == 49  # a change needs two estimates


@pytest.mark.parametrize("dtype", DTYPES)
def test_power_iteration_history_is_absolute_changes_and_stops_under_tol(dtype):
    op = RecordingOperator(spectra.make("wide_gap", dtype=dtype).matrix)
    lam, _, history = ref.power_iteration(op, N, num_iters=200, tol=1e-10, dtype=dtype)
    estimates = [torch.dot(v, w).item() for v, w in op.pairs]
    # Recomputed with the same operations, so equal to the last bit.
    assert history == [abs(b - a) for a, b in pairwise(estimates)]
    assert lam == estimates[-1]
    # wide_gap's ratio 0.15 converges in about ten steps: far before 200.
    assert op.calls == len(history) + 1 < 200
    assert history[-1] < 1e-10 <= min(history[:-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_power_iteration_starts_from_the_seeded_fp32_draw(dtype):
    op = RecordingOperator(spectra.make("wide_gap", dtype=dtype).matrix)
    ref.power_iteration(op, N, num_iters=3, seed=11, dtype=dtype)
    start = torch.randn(N, generator=torch.Generator().manual_seed(11))
    expected = start.to(dtype) / start.to(dtype).norm()
    # Normalizing in another order changes the last bits only.
    torch.testing.assert_close(op.pairs[0][0], expected, rtol=0, atol=N * _eps(dtype))


def test_iterative_methods_leave_the_global_rng_alone():
    A = spectra.make("wide_gap").matrix
    state = torch.get_rng_state()
    ref.power_iteration(A.__matmul__, N, dtype=torch.float64)
    ref.power_iteration_deflated(A.__matmul__, N, 2, dtype=torch.float64)
    ref.lanczos_track_orth(A.__matmul__, N, 10, dtype=torch.float64)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["wide_gap", "indefinite", "narrow_gap", "tied"])
def test_deflation_recovers_the_top_three_by_magnitude(name, dtype):
    s = spectra.make(name, dtype=dtype)
    exact = _exact_eigenvalues(s.matrix)
    magnitudes = exact.abs()
    order = magnitudes.argsort(descending=True, stable=True)[:3]
    # Each inner power iteration stops once its Rayleigh quotient moves less
    # than delta per step: delta is the 1e-10 stopping tolerance, or in fp32
    # the quotient's rounding noise, below which successive values coincide.
    # With r = (next smaller magnitude) / |lambda_i| the error left is about
    # delta * r^2 / (1 - r^2) < delta / (1 - r^2). Deflating with that
    # slightly wrong pair shifts the next eigenvalue by about the same error
    # times |lambda_{i-1} / lambda_i|, so the bound accumulates down the list.
    # The factor 2 covers the terms the asymptotic estimate leaves out.
    delta = max(1e-10, _rayleigh_noise(N, dtype, magnitudes.max().item()))
    bounds: list[float] = []
    for i, j in enumerate(order.tolist()):
        ratio = (magnitudes[magnitudes < magnitudes[j]].max() / magnitudes[j]).item()
        bound = 2 * delta / (1 - ratio ** 2)
        if bounds:
            bound += bounds[-1] * (magnitudes[order[i - 1]] / magnitudes[j]).item()
        bounds.append(bound)
    # 3000 steps per run: wide_gap's slowest ratio 1.479/1.5 needs about 700
    # to reach the tolerance, so every run stops on the tolerance.
    op = spectra.CountingOperator(s.matrix)
    vals, vecs = ref.power_iteration_deflated(op, N, 3, num_iters_per=3000, dtype=dtype)
    assert vals.shape == (3,) and vecs.shape == (N, 3)
    assert vals.dtype == dtype and vecs.dtype == dtype
    assert op.calls < 3 * 3000
    A64 = s.matrix.double()
    for i, j in enumerate(order.tolist()):
        assert abs(vals[i].item() - exact[j].item()) <= bounds[i], (i, vals.tolist())
        u = vecs[:, i].double()
        assert u.norm().item() == pytest.approx(1.0, abs=N * _eps(dtype))
        assert abs((u @ A64 @ u).item() - vals[i].item()) <= bounds[i]


# --- Sections 4-5: Lanczos ------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", spectra.NAMES)
def test_full_reorth_lanczos_with_k_equal_n_recovers_the_whole_spectrum(name, dtype):
    s = spectra.make(name, dtype=dtype)
    op = spectra.CountingOperator(s.matrix, budget=N)  # one matvec per step
    ritz, Q, history = ref.lanczos_track_orth(op, N, N, reorth="full", dtype=dtype)
    # All n Ritz values, tied included: in exact arithmetic the Krylov space
    # of `tied` misses one direction of the double eigenvalue 10, but rounding
    # seeds it at eps and the ratio 10/1.5 amplifies it to O(1) well within
    # n steps, so the run never becomes invariant.
    assert op.calls == N and ritz.shape == (N,) and Q.shape == (N, N) and len(history) == N
    assert ritz.dtype == dtype and Q.dtype == dtype
    assert torch.equal(ritz, ritz.sort().values)
    # Twice-is-enough keeps each column orthogonal to the others to a few eps;
    # the row-sum norm adds up to n of them. Ritz values then carry that loss
    # of orthogonality times ||A||, plus the rounding of T: n * eps * ||A||.
    assert ref.orthogonality_error(Q) <= N * _eps(dtype)
    exact = _exact_eigenvalues(s.matrix)
    norm = exact.abs().max().item()
    assert (ritz.double() - exact).abs().max().item() <= N * _eps(dtype) * norm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reorth", ref.REORTH_MODES)
def test_top_ritz_value_after_30_steps_on_wide_gap(reorth, dtype):
    s = spectra.make("wide_gap", dtype=dtype)
    op = spectra.CountingOperator(s.matrix, budget=30)
    ritz, Q, history = ref.lanczos_track_orth(op, N, 30, reorth=reorth, dtype=dtype)
    assert op.calls == 30 and ritz.shape == (30,) and Q.shape == (N, 30) and len(history) == 30
    # The gap 10 vs 1.5 makes the top Ritz value converge to eps in a dozen
    # steps; even without reorthogonalization its value stays right (the lost
    # orthogonality shows up as ghost copies, not as a wrong value).
    exact = _exact_eigenvalues(s.matrix)[-1].item()
    assert abs(ritz[-1].item() - exact) <= N * _eps(dtype) * exact
    assert ref.top_by_magnitude(ritz, 1).item() == ritz[-1].item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reorth", ref.REORTH_MODES)
def test_orthogonality_history_has_one_entry_per_step(reorth, dtype):
    A = spectra.section5_matrix(dtype)
    ritz, Q, history = ref.lanczos_track_orth(A.__matmul__, 40, 35, reorth=reorth, dtype=dtype)
    assert len(history) == 35 == Q.shape[1] == len(ritz)
    # One normalized column: |q . q - 1| is the rounding of a length-n norm.
    assert 0.0 <= history[0] <= 40 * _eps(dtype)
    # Step j records ||Q^T Q - I|| for the first j + 1 columns; recomputed
    # from the returned Q up to the rounding of a different matmul.
    for j, h in enumerate(history):
        assert h == pytest.approx(ref.orthogonality_error(Q[:, :j + 1]),
                                  rel=40 * _eps(dtype), abs=40 * _eps(dtype))


def test_lanczos_no_reorth_is_track_orth_without_reorth():
    A = spectra.section5_matrix()
    ritz, Q = ref.lanczos_no_reorth(A.__matmul__, 40, 25, seed=2)
    ritz_none, Q_none, _ = ref.lanczos_track_orth(A.__matmul__, 40, 25, reorth="none", seed=2)
    assert torch.equal(ritz, ritz_none) and torch.equal(Q, Q_none)


def test_lanczos_starts_from_the_seeded_fp32_draw_in_every_precision():
    A = spectra.section5_matrix(torch.float64)
    _, Q64, _ = ref.lanczos_track_orth(A.__matmul__, 40, 2, seed=4, dtype=torch.float64)
    start = torch.randn(40, generator=torch.Generator().manual_seed(4)).double()
    torch.testing.assert_close(Q64[:, 0], start / start.norm(), rtol=0,
                               atol=40 * _eps(torch.float64))


def test_section5_fp32_loses_orthogonality_without_reorth():
    A = spectra.section5_matrix()
    _, Q, history = ref.lanczos_track_orth(A.__matmul__, 40, 40, reorth="none")
    # The notebook does not say which infinity norm; the grader accepts both,
    # so both must show the breakdown. Steps count from 0 (history index);
    # counted from 1 the crossings move one later and stay in range.
    for errors in (history, _orth_error_entrywise_history(Q)):
        first_mild = _first_step_above(errors, 1e-3)
        first_severe = _first_step_above(errors, 0.1)
        assert first_mild is not None and 18 <= first_mild <= 28, first_mild
        assert first_severe is not None and first_severe <= 32, first_severe
        assert max(errors[:10]) < 1e-5  # it starts near fp32 eps, not broken


@pytest.mark.parametrize("reorth", ["full", "selective"])
def test_section5_fp32_reorthogonalization_keeps_orthogonality(reorth):
    A = spectra.section5_matrix()
    _, _, history = ref.lanczos_track_orth(A.__matmul__, 40, 40, reorth=reorth)
    # The row-sum norm bounds the entrywise one, so one check covers both.
    assert len(history) == 40 and max(history) < 1e-4


def test_section5_breakdown_is_a_precision_effect():
    # The same run in fp64 starts 2^29 times closer to orthogonal, so the
    # error needs more steps of growth to reach 1e-3.
    A = spectra.section5_matrix(torch.float64)
    _, _, history = ref.lanczos_track_orth(A.__matmul__, 40, 40, dtype=torch.float64)
    assert max(history[:30]) < 1e-3


@pytest.mark.parametrize("reorth", ["partial", "Full", "", None])
def test_lanczos_rejects_unknown_reorth(reorth):
    A = spectra.section5_matrix()
    with pytest.raises(ValueError, match="reorth"):
        ref.lanczos_track_orth(A.__matmul__, 40, 5, reorth=reorth)


@pytest.mark.parametrize("k", [0, 41])
def test_lanczos_rejects_k_outside_1_to_dim(k):
    A = spectra.section5_matrix()
    with pytest.raises(ValueError, match="k must be"):
        ref.lanczos_track_orth(A.__matmul__, 40, k)


# --- Section 1: Hessian-vector products ----------------------------------------


def _dense_hessian(model, X, y) -> torch.Tensor:
    """The loss Hessian in flat-parameter coordinates, written independently
    of the reference: split the flat vector by parameter and call the model."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat):
        pieces = flat.split([shape.numel() for shape in shapes])
        params = {name: piece.view(shape) for name, piece, shape in zip(names, pieces, shapes)}
        return F.cross_entropy(functional_call(model, params, (X,)), y)

    return torch.autograd.functional.hessian(loss, theta)


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return ((approx.double() - exact).norm() / exact.norm()).item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hvps_match_the_dense_hessian_in_fp64(seed):
    case = hvp_case(seed, dtype=torch.float64)
    H = _dense_hessian(case.model, case.X, case.y)
    exact = H @ case.v
    args = (case.model, case.X, case.y, case.v)
    for hvp in (ref.hvp_double_backward, ref.hvp_jvp_of_grad):
        hv = hvp(*args)
        assert hv.dtype == torch.float64 and hv.shape == case.v.shape
        # Exact up to rounding (about 1e-16 measured); 1e-10 is far below
        # any finite-difference error, so a disguised FD would fail.
        assert _relative_error(hv, exact) <= 1e-10, hvp.__name__
    # Central difference: truncation (eps^2 / 6) * (third-derivative term),
    # measured at 0.1-0.16 * eps^2 relative here, plus rounding ~1e-16 / eps;
    # a bound of eps^2 = 1e-6 is 300x below a forward difference's O(eps).
    eps = 1e-3
    hv = ref.hvp_finite_difference(*args, eps=eps)
    assert hv.dtype == torch.float64
    assert _relative_error(hv, exact) <= eps ** 2


@pytest.mark.parametrize("seed", [0, 1])
def test_finite_difference_error_is_second_order(seed):
    case = hvp_case(seed, dtype=torch.float64)
    args = (case.model, case.X, case.y, case.v)
    exact = ref.hvp_double_backward(*args)
    steps = [2e-2, 1e-2, 5e-3, 2.5e-3]
    errors = [_relative_error(ref.hvp_finite_difference(*args, eps=eps), exact) for eps in steps]
    # Halving eps must divide the error by 4 (a forward difference gives 2).
    # Deviations come from the next term, O(eps^2) = 4e-4 relative, and from
    # rounding, ~1e-16 / eps against errors above 1e-7: 4 +- 0.1 is ample.
    for coarse, fine in pairwise(errors):
        assert coarse / fine == pytest.approx(4.0, abs=0.1)


@pytest.mark.parametrize("seed", [0, 1])
def test_hvps_agree_on_tiny_mlp_in_fp64(seed):
    case = hvp_case(seed, n_samples=32, dtype=torch.float64, model="tiny")
    args = (case.model, case.X, case.y, case.v)
    exact = ref.hvp_double_backward(*args)
    assert exact.shape == (1930,)
    assert _relative_error(ref.hvp_jvp_of_grad(*args), exact) <= 1e-10
    # The same central-difference bound as on toy_mlp (measured 0.03 * eps^2).
    assert _relative_error(ref.hvp_finite_difference(*args, eps=1e-3), exact) <= 1e-6


def test_autodiff_hvps_in_fp32_are_accurate_to_fp32():
    case = hvp_case(0)
    case64 = hvp_case(0, dtype=torch.float64)  # the same problem, upcast exactly
    exact = _dense_hessian(case64.model, case64.X, case64.y) @ case64.v
    for hvp in (ref.hvp_double_backward, ref.hvp_jvp_of_grad):
        hv = hvp(case.model, case.X, case.y, case.v)
        assert hv.dtype == torch.float32
        # Forward, backward and a second backward through inner products of
        # length <= 20: rounding of order sqrt(20) * eps per layer and pass,
        # a few dozen eps in all (measured ~1.3 eps); 50 * eps32 = 6e-6.
        assert _relative_error(hv, exact) <= 50 * _eps(torch.float32), hvp.__name__


# --- Section 6: Hessian top-k ----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_hessian_ritz_top_eigenvalue_matches_dense_hessian(seed, dtype):
    case = hvp_case(seed, dtype=dtype)
    case64 = hvp_case(seed, dtype=torch.float64)
    exact = torch.linalg.eigvalsh(_dense_hessian(case64.model, case64.X, case64.y))
    ritz = ref.hessian_ritz(case.model, case.X, case.y, k=30)
    assert ritz.shape == (30,) and ritz.dtype == dtype
    # The top eigenvalue by magnitude is separated enough to converge in 30
    # steps (measured to a few eps); what is left is rounding, as in a
    # Rayleigh quotient of length P = 254 (for fp32 mostly the HVP's own).
    top = ref.top_by_magnitude(exact, 1).item()
    bound = _rayleigh_noise(exact.numel(), dtype, top)
    assert ref.top_by_magnitude(ritz, 1).item() == pytest.approx(top, abs=bound)


def test_top_by_magnitude_sorts_absolute_values_descending():
    values = torch.tensor([-3.0, 1.0, 2.0, -0.5])
    assert ref.top_by_magnitude(values, 3).tolist() == [3.0, 2.0, 1.0]
