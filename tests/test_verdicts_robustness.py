"""Correct code never loses a point by chance.

Every hidden check of an exercise whose answer depends on a random start
vector (2.1-2.3, 3.1-3.2, 4.x, 5.x, 6.x) is run on correct implementations
over many start-vector draws: each draw maps the seed a check passes to
another generator state (`seed * 7919 + draw`), works in fp32 or fp64, and
returns its answers in another container (list, tuple, numpy array, tensor
of fp32 or fp64) and, where the text allows it, in another order. Every
check must pass on every draw.

Grading a notebook takes ~20 s, so the checks are called in-process with a
`FakeStudent`: the engine's live transport (`autograder.sandbox.live`, which
the student's self-check uses) over local Python functions instead of a
forked notebook. Values cross it exactly as they cross the real boundary
(the runner's `to_plain`, then the wire format's encode and decode),
operators are the engine's own `Operator` (cast, counted, budgeted), and a
spent budget fails the call with `OperatorBudgetExceeded`, as
`StudentProxy.call` does.
"""

import copy
import functools
import importlib.util
import sys
from collections.abc import Callable, Mapping
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder.sandbox.live import LiveStudent
from autograder.testing import StudentError
from reference import krylov_hessian as ref
from tests.notebooks import ASSIGNMENT

HIDDEN = ASSIGNMENT / "hidden"
DRAWS = 50

# --- the hidden suite, imported in-process -------------------------------------------


@functools.cache
def hidden_module(stem: str) -> ModuleType:
    """assignments/krylov_hessian/hidden/<stem>.py, under a name of its own."""
    if str(HIDDEN) not in sys.path:  # the suite's conftest does this inside the grader
        sys.path.insert(0, str(HIDDEN))
    spec = importlib.util.spec_from_file_location(f"hidden_{stem}", HIDDEN / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SECTIONS = {"0": "test_s0_norms_and_eps", "1": "test_s1_hvp", "2": "test_s2_power",
            "3": "test_s3_deflation", "4": "test_s4_lanczos", "5": "test_s5_reorth",
            "6": "test_s6_hessian_topk"}


def checks_of(exercise: str) -> list[tuple[str, Callable]]:
    """(name, function of `student`) of every check of `exercise`; a check shared by
    several exercises through parametrize (1.1 and 1.2) comes with its parameter bound."""
    module = hidden_module(SECTIONS[exercise.split(".")[0]])
    found = []
    for name, function in vars(module).items():
        for mark in getattr(function, "pytestmark", []):
            if mark.name == "check" and mark.kwargs.get("exercise") == exercise:
                found.append((name, function))
            if mark.name == "parametrize":
                argname, params = mark.args[0], mark.args[1]
                for param in params:
                    if any(m.name == "check" and m.kwargs.get("exercise") == exercise
                           for m in getattr(param, "marks", ())):
                        found.append((name, functools.partial(function,
                                                              **{argname: param.values[0]})))
    assert found, f"no checks found for {exercise}"
    return found


# --- the boundary: the engine's own live transport -------------------------------------


class LazyNamespace(Mapping):
    """What a notebook would have defined: `functions`, and `variables`, each a
    zero-argument function computing the variable's value when it is first read."""

    def __init__(self, functions: dict[str, Callable],
                 variables: dict[str, Callable[[], object]] | None = None):
        self.functions, self.variables = functions, variables or {}
        self._values: dict[str, object] = {}

    def __getitem__(self, name: str):
        if name in self.functions:
            return self.functions[name]
        if name not in self.variables:
            raise KeyError(name)
        if name not in self._values:
            self._values[name] = self.variables[name]()
        return self._values[name]

    def __iter__(self):
        return iter([*self.functions, *self.variables])

    def __len__(self) -> int:
        return len(self.functions) + len(self.variables)


class FakeStudent(LiveStudent):
    """A Student served by local functions, through the live transport of the self-check
    (`autograder.sandbox.live`): values cross as they cross the real boundary, operators
    are counted and budgeted, a spent budget fails the call."""

    def __init__(self, functions: dict[str, Callable],
                 variables: dict[str, Callable[[], object]] | None = None):
        super().__init__(LazyNamespace(functions, variables))


def run_checks(student: FakeStudent, exercise: str) -> dict[str, str]:
    """check name -> failure message, for the checks of `exercise` that fail."""
    failures = {}
    for name, function in checks_of(exercise):
        torch.manual_seed(0)  # as the grading plugin does before every check
        try:
            function(student)
        except (AssertionError, StudentError) as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    return failures


# --- correct implementations, one style per draw -------------------------------------


class Style:
    """How draw `draw` writes a correct answer: its start vectors, working precision,
    containers and order."""

    def __init__(self, draw: int):
        self.draw = draw
        self.work = (torch.float32, torch.float64)[draw % 2]
        self.container = ("list", "tuple", "numpy", "tensor32", "tensor64")[draw // 2 % 5]
        self.descending = bool(draw // 10 % 2)  # Ritz values, where any order is allowed
        self.row_sums = bool(draw // 3 % 2)  # the orthogonality error's infinity norm
        # Lanczos seeding the global generator (as torch.manual_seed(seed) does), which
        # changes the SGD batches of 6.1 and so the trained model the checks must use.
        self.global_lanczos = draw % 5 == 4

    def start(self, dim: int, seed: int, global_rng: bool = False) -> torch.Tensor:
        if global_rng:
            torch.manual_seed(seed * 7919 + self.draw)
            v = torch.randn(dim, dtype=torch.float64).to(self.work)
        else:
            generator = torch.Generator().manual_seed(seed * 7919 + self.draw)
            v = torch.randn(dim, generator=generator, dtype=torch.float64).to(self.work)
        return v / v.norm()

    def sequence(self, values: list[float]):
        """A list of numbers in this draw's container."""
        if self.container == "list":
            return list(values)
        if self.container == "tuple":
            return tuple(values)
        if self.container == "numpy":
            return np.array(values, dtype=np.float64)
        dtype = torch.float32 if self.container == "tensor32" else torch.float64
        return torch.tensor(values, dtype=dtype)

    def scalar(self, value: float):
        if self.container == "numpy":
            return np.float64(value)
        if self.container.startswith("tensor"):
            return torch.tensor(value, dtype=self.sequence([0.0]).dtype)
        return float(value)

    def columns(self, vectors: list[torch.Tensor], rows_allowed: bool):
        """Vectors as the columns of a tensor, or (where accepted) a list or the rows."""
        if self.container == "list":
            return list(vectors)
        if rows_allowed and self.container == "tuple":
            return torch.stack(vectors)
        return torch.stack(vectors, dim=1)


def correct_functions(style: Style) -> dict[str, Callable]:
    """power_iteration, power_iteration_deflated, lanczos_no_reorth, lanczos_track_orth."""

    def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):
        v = style.start(dim, seed)
        eig, history = None, []
        for _ in range(num_iters):
            w = matvec(v)
            estimate = torch.dot(v, w).item()
            if eig is not None:
                history.append(abs(estimate - eig))
            eig = estimate
            v = w / w.norm()
            if history and history[-1] < tol:
                break
        return style.scalar(eig), v, style.sequence(history)

    def power_iteration_deflated(matvec, dim, k, num_iters_per=300, seed=0):
        values, vectors = [], []

        def deflated(v):
            out = matvec(v)
            for lam, u in zip(values, vectors):
                out = out - lam * torch.dot(u, v) * u
            return out

        for i in range(k):
            lam, u, _ = power_iteration(deflated, dim, num_iters=num_iters_per, seed=seed + i)
            values.append(float(lam))
            vectors.append(u / u.norm())
        return style.sequence(values), style.columns(vectors, rows_allowed=True)

    def lanczos_track_orth(matvec, dim, k, reorth="none", seed=0):
        columns = [style.start(dim, seed, global_rng=style.global_lanczos)]
        alphas, betas, history = [], [], []
        for j in range(k):
            Q = torch.stack(columns, dim=1)
            history.append(ref.orthogonality_error(Q, entrywise=not style.row_sums))
            q = columns[j]
            w = matvec(q)
            alpha = torch.dot(q, w).item()
            r = w - alpha * q
            if j > 0:
                r = r - betas[-1] * columns[j - 1]
            passes = {"none": 0, "full": 2}.get(reorth, 1)
            if reorth == "selective" and r.norm() >= 0.717 * w.norm():
                passes = 0
            for _ in range(passes):
                r = r - Q @ (Q.T @ r)
            alphas.append(alpha)
            if j == k - 1:
                break
            betas.append(r.norm().item())
            columns.append(r / betas[-1])
        ritz = torch.linalg.eigvalsh(ref.tridiagonal(alphas, betas, style.work))
        if style.descending:
            ritz = ritz.flip(0)
        ritz = style.sequence(ritz.tolist())
        return ritz, style.columns(columns, rows_allowed=False), style.sequence(history)

    def lanczos_no_reorth(matvec, dim, k, seed=0):
        ritz, Q, _ = lanczos_track_orth(matvec, dim, k, reorth="none", seed=seed)
        return ritz, Q

    return {"power_iteration": power_iteration,
            "power_iteration_deflated": power_iteration_deflated,
            "lanczos_no_reorth": lanczos_no_reorth, "lanczos_track_orth": lanczos_track_orth}


# --- the notebook's variables, computed as its cells do ------------------------------------


@functools.cache
def _toy() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Section 1's setup cell: model, X, y, and the fp32 Hessian the cells of 2.3 build."""
    from src.tiny_models import toy_mlp

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = toy_mlp(seed=1)
        X = torch.randn(8, 20)
        y = torch.randint(0, 4, (8,))
    dim = sum(p.numel() for p in model.parameters())
    H = ref.materialize(ref.hessian_matvec(model, X, y), dim, torch.float32)
    return model, X, y, H


@functools.cache
def _mnist_data() -> tuple[torch.Tensor, torch.Tensor]:
    from src.data import load_mnist_7x7

    return load_mnist_7x7(n=500, seed=0)


def _train(model: nn.Sequential, X: torch.Tensor, y: torch.Tensor) -> nn.Sequential:
    """The 200 SGD steps of 6.1, drawing batches from the global generator as it stands."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(200):
        idx = torch.randint(0, len(X), (64,))
        opt.zero_grad()
        F.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    return model


@functools.cache
def _mnist_models() -> tuple[nn.Sequential, nn.Sequential, torch.Tensor, torch.Tensor]:
    """Section 6: tiny_mlp(seed=0), and the same after the 200 SGD steps of 6.1 when
    nothing in between draws from the global generator."""
    from src.tiny_models import tiny_mlp

    X, y = _mnist_data()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        trained = _train(tiny_mlp(seed=0), X, y)
    return tiny_mlp(seed=0), trained, X, y


def _section6(functions: dict[str, Callable]) -> tuple[object, nn.Sequential, object]:
    """The cells of 6.0 and 6.1 in order: (ritz_init, model_mnist, ritz_trained)."""
    from src.tiny_models import tiny_mlp

    X, y = _mnist_data()

    def ritz(net):
        return functions["lanczos_track_orth"](
            lambda v: ref.hvp_double_backward(net, X, y, v.float()).to(v.dtype), 1930, 30,
            reorth="selective")[0]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tiny_mlp(seed=0)
        ritz_init = ritz(model)
        state = torch.get_rng_state()
        torch.manual_seed(0)
        if torch.equal(state, torch.get_rng_state()):
            model = copy.deepcopy(_mnist_models()[1])  # the usual SGD history
        else:
            torch.set_rng_state(state)
            model = _train(model, X, y)
        return ritz_init, model, ritz(model)


def notebook_variables(functions: dict[str, Callable]) -> dict[str, Callable[[], object]]:
    """The variables the hidden checks read, computed with `functions` as the cells do."""
    model, X, y, H = _toy()
    dim = H.shape[0]

    def matvec_H(v):  # a student working in fp64 casts around the fp32 HVP
        return (H @ v.float()).to(v.dtype)

    @functools.cache
    def deflation():
        eigvals_k, _ = functions["power_iteration_deflated"](matvec_H, dim=dim, k=10,
                                                             num_iters_per=300, seed=0)
        true_topk = torch.linalg.eigvalsh(H).abs().sort(descending=True).values[:10].tolist()
        eigvals_k = [float(e) for e in eigvals_k]
        return eigvals_k, [abs(abs(e) - t) / t for e, t in zip(eigvals_k, true_topk)]

    section6 = functools.cache(lambda: _section6(functions))

    return {"model": lambda: model, "X": lambda: X, "y": lambda: y,
            "top_eig": lambda: functions["power_iteration"](matvec_H, dim=dim, num_iters=200,
                                                            seed=0)[0],
            "eigvals_k": lambda: deflation()[0], "rel_err": lambda: deflation()[1],
            "ritz_init": lambda: section6()[0], "model_mnist": lambda: section6()[1],
            "ritz_trained": lambda: section6()[2]}


def correct_student(draw: int) -> FakeStudent:
    functions = correct_functions(Style(draw))
    return FakeStudent(functions, notebook_variables(functions))


# --- the test ---------------------------------------------------------------------------

EXERCISES = ("2.1", "2.2", "2.3", "3.1", "3.2", "4.1", "4.2", "5.1", "5.2", "5.3", "6.0",
             "6.1")


@pytest.mark.parametrize("exercise", EXERCISES)
def test_correct_code_gets_full_marks_for_every_start_vector(exercise):
    failures = {}
    for draw in range(DRAWS):
        failed = run_checks(correct_student(draw), exercise)
        if failed:
            failures[draw] = failed
    assert not failures, failures
