"""Section 3: the randomized range finder, randomized eigendecomposition, and the
comparison with Lanczos on the notebook's Hessian.

Bounds (Halko, Martinsson, Tropp 2011). For a Gaussian test matrix with k + p
columns, p >= 4, ||A - QQ^T A||_2 <= (1 + 11 sqrt(k + p) sqrt(n)) sigma_{k+1}
except with probability 6 p^-p (their eq. 1.9); for q power iterations apply
it to A^(2q+1) and take the (2q+1)-th root (their Prop. 8.6). With p = 10 the
failure probability is 6e-10. For a Rayleigh-Ritz pair from the same Q:
|lambda_i(Q^T A Q) - lambda_i(A)| <= 2 eps (Weyl, since A - PAP = (I-P)A +
PA(I-P)) and ||A u - lambda u|| = ||(I-P) A u|| <= eps, with eps the
range-finder error.
"""

import math

import torch
from ntk_checks import matrix_operator, notebook_problem, top_by_magnitude

from autograder.testing import check, matrix, numbers, vector
from fixtures import ntk_models as fx


def _halko(n: int, k: int, p: int, q: int, sigma_next: float) -> float:
    return (1 + 11 * math.sqrt(k + p) * math.sqrt(n)) ** (1 / (2 * q + 1)) * sigma_next


def _range(student, A: torch.Tensor, rank: int, oversample: int, q: int, seed: int = 0):
    n, cols = A.shape[0], rank + oversample
    budget = (2 * q + 1) * cols
    op = matrix_operator(student, A, budget, hint="the range finder spends (2q + 1)(rank + "
                                                  "oversample) matvecs")
    call = f"randomized_range_finder(matvec, {n}, {rank}, oversample={oversample}, " \
           f"power_iters={q}, seed={seed})"
    Q = matrix(student.call("randomized_range_finder", op, n, rank, oversample=oversample,
                            power_iters=q, seed=seed), f"the Q returned by {call}", shape=(n, cols))
    return Q, op.calls, budget, call


def _slow_decay(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues +-j^-1/2 of alternating sign: a slowly decaying, indefinite spectrum."""
    j = torch.arange(1, n + 1, dtype=torch.float64)
    eigs = j ** -0.5 * torch.where(j % 2 == 0, -1.0, 1.0)
    return eigs, fx.with_spectrum(eigs, seed=seed)


def _gap_then_slow_decay(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten eigenvalues from 10 down to 5.5, then +-(j - 10)^-1/2 of alternating sign."""
    j = torch.arange(1, n - 9, dtype=torch.float64)
    tail = j ** -0.5 * torch.where(j % 2 == 0, -1.0, 1.0)
    eigs = torch.cat([torch.linspace(10.0, 5.5, 10, dtype=torch.float64), tail])
    return eigs, fx.with_spectrum(eigs, seed=seed)


@check(exercise="3.1", weight=2)
def test_orthonormal_and_spends_its_budget(student):
    """Q has orthonormal columns and the range finder spends (2q + 1)(k + p) matvecs"""
    # Catches: power_iters_ignored (15 of 75 matvecs), no_qr (A Omega returned as is),
    # one_product_per_power_iter ((q + 1)(k + p)); the identity's first columns, zeros.
    _, A = _gap_then_slow_decay(120, seed=2301)
    for q in (0, 2):
        Q, calls, budget, call = _range(student, A, 10, 5, q)
        error = (Q.T @ Q - torch.eye(15, dtype=torch.float64)).abs().max().item()
        assert error <= 1e-4, f"{call} returned Q with ||Q^T Q - I||_max = {error:.2g}: " \
                              "orthonormalize with torch.linalg.qr"
        assert calls == budget, f"{call} called the matvec {calls} times; (2q + 1)(rank + " \
                                f"oversample) = {budget}"
        # The real-work gate: correct code leaves ~2 sigma_11 = 2 (measured, q = 0), a Q
        # that ignores A leaves ||A|| = 10.
        residual = torch.linalg.matrix_norm(A - Q @ (Q.T @ A), ord=2).item()
        assert residual <= 6.0, \
            f"{call} leaves ||A - QQ^T A||_2 = {residual:.3g} on a matrix of norm 10: Q " \
            "should span A Omega (A^(2q+1) Omega with power iterations)"


@check(exercise="3.1", weight=3)
def test_power_iterations_reorthonormalize(student):
    """with power iterations, Q still captures small directions of an exact-rank matrix"""
    # Catches: no_reorthonormalization (A^7 Omega in one go: the 1e-3 direction is lost
    # below rounding, 1e-21 of the top), ignoring power_iters; zeros. A correct fp32 Q
    # captures the range to ~1e-7 ||A||; 1e-4 is the margin.
    A = fx.with_spectrum(fx.low_rank(80, [3.0, -2.0, 1e-2, -1e-3]), seed=2302)
    Q, _, _, call = _range(student, A, 4, 3, 3, seed=1)
    residual = torch.linalg.matrix_norm(A - Q @ (Q.T @ A), ord=2).item()
    assert residual <= 1e-4 * 3.0, \
        f"{call} on a rank-4 matrix with eigenvalues down to 1e-3 leaves ||A - QQ^T A||_2 = " \
        f"{residual:.2g}: re-orthonormalize (QR) after every product with A, or the small " \
        "directions drown in rounding"


@check(exercise="3.1", weight=3)
def test_error_within_the_halko_bound(student):
    """with q = 2 on a slowly decaying tail, ||A - QQ^T A|| is within the Halko bound"""
    # Catches: a Q of another operator (A^2 Omega only, Omega itself), a Q of the right
    # shape that ignores A (the identity's first columns: error 10 sigma_11), zeros. The
    # bound is 3.7 sigma_11 with failure probability 6e-10 (module docstring); correct
    # code measures 0.78-0.88 sigma_11 on such tails, and 1.3-1.9 without power
    # iterations (which the budget check catches).
    eigs, A = _gap_then_slow_decay(200, seed=2303)
    Q, _, _, call = _range(student, A, 10, 10, 2, seed=3)
    residual = torch.linalg.matrix_norm(A - Q @ (Q.T @ A), ord=2).item()
    sigma = eigs.abs().sort(descending=True).values[10].item()
    bound = _halko(200, 10, 10, 2, sigma)
    assert residual <= bound, \
        f"{call} leaves ||A - QQ^T A||_2 = {residual:.3g} = {residual / sigma:.2f} sigma_11, " \
        f"above the bound {bound / sigma:.2f} sigma_11 for q = 2 power iterations"


# --- 3.2 randomized eigendecomposition ----------------------------------------------------


def _eigh(student, A: torch.Tensor, rank: int, oversample: int, q: int, seed: int = 0):
    n, cols = A.shape[0], rank + oversample
    budget = (2 * q + 2) * cols
    op = matrix_operator(student, A, budget, hint="randomized eigh spends (2q + 2)(rank + "
                                                  "oversample) matvecs")
    call = f"randomized_eigh(matvec, {n}, {rank}, oversample={oversample}, power_iters={q}, " \
           f"seed={seed})"
    result = student.call("randomized_eigh", op, n, rank, oversample=oversample,
                          power_iters=q, seed=seed)
    assert isinstance(result, (tuple, list)) and len(result) == 2, \
        f"{call} should return (eigvals, eigvecs)"
    vals = vector(result[0], f"the eigenvalues returned by {call}", length=rank)
    vecs = matrix(result[1], f"the eigenvectors returned by {call}", shape=(n, rank))
    return vals, vecs, op.calls, budget, call


def _separated(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Five eigenvalues 5, -4, 3, -2.5, 2 over a bulk within [-0.01, 0.01]."""
    eigs = torch.cat([torch.tensor([5.0, -4.0, 3.0, -2.5, 2.0], dtype=torch.float64),
                      torch.linspace(-0.01, 0.01, n - 5, dtype=torch.float64)])
    return eigs, fx.with_spectrum(eigs, seed=seed)


@check(exercise="3.2", weight=3)
def test_top_eigenvalues_by_magnitude_with_their_signs(student):
    """randomized_eigh returns the top eigenvalues by magnitude, signed, descending |lambda|"""
    # Catches: sorted_by_value (the top algebraic values: -4 and -2.5 lost), abs_values,
    # ascending order, eigenvalues of Q^T Q; zeros. Weyl: each is within 2 eps of the
    # truth, eps <= 8.1 * 0.01 (q = 1, failure probability 6e-10).
    eigs, A = _separated(150, seed=2304)
    vals, _, _, _, call = _eigh(student, A, 5, 10, 1)
    want = top_by_magnitude(eigs, 5)
    eps = _halko(150, 5, 10, 1, 0.01)
    worst = (vals - want).abs().max().item()
    assert worst <= 2 * eps, \
        f"{call} returned eigenvalues up to {worst:.3g} from the top five by magnitude " \
        "(signed, in descending order of |lambda|)"


@check(exercise="3.2", weight=3)
def test_eigenvectors_are_ritz_vectors(student):
    """the eigenvectors are orthonormal with residuals ||A u - lambda u|| within the bound"""
    # Catches: returning Q's columns or W instead of Q W, eigenvectors not matched to
    # their eigenvalues after sorting; zeros.
    _, A = _separated(150, seed=2305)
    vals, vecs, _, _, call = _eigh(student, A, 5, 10, 1, seed=2)
    error = (vecs.T @ vecs - torch.eye(5, dtype=torch.float64)).abs().max().item()
    assert error <= 1e-4, f"the eigenvectors of {call} have ||U^T U - I||_max = {error:.2g}"
    residual = (A @ vecs - vecs * vals).norm(dim=0).max().item()
    eps = _halko(150, 5, 10, 1, 0.01)
    assert residual <= eps, \
        f"the eigenpairs of {call} have residuals ||A u - lambda u|| up to {residual:.3g}, " \
        "above the range finder's error: lift T's eigenvectors by Q (U = Q W), in the " \
        "order of the eigenvalues"


@check(exercise="3.2", weight=2)
def test_spends_2q_plus_2_blocks(student):
    """randomized_eigh spends (2q + 2)(k + p) matvecs, and finds the top eigenvalue"""
    # Catches: T formed with an extra pass, or from the range finder's last product
    # reused wrongly; the gate (top eigenvalue within 2 eps) keeps do-nothing functions out.
    _, A = _separated(100, seed=2306)
    vals, _, calls, budget, call = _eigh(student, A, 3, 7, 2, seed=5)
    assert calls == budget, f"{call} called the matvec {calls} times; (2q + 2)(rank + " \
                            f"oversample) = {budget}"
    assert abs(vals[0].item() - 5.0) <= 2 * _halko(100, 3, 7, 2, 2.5), \
        f"{call} returned {vals[0].item():.4g} as its top eigenvalue"


# --- 3.3 randomized vs Lanczos on the Hessian -------------------------------------------


def _exact_top5() -> torch.Tensor:
    return top_by_magnitude(notebook_problem()[4], 5)


@check(exercise="3.3", weight=2)
def test_lanczos_top5_match_the_hessian(student):
    """lanczos_top5 are the Hessian's top-5 eigenvalues by magnitude (60 Lanczos steps)"""
    # Catches: eigenvalues of the wrong matrix, ascending order, |values|; zeros.
    # Measured: 60 steps from any start are within 1e-6 (relative); fp32 HVPs add ~1e-6.
    got = vector(student.get("lanczos_top5"), "lanczos_top5", length=5)
    want = _exact_top5()
    worst = ((got - want).abs() / want.abs()).max().item()
    assert worst <= 1e-4, \
        f"lanczos_top5 is up to {worst:.2g} (relative) from the Hessian's five largest-" \
        "magnitude eigenvalues (signed, descending |lambda|)"


@check(exercise="3.3", weight=2)
def test_rand_top5_are_ritz_values_of_a_small_subspace(student):
    """rand_top5 interlace below the top eigenvalues, the first within 5%"""
    # Catches: rand_top5 from eigvalsh or Lanczos (the fifth is then exact), values of
    # the wrong matrix, sorted by value; zeros. The top-5 of the Hessian are positive, and
    # Cauchy interlacing puts the j-th Ritz value of any subspace at or below the j-th
    # eigenvalue; with q = 2 the first is within 1.1e-4 and the worst of the five off
    # by at least 3% (measured over 100 seeds).
    got = vector(student.get("rand_top5"), "rand_top5", length=5)
    want = _exact_top5()
    assert bool((got <= want + 1e-5 * want.abs()).all()), \
        "rand_top5 has values above the Hessian's eigenvalues of the same rank, which Ritz " \
        "values of a subspace never are: store the eigenvalues of randomized_eigh"
    assert abs(got[0].item() - want[0].item()) <= 0.05 * want[0].item(), \
        f"the first of rand_top5 is {got[0].item():.4g}, more than 5% from the top eigenvalue"
    assert (got - want).abs().max().item() > 1e-4 * want[4].item(), \
        "rand_top5 matches the exact top-5 to 1e-4, which 60 matvecs of randomized_eigh " \
        "(rank 5, oversample 5, power_iters 2) do not reach on this flat spectrum: store " \
        "what randomized_eigh returns"


@check(exercise="3.3", weight=1)
def test_lanczos_wins(student):
    """at 60 matvecs, Lanczos is more accurate than the randomized method"""
    # Catches: swapped variables; zeros.
    want = _exact_top5()
    rand = vector(student.get("rand_top5"), "rand_top5", length=5)
    lanczos = vector(student.get("lanczos_top5"), "lanczos_top5", length=5)
    err = [((v - want).abs() / want.abs()).max().item() for v in (rand, lanczos)]
    assert err[1] < err[0] / 10, \
        f"the worst relative errors are {err[0]:.2g} (rand_top5) and {err[1]:.2g} " \
        "(lanczos_top5); Lanczos should win by more than 10x"
    numbers(student.get("rand_top5"), "rand_top5")
