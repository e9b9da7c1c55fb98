"""Notebook 2: correct code never loses a point by chance.

Every hidden check whose verdict depends on random draws (Sections 1-5, and
the Lanczos start of 6.4) is run on correct implementations over many draws:
draw `d` maps the seed a check passes to another generator state
(`seed * 7919 + d`), works in fp32 or fp64, and returns its answers in another
container (list, tuple, numpy array, tensor of fp32 or fp64). The notebook's
variables are recomputed per draw the same way, on the dense matrices (the
same operators the HVPs apply). Every check must pass on every draw.

Checks are called in-process through the engine's live transport
(`LiveStudent`, as tests/test_verdicts_robustness.py does for Notebook 1):
values cross it as they cross the real boundary, operators are counted and
budgeted.
"""

import functools
import importlib.util
import math
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch

from autograder.testing import StudentError
from fixtures import ntk_models as fx
from reference import randomized_ntk as ref
from tests.corpus_ntk.build import ASSIGNMENT
from tests.test_verdicts_robustness import FakeStudent

HIDDEN = ASSIGNMENT / "hidden"
DRAWS = 40
SECTIONS = {"1": "test_s1_hutchinson", "2": "test_s2_hutchpp", "3": "test_s3_randomized",
            "4": "test_s4_nystrom", "5": "test_s5_slq", "6": "test_s6_ntk"}
# Deterministic checks (no random draw can change them) and the figure check, which needs
# an executed notebook: the corpus covers them.
SKIP = {"test_the_plot_shows_the_measured_errors", "test_gauss_newton_matches_on_hidden_models",
        "test_matrix_free_where_the_jacobian_cannot_fit", "test_leaves_its_inputs_alone",
        "test_jacobians_match", "test_jacobians_of_a_single_example_and_of_fp32",
        "test_ntk_matches", "test_ntk_of_two_identical_examples", "test_ntk_vp_matches",
        "test_ntk_vp_is_matrix_free", "test_drifts"}


@functools.cache
def hidden_module(stem: str):
    """assignments/randomized_ntk/hidden/<stem>.py, under a name of its own."""
    if str(HIDDEN) not in sys.path:  # the suite's conftest does this inside the grader
        sys.path.insert(0, str(HIDDEN))
    spec = importlib.util.spec_from_file_location(f"ntk_hidden_{stem}", HIDDEN / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checks_of(section: str) -> list[tuple[str, Callable]]:
    module = hidden_module(SECTIONS[section])
    return [(name, fn) for name, fn in vars(module).items()
            if any(m.name == "check" for m in getattr(fn, "pytestmark", [])) and name not in SKIP]


class Style:
    """How draw `d` writes a correct answer: its generator states, precision, containers."""

    def __init__(self, draw: int):
        self.draw = draw
        self.work = (torch.float32, torch.float64)[draw % 2]
        self.container = ("list", "tuple", "numpy", "tensor32", "tensor64")[draw // 2 % 5]

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed * 7919 + self.draw)

    def scalar(self, value: float):
        if self.container == "numpy":
            return np.float64(value)
        if self.container.startswith("tensor"):
            return torch.tensor(value, dtype=self.dtype)
        return float(value)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.container == "tensor32" else torch.float64

    def values(self, values):
        values = torch.as_tensor(values).double().reshape(-1).tolist()
        if self.container == "list":
            return values
        if self.container == "tuple":
            return tuple(values)
        if self.container == "numpy":
            return np.array(values)
        return torch.tensor(values, dtype=self.dtype)

    def tensor(self, value: torch.Tensor):
        """Matrices: numpy or a tensor (a list of rows for the list style)."""
        if self.container == "numpy":
            return value.double().numpy()
        if self.container == "list":
            return [row for row in value.double()]
        return value.to(self.dtype if self.container.startswith("tensor") else value.dtype)


def _tensor(value) -> torch.Tensor:
    """A style's matrix or values (tensor, numpy array, list of rows or numbers) as a tensor."""
    if isinstance(value, (list, tuple)):
        return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in value])
    return torch.as_tensor(value)


def _rademacher(shape, g, dtype):
    return (2 * torch.randint(0, 2, shape, generator=g) - 1).to(dtype)


def _block(matvec, V):
    return torch.stack([matvec(V[:, j]) for j in range(V.shape[1])], dim=1)


def correct_functions(style: Style) -> dict[str, Callable]:
    """Correct Sections 1-5 functions drawing from the style's generators."""
    work = style.work

    def hutchinson_trace(matvec, dim, num_probes, dist="rademacher", seed=0):
        g = style.generator(seed)
        total = 0.0
        for _ in range(num_probes):
            z = _rademacher((dim,), g, work) if dist == "rademacher" else \
                torch.randn(dim, generator=g, dtype=work)
            total += (z @ matvec(z)).item()
        return style.scalar(total / num_probes)

    def hutchpp(matvec, dim, num_matvecs, seed=0):
        g = style.generator(seed)
        k = num_matvecs // 3
        S, G = _rademacher((dim, k), g, work), _rademacher((dim, num_matvecs - 2 * k), g, work)
        Q = torch.linalg.qr(_block(matvec, S))[0]
        top = torch.trace(Q.T @ _block(matvec, Q)).item()
        Gp = G - Q @ (Q.T @ G)
        return style.scalar(top + torch.trace(Gp.T @ _block(matvec, Gp)).item() / G.shape[1])

    def randomized_range_finder(matvec, dim, rank, oversample=10, power_iters=0, seed=0):
        omega = torch.randn(dim, rank + oversample, generator=style.generator(seed), dtype=work)
        Q = torch.linalg.qr(_block(matvec, omega))[0]
        for _ in range(2 * power_iters):
            Q = torch.linalg.qr(_block(matvec, Q))[0]
        return style.tensor(Q)

    def randomized_eigh(matvec, dim, rank, oversample=10, power_iters=1, seed=0):
        Q = _tensor(randomized_range_finder(matvec, dim, rank, oversample, power_iters,
                                            seed)).to(work)
        T = Q.T @ _block(matvec, Q)
        evals, W = torch.linalg.eigh((T + T.T) / 2)
        order = evals.abs().argsort(descending=True)[:rank]
        return style.values(evals[order]), style.tensor(Q @ W[:, order])

    def nystrom(matvec, dim, rank, seed=0):
        omega = torch.linalg.qr(torch.randn(dim, rank, generator=style.generator(seed),
                                            dtype=work))[0]
        Y = _block(matvec, omega)
        nu = math.sqrt(dim) * torch.finfo(work).eps * torch.linalg.matrix_norm(Y, ord=2).item()
        Y_nu = Y + nu * omega
        M = omega.T @ Y_nu
        C = torch.linalg.cholesky((M + M.T) / 2)
        B = torch.linalg.solve_triangular(C, Y_nu.T, upper=False).T
        U, s, _ = torch.linalg.svd(B, full_matrices=False)
        return style.tensor(U), style.values((s ** 2 - nu).clamp_min(0.0))

    def slq_density(matvec, dim, grid, num_probes=10, k=30, sigma=0.05, seed=0):
        g = style.generator(seed)
        grid = torch.as_tensor(grid, dtype=torch.float64)
        density = torch.zeros_like(grid)
        for _ in range(num_probes):
            v = _rademacher((dim,), g, work) / math.sqrt(dim)
            alphas, betas, _ = ref.lanczos(matvec, dim, k, start=v, dtype=work)
            nodes, Y = torch.linalg.eigh(ref.tridiagonal(alphas, betas).double())
            density += ref.gaussian_kernel(grid, nodes, Y[0] ** 2, sigma)
        return style.values(density / num_probes)

    return {"hutchinson_trace": hutchinson_trace, "hutchpp": hutchpp,
            "randomized_range_finder": randomized_range_finder,
            "randomized_eigh": randomized_eigh, "nystrom": nystrom, "slq_density": slq_density}


@functools.cache
def _dense():
    """The notebook's Hessian, Gauss-Newton matrix and NTK (fp64), built once."""
    model, X, y = fx.notebook_problem()
    m, Xd = model.double(), X.double()
    H = ref.dense_hessian(m, Xd, y)
    G = ref.dense_gauss_newton(m, Xd, y)
    K = ref.empirical_ntk(m, Xd[:fx.NOTEBOOK_NTK_SAMPLES])
    return H, torch.linalg.eigvalsh(H), G, K


def notebook_variables(style: Style, f: dict[str, Callable]) -> dict[str, Callable]:
    """The notebook's graded variables, computed with the style's functions."""
    H, eigs, G, K = _dense()
    P = H.shape[0]

    def mv(A):
        return lambda v: A.to(v.dtype) @ v

    tr = eigs.sum().item()

    def rms_errors():
        out = []
        for m in [1, 2, 4, 8, 16, 32, 64]:
            errs = [(float(f["hutchinson_trace"](mv(H), P, m, seed=r)) - tr) / tr
                    for r in range(40)]
            out.append(math.sqrt(np.mean(np.square(errs))))
        return style.values(out)

    eigs_decay = fx.decaying(400, 2.0)
    A_decay = fx.with_spectrum(eigs_decay, seed=1, dtype=torch.float32)
    tr_decay = eigs_decay.sum().item()

    def errs(name):
        return lambda: style.values([np.mean([abs(float(f[name](mv(A_decay), 400, b, seed=r))
                                                  - tr_decay) for r in range(10)]) / tr_decay
                                     for b in [12, 24, 48, 96, 192]])

    def rand_top5():
        return f["randomized_eigh"](mv(H), P, 5, oversample=5, power_iters=2)[0]

    def lanczos_top(A, k, dim):
        start = torch.randn(dim, generator=style.generator(0), dtype=style.work)
        alphas, betas, _ = ref.lanczos(mv(A), dim, k, start=start, dtype=style.work)
        ritz = torch.linalg.eigvalsh(ref.tridiagonal(alphas, betas))
        return ritz[ritz.abs().argsort(descending=True)][:5]

    eigs_G = torch.linalg.eigvalsh(G).flip(0).clamp_min(0)

    def nys_errors():
        out = []
        for r in [5, 10, 20, 40]:
            U, lam = f["nystrom"](mv(G), P, r, seed=0)
            U, lam = _tensor(U).double(), _tensor(lam).double().reshape(-1)
            G_hat = (U * lam) @ U.T
            out.append((torch.linalg.matrix_norm(G - G_hat, "nuc") / eigs_G.sum()).item())
        return style.values(out)

    grid = torch.linspace(eigs[0].item() - 0.2, eigs[-1].item() + 0.2, 500)
    return {
        "probe_counts": lambda: [1, 2, 4, 8, 16, 32, 64], "rms_errors": rms_errors,
        "budgets": lambda: [12, 24, 48, 96, 192],
        "err_hutch": errs("hutchinson_trace"), "err_hpp": errs("hutchpp"),
        "rand_top5": rand_top5, "lanczos_top5": lambda: style.values(lanczos_top(H, 60, P)),
        "ranks": lambda: [5, 10, 20, 40], "nys_errors": nys_errors,
        "grid_H": lambda: grid,
        "density_slq": lambda: f["slq_density"](mv(H), P, grid, num_probes=8, k=40, sigma=0.02),
        "density_exact": lambda: ref.exact_density(eigs, grid, 0.02).float(),
        "ntk_top5": lambda: style.values(lanczos_top(K, 40, K.shape[0]).abs()),
    }


@pytest.mark.parametrize("section", ["1", "2", "3", "4", "5", "6"])
def test_correct_styles_keep_full_marks(section):
    failures = {}
    for draw in range(DRAWS):
        style = Style(draw)
        functions = correct_functions(style)
        student = FakeStudent(functions, notebook_variables(style, functions))
        for name, check in checks_of(section):
            torch.manual_seed(0)  # as the grading plugin does before every check
            try:
                check(student)
            except (AssertionError, StudentError) as exc:
                failures.setdefault(name, []).append(f"draw {draw}: {exc}"[:300])
    assert not failures, failures
