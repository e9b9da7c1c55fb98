"""Notebook 2's mutant corpus: submissions with known verdicts, exercise by exercise.

Correct styles (numpy and other containers, fp64 work, other but legitimate
routes), single bugs, method cheats (materializing the operator, eigvalsh
instead of the randomized method, the Jacobian where the exercise is
matrix-free, answers copied from the exact computation), the unfilled
release, and trivial answers (zeros, constants). Each bug names the check
that catches it (the `Catches:` comments of the hidden suite).
"""

import nbformat

from tests.corpus.mutants import Registry
from tests.corpus_ntk.build import NTK, swapped

EXERCISES = ("1.1", "1.2", "2.1", "2.2", "3.1", "3.2", "3.3", "4.1", "4.2", "4.3", "5.1", "5.2",
             "6.1", "6.2", "6.3", "6.4", "6.5")
CORPUS = Registry(EXERCISES)
register = CORPUS.register
variant = NTK.variant

# --- the master, noisy, and the release ------------------------------------------------


def noisy_solution() -> nbformat.NotebookNode:
    """What real notebooks carry: magics, shell lines, warnings, stderr, a stray error."""
    nb = NTK.master()
    nb.cells.insert(1, nbformat.v4.new_code_cell(
        "%load_ext autoreload\n%autoreload 2\n%matplotlib inline\n!pip install torch"))
    nb.cells.append(nbformat.v4.new_code_cell(
        "%%time\nimport warnings, sys\nwarnings.warn('deprecated thing')\n"
        "print('debug output', file=sys.stderr)"))
    nb.cells.append(nbformat.v4.new_code_cell("undefined_name + 1  # scratch cell left behind"))
    return nb


register("master_solution", "correct", NTK.master)
register("noisy_solution", "correct", noisy_solution)
register("unfilled_release", "unfilled", NTK.unfilled, loses=EXERCISES, max_total=0)

# --- correct, written differently ---------------------------------------------------------

# numpy everywhere: numpy probes from numpy's generator, np.float64 estimates, numpy
# arrays for U, lam, densities and the notebook's lists.
NUMPY = {
    "ex1_1_code": '''def hutchinson_trace(matvec, dim, num_probes, dist='rademacher', seed=0):
    rng = np.random.default_rng(seed)
    if dist == 'rademacher':
        Z = rng.choice([-1.0, 1.0], size=(num_probes, dim))
    else:
        Z = rng.standard_normal((num_probes, dim))
    values = [float(z @ matvec(torch.from_numpy(z).float()).numpy()) for z in Z]
    return np.float64(np.mean(values))
''',
    "ex4_1_code": swapped("ex4_1_code", ("    return U, (s ** 2 - nu).clamp_min(0.0)",
                                         "    return U.numpy(), (s ** 2 - nu).clamp_min(0.0).numpy()")),
    "ex5_1_code": swapped("ex5_1_code", ("    return density / num_probes",
                                         "    return (density / num_probes).numpy()")),
    "ex4_3": swapped("ex4_3", ("    U, lam = nystrom(matvec_G, P, r, seed=0)\n",
                               ("    U, lam = nystrom(matvec_G, P, r, seed=0)\n"
                               "    U, lam = torch.from_numpy(U), torch.from_numpy(lam)\n"))),
    "ex1_2": swapped("ex1_2", ("    rms_errors.append(errs.pow(2).mean().sqrt().item())",
                               "    rms_errors.append(np.sqrt(np.mean(errs.numpy() ** 2)))"),
                     ("assert len(rms_errors)", "rms_errors = np.array(rms_errors)\nassert len(rms_errors)")),
}
register("correct_numpy_style", "correct", lambda: variant(NUMPY))

# fp64 work throughout the randomized methods (the notebook's matvecs take fp32, so the
# block product casts at the boundary), tuples and lists for the answers.
FP64 = {
    "ex2_1_code": swapped("ex2_1_code",
                          ("    return torch.stack([matvec(V[:, j]) for j in range(V.shape[1])], dim=1)",
                           ("    return torch.stack([matvec(V[:, j].float()).double() "
                           "for j in range(V.shape[1])], dim=1)")),
                          ("(2 * torch.randint(0, 2, (dim, k), generator=g) - 1).float()",
                           "(2 * torch.randint(0, 2, (dim, k), generator=g) - 1).double()"),
                          ("(2 * torch.randint(0, 2, (dim, num_matvecs - 2 * k), generator=g) - 1).float()",
                           "(2 * torch.randint(0, 2, (dim, num_matvecs - 2 * k), generator=g) - 1).double()")),
    "ex3_1_code": swapped("ex3_1_code", ("torch.randn(dim, rank + oversample, generator=g)",
                                         ("torch.randn(dim, rank + oversample, generator=g, "
                                         "dtype=torch.float64)"))),
    "ex3_2_code": swapped("ex3_2_code", ("    return evals[order], Q @ W[:, order]",
                                         "    return tuple(evals[order].tolist()), Q @ W[:, order]")),
    "ex4_1_code": swapped("ex4_1_code", ("torch.randn(dim, rank, generator=g)",
                                         "torch.randn(dim, rank, generator=g, dtype=torch.float64)"),
                          ("torch.finfo(Y.dtype).eps", "torch.finfo(torch.float32).eps")),
    "ex6_4": swapped("ex6_4", ("ntk_top5 = torch.linalg.eigvalsh(tridiagonal(alphas, betas)).flip(0)[:5]",
                               ("ntk_top5 = tuple(sorted(torch.linalg.eigvalsh(tridiagonal(alphas, "
                               "betas).double()).tolist(), reverse=True)[:5])"))),
}
register("correct_fp64_and_tuples", "correct", lambda: variant(FP64))

# Other legitimate routes: a Gaussian sketch in Hutch++, per-example Jacobians by a loop of
# backward passes, ntk_vp through torch.autograd.functional, the kernel through
# torch.distributions.
OTHER_ROUTES = {
    "ex2_1_code": swapped("ex2_1_code", ("    S = (2 * torch.randint(0, 2, (dim, k), generator=g) - 1).float()",
                                         "    S = torch.randn(dim, k, generator=g)")),
    "ex6_1_code": '''from torch.func import jacrev, vmap

def per_example_jacobians(model, X):
    rows = []
    for i in range(X.shape[0]):
        out = model(X[i:i + 1])[0]
        per_class = []
        for c in range(out.shape[0]):
            grads = torch.autograd.grad(out[c], list(model.parameters()), retain_graph=True)
            per_class.append(torch.cat([g.reshape(-1) for g in grads]))
        rows.append(torch.stack(per_class))
    return torch.stack(rows)
''',
    "ex6_3_code": '''def ntk_vp(model, X, v):
    names = [n for n, _ in model.named_parameters()]
    values = tuple(p.detach() for p in model.parameters())
    def f(*ps):
        return functional_call(model, dict(zip(names, ps)), (X,))
    out = f(*values)
    _, u = torch.autograd.functional.vjp(f, values, v.reshape(out.shape))
    _, jv = torch.autograd.functional.jvp(f, values, u)
    return jv.reshape(-1)
''',
    "ex5_1_code": swapped("ex5_1_code",
                          (("        z = (grid[:, None] - nodes[None, :]) / sigma\n"
                           "        density += (weights * torch.exp(-0.5 * z ** 2)).sum(1) / (sigma * math.sqrt(2 * math.pi))"),
                           ("        normal = torch.distributions.Normal(nodes, sigma)\n"
                           "        density += (weights * normal.log_prob(grid[:, None]).exp()).sum(1)"))),
}
register("correct_other_routes", "correct", lambda: variant(OTHER_ROUTES))

# --- bugs, one at a time ---------------------------------------------------------------------

register("bug_hutchinson_bernoulli_probes", "bug", lambda: variant({"ex1_1_code": swapped(
    "ex1_1_code", ("(2 * torch.randint(0, 2, (dim,), generator=g) - 1).float()",
                   "torch.randint(0, 2, (dim,), generator=g).float()"))}),
    loses={"1.1", "1.2"}, may_lose={"2.2"})
register("bug_hutchinson_seed_ignored", "bug", lambda: variant({"ex1_1_code": swapped(
    "ex1_1_code", ("torch.Generator().manual_seed(seed)", "torch.Generator().manual_seed(0)"))}),
    loses={"1.1", "1.2"}, may_lose={"2.2"})
register("bug_hutchinson_sum_not_mean", "bug", lambda: variant({"ex1_1_code": swapped(
    "ex1_1_code", ("    return total / num_probes", "    return total"))}),
    loses={"1.1", "1.2"}, may_lose={"2.2"})
register("bug_hutchinson_dist_ignored", "bug", lambda: variant({"ex1_1_code": swapped(
    "ex1_1_code", ("        if dist == 'rademacher':", "        if True:"))}),
    loses={"1.1"})
register("bug_hutchpp_no_projection", "bug", lambda: variant({"ex2_1_code": swapped(
    "ex2_1_code", ("    G_perp = G - Q @ (Q.T @ G)", "    G_perp = G"))}),
    loses={"2.1", "2.2"})
register("bug_hutchpp_extra_matvecs", "bug", lambda: variant({"ex2_1_code": swapped(
    "ex2_1_code", ("    G_perp = G - Q @ (Q.T @ G)\n",
                   ("    AG = apply_block(matvec, G)  # looked at, then not used\n"
                   "    G_perp = G - Q @ (Q.T @ G)\n")))}),
    loses={"2.1"})
register("bug_range_finder_no_reorthonormalization", "bug", lambda: variant({"ex3_1_code": swapped(
    "ex3_1_code", (("    Q = torch.linalg.qr(apply_block(matvec, omega))[0]\n"
                   "    for _ in range(2 * power_iters):\n"
                   "        Q = torch.linalg.qr(apply_block(matvec, Q))[0]"),
                   ("    Y = apply_block(matvec, omega)\n"
                   "    for _ in range(2 * power_iters):\n"
                   "        Y = apply_block(matvec, Y)\n"
                   "    Q = torch.linalg.qr(Y)[0]")))}),
    loses={"3.1"}, may_lose={"3.2", "3.3"})
register("bug_range_finder_power_iters_ignored", "bug", lambda: variant({"ex3_1_code": swapped(
    "ex3_1_code", ("range(2 * power_iters)", "range(0)"))}),
    loses={"3.1"}, may_lose={"3.2", "3.3"})
register("bug_randomized_eigh_sorted_by_value", "bug", lambda: variant({"ex3_2_code": swapped(
    "ex3_2_code", ("evals.abs().argsort(descending=True)", "evals.argsort(descending=True)"))}),
    loses={"3.2"}, may_lose={"3.3"})
register("bug_randomized_eigh_returns_q", "bug", lambda: variant({"ex3_2_code": swapped(
    "ex3_2_code", ("    return evals[order], Q @ W[:, order]",
                   "    return evals[order], Q[:, :rank]"))}),
    loses={"3.2"})
register("bug_nystrom_singular_values_not_squared", "bug", lambda: variant({"ex4_1_code": swapped(
    "ex4_1_code", ("(s ** 2 - nu).clamp_min(0.0)", "(s - nu).clamp_min(0.0)"))}),
    loses={"4.1", "4.3"})
# fp64 work on fp32 matvecs with the shift of fp64: nu is ~1e9 times too small to cover
# the rounding already in Y, and the Cholesky of a nearly singular core fails.
register("bug_nystrom_shift_below_the_matvec_rounding", "bug", lambda: variant({
    "ex2_1_code": FP64["ex2_1_code"],
    "ex4_1_code": swapped("ex4_1_code", ("torch.randn(dim, rank, generator=g)",
                                         "torch.randn(dim, rank, generator=g, dtype=torch.float64)"))}),
    loses={"4.1"}, may_lose={"4.3"})
register("bug_ggn_sum_not_mean", "bug", lambda: variant({"ex4_2_code": swapped(
    "ex4_2_code", (" / X.shape[0]", ""))}),
    loses={"4.2"}, may_lose={"4.3"})
register("bug_ggn_is_the_hessian", "bug", lambda: variant({"ex4_2_code": swapped(
    "ex4_2_code", ("    theta = flat_params(model)\n", ("    return hvp(model, X, y, v)\n"
                   "    theta = flat_params(model)\n")))}),
    loses={"4.2"}, may_lose={"4.3"})
register("bug_slq_weights_not_squared", "bug", lambda: variant({"ex5_1_code": swapped(
    "ex5_1_code", ("weights = vecs[0] ** 2", "weights = vecs[0].abs()"))}),
    loses={"5.1", "5.2"})
# (Unnormalized probes are no mistake here: the given lanczos normalizes its start.)
register("bug_slq_kernel_not_normalized", "bug", lambda: variant({"ex5_1_code": swapped(
    "ex5_1_code", (").sum(1) / (sigma * math.sqrt(2 * math.pi))", ").sum(1)"))}),
    loses={"5.1", "5.2"})
register("bug_slq_first_column_not_row", "bug", lambda: variant({"ex5_1_code": swapped(
    "ex5_1_code", ("weights = vecs[0] ** 2", "weights = vecs[:, 0] ** 2"))}),
    loses={"5.1", "5.2"})
register("bug_jacobians_of_the_batch_sum", "bug", lambda: variant({"ex6_1_code": swapped(
    "ex6_1_code", ("    jac = vmap(jacrev(f), in_dims=(None, 0))(params, X)",
                   ("    total = jacrev(lambda p: functional_call(model, p, (X,)).sum(0))(params)\n"
                   "    jac = {k: t.unsqueeze(0).expand(X.shape[0], *t.shape) for k, t in total.items()}")))}),
    loses={"6.1", "6.2"}, may_lose={"6.4", "6.5"})
register("bug_ntk_class_major", "bug", lambda: variant({"ex6_2_code": swapped(
    "ex6_2_code", ("    J = J.reshape(-1, J.shape[2])", "    J = J.transpose(0, 1).reshape(-1, J.shape[2])"))}),
    loses={"6.2"})
register("bug_ntk_vp_returns_jt_v", "bug", lambda: variant({"ex6_3_code": swapped(
    "ex6_3_code", ("    return jvp(logits, (params,), (u,))[1].reshape(-1)",
                   "    return torch.cat([t.reshape(-1) for t in u.values()])"))}),
    loses={"6.3", "6.4"})
register("bug_drift_absolute", "bug", lambda: variant({"ex6_5": swapped(
    "ex6_5", ("(torch.linalg.matrix_norm(K1 - K0) / torch.linalg.matrix_norm(K0)).item()",
              "torch.linalg.matrix_norm(K1 - K0).item()"))}),
    loses={"6.5"})

# Each of these is one mistake a `Catches:` comment of the hidden suite names, written as a
# student would: the check that must catch it is named above it.

# 1.1 test_rademacher_probes_are_exact_on_a_diagonal: Gaussian probes for every dist.
register("bug_hutchinson_gaussian_for_rademacher", "bug", lambda: variant({"ex1_1_code": swapped(
    "ex1_1_code", ("            z = (2 * torch.randint(0, 2, (dim,), generator=g) - 1).float()",
                   "            z = torch.randn(dim, generator=g)"))}),
    loses={"1.1"}, may_lose={"1.2", "2.2"})
# 1.1 test_one_matvec_per_probe: A z computed twice, once for a sanity check.
register("bug_hutchinson_two_matvecs_per_probe", "bug", lambda: variant({"ex1_1_code": swapped(
    "ex1_1_code", ("        total += (z @ matvec(z)).item()",
                   ("        assert torch.isfinite(matvec(z)).all()\n"
                    "        total += (z @ matvec(z)).item()")))}),
    loses={"1.1"})
# 1.1 test_rademacher_estimates_are_unbiased_with_the_right_variance: one probe drawn
# before the loop and reused (m times the variance); 1.2's errors no longer fall with m.
register("bug_hutchinson_one_probe_reused", "bug", lambda: variant({"ex1_1_code": swapped(
    "ex1_1_code", ("    total = 0.0\n    for _ in range(num_probes):\n",
                   ("    total = 0.0\n    z_rad = (2 * torch.randint(0, 2, (dim,), generator=g) - 1).float()\n"
                    "    z_gauss = torch.randn(dim, generator=g)\n"
                    "    for _ in range(num_probes):\n")),
    ("            z = (2 * torch.randint(0, 2, (dim,), generator=g) - 1).float()",
     "            z = z_rad"),
    ("            z = torch.randn(dim, generator=g)", "            z = z_gauss"))}),
    loses={"1.1", "1.2"}, may_lose={"2.2"})
# 1.2 test_rms_errors_follow_the_theory: the mean of the signed errors (they cancel).
register("bug_rms_errors_mean_error_not_rms", "bug", lambda: variant({"ex1_2": swapped(
    "ex1_2", ("    rms_errors.append(errs.pow(2).mean().sqrt().item())",
              "    rms_errors.append(errs.mean().abs().item())"))}),
    loses={"1.2"})
# 1.2 test_rms_errors_follow_the_theory: seed=r forgotten, every rep the same estimate.
register("bug_rms_errors_one_seed_for_all_reps", "bug", lambda: variant({"ex1_2": swapped(
    "ex1_2", ("hutchinson_trace(matvec_H, P, m, seed=r)", "hutchinson_trace(matvec_H, P, m)"))}),
    loses={"1.2"})
# 2.2 test_hutchinson_errors_match_the_theory: the two lists filled the wrong way round.
register("bug_hutchpp_comparison_lists_swapped", "bug", lambda: variant({"ex2_2": swapped(
    "ex2_2", ("    err_hutch.append(np.mean([abs(hutchinson_trace(",
              "    err_hpp.append(np.mean([abs(hutchinson_trace("),
    ("    err_hpp.append(np.mean([abs(hutchpp(", "    err_hutch.append(np.mean([abs(hutchpp("))}),
    loses={"2.2"})
# 3.1 test_orthonormal_and_spends_its_budget: QR between the power iterations, but the
# last product returned as is (A Omega when power_iters = 0).
register("bug_range_finder_no_qr", "bug", lambda: variant({"ex3_1_code": swapped(
    "ex3_1_code", (("    Q = torch.linalg.qr(apply_block(matvec, omega))[0]\n"
                    "    for _ in range(2 * power_iters):\n"
                    "        Q = torch.linalg.qr(apply_block(matvec, Q))[0]\n"
                    "    return Q"),
                   ("    Y = apply_block(matvec, omega)\n"
                    "    for _ in range(2 * power_iters):\n"
                    "        Y = apply_block(matvec, torch.linalg.qr(Y)[0])\n"
                    "    return Y")))}),
    loses={"3.1"}, may_lose={"3.2", "3.3"})
# 3.1 test_orthonormal_and_spends_its_budget: one product per power iteration, (q + 1)(k + p).
register("bug_range_finder_one_product_per_power_iter", "bug", lambda: variant({"ex3_1_code": swapped(
    "ex3_1_code", ("range(2 * power_iters)", "range(power_iters)"))}),
    loses={"3.1"}, may_lose={"3.2", "3.3"})
# 3.2 test_eigenvectors_are_ritz_vectors: eigenvalues sorted, eigenvectors left in eigh's order.
register("bug_randomized_eigh_eigenvectors_not_matched", "bug", lambda: variant({"ex3_2_code": swapped(
    "ex3_2_code", ("    return evals[order], Q @ W[:, order]",
                   "    return evals[order], (Q @ W)[:, :rank]"))}),
    loses={"3.2"})
# 3.3 test_rand_top5_are_ritz_values_of_a_small_subspace: rand_top5 from Lanczos (the
# randomized method's 60 matvecs spent on Lanczos instead).
register("cheat_rand_top5_from_lanczos", "cheat", lambda: variant({"ex3_3": swapped(
    "ex3_3", ("rand_top5 = randomized_eigh(matvec_H, P, 5, oversample=5, power_iters=2)[0]\n",
              ""),
    ("lanczos_top5 = ritz[ritz.abs().argsort(descending=True)][:5]\n",
     "lanczos_top5 = ritz[ritz.abs().argsort(descending=True)][:5]\nrand_top5 = lanczos_top5.clone()\n"))}),
    loses={"3.3"})
# 4.1 test_exact_on_low_rank_psd_with_rank_matvecs: an extra pass for Omega^T A Omega.
register("bug_nystrom_extra_pass_for_the_core", "bug", lambda: variant({"ex4_1_code": swapped(
    "ex4_1_code", ("    M = omega.T @ Y_nu\n",
                   "    M = omega.T @ apply_block(matvec, omega) + nu * torch.eye(rank)\n"))}),
    loses={"4.1"})
# 4.2 test_gauss_newton_matches_on_hidden_models: the softmax Hessian without its
# -p p^T term (diag(p) only).
register("bug_ggn_no_softmax_term", "bug", lambda: variant({"ex4_2_code": swapped(
    "ex4_2_code", ("    HJv = (p * Jv - p * (p * Jv).sum(dim=1, keepdim=True)) / X.shape[0]",
                   "    HJv = p * Jv / X.shape[0]"))}),
    loses={"4.2"}, may_lose={"4.3"})
# 4.2 test_leaves_its_inputs_alone (and the hidden models' G v, now of v / ||v||): the
# direction normalized in place, the caller's v changed with it.
register("bug_ggn_normalizes_v_in_place", "bug", lambda: variant({"ex4_2_code": swapped(
    "ex4_2_code", ("    theta = flat_params(model)\n",
                   "    v /= v.norm()\n    theta = flat_params(model)\n"))}),
    loses={"4.2"}, may_lose={"4.3"})
# 4.2 test_matrix_free_where_the_jacobian_cannot_fit: J materialized by jacrev.
register("cheat_ggn_jacobian_materialized", "cheat", lambda: variant({"ex4_2_code": swapped(
    "ex4_2_code", (("    out, Jv = jvp(logits, (theta,), (v,))\n"),
                   ("    out = logits(theta)\n"
                    "    J = torch.func.jacrev(logits)(theta)\n"
                    "    Jv = J @ v\n")),
    ("    _, pullback = vjp(logits, theta)\n    return pullback(HJv)[0]",
     "    return torch.einsum('ncp,nc->p', J, HJv)"))}),
    loses={"4.2"})
# 5.1 test_exact_on_a_diagonal_with_k_equal_n: Gaussian probes of norm 1.
register("bug_slq_gaussian_probes", "bug", lambda: variant({"ex5_1_code": swapped(
    "ex5_1_code", ("        v = (2 * torch.randint(0, 2, (dim,), generator=g) - 1).float() / math.sqrt(dim)",
                   "        v = torch.randn(dim, generator=g)\n        v = v / v.norm()"))}),
    loses={"5.1"}, may_lose={"5.2"})
# 5.1 test_close_to_the_density_of_a_rotated_matrix: the probe drawn but not passed to
# lanczos (which then starts every time from its own seeded vector).
register("bug_slq_start_vector_ignored", "bug", lambda: variant({"ex5_1_code": swapped(
    "ex5_1_code", ("lanczos(matvec, dim, k, start=v)", "lanczos(matvec, dim, k)"))}),
    loses={"5.1"}, may_lose={"5.2"})
# 6.1 test_jacobians_of_a_single_example_and_of_fp32: a tidy squeeze() that drops the
# batch axis of a single example.
register("bug_jacobians_squeeze_drops_the_batch_axis", "bug", lambda: variant({"ex6_1_code": swapped(
    "ex6_1_code", ("for name in params], dim=2)", "for name in params], dim=2).squeeze()"))}),
    loses={"6.1"})
# 6.2 test_ntk_matches: J^T J (P x P) for J J^T.
register("bug_ntk_jt_j", "bug", lambda: variant({"ex6_2_code": swapped(
    "ex6_2_code", ("    return J @ J.T", "    return J.T @ J"))}),
    loses={"6.2"}, may_lose={"6.5"})
# 6.4 test_ntk_top5: the top five Ritz values in eigvalsh's ascending order.
register("bug_ntk_top5_ascending", "bug", lambda: variant({"ex6_4": swapped(
    "ex6_4", (".flip(0)[:5]", "[-5:]"))}),
    loses={"6.4"})
# 6.5 test_drifts: the drift of the Jacobian instead of the kernel.
register("bug_drift_of_the_jacobian", "bug", lambda: variant({"ex6_5": swapped(
    "ex6_5", ("    K0 = empirical_ntk(net, X_ntk)", "    K0 = per_example_jacobians(net, X_ntk)"),
    ("    K1 = empirical_ntk(net, X_ntk)", "    K1 = per_example_jacobians(net, X_ntk)"),
    ("torch.linalg.matrix_norm(K1 - K0) / torch.linalg.matrix_norm(K0)",
     "(K1 - K0).norm() / K0.norm()"))}),
    loses={"6.5"})

# --- method cheats -----------------------------------------------------------------------------

MATERIALIZE = '''    A_full = torch.stack([matvec(e) for e in torch.eye(dim)], 1)
'''
register("cheat_hutchpp_materializes", "cheat", lambda: variant({"ex2_1_code": '''def apply_block(matvec, V):
    return torch.stack([matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

def hutchpp(matvec, dim, num_matvecs, seed=0):
''' + MATERIALIZE + '''    return torch.trace(A_full).item()
'''}), loses={"2.1"}, may_lose={"2.2"})
register("cheat_randomized_eigh_by_eigh", "cheat", lambda: variant({"ex3_2_code": '''def randomized_eigh(matvec, dim, rank, oversample=10, power_iters=1, seed=0):
''' + MATERIALIZE + '''    evals, V = torch.linalg.eigh((A_full + A_full.T) / 2)
    order = evals.abs().argsort(descending=True)[:rank]
    return evals[order], V[:, order]
'''}), loses={"3.2", "3.3"})
register("cheat_rand_top5_from_eigvalsh", "cheat", lambda: variant({"ex3_3": swapped(
    "ex3_3", ("rand_top5 = randomized_eigh(matvec_H, P, 5, oversample=5, power_iters=2)[0]",
              "rand_top5 = exact_top5.clone()"))}),
    loses={"3.3"})
register("cheat_slq_by_eigvalsh", "cheat", lambda: variant({"ex5_1_code": '''def slq_density(matvec, dim, grid, num_probes=10, k=30, sigma=0.05, seed=0):
''' + MATERIALIZE + '''    eigs = torch.linalg.eigvalsh((A_full + A_full.T).double() / 2)
    z = (torch.as_tensor(grid, dtype=torch.float64)[:, None] - eigs[None, :]) / sigma
    return torch.exp(-0.5 * z ** 2).sum(1) / (dim * sigma * math.sqrt(2 * math.pi))
'''}), loses={"5.1", "5.2"})
register("cheat_ntk_vp_through_the_gram_matrix", "cheat", lambda: variant({"ex6_3_code": '''def ntk_vp(model, X, v):
    return empirical_ntk(model, X) @ v.reshape(-1)
'''}), loses={"6.3"})

# --- trivial answers ----------------------------------------------------------------------------


def _trivial(hutch: str, block: str, eigh: str, nys: str, ggn: str, slq: str, jac: str,
             ntk: str, vp: str, values: str) -> dict[str, str]:
    """Every solution cell as a function of the right signature that does no work."""
    head = {k: NTK.cell(k).split("### BEGIN SOLUTION")[0] for k in
            ("ex1_1_code", "ex2_1_code", "ex3_1_code", "ex3_2_code", "ex4_1_code", "ex4_2_code",
             "ex5_1_code", "ex6_1_code", "ex6_2_code", "ex6_3_code")}
    return {
        "ex1_1_code": head["ex1_1_code"] + hutch,
        "ex2_1_code": head["ex2_1_code"] + hutch,
        "ex3_1_code": head["ex3_1_code"] + block,
        "ex3_2_code": head["ex3_2_code"] + eigh,
        "ex4_1_code": head["ex4_1_code"] + nys,
        "ex4_2_code": head["ex4_2_code"] + ggn,
        "ex5_1_code": head["ex5_1_code"] + slq,
        "ex6_1_code": head["ex6_1_code"] + jac,
        "ex6_2_code": head["ex6_2_code"] + ntk,
        "ex6_3_code": head["ex6_3_code"] + vp,
        "ex1_2": f"probe_counts = [1, 2, 4, 8, 16, 32, 64]\nreps = 40\nrms_errors = [{values}] * 7\n",
        "ex2_2": f"budgets = [12, 24, 48, 96, 192]\nerr_hutch = [{values}] * 5\nerr_hpp = [{values}] * 5\n",
        "ex3_3": f"rand_top5 = [{values}] * 5\nlanczos_top5 = [{values}] * 5\n",
        "ex4_3": f"ranks = [5, 10, 20, 40]\nnys_errors = [{values}] * 4\n",
        "ex5_2": f"grid_H = torch.linspace(eigs_H[0].item() - 0.2, eigs_H[-1].item() + 0.2, 500)\n"
                 f"density_slq = torch.full((500,), {values})\ndensity_exact = torch.full((500,), {values})\n",
        "ex6_4": f"ntk_top5 = [{values}] * 5\n",
        "ex6_5": f"widths = [12, 64, 256, 1024]\ndrifts = [{values}] * 4\n",
    }


ZEROS = _trivial(
    hutch="    return 0.0\n",
    block="    return torch.zeros(dim, rank + oversample)\n",
    eigh="    return torch.zeros(rank), torch.zeros(dim, rank)\n",
    nys="    return torch.zeros(dim, rank), torch.zeros(rank)\n",
    ggn="    return torch.zeros_like(v)\n",
    slq="    return torch.zeros(len(grid))\n",
    jac="    n, P = X.shape[0], sum(p.numel() for p in model.parameters())\n"
        "    return torch.zeros(n, model(X[:1]).shape[1], P)\n",
    ntk="    n, C = X.shape[0], model(X[:1]).shape[1]\n    return torch.zeros(n * C, n * C)\n",
    vp="    return torch.zeros_like(v)\n",
    values="0.0")
register("trivial_zeros", "cheat", lambda: variant(ZEROS), loses=EXERCISES, max_total=0)

# Constants that look plausible: the identity's first columns as an orthonormal basis,
# ones, an echo of the input, a flat density.
CONSTANTS = _trivial(
    hutch="    return float(dim)\n",
    block="    return torch.eye(dim)[:, :rank + oversample]\n",
    eigh="    return torch.ones(rank), torch.eye(dim)[:, :rank]\n",
    nys="    return torch.eye(dim)[:, :rank], torch.ones(rank)\n",
    ggn="    return v.clone()\n",
    slq="    grid = torch.as_tensor(grid)\n    return torch.full((len(grid),), 1.0 / float(grid[-1] - grid[0]))\n",
    jac="    n, P = X.shape[0], sum(p.numel() for p in model.parameters())\n"
        "    return torch.ones(n, model(X[:1]).shape[1], P)\n",
    ntk="    n, C = X.shape[0], model(X[:1]).shape[1]\n    return torch.eye(n * C)\n",
    vp="    return v.clone()\n",
    values="1.0")
register("trivial_constants", "cheat", lambda: variant(CONSTANTS), loses=EXERCISES, max_total=0)
