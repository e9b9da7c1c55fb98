"""Trivial answers earn nothing: notebooks whose functions do no real work.

Each notebook fills every solution cell of Sections 1-6 with a function of
the right signature that returns something of the right shape without
computing it: zeros, constants, an echo of its input, or random noise. The
checks of shape, linearity, matvec counts and self-consistency ("the Ritz
values are the eigenvalues of Q^T A Q" holds for Q = 0) must not pay for
these: every exercise of Sections 1-6 scores 0. Section 0 keeps the master's
answers, so the total is at most its 7 points.
"""

from tests.corpus import build
from tests.corpus.mutants import register
from tests.corpus.mutants_hvp import HELPERS
from tests.corpus.mutants_lanczos import _filled

SECTIONS_1_TO_6 = ("1.1", "1.2", "1.3", "1.4", "2.1", "2.2", "2.3", "3.1", "3.2", "4.1", "4.2",
                   "5.1", "5.2", "5.3", "6.0", "6.1")
SECTION_0_POINTS = 7


def _cells(hvp: str, power: str, deflated: str, lanczos: str, track: str, ritz: str) -> dict:
    """Solution cells from the bodies of each function (and the Ritz values of 6.0, 6.1)."""
    return {
        "ex1_1_code": HELPERS + f"def hvp_double_backward(model, X, y, v):\n{hvp}",
        "ex1_2_code": "from torch.func import grad, jvp\n\n"
                      f"def hvp_jvp_of_grad(model, X, y, v):\n{hvp}",
        "ex1_3_code": f"def hvp_finite_difference(model, X, y, v, eps=1e-3):\n{hvp}",
        "ex2_1_code": f"def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):\n"
                      f"{power}",
        "ex3_1_code": f"def power_iteration_deflated(matvec, dim, k, num_iters_per=300, "
                      f"seed=0):\n{deflated}",
        "ex4_1_code": f"def lanczos_no_reorth(matvec, dim, k, seed=0):\n{lanczos}",
        "ex5_code": f"def lanczos_track_orth(matvec, dim, k, reorth='none', seed=0):\n{track}",
        "ex6_0": _filled("ex6_0", f"ritz_init = {ritz}\n"),
        "ex6_1": _filled("ex6_1", f"ritz_trained = {ritz}\n"),
    }


ZEROS = _cells(
    hvp="    return torch.zeros_like(v)\n",
    power="    return 0.0, torch.zeros(dim), []\n",
    deflated="    return torch.zeros(k), torch.zeros(dim, k)\n",
    lanczos="    return torch.zeros(k), torch.zeros(dim, k)\n",
    track="    return torch.zeros(k), torch.zeros(dim, k), [0.0] * k\n",
    ritz="torch.zeros(30)")

# Constants of the right shape, where a constant can be "valid": the first k
# columns of the identity are an orthonormal basis, and its history of
# orthogonality errors (all exactly 0) is the right one for that basis.
CONSTANTS = _cells(
    hvp="    return torch.ones_like(v)\n",
    power="    return 1.0, torch.ones(dim) / dim ** 0.5, [0.0]\n",
    deflated="    return torch.ones(k), torch.eye(dim)[:, :k]\n",
    lanczos="    return torch.arange(k, dtype=torch.float32), torch.eye(dim)[:, :k]\n",
    track="    return torch.arange(k, dtype=torch.float32), torch.eye(dim)[:, :k], [0.0] * k\n",
    ritz="torch.linspace(-1.0, 1.0, 30)")

# Echo the input: H v = v; the start vector and its Rayleigh quotient as the
# answer of power iteration; the start vector's quotient for every pair.
ECHO = _cells(
    hvp="    return v\n",
    power="""    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    v = v / v.norm()
    eig = (v @ matvec(v)).item()
    return eig, v, [abs(eig)]
""",
    deflated="""    vals, vecs = [], []
    for i in range(k):
        v = torch.randn(dim, generator=torch.Generator().manual_seed(seed + i))
        v = v / v.norm()
        vals.append((v @ matvec(v)).item())
        vecs.append(v)
    return vals, torch.stack(vecs, dim=1)
""",
    lanczos="""    Q = torch.eye(dim)[:, :k]
    return torch.linalg.eigvalsh(Q.T @ torch.stack([matvec(q) for q in Q.T], dim=1)), Q
""",
    track="""    Q = torch.eye(dim)[:, :k]
    ritz = torch.linalg.eigvalsh(Q.T @ torch.stack([matvec(q) for q in Q.T], dim=1))
    return ritz, Q, [0.0] * k
""",
    ritz="matvec_init(torch.ones(P_mnist))[:30]")

# Random noise of the right shape. The Lanczos is Rayleigh-Ritz on a random
# orthonormal basis: k matvecs, orthonormal columns, and Ritz values that are
# exactly the eigenvalues of Q^T A Q, with no Krylov space anywhere.
NOISE = _cells(
    hvp="    return torch.randn_like(v)\n",
    power="""    v = torch.randn(dim)
    return torch.randn(()).item(), v / v.norm(), torch.rand(num_iters).tolist()
""",
    deflated="    return torch.randn(k), torch.linalg.qr(torch.randn(dim, k))[0]\n",
    lanczos="""    Q = torch.linalg.qr(torch.randn(dim, k))[0]
    return torch.linalg.eigvalsh(Q.T @ torch.stack([matvec(q) for q in Q.T], dim=1)), Q
""",
    track="""    Q = torch.linalg.qr(torch.randn(dim, k))[0]
    ritz = torch.linalg.eigvalsh(Q.T @ torch.stack([matvec(q) for q in Q.T], dim=1))
    history = [(Q[:, :j + 1].T @ Q[:, :j + 1] - torch.eye(j + 1)).abs().max().item()
               for j in range(k)]
    return ritz, Q, history
""",
    ritz="torch.randn(30)")

for _name, _cells_of in (("zeros", ZEROS), ("constants", CONSTANTS), ("echo", ECHO),
                         ("noise", NOISE)):
    register(f"trivial_{_name}", "bug", lambda cells=_cells_of: build.variant(cells),
             loses=SECTIONS_1_TO_6, max_total=SECTION_0_POINTS)
