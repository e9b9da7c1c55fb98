"""Mutants of Sections 4-6 (Lanczos, reorthogonalization, the Hessian's top-k),
written as students fill the cells.

lanczos_no_reorth is used by the locked cells of 4.1 and 4.2;
lanczos_track_orth by 5.1-5.3 and by the cells of 6.0 and 6.1, so bugs in
its 'selective' branch may cost those too.
"""

import re

from tests.corpus import build
from tests.corpus.mutants import register

USES_TRACK_ORTH = ("6.0", "6.1")


def _filled(grade_id: str, solution: str) -> str:
    """The master's cell `grade_id` with its solution region replaced by `solution`."""
    cell = next(c for c in build.master().cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    pattern = re.compile(r"^[ \t]*### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n", re.DOTALL | re.MULTILINE)
    source, count = pattern.subn(lambda _: solution, cell.source)
    assert count == 1, grade_id
    return source


# --- correct variants ---------------------------------------------------------

# Recurrence accumulated in fp64 (the matvec still gets fp32 vectors, as the
# notebook's fp32 matrices and HVPs need), a preallocated basis, Ritz values
# in descending order, the history as a tensor.
FP64_DESCENDING_NO_REORTH = '''def lanczos_no_reorth(matvec, dim, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g, dtype=torch.float64)
    q /= torch.linalg.norm(q)
    Q = torch.zeros(dim, k, dtype=torch.float64)
    alpha = torch.zeros(k, dtype=torch.float64)
    beta = torch.zeros(k, dtype=torch.float64)  # beta[j] links q_j and q_{j+1}
    q_prev = torch.zeros_like(q)
    for j in range(k):
        Q[:, j] = q
        w = matvec(q.float()).double()
        alpha[j] = q @ w
        w = w - alpha[j] * q
        if j > 0:
            w = w - beta[j - 1] * q_prev
        if j < k - 1:
            beta[j] = torch.linalg.norm(w)
            q_prev, q = q, w / beta[j]
    T = torch.diag(alpha) + torch.diag(beta[:-1], 1) + torch.diag(beta[:-1], -1)
    return torch.linalg.eigvalsh(T).flip(0), Q
'''

FP64_DESCENDING_TRACK = '''def lanczos_track_orth(matvec, dim, k, reorth='none', seed=0):
    """As above but also returns orthogonality-error history."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g, dtype=torch.float64)
    q /= torch.linalg.norm(q)
    Q = torch.zeros(dim, k, dtype=torch.float64)
    alpha = torch.zeros(k, dtype=torch.float64)
    beta = torch.zeros(k, dtype=torch.float64)
    orth_history = torch.zeros(k, dtype=torch.float64)
    q_prev = torch.zeros_like(q)
    for j in range(k):
        Q[:, j] = q
        Qj = Q[:, :j + 1]
        orth_history[j] = (Qj.T @ Qj - torch.eye(j + 1, dtype=torch.float64)).abs().max()
        w = matvec(q.float()).double()
        alpha[j] = q @ w
        r = w - alpha[j] * q
        if j > 0:
            r = r - beta[j - 1] * q_prev
        if reorth == 'full':
            r = r - Qj @ (Qj.T @ r)
            r = r - Qj @ (Qj.T @ r)
        elif reorth == 'selective':
            if torch.linalg.norm(r) < 0.717 * torch.linalg.norm(w):
                r = r - Qj @ (Qj.T @ r)
        if j < k - 1:
            beta[j] = torch.linalg.norm(r)
            q_prev, q = q, r / beta[j]
    T = torch.diag(alpha) + torch.diag(beta[:-1], 1) + torch.diag(beta[:-1], -1)
    return torch.linalg.eigvalsh(T).flip(0), Q, orth_history
'''

# The global generator for the start vector (which reseeds the SGD batches of
# 6.1: the grader must use the student's own trained model), alpha taken after
# the beta term is removed (the "modified" recurrence), reorthogonalization by
# modified Gram-Schmidt, twice for 'full', and the max-row-sum history.
MGS_ROW_SUM_NO_REORTH = '''def lanczos_no_reorth(matvec, dim, k, seed=0):
    torch.manual_seed(seed)
    v = torch.randn(dim)
    v = v / torch.norm(v)
    V, a, b = [v], [], []
    for j in range(k):
        u = matvec(V[j])
        if j > 0:
            u = u - b[j - 1] * V[j - 1]
        a.append(torch.dot(u, V[j]).item())
        u = u - a[j] * V[j]
        if j + 1 < k:
            b.append(torch.norm(u).item())
            V.append(u / b[j])
    T = torch.diag(torch.tensor(a)) + torch.diag(torch.tensor(b), 1) + torch.diag(torch.tensor(b), -1)
    return torch.linalg.eigvalsh(T), torch.stack(V, dim=1)
'''

MGS_ROW_SUM_TRACK = '''def mgs(u, V):
    for v in V:
        u = u - torch.dot(v, u) * v
    return u

def lanczos_track_orth(matvec, dim, k, reorth='none', seed=0):
    """As above but also returns orthogonality-error history."""
    torch.manual_seed(seed)
    v = torch.randn(dim)
    v = v / torch.norm(v)
    V, a, b, hist = [v], [], [], []
    for j in range(k):
        Vj = torch.stack(V, dim=1)
        hist.append(torch.linalg.matrix_norm(Vj.T @ Vj - torch.eye(j + 1), ord=float('inf')).item())
        Av = matvec(V[j])
        u = Av
        if j > 0:
            u = u - b[j - 1] * V[j - 1]
        a.append(torch.dot(u, V[j]).item())
        u = u - a[j] * V[j]
        if reorth == 'full':
            u = mgs(mgs(u, V), V)
        elif reorth == 'selective' and torch.norm(u) < 0.717 * torch.norm(Av):
            u = mgs(u, V)
        if j + 1 < k:
            b.append(torch.norm(u).item())
            V.append(u / b[j])
    T = torch.diag(torch.tensor(a)) + torch.diag(torch.tensor(b), 1) + torch.diag(torch.tensor(b), -1)
    return torch.linalg.eigvalsh(T), torch.stack(V, dim=1), hist
'''

# Golub-Van Loan's loop: normalize at the top of each step, keep beta_0 = ||r_0||
# in the list of betas (so T takes betas[1:]), and compute one more residual
# at the end, which costs no matvec.
TEXTBOOK_NO_REORTH = '''def lanczos_no_reorth(matvec, dim, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(dim, generator=g)
    betas = [r.norm()]
    alphas = []
    q_old = torch.zeros(dim)
    cols = []
    for j in range(k):
        q = r / betas[j]
        cols.append(q)
        w = matvec(q)
        alphas.append(q @ w)
        r = w - alphas[j] * q - betas[j] * q_old if j > 0 else w - alphas[j] * q
        betas.append(r.norm())
        q_old = q
    off = torch.stack(betas[1:k])
    T = torch.diag(torch.stack(alphas)) + torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(T), torch.stack(cols, dim=1)
'''

register("correct_lanczos_fp64_descending", "correct",
         lambda: build.variant({"ex4_1_code": FP64_DESCENDING_NO_REORTH,
                                "ex5_code": FP64_DESCENDING_TRACK}))
register("correct_lanczos_global_seed_mgs_row_sum", "correct",
         lambda: build.variant({"ex4_1_code": MGS_ROW_SUM_NO_REORTH,
                                "ex5_code": MGS_ROW_SUM_TRACK}))
register("correct_lanczos_textbook_loop", "correct",
         lambda: build.variant({"ex4_1_code": TEXTBOOK_NO_REORTH}))

# --- bugs in lanczos_no_reorth (4.1, and 4.2 through it) ------------------------------

# The textbook loop, but T takes betas[:-1], which starts with ||r_0||: every
# off-diagonal entry is one step early.
OFF_BY_ONE_BETA = TEXTBOOK_NO_REORTH.replace("torch.stack(betas[1:k])",
                                             "torch.stack(betas[:k - 1])")

def _no_reorth(body: str) -> str:
    return '''def lanczos_no_reorth(matvec, dim, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g)
    q = q / q.norm()
    Q = [q]
    alphas, betas = [], []
    q_prev, beta = torch.zeros_like(q), 0.0
''' + body


FORGETS_PREVIOUS_TERM = _no_reorth('''    for j in range(k):
        w = matvec(Q[j])
        alpha = (Q[j] @ w).item()
        r = w - alpha * Q[j]
        alphas.append(alpha)
        if j == k - 1:
            break
        beta = r.norm().item()
        betas.append(beta)
        Q.append(r / beta)
    T = torch.diag(torch.tensor(alphas))
    T += torch.diag(torch.tensor(betas), 1) + torch.diag(torch.tensor(betas), -1)
    return torch.linalg.eigvalsh(T), torch.stack(Q, dim=1)
''')

# Runs the last step to the end, so Q gets a (k+1)-th column.
EXTRA_COLUMN = _no_reorth('''    for j in range(k):
        w = matvec(Q[j])
        alpha = (Q[j] @ w).item()
        r = w - alpha * Q[j] - beta * q_prev
        alphas.append(alpha)
        beta = r.norm().item()
        betas.append(beta)
        q_prev = Q[j]
        Q.append(r / beta)
    T = torch.diag(torch.tensor(alphas))
    T += torch.diag(torch.tensor(betas[:-1]), 1) + torch.diag(torch.tensor(betas[:-1]), -1)
    return torch.linalg.eigvalsh(T), torch.stack(Q, dim=1)
''')

# Right numbers, but A q_j is recomputed for the residual: 2k matvecs.
TWO_MATVECS_PER_STEP = _no_reorth('''    for j in range(k):
        alpha = (Q[j] @ matvec(Q[j])).item()
        r = matvec(Q[j]) - alpha * Q[j] - beta * q_prev
        alphas.append(alpha)
        if j == k - 1:
            break
        beta = r.norm().item()
        betas.append(beta)
        q_prev = Q[j]
        Q.append(r / beta)
    T = torch.diag(torch.tensor(alphas))
    T += torch.diag(torch.tensor(betas), 1) + torch.diag(torch.tensor(betas), -1)
    return torch.linalg.eigvalsh(T), torch.stack(Q, dim=1)
''')

register("bug_lanczos_off_by_one_beta", "bug",
         lambda: build.variant({"ex4_1_code": OFF_BY_ONE_BETA}), loses=("4.1",),
         may_lose=("4.2",))
register("bug_lanczos_forgets_beta_q_prev", "bug",
         lambda: build.variant({"ex4_1_code": FORGETS_PREVIOUS_TERM}), loses=("4.1",),
         may_lose=("4.2",))
register("bug_lanczos_k_plus_one_columns", "bug",
         lambda: build.variant({"ex4_1_code": EXTRA_COLUMN}), loses=("4.1",),
         may_lose=("4.2",))
register("bug_lanczos_two_matvecs_per_step", "bug",
         lambda: build.variant({"ex4_1_code": TWO_MATVECS_PER_STEP}), loses=("4.1",),
         may_lose=("4.2",))

# --- bugs in lanczos_track_orth ----------------------------------------------------------

MASTER_TRACK = re.sub(r"^ *(### (BEGIN|END) SOLUTION|raise NotImplementedError\(\))\n?", "",
                      next(c.source for c in build.master().cells
                           if c.metadata.get("nbgrader", {}).get("grade_id") == "ex5_code"),
                      flags=re.MULTILINE)


def _track(old: str, new: str) -> str:
    assert old in MASTER_TRACK, old
    return MASTER_TRACK.replace(old, new)


# A preallocated basis whose error is measured in full at every step: the
# zero columns not yet filled count as -1 on the diagonal.
WHOLE_Q_HISTORY = '''def lanczos_track_orth(matvec, dim, k, reorth='none', seed=0):
    """As above but also returns orthogonality-error history."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g)
    Q = torch.zeros(dim, k)
    Q[:, 0] = q / q.norm()
    alphas, betas, orth_history = [], [], []
    for j in range(k):
        orth_history.append((Q.T @ Q - torch.eye(k)).abs().max().item())
        w = matvec(Q[:, j])
        alpha = (Q[:, j] @ w).item()
        r = w - alpha * Q[:, j]
        if j > 0:
            r = r - betas[-1] * Q[:, j - 1]
        Qj = Q[:, :j + 1]
        if reorth == 'full':
            for _ in range(2):
                r = r - Qj @ (Qj.T @ r)
        elif reorth == 'selective' and r.norm() < 0.717 * w.norm():
            r = r - Qj @ (Qj.T @ r)
        alphas.append(alpha)
        if j < k - 1:
            betas.append(r.norm().item())
            Q[:, j + 1] = r / betas[-1]
    T = torch.diag(torch.tensor(alphas))
    T += torch.diag(torch.tensor(betas), 1) + torch.diag(torch.tensor(betas), -1)
    return torch.linalg.eigvalsh(T), Q, orth_history
'''

FULL_ONCE = _track("            for _ in range(2):\n                r = r - Qj @ (Qj.T @ r)",
                   "            r = r - Qj @ (Qj.T @ r)")
SELECTIVE_INVERTED = _track("r.norm() < 0.717 * w.norm()", "r.norm() > 0.717 * w.norm()")
# "Cheaper than full": one pass on every step, no test at all.
SELECTIVE_EVERY_STEP = _track("elif reorth == 'selective' and r.norm() < 0.717 * w.norm():",
                              "elif reorth == 'selective':")

register("bug_orth_history_of_whole_preallocated_Q", "bug",
         lambda: build.variant({"ex5_code": WHOLE_Q_HISTORY}), loses=("5.1",))
register("bug_full_reorth_only_once", "bug",
         lambda: build.variant({"ex5_code": FULL_ONCE}), loses=("5.2",))
register("bug_selective_threshold_inverted", "bug",
         lambda: build.variant({"ex5_code": SELECTIVE_INVERTED}), loses=("5.3",),
         may_lose=USES_TRACK_ORTH)
register("bug_selective_reorthogonalizes_every_step", "bug",
         lambda: build.variant({"ex5_code": SELECTIVE_EVERY_STEP}), loses=("5.3",))

# --- bugs in Section 6 ---------------------------------------------------------------------

RITZ_INIT_NO_REORTH = _filled("ex6_0", "ritz_init = lanczos_track_orth(matvec_init, dim=P_mnist, "
                                       "k=30)[0]\n")
# The Hessian of the last minibatch of 64 instead of the 500 samples.
RITZ_TRAINED_MINIBATCH = _filled(
    "ex6_1", "matvec_trained = lambda v: hvp_double_backward(model_mnist, X_train[idx], "
             "y_train[idx], v)\nritz_trained = lanczos_track_orth(matvec_trained, dim=P_mnist, "
             "k=30, reorth='selective')[0]\n")
# Ritz values of the model before the SGD steps: the computation moved above them.
RITZ_TRAINED_BEFORE_TRAINING = (
    "ritz_trained = lanczos_track_orth(matvec_init, dim=P_mnist, k=30, reorth='selective')[0]\n"
    + re.sub(r"^ritz_trained = None.*\n", "", _filled("ex6_1", ""), flags=re.MULTILINE))

register("bug_ritz_init_without_reorth", "bug",
         lambda: build.variant({"ex6_0": RITZ_INIT_NO_REORTH}), loses=("6.0",))
register("bug_ritz_trained_on_last_minibatch", "bug",
         lambda: build.variant({"ex6_1": RITZ_TRAINED_MINIBATCH}), loses=("6.1",))
register("bug_ritz_trained_before_training", "bug",
         lambda: build.variant({"ex6_1": RITZ_TRAINED_BEFORE_TRAINING}), loses=("6.1",))

# --- cheats: the matrix built from dim matvecs -------------------------------------------

DENSE_EIGH = '''def lanczos_no_reorth(matvec, dim, k, seed=0):
    A = torch.stack([matvec(e) for e in torch.eye(dim)], dim=1)
    evals, evecs = torch.linalg.eigh((A + A.T) / 2)
    idx = evals.abs().argsort(descending=True)[:k]
    return evals[idx], evecs[:, idx]
'''

LOBPCG = '''def lanczos_track_orth(matvec, dim, k, reorth='none', seed=0):
    """As above but also returns orthogonality-error history."""
    A = torch.stack([matvec(e) for e in torch.eye(dim)], dim=1)
    A = (A + A.T) / 2
    if 3 * k <= dim:
        evals, evecs = torch.lobpcg(A, k=k, largest=True)
    else:
        evals, evecs = torch.linalg.eigh(A)
        evals, evecs = evals[-k:], evecs[:, -k:]
    hist = [(evecs[:, :j + 1].T @ evecs[:, :j + 1] - torch.eye(j + 1)).abs().max().item()
            for j in range(k)]
    return evals, evecs, hist
'''

register("cheat_lanczos_dense_eigh", "cheat",
         lambda: build.variant({"ex4_1_code": DENSE_EIGH}), loses=("4.1",), may_lose=("4.2",))
register("cheat_track_orth_lobpcg", "cheat",
         lambda: build.variant({"ex5_code": LOBPCG}), loses=("5.1", "5.2", "5.3"),
         may_lose=USES_TRACK_ORTH)
