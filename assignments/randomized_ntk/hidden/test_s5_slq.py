"""Section 5: stochastic Lanczos quadrature, and the notebook's Hessian density.

Statistics. For a unit Rademacher probe v = z / sqrt(n) and M_t = g_sigma(tI - A),
Var(v^T M_t v) <= 2 ||M_t||_F^2 / n^2 = (2 / n^2) sum_i g_sigma(t - lambda_i)^2,
and the integral over t of g_sigma(t - lambda)^2 is 1 / (2 sigma sqrt(pi)). So
the mean squared L2 distance between the SLQ density of n_v probes and the
smoothed density is at most B = 1 / (n_v n sigma sqrt(pi)) plus the quadrature
bias (measured negligible at the k used here: the L1 error is the same at
k = 20, 30 and 50). The checks allow 3 sqrt(B): Markov's inequality bounds the
failure probability by 1/9 whatever the distribution; the squared distance is
a sum over many nearly independent grid points and probes, for which 9 times
the mean is far in the tail (the robustness test sees no failure).
"""

import math

import torch
from ntk_checks import matrix_operator, notebook_problem

from autograder.testing import check, vector
from fixtures import ntk_models as fx
from reference import randomized_ntk as ref

HINT = "SLQ spends k matvecs per probe, num_probes * k in all"


def _slq(student, A: torch.Tensor, grid: torch.Tensor, num_probes: int, k: int, sigma: float,
         seed: int = 0) -> tuple[torch.Tensor, int, str]:
    n = A.shape[0]
    op = matrix_operator(student, A, num_probes * k, hint=HINT)
    call = f"slq_density(matvec, {n}, grid, num_probes={num_probes}, k={k}, sigma={sigma}, " \
           f"seed={seed})"
    got = student.call("slq_density", op, n, grid, num_probes=num_probes, k=k, sigma=sigma,
                       seed=seed)
    return vector(got, f"the density returned by {call}", length=grid.numel()), op.calls, call


@check(exercise="5.1", weight=4)
def test_exact_on_a_diagonal_with_k_equal_n(student):
    """with k = n on a diagonal matrix, slq_density is the exact smoothed density"""
    # Catches: weights_not_squared, first_column_not_row, gaussian_probes (v_i^2 is
    # not 1/n), sigma_ignored, kernel_not_normalized (1/(sigma sqrt(2 pi)) missing),
    # sum_not_mean over probes; zeros. Rademacher probes put weight exactly 1/n
    # on each eigenvalue of a diagonal matrix, and k = n steps find every eigenvalue;
    # fp32 Lanczos is accurate to ~1e-6, the tolerance is 1e-4 of the peak.
    eigs = torch.tensor([-2.3, -0.7, 0.1, 0.4, 1.1, 1.5, 2.8, 3.3, 5.0], dtype=torch.float64)
    grid = torch.linspace(-4.0, 7.0, 200, dtype=torch.float64)
    got, _, call = _slq(student, torch.diag(eigs), grid, 3, 9, 0.3, seed=6)
    want = ref.exact_density(eigs, grid, 0.3)
    error = (got - want).abs().max().item()
    assert error <= 1e-4 * want.max().item(), \
        f"{call} on a 9 x 9 diagonal matrix is off by up to {error:.2g} (the peak is " \
        f"{want.max().item():.3g}), where k = n with Rademacher probes of norm 1 gives the " \
        "exact smoothed density: weights tau_j = (first entry of T's j-th eigenvector)^2, " \
        "each Gaussian normalized, averaged over the probes"


def _outliers(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bulk in [-1, 1] and ten outliers from -3 to 8, like a Hessian's spectrum."""
    eigs = torch.cat([torch.linspace(-1.0, 1.0, n - 10, dtype=torch.float64),
                      torch.tensor([3.0, 4.0, 5.0, -2.5, 6.0, 2.2, -3.0, 4.5, 7.0, 8.0],
                                   dtype=torch.float64)])
    return eigs, fx.with_spectrum(eigs, seed=seed)


@check(exercise="5.1", weight=4)
def test_close_to_the_density_of_a_rotated_matrix(student):
    """on a 150 x 150 matrix with outliers, slq_density is within its statistical error"""
    # Catches: nodes from the wrong matrix (Q^T Q), the start vector ignored (lanczos
    # from a random start), the first component of the wrong axis (Y[:, 0] instead of
    # Y[0, :]), probes not renewed; zeros (L2 distance 0.63). Bound: module docstring,
    # 3 sqrt(B) = 0.106; correct code measures up to 0.055 (20 seeds).
    eigs, A = _outliers(150, seed=2501)
    grid = torch.linspace(-5.0, 10.0, 600, dtype=torch.float64)
    got, _, call = _slq(student, A, grid, 20, 30, 0.15, seed=3)
    want = ref.exact_density(eigs, grid, 0.15)
    dt = (grid[1] - grid[0]).item()
    l2 = math.sqrt(((got - want) ** 2).sum().item() * dt)
    bound = 3 / math.sqrt(20 * 150 * 0.15 * math.sqrt(math.pi))
    assert l2 <= bound, \
        f"{call} is at L2 distance {l2:.3g} from the smoothed spectral density, above the " \
        f"statistical error of 20 probes ({bound:.3g})"


@check(exercise="5.1", weight=1)
def test_mass_one_and_seeded(student):
    """the density integrates to 1, and depends on the seed (fresh probes)"""
    # Catches: kernel_not_normalized (mass sigma sqrt(2 pi)), weights not squared (mass
    # > 1), seed ignored
    # (the global RNG: two seeds give one density). The grid spans the spectrum +- 13
    # sigma, so the mass outside is below 1e-30; 1e-3 covers the Riemann sum.
    _, A = _outliers(60, seed=2502)
    grid = torch.linspace(-5.0, 10.0, 1500, dtype=torch.float64)
    first, _, call = _slq(student, A, grid, 2, 6, 0.15, seed=1)
    mass = first.sum().item() * (grid[1] - grid[0]).item()
    assert abs(mass - 1.0) <= 1e-3, \
        f"{call} integrates to {mass:.4g}, not 1: probes of norm 1, weights summing to 1"
    second, _, _ = _slq(student, A, grid, 2, 6, 0.15, seed=2)
    assert (first - second).abs().max().item() > 1e-6, \
        "slq_density returned the same density for seeds 1 and 2; draw the probes from a " \
        "generator seeded by `seed`"


# --- 5.2 the Hessian's density -----------------------------------------------------------


def _grid_and_truth(student) -> tuple[torch.Tensor, torch.Tensor]:
    eigs = notebook_problem()[4]
    grid = vector(student.get("grid_H"), "grid_H", length=500)
    want = torch.linspace(eigs[0].item() - 0.2, eigs[-1].item() + 0.2, 500, dtype=torch.float64)
    assert (grid - want).abs().max().item() <= 1e-4, \
        "grid_H is not the notebook's linspace(lambda_min - 0.2, lambda_max + 0.2, 500)"
    return grid, ref.exact_density(eigs, grid, 0.02)


@check(exercise="5.2", weight=3)
def test_density_slq_is_close_to_the_exact_density(student):
    """density_slq is within the statistical error of 8 probes of the exact density"""
    # Catches: density of another matrix, sigma other than 0.02, too few probes or steps,
    # the exact density copied;
    # zeros (L2 distance 2.4). Bound 3 sqrt(B) = 0.21 (module docstring, n = 730, n_v = 8);
    # correct code measures up to 0.081 (200 seeds).
    grid, want = _grid_and_truth(student)
    got = vector(student.get("density_slq"), "density_slq", length=500)
    dt = (grid[1] - grid[0]).item()
    l2 = math.sqrt(((got - want) ** 2).sum().item() * dt)
    bound = 3 / math.sqrt(8 * 730 * 0.02 * math.sqrt(math.pi))
    assert l2 <= bound, \
        f"density_slq is at L2 distance {l2:.3g} from the Hessian's smoothed density, above " \
        f"the statistical error of 8 probes ({bound:.3g}): slq_density(matvec_H, P, grid_H, " \
        "num_probes=8, k=40, sigma=0.02)"
    # Catches: density_slq copied from the exact density (eigvalsh), or SLQ run on the
    # materialized Hessian with k = P: 8 probes of 40 steps always leave an L2 error of
    # several 1e-2 (0.045 to 0.081 over 200 seeds).
    assert l2 >= 1e-3, \
        f"density_slq is within {l2:.2g} of the exact density, which 8 probes of SLQ never " \
        "are: compute it with slq_density on matvec_H"


@check(exercise="5.2", weight=1)
def test_density_exact(student):
    """density_exact is the smoothed density of eigs_H"""
    # Catches: a missing 1/P or 1/(sigma sqrt(2 pi)), sigma other than 0.02; zeros.
    _, want = _grid_and_truth(student)
    got = vector(student.get("density_exact"), "density_exact", length=500)
    error = (got - want).abs().max().item()
    assert error <= 1e-4 * want.max().item(), \
        f"density_exact is up to {error:.3g} from (1/P) sum_i N(t; lambda_i, 0.02^2)"
