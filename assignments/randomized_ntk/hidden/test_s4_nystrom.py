"""Section 4: the stable Nystrom approximation, Gauss-Newton-vector products, and
Nystrom of the notebook's Gauss-Newton matrix.

Nystrom's accuracy (Tropp, Yurtsever, Udell, Cevher 2017, Thm 4.1; Gittens and
Mahoney 2016): for a Gaussian sketch of s columns (orthonormalizing it changes
nothing, Nystrom depends only on its range) and any r < s - 1,
E ||A - A_hat||_* <= (1 + r / (s - r - 1)) ||A - [[A]]_r||_*, and never less
than the best rank-s error. The checks use the smallest of these bounds over r.
"""

from itertools import pairwise

import torch
from ntk_checks import matrix_operator, notebook_gauss_newton

from autograder.testing import check, matrix, numbers, vector
from fixtures import ntk_models as fx
from reference import randomized_ntk as ref


def _nystrom(student, A: torch.Tensor, rank: int, seed: int = 0):
    n = A.shape[0]
    op = matrix_operator(student, A, rank, hint="the Nystrom sketch A Omega costs exactly "
                                                "rank matvecs")
    call = f"nystrom(matvec, {n}, {rank}, seed={seed})"
    result = student.call("nystrom", op, n, rank, seed=seed)
    assert isinstance(result, (tuple, list)) and len(result) == 2, f"{call} should return (U, lam)"
    U = matrix(result[0], f"the U returned by {call}", shape=(n, rank))
    lam = vector(result[1], f"the lam returned by {call}", length=rank)
    return U, lam, op.calls, call


def nuclear_bound(eigs: torch.Tensor, s: int) -> float:
    """min over r < s - 1 of (1 + r / (s - r - 1)) * sum_{j > r} lambda_j (eigs descending)."""
    return min((1 + r / (s - r - 1)) * eigs[r:].sum().item() for r in range(s - 1))


@check(exercise="4.1", weight=3)
def test_exact_on_low_rank_psd_with_rank_matvecs(student):
    """nystrom spends rank matvecs and is exact on a PSD matrix of lower rank"""
    # Catches: an extra pass for Omega^T A Omega, materializing A (the budget refuses
    # the 9th call), s instead of s^2, B = Y_nu without C^-T; zeros. In fp32 the shifted
    # core Omega^T A Omega + nu I of a rank-5 matrix has condition ~1e6, and Nystrom
    # reproduces A only to ~2e-5 of its norm typically, 1.7e-3 at worst over 400 draws;
    # 2e-2 is the margin (the bugs are off by O(1)).
    A = fx.with_spectrum(fx.low_rank(70, [5.0, 2.5, 1.0, 0.4, 0.1]), seed=2401)
    U, lam, calls, call = _nystrom(student, A, 8, seed=1)
    assert calls == 8, f"{call} called the matvec {calls} times; the sketch costs rank = 8"
    error = torch.linalg.matrix_norm((U * lam) @ U.T - A).item()
    assert error <= 2e-2 * torch.linalg.matrix_norm(A).item(), \
        f"{call} on a PSD matrix of rank 5 gives ||U diag(lam) U^T - A||_F = {error:.2g}, " \
        "where Nystrom with 8 columns is exact"


@check(exercise="4.1", weight=2)
def test_psd_orthonormal_and_sorted_on_an_ill_conditioned_matrix(student):
    """on a PSD matrix with eigenvalues from 3.7 down to 3.7e-8, U is orthonormal, lam >= 0"""
    # Catches: ascending lam, U not orthonormal (B returned as is); zeros are caught by
    # the value gate: A_hat <= A in the Loewner order, so lam[0] <= 3.7 (the top
    # eigenvalue), and with 30 columns it is above 0.9 of it (0.996 measured); the scale
    # 3.7 keeps out constants (ones, identity columns). Not caught here: the unshifted
    # core's pseudo-inverse (with 30 columns the core's condition number is about 1e3,
    # well within fp32: that mistake passes every assertion, measured).
    eigs = 3.7 * 10.0 ** -torch.linspace(0.0, 8.0, 90, dtype=torch.float64)
    A = fx.with_spectrum(eigs, seed=2402)
    U, lam, _, call = _nystrom(student, A, 30, seed=2)
    error = (U.T @ U - torch.eye(30, dtype=torch.float64)).abs().max().item()
    assert error <= 1e-4, f"{call} returned U with ||U^T U - I||_max = {error:.2g}"
    assert lam.min().item() >= -1e-6 * 3.7, \
        f"{call} returned a negative lam ({lam.min().item():.3g}): a Nystrom approximation " \
        "of a PSD matrix is PSD (clamp s^2 - nu at 0)"
    assert bool((lam[:-1] >= lam[1:] - 1e-7).all()), f"{call} should return lam descending"
    assert 0.9 * 3.7 <= lam[0].item() <= 3.7 * (1 + 1e-5), \
        f"the largest lam of {call} is {lam[0].item():.4g}, where Nystrom's lies in " \
        "[3.33, 3.7] (it never exceeds the top eigenvalue, 3.7)"


@check(exercise="4.1", weight=3)
def test_near_optimal_on_a_decaying_spectrum(student):
    """on eigenvalues j^-2, the nuclear error is within Nystrom's expected-error bound"""
    # Catches: s instead of s^2, B not divided by C^T, a projection onto the wrong range;
    # zeros (error tr A = 1.64, the bound 0.2). Correct code averages 0.58 of the bound
    # (measured over 40 seeds, 0.65 at worst for one run), so the mean of 4 seeds stays
    # below the bound on its expectation itself.
    eigs = fx.decaying(200, 2.0)
    A = fx.with_spectrum(eigs, seed=2403)
    errors = []
    for seed in range(4):
        U, lam, _, _ = _nystrom(student, A, 20, seed=seed)
        errors.append(torch.linalg.matrix_norm(A - (U * lam) @ U.T, "nuc").item())
    mean, bound, best = sum(errors) / 4, nuclear_bound(eigs, 20), eigs[20:].sum().item()
    assert mean >= best * (1 - 1e-6), \
        f"nystrom(matvec, 200, 20) has nuclear error {mean:.4g}, below the best possible " \
        f"rank-20 error {best:.4g}: check U and lam describe one PSD matrix"
    assert mean <= bound, \
        f"nystrom(matvec, 200, 20, seed=s) has mean nuclear error {mean:.4g} over s = 0..3, " \
        f"above the bound {bound:.4g} on its expectation"


# --- 4.2 Gauss-Newton-vector products ---------------------------------------------------


def _gnvp(student, model, X, y, v, what: str) -> torch.Tensor:
    got = student.call("gauss_newton_vp", model, X, y, v)
    return vector(got, f"gauss_newton_vp(model, X, y, v) on {what}", length=v.numel())


@check(exercise="4.2", weight=3)
def test_gauss_newton_matches_on_hidden_models(student):
    """gauss_newton_vp(model, X, y, v) is J^T H_out J v on other models and batches"""
    # Catches: hessian_instead (the HVP differs by the residual term), sum_not_mean (n
    # times too big), no_softmax_term (diag(p) only), logits' Hessian of the sum;
    # zeros. fp64 models: 1e-8 of the largest entry covers rounding.
    cases = ((fx.small_mlp(31, 6).double(), *fx.mnist(48, 31), "a 49-6-10 MLP on 48 images"),
             (fx.ntk_net(32, (49, 8, 8, 10)), *fx.mnist(20, 32), "a 49-8-8-10 MLP on 20 images"))
    for model, X, y, what in cases:
        X = X.double()
        P = sum(p.numel() for p in model.parameters())
        v = torch.randn(P, generator=torch.Generator().manual_seed(2404), dtype=torch.float64)
        want = ref.gauss_newton_vp(model, X, y, v)
        got = _gnvp(student, model, X, y, v, what)
        error = (got - want).abs().max().item()
        assert error <= 1e-6 * want.abs().max().item(), \
            f"gauss_newton_vp on {what} is {error:.2g} away from G v at worst (entries up " \
            f"to {want.abs().max().item():.2g}): G = J^T H_out J with H_out = (diag(p) - " \
            "p p^T) / n per example, for the mean cross-entropy"


@check(exercise="4.2", weight=2)
def test_matrix_free_where_the_jacobian_cannot_fit(student):
    """gauss_newton_vp works on a model whose Jacobian would take 14 GB"""
    # Catches: jacobian_materialized (vmap(jacrev) or torch.autograd.functional.jacobian:
    # 20,000 x 183,010 floats, past the memory limit); zeros. fp32: 1e-4 relative.
    g = torch.Generator().manual_seed(2405)
    model = fx.ntk_net(33, (49, 3000, 10), dtype=torch.float32)
    X, y = fx.mnist(2000, 33)
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=g)
    want = ref.gauss_newton_vp(model, X, y, v)
    got = _gnvp(student, model, X, y, v, "a 49-3000-10 MLP on 2,000 images")
    error = (got - want).abs().max().item()
    assert error <= 1e-4 * want.abs().max().item(), \
        f"gauss_newton_vp on a 49-3000-10 MLP is {error:.2g} away from G v at worst"


@check(exercise="4.2", weight=1)
def test_leaves_its_inputs_alone(student):
    """gauss_newton_vp leaves the model, X, y and v as it found them (and computes G v)"""
    # Catches: parameters perturbed in place, v normalized in place; the gate, zeros.
    model, (X, y) = fx.small_mlp(34, 5).double(), fx.mnist(16, 34)
    v = torch.randn(sum(p.numel() for p in model.parameters()),
                    generator=torch.Generator().manual_seed(2406), dtype=torch.float64)
    got = _gnvp(student, model, X.double(), y, v, "a 49-5-10 MLP")
    assert not student.changed, f"gauss_newton_vp changed {', '.join(student.changed)}"
    want = ref.gauss_newton_vp(model, X.double(), y, v)
    assert (got - want).abs().max().item() <= 1e-6 * want.abs().max().item(), \
        "gauss_newton_vp(model, X, y, v) on a 49-5-10 MLP is not G v"


# --- 4.3 Nystrom of the Gauss-Newton matrix ------------------------------------------------


@check(exercise="4.3", weight=2)
def test_nys_errors_between_the_optimum_and_the_bound(student):
    """nys_errors lie between the best rank-r error and Nystrom's bound"""
    # Catches: errors of another norm (Frobenius, spectral), not relative, of another
    # matrix (the Hessian); zeros (below the optimum), best_errors copied (Nystrom of
    # rank r is never optimal here: measured 1.4-2 times the optimum), constants. The
    # upper end is the bound on the expected error; single runs measure at most 0.83 of it.
    ranks = [int(r) for r in numbers(student.get("ranks"), "ranks")]
    assert ranks == [5, 10, 20, 40], f"ranks is {ranks}; keep the notebook's [5, 10, 20, 40]"
    errors = numbers(student.get("nys_errors"), "nys_errors", length=4)
    eigs = notebook_gauss_newton()
    total = eigs.sum().item()
    for r, got in zip(ranks, errors):
        best = eigs[r:].sum().item() / total
        bound = nuclear_bound(eigs, r) / total
        assert 1.05 * best <= got <= bound, \
            f"nys_errors at rank {r} is {got:.4g}; the relative nuclear error of a rank-{r} " \
            f"Nystrom approximation of G lies between the optimum {best:.4g} and about " \
            f"{bound:.4g}: store ||G - G_hat||_* / ||G||_*"


@check(exercise="4.3", weight=1)
def test_nys_errors_decrease_with_rank(student):
    """nys_errors decrease as the rank grows"""
    # Catches: errors stored in the wrong order or from one rank; zeros and constants
    # (not strictly decreasing).
    errors = numbers(student.get("nys_errors"), "nys_errors", length=4)
    assert all(a > b for a, b in pairwise(errors)), \
        f"nys_errors {[f'{e:.3g}' for e in errors]} should decrease with the rank"
