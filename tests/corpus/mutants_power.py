"""Mutants of Sections 2-3 (power iteration and deflation), written as students fill the cells.

power_iteration is called by the locked cells of 2.2 and 2.3 and by
power_iteration_deflated (3.1, 3.2), so its bugs may cost those too;
power_iteration_deflated's bugs may cost 3.2.
"""

from tests.corpus import build
from tests.corpus.mutants import register

USES_POWER = ("2.2", "2.3", "3.1", "3.2")
USES_DEFLATED = ("3.2",)

# --- correct variants ---------------------------------------------------------

# Tensor history, a while loop, and the quotient accumulated in fp64 (the
# matvec still gets fp32 vectors, as the notebook's fp32 matrices require).
FP64_TENSOR_HISTORY = '''def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):
    gen = torch.Generator()
    gen.manual_seed(seed)
    v = torch.randn(dim, generator=gen).double()
    v /= torch.linalg.norm(v)
    history = torch.zeros(0, dtype=torch.float64)
    lam = None
    it = 0
    while it < num_iters:
        Av = matvec(v.float()).double()
        new_lam = torch.dot(v, Av)
        if lam is not None:
            history = torch.cat([history, (new_lam - lam).abs().reshape(1)])
        lam = new_lam
        v = Av / torch.linalg.norm(Av)
        it += 1
        if len(history) > 0 and history[-1] < tol:
            break
    return lam.item(), v.float(), history
'''

# Global seeding, a first estimate computed before the loop, and a
# converged flag instead of break.
GLOBAL_SEED_FLAG = '''def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):
    torch.manual_seed(seed)
    v = torch.randn(dim)
    v = v / torch.norm(v)
    w = matvec(v)
    eig = torch.dot(v, w).item()
    history = []
    converged = False
    k = 1
    while k < num_iters and not converged:
        v = w / torch.norm(w)
        w = matvec(v)
        new_eig = torch.dot(v, w).item()
        history.append(abs(new_eig - eig))
        converged = history[-1] < tol
        eig = new_eig
        k += 1
    return eig, w / torch.norm(w), history
'''

# Deflation by explicit projection, (I - U U^T) A (I - U U^T) applied to a
# vector, the same seed for every pair, eigenvalues as a tensor and the
# eigenvectors as the rows of a (k, dim) tensor.
PROJECTED_DEFLATION = '''def power_iteration_deflated(matvec, dim, k, num_iters_per=300, seed=0):
    U = torch.zeros(dim, 0)

    def projected(v):
        v = v - U @ (U.T @ v)
        w = matvec(v)
        return w - U @ (U.T @ w)

    vals = []
    for _ in range(k):
        lam, u, _ = power_iteration(projected, dim, num_iters=num_iters_per, seed=seed)
        u = u - U @ (U.T @ u)
        u = u / u.norm()
        vals.append(lam)
        U = torch.cat([U, u[:, None]], dim=1)
    return torch.tensor(vals), U.T
'''

# A list of eigenvectors, each deflation term computed with torch.outer.
LIST_OF_VECTORS = '''def power_iteration_deflated(matvec, dim, k, num_iters_per=300, seed=0):
    pairs = []

    def deflated(v):
        out = matvec(v)
        for lam, u in pairs:
            out = out - lam * torch.outer(u, u) @ v
        return out

    for i in range(k):
        lam, u, _ = power_iteration(deflated, dim, num_iters=num_iters_per, seed=seed + 100 * i)
        pairs.append((lam, u / u.norm()))
    return [lam for lam, _ in pairs], [u for _, u in pairs]
'''

# PyHessian's Hessian.eigenvalues() wrapped into the signature: its own power loop,
# v orthonormalized against the eigenvectors found so far instead of a deflated
# operator, the Rayleigh quotient, and a stop on a relative change below `tol`.
PYHESSIAN = '''def power_iteration_deflated(matvec, dim, k, num_iters_per=300, seed=0):
    tol = TOL
    eigenvalues, eigenvectors = [], []
    g = torch.Generator().manual_seed(seed)
    for _ in range(k):
        eigenvalue = None
        v = torch.randn(dim, generator=g)
        v = v / v.norm()
        for _ in range(num_iters_per):
            for u in eigenvectors:
                v = v - (v @ u) * u
            v = v / v.norm()
            Hv = matvec(v)
            tmp = (Hv @ v).item()
            v = Hv / Hv.norm()
            if eigenvalue is not None and abs(eigenvalue - tmp) / (abs(eigenvalue) + 1e-6) < tol:
                eigenvalue = tmp
                break
            eigenvalue = tmp
        eigenvalues.append(eigenvalue)
        eigenvectors.append(v)
    return eigenvalues, torch.stack(eigenvectors, 1)
'''

register("power_correct_fp64_tensor_history", "correct", lambda: build.variant({
    "ex2_1_code": FP64_TENSOR_HISTORY}))
register("power_correct_global_seed_flag", "correct", lambda: build.variant({
    "ex2_1_code": GLOBAL_SEED_FLAG}))
register("deflation_correct_projection_rows", "correct", lambda: build.variant({
    "ex3_1_code": PROJECTED_DEFLATION}))
register("deflation_correct_vector_list", "correct", lambda: build.variant({
    "ex3_1_code": LIST_OF_VECTORS}))
register("deflation_correct_pyhessian_style", "correct", lambda: build.variant({
    "ex3_1_code": PYHESSIAN.replace("TOL", "1e-10")}))

# --- bugs in power_iteration ----------------------------------------------------

POWER = '''def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=g)
    v = v / v.norm()
    eig, history = None, []
    for _ in range(num_iters):
        w = matvec(v)
        new_eig = (v @ w).item()
        if eig is not None:
            history.append(abs(new_eig - eig))
        eig = new_eig
        v = w / w.norm()
        if history and history[-1] < tol:
            break
    return eig, v, history
'''


def _power(old: str, new: str) -> str:
    assert old in POWER, old
    return POWER.replace(old, new)


# "Power iteration finds the largest |lambda|", so the student returns it.
ABS_EIGENVALUE = _power("new_eig = (v @ w).item()", "new_eig = abs((v @ w).item())")
# The estimates themselves, not their changes.
HISTORY_OF_ESTIMATES = _power("history.append(abs(new_eig - eig))", "history.append(new_eig)") \
    .replace("if history and history[-1] < tol:", "if len(history) > 1 and abs(history[-1] - history[-2]) < tol:")
# Normalizes only at the end: |lambda|^k over- or underflows fp32.
UNNORMALIZED = _power("new_eig = (v @ w).item()", "new_eig = ((v @ w) / (v @ v)).item()") \
    .replace("v = w / w.norm()", "v = w").replace("return eig, v, history",
                                                 "return eig, v / v.norm(), history")
# The quotient of the new vector: a second matvec every step.
TWO_MATVECS = _power("""        new_eig = (v @ w).item()
        if eig is not None:
            history.append(abs(new_eig - eig))
        eig = new_eig
        v = w / w.norm()
""", """        v = w / w.norm()
        new_eig = (v @ matvec(v)).item()
        if eig is not None:
            history.append(abs(new_eig - eig))
        eig = new_eig
""")
# The start vector from the global generator: the seed is ignored.
IGNORES_SEED = _power("v = torch.randn(dim, generator=g)", "v = torch.randn(dim)")
# The textbook max-norm estimate w_i / v_i: right limit, but it converges
# like the vector, |l2/l1|^k, not like the Rayleigh quotient.
COMPONENT_RATIO = _power("new_eig = (v @ w).item()",
                         "i = v.abs().argmax()\n        new_eig = (w[i] / v[i]).item()")
# A hard-coded threshold instead of tol.
FIXED_THRESHOLD = _power("history[-1] < tol", "history[-1] < 1e-10")

register("power_bug_abs_eigenvalue", "bug", lambda: build.variant({
    "ex2_1_code": ABS_EIGENVALUE}), loses=["2.1"], may_lose=USES_POWER)
register("power_bug_history_of_estimates", "bug", lambda: build.variant({
    "ex2_1_code": HISTORY_OF_ESTIMATES}), loses=["2.1"], may_lose=USES_POWER)
register("power_bug_unnormalized", "bug", lambda: build.variant({
    "ex2_1_code": UNNORMALIZED}), loses=["2.1"], may_lose=USES_POWER)
register("power_bug_two_matvecs_per_step", "bug", lambda: build.variant({
    "ex2_1_code": TWO_MATVECS}), loses=["2.1"], may_lose=USES_POWER)
register("power_bug_ignores_seed", "bug", lambda: build.variant({
    "ex2_1_code": IGNORES_SEED}), loses=["2.1"], may_lose=USES_POWER)
register("power_bug_component_ratio", "bug", lambda: build.variant({
    "ex2_1_code": COMPONENT_RATIO}), loses=["2.2"], may_lose=("2.1", *USES_POWER))
register("power_bug_fixed_threshold", "bug", lambda: build.variant({
    "ex2_1_code": FIXED_THRESHOLD}), loses=["2.1"])

# --- bugs in power_iteration_deflated -----------------------------------------------

DEFLATED = '''def power_iteration_deflated(matvec, dim, k, num_iters_per=300, seed=0):
    found_vals, found_vecs = [], []

    def deflated_matvec(v):
        out = matvec(v)
        for lam, u in zip(found_vals, found_vecs):
            out = out - lam * (u @ v) * u
        return out

    for i in range(k):
        lam, u, _ = power_iteration(deflated_matvec, dim, num_iters=num_iters_per, seed=seed + i)
        found_vals.append(lam)
        found_vecs.append(u / u.norm())
    return found_vals, torch.stack(found_vecs, dim=1)
'''


def _deflated(old: str, new: str) -> str:
    assert old in DEFLATED, old
    return DEFLATED.replace(old, new)


# Subtracts lam * u whatever v is: not the rank-one operator lam u u^T.
NO_PROJECTION = _deflated("out = out - lam * (u @ v) * u", "out = out - lam * u")
# |lam| in the deflation: a negative pair is doubled instead of removed.
ABS_LAM = _deflated("out = out - lam * (u @ v) * u", "out = out - abs(lam) * (u @ v) * u")
# Only the latest pair is removed, so the first comes back at k = 3.
ONLY_LAST = _deflated("""        for lam, u in zip(found_vals, found_vecs):
            out = out - lam * (u @ v) * u
""", """        if found_vals:
            out = out - found_vals[-1] * (found_vecs[-1] @ v) * found_vecs[-1]
""")

register("deflation_bug_no_projection", "bug", lambda: build.variant({
    "ex3_1_code": NO_PROJECTION}), loses=["3.1"], may_lose=USES_DEFLATED)
register("deflation_bug_abs_lambda", "bug", lambda: build.variant({
    "ex3_1_code": ABS_LAM}), loses=["3.1"], may_lose=USES_DEFLATED)
register("deflation_bug_only_last_pair", "bug", lambda: build.variant({
    "ex3_1_code": ONLY_LAST}), loses=["3.1"], may_lose=USES_DEFLATED)
# PyHessian's default tol, 1e-3: each eigenvalue stops about 1e-3 relative short.
register("deflation_bug_pyhessian_default_tol", "bug", lambda: build.variant({
    "ex3_1_code": PYHESSIAN.replace("TOL", "1e-3")}), loses=["3.1"], may_lose=USES_DEFLATED)

# --- cheats: read the matrix out of the operator, then eigh ----------------------

POWER_EIGH = '''def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):
    A = torch.stack([matvec(e) for e in torch.eye(dim)])
    evals, evecs = torch.linalg.eigh((A + A.T) / 2)
    i = evals.abs().argmax()
    return evals[i].item(), evecs[:, i], [0.0]
'''

DEFLATED_EIGH = '''def power_iteration_deflated(matvec, dim, k, num_iters_per=300, seed=0):
    H = torch.stack([matvec(e) for e in torch.eye(dim)])
    evals, evecs = torch.linalg.eigh((H + H.T) / 2)
    order = evals.abs().argsort(descending=True)[:k]
    return evals[order].tolist(), evecs[:, order]
'''

register("power_cheat_materialize_eigh", "cheat", lambda: build.variant({
    "ex2_1_code": POWER_EIGH}), loses=["2.1", "2.2"], may_lose=USES_POWER)
register("deflation_cheat_materialize_eigh", "cheat", lambda: build.variant({
    "ex3_1_code": DEFLATED_EIGH}), loses=["3.1"], may_lose=USES_DEFLATED)
