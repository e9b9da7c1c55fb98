"""Verdicts a course can defend, one class of mistake in the grader at a time.

- Chance: correct code with another legitimate start vector or container
  keeps full marks (`seed + 123` once lost 2 of 4 points of 2.2: the rate was
  fitted on an early stall of the Rayleigh quotient near lambda_2).
- One slip, one deduction: a basis with one column too many, or transposed,
  costs the one shape check of 4.1 and of 5.1, nothing else.
- Order: eigenvalues sorted by value or by magnitude keep full marks.
- Checks that could not catch their target, or the route the exercise
  forbids (Section 6 from eigvalsh of the materialized Hessian), and side
  effects (a finite difference that leaves the model perturbed).
- Real mistakes each check exists for, named in the check's comment.

Trivial answers (zeros, constants, echoes, noise) are in mutants_verdicts_trivial.
"""

from tests.corpus import build
from tests.corpus.mutants import register
from tests.corpus.mutants_hvp import DOUBLE_BACKWARD, IN_PLACE_FD, USES_DOUBLE_BACKWARD
from tests.corpus.mutants_lanczos import EXTRA_COLUMN, MASTER_TRACK, TEXTBOOK_NO_REORTH, _filled
from tests.corpus.mutants_power import DEFLATED, POWER

USES_POWER = ("2.2", "2.3", "3.1", "3.2")
USES_TRACK_ORTH = ("6.0", "6.1")


def _replaced(source: str, old: str, new: str) -> str:
    assert old in source, old
    return source.replace(old, new)


def _master_cell(grade_id: str) -> str:
    return next(c.source for c in build.master().cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


# --- chance: other start vectors, containers, orders -------------------------------------

# A student who offsets the seed "so it differs from the data's": for seed=6 the
# Rayleigh quotient of the 2.2 check's second matrix stalls near lambda_2 first.
SEED_OFFSET = _replaced(POWER, "torch.Generator().manual_seed(seed)",
                        "torch.Generator().manual_seed(seed + 123)")
register("verdicts_power_correct_seed_offset", "correct",
         lambda: build.variant({"ex2_1_code": SEED_OFFSET}))

# numpy everywhere numbers come back: np.float64 eigenvalue, numpy histories and
# eigenvalues, eigenvectors as a list, Ritz values in descending order.
NUMPY_POWER = '''def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):
    rng = np.random.default_rng(seed)
    v = torch.from_numpy(rng.standard_normal(dim)).float()
    v /= v.norm()
    history = np.zeros(0)
    eig = None
    for it in range(num_iters):
        w = matvec(v)
        lam = np.float64((v @ w).item())
        if eig is not None:
            history = np.append(history, abs(lam - eig))
        eig = lam
        v = w / w.norm()
        if len(history) and history[-1] < tol:
            break
    return eig, v, history
'''
NUMPY_DEFLATED = '''def power_iteration_deflated(matvec, dim, k, num_iters_per=300, seed=0):
    vals, vecs = np.zeros(k), []

    def deflated(v):
        out = matvec(v)
        for lam, u in zip(vals, vecs):
            out = out - float(lam) * (u @ v) * u
        return out

    for i in range(k):
        lam, u, _ = power_iteration(deflated, dim, num_iters=num_iters_per, seed=seed + i)
        vals[i] = lam
        vecs.append(u / u.norm())
    return vals, vecs
'''
NUMPY_TRACK = _replaced(_replaced(
    MASTER_TRACK, "return torch.linalg.eigvalsh(T), torch.stack(Q, dim=1), orth_history",
    "return torch.linalg.eigvalsh(T).flip(0), torch.stack(Q, dim=1), np.array(orth_history)"),
    "orth_history.append((Qj.T @ Qj - torch.eye(j + 1)).abs().max().item())",
    "orth_history.append(np.abs((Qj.T @ Qj - torch.eye(j + 1)).numpy()).max())")
register("verdicts_correct_numpy_containers", "correct", lambda: build.variant({
    "ex2_1_code": NUMPY_POWER, "ex3_1_code": NUMPY_DEFLATED, "ex5_code": NUMPY_TRACK}))

# Sorted answers: the values do not change, only their order.
SORTED_BY_VALUE = _replaced(DEFLATED, "    return found_vals, torch.stack(found_vecs, dim=1)\n",
                            """    order = sorted(range(k), key=lambda i: found_vals[i])
    return [found_vals[i] for i in order], torch.stack([found_vecs[i] for i in order], dim=1)
""")
SORTED_BY_MAGNITUDE = _replaced(DEFLATED,
                                "    return found_vals, torch.stack(found_vecs, dim=1)\n",
                                """    vals = torch.tensor(found_vals)
    order = vals.abs().argsort(descending=True)
    return vals[order], torch.stack(found_vecs, dim=1)[:, order]
""")
register("verdicts_deflation_sorted_by_value", "correct",
         lambda: build.variant({"ex3_1_code": SORTED_BY_VALUE}))
register("verdicts_deflation_sorted_by_magnitude", "correct",
         lambda: build.variant({"ex3_1_code": SORTED_BY_MAGNITUDE}))

# --- one slip, one deduction -------------------------------------------------------------

# The same loop as bug_lanczos_k_plus_one_columns, copied into lanczos_track_orth.
TRACK_EXTRA_COLUMN = _replaced(_replaced(
    MASTER_TRACK, "        if j == k - 1:\n            break\n", ""),
    "T += torch.diag(torch.tensor(betas), 1) + torch.diag(torch.tensor(betas), -1)",
    "T += torch.diag(torch.tensor(betas[:-1]), 1) + torch.diag(torch.tensor(betas[:-1]), -1)")
register("verdicts_track_orth_k_plus_one_columns", "bug", lambda: build.variant({
    "ex4_1_code": EXTRA_COLUMN, "ex5_code": TRACK_EXTRA_COLUMN}), loses=("4.1", "5.1"))

# The basis vectors as the rows of a (k, dim) tensor, in both functions.
NO_REORTH_ROWS = _replaced(_master_cell("ex4_1_code"),
                           "return torch.linalg.eigvalsh(T), torch.stack(Q, dim=1)",
                           "return torch.linalg.eigvalsh(T), torch.stack(Q)")
TRACK_ROWS = _replaced(MASTER_TRACK,
                       "return torch.linalg.eigvalsh(T), torch.stack(Q, dim=1), orth_history",
                       "return torch.linalg.eigvalsh(T), torch.stack(Q), orth_history")
register("verdicts_lanczos_basis_as_rows", "bug", lambda: build.variant({
    "ex4_1_code": NO_REORTH_ROWS, "ex5_code": TRACK_ROWS}), loses=("4.1", "5.1"))

# --- Section 2: what each check of power iteration exists for ----------------------------

# A guard against dividing by zero that changes the answer when ||A v|| is small.
NORM_GUARD = _replaced(_replaced(POWER, "v = v / v.norm()", "v = v / (v.norm() + 1e-6)"),
                       "v = w / w.norm()", "v = w / (w.norm() + 1e-6)")
register("verdicts_power_norm_guard", "bug",
         lambda: build.variant({"ex2_1_code": NORM_GUARD}), loses=("2.1",))

# The start vector is never normalized: the first quotient is ||v||^2 times too big.
UNNORMALIZED_START = _replaced(POWER, "    v = v / v.norm()\n", "")
register("verdicts_power_unnormalized_start", "bug",
         lambda: build.variant({"ex2_1_code": UNNORMALIZED_START}), loses=("2.1",),
         may_lose=("2.2",))

# Always the default 200 iterations.
IGNORES_NUM_ITERS = _replaced(POWER, "for _ in range(num_iters):", "for _ in range(200):")
register("verdicts_power_ignores_num_iters", "bug",
         lambda: build.variant({"ex2_1_code": IGNORES_NUM_ITERS}), loses=("2.1",),
         may_lose=USES_POWER)

# --- Section 3 -------------------------------------------------------------------------------

# "1% is plenty": every power iteration of the deflation stops at a change below 1e-2.
LOOSE_TOLERANCE = _replaced(DEFLATED, "num_iters=num_iters_per, seed=seed + i)",
                            "num_iters=num_iters_per, tol=1e-2, seed=seed + i)")
register("verdicts_deflation_loose_tolerance", "bug",
         lambda: build.variant({"ex3_1_code": LOOSE_TOLERANCE}), loses=("3.1",),
         may_lose=("3.2",))

# The k of the notebook's cell, not the argument.
FIXED_K = _replaced(DEFLATED, "for i in range(k):", "for i in range(3):")
register("verdicts_deflation_fixed_k", "bug",
         lambda: build.variant({"ex3_1_code": FIXED_K}), loses=("3.1", "3.2"))

# The given cell of 3.2 edited to compare signed values with magnitudes.
SIGNED_REL_ERR = _replaced(_master_cell("ex3_2"),
                           "rel_err = [abs(abs(e) - t) / t for e, t in zip(eigvals_k, true_topk)]",
                           "rel_err = [abs(e - t) / t for e, t in zip(eigvals_k, true_topk)]")
register("verdicts_rel_err_of_signed_values", "bug",
         lambda: build.variant({"ex3_2": SIGNED_REL_ERR}), loses=("3.2",))

# --- Section 5 -------------------------------------------------------------------------------

# 'none' falls into the full branch: the basis never loses orthogonality.
NONE_REORTHOGONALIZES = _replaced(MASTER_TRACK, "if reorth == 'full':",
                                  "if reorth in ('full', 'none'):")
register("verdicts_none_reorthogonalizes", "bug",
         lambda: build.variant({"ex5_code": NONE_REORTHOGONALIZES}), loses=("5.1",))

# The textbook loop's off-by-one beta (bug_lanczos_off_by_one_beta) in lanczos_track_orth.
TRACK_OFF_BY_ONE = _replaced(_replaced(_replaced(
    TEXTBOOK_NO_REORTH, "def lanczos_no_reorth(matvec, dim, k, seed=0):",
    "def lanczos_track_orth(matvec, dim, k, reorth='none', seed=0):"),
    "torch.stack(betas[1:k])", "torch.stack(betas[:k - 1])"),
    """        r = w - alphas[j] * q - betas[j] * q_old if j > 0 else w - alphas[j] * q
""", """        r = w - alphas[j] * q - betas[j] * q_old if j > 0 else w - alphas[j] * q
        Qj = torch.stack(cols, dim=1)
        orth.append((Qj.T @ Qj - torch.eye(j + 1)).abs().max().item())
        if reorth == 'full' or (reorth == 'selective' and r.norm() < 0.717 * w.norm()):
            for _ in range(2 if reorth == 'full' else 1):
                r = r - Qj @ (Qj.T @ r)
""")
TRACK_OFF_BY_ONE = _replaced(_replaced(TRACK_OFF_BY_ONE, "    cols = []\n",
                                       "    cols, orth = [], []\n"),
                             "return torch.linalg.eigvalsh(T), torch.stack(cols, dim=1)",
                             "return torch.linalg.eigvalsh(T), torch.stack(cols, dim=1), orth")
register("verdicts_track_orth_off_by_one_beta", "bug",
         lambda: build.variant({"ex5_code": TRACK_OFF_BY_ONE}), loses=("5.1",),
         may_lose=("5.2", "5.3", *USES_TRACK_ORTH))

# A typo: the 'full' branch is never taken.
FULL_IGNORED = _replaced(MASTER_TRACK, "if reorth == 'full':", "if reorth == 'Full':")
register("verdicts_full_reorth_ignored", "bug",
         lambda: build.variant({"ex5_code": FULL_IGNORED}), loses=("5.2",))

# The full branch recomputes the residual from a fresh matvec.
FULL_EXTRA_MATVEC = _replaced(MASTER_TRACK, """        if reorth == 'full':
            for _ in range(2):""", """        if reorth == 'full':
            r = matvec(Q[j]) - alpha * Q[j] - beta * q_prev
            for _ in range(2):""")
register("verdicts_full_reorth_extra_matvec", "bug",
         lambda: build.variant({"ex5_code": FULL_EXTRA_MATVEC}), loses=("5.2",))

# The 0.717 test measured against a fresh matvec instead of the w already at hand.
SELECTIVE_EXTRA_MATVEC = _replaced(MASTER_TRACK, "r.norm() < 0.717 * w.norm()",
                                   "r.norm() < 0.717 * matvec(Q[j]).norm()")
register("verdicts_selective_extra_matvec", "bug",
         lambda: build.variant({"ex5_code": SELECTIVE_EXTRA_MATVEC}), loses=("5.3",))

# --- Section 6 -------------------------------------------------------------------------------

RITZ_INIT = "ritz_init = lanczos_track_orth(matvec_init, dim=P_mnist, k=30, reorth='selective')[0]\n"

# ritz_trained copied from ritz_init: the SGD steps run, the spectrum is not recomputed.
register("verdicts_ritz_trained_is_ritz_init", "bug", lambda: build.variant({
    "ex6_1": _filled("ex6_1", "ritz_trained = ritz_init.clone()\n")}), loses=("6.1",))

# Only the ten values the cell prints.
register("verdicts_ritz_init_top10_only", "bug", lambda: build.variant({
    "ex6_0": _filled("ex6_0", RITZ_INIT + "ritz_init = ritz_init[ritz_init.abs().argsort("
                              "descending=True)[:10]]\n")}), loses=("6.0",))

# The forbidden route: eigenvalues of the Hessian built from P HVPs, the top 30
# by value, or all of them.
EIGVALSH = '''H = torch.stack([matvec_{which}(e) for e in torch.eye(P_mnist)])
ritz_{which} = torch.linalg.eigvalsh((H + H.T) / 2){cut}
'''
register("verdicts_ritz_from_eigvalsh", "cheat", lambda: build.variant({
    "ex6_0": _filled("ex6_0", EIGVALSH.format(which="init", cut="[-30:]")),
    "ex6_1": _filled("ex6_1", EIGVALSH.format(which="trained", cut="[-30:]")),
}), loses=("6.0", "6.1"))
register("verdicts_ritz_all_eigenvalues", "cheat", lambda: build.variant({
    "ex6_0": _filled("ex6_0", EIGVALSH.format(which="init", cut="")),
}), loses=("6.0",))

# --- Section 1: side effects ---------------------------------------------------------------

# The right H v, from v divided by its norm in place and the answer scaled back: the
# caller's v is left a unit vector.
NORMALIZES_V_IN_PLACE = _replaced(_replaced(
    DOUBLE_BACKWARD, "def hvp_double_backward(model, X, y, v):\n",
    "def hvp_double_backward(model, X, y, v):\n    norm = v.norm()\n    v /= norm\n"),
    "    return hv\n", "    return hv * norm\n")
register("verdicts_hvp_normalizes_v_in_place", "bug",
         lambda: build.variant({"ex1_1_code": NORMALIZES_V_IN_PLACE}), loses=("1.1",),
         may_lose=USES_DOUBLE_BACKWARD + ("1.3", "1.4"))

# Perturbs the parameters in place and never puts them back.
NEVER_RESTORES = _replaced(IN_PLACE_FD, "    nudge(eps)  # put the weights back\n", "")
register("verdicts_fd_never_restores", "bug",
         lambda: build.variant({"ex1_3_code": NEVER_RESTORES}), loses=("1.3",))
