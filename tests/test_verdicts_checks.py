"""Each hidden check catches what it exists for, pays nothing for trivial answers,
charges a slip once, and says what it observed before it suggests a fix.

The corpus (tests/corpus, graded by test_corpus) asserts verdicts per exercise
on whole notebooks; these tests assert them per check, in-process, with the
FakeStudent of test_verdicts_robustness and implementations written as a
student would write them.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from reference import krylov_hessian as ref
from tests.test_verdicts_robustness import (
    FakeStudent,
    Style,
    checks_of,
    correct_functions,
    notebook_variables,
    run_checks,
)

SECTION_2_TO_6 = ("2.1", "2.2", "2.3", "3.1", "3.2", "4.1", "4.2", "5.1", "5.2", "5.3", "6.0",
                  "6.1")


def _student(**overrides) -> FakeStudent:
    """The correct notebook (draw 0) with functions replaced, and variables (`var_` + name,
    a function that computes the value) replaced."""
    functions = correct_functions(Style(0))
    functions.update({k: v for k, v in overrides.items() if not k.startswith("var_")})
    variables = notebook_variables(functions)
    variables.update({k.removeprefix("var_"): v for k, v in overrides.items()
                      if k.startswith("var_")})
    return FakeStudent(functions, variables)


def _failing(student: FakeStudent, exercise: str) -> dict[str, str]:
    return run_checks(student, exercise)


# --- trivial answers score nothing ---------------------------------------------------


def _rayleigh_ritz(matvec, Q):
    return torch.linalg.eigvalsh(Q.T @ torch.stack([matvec(q) for q in Q.T], dim=1))


def _trivial(kind: str) -> dict:
    """Functions of the right signature that do no real work."""
    if kind == "zeros":
        return {
            "power_iteration": lambda matvec, dim, num_iters=200, tol=1e-10, seed=0:
                (0.0, torch.zeros(dim), []),
            "power_iteration_deflated": lambda matvec, dim, k, num_iters_per=300, seed=0:
                (torch.zeros(k), torch.zeros(dim, k)),
            "lanczos_no_reorth": lambda matvec, dim, k, seed=0:
                (torch.zeros(k), torch.zeros(dim, k)),
            "lanczos_track_orth": lambda matvec, dim, k, reorth="none", seed=0:
                (torch.zeros(k), torch.zeros(dim, k), [0.0] * k),
            "var_ritz_init": lambda: torch.zeros(30), "var_ritz_trained": lambda: torch.zeros(30)}
    if kind == "constants":
        return {
            "power_iteration": lambda matvec, dim, num_iters=200, tol=1e-10, seed=0:
                (10.0, torch.ones(dim) / dim ** 0.5, [0.0]),
            "power_iteration_deflated": lambda matvec, dim, k, num_iters_per=300, seed=0:
                (torch.ones(k), torch.eye(dim)[:, :k]),
            "lanczos_no_reorth": lambda matvec, dim, k, seed=0:
                (torch.arange(k, dtype=torch.float32), torch.eye(dim)[:, :k]),
            "lanczos_track_orth": lambda matvec, dim, k, reorth="none", seed=0:
                (torch.arange(k, dtype=torch.float32), torch.eye(dim)[:, :k], [0.0] * k),
            "var_ritz_init": lambda: torch.linspace(-1, 1, 30),
            "var_ritz_trained": lambda: torch.linspace(-1, 1, 30)}

    def start(dim, seed):
        v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
        return v / v.norm()

    if kind == "echo":
        def power(matvec, dim, num_iters=200, tol=1e-10, seed=0):
            v = start(dim, seed)
            eig = (v @ matvec(v)).item()
            return eig, v, [abs(eig)]

        def deflated(matvec, dim, k, num_iters_per=300, seed=0):
            vs = [start(dim, seed + i) for i in range(k)]
            return [(v @ matvec(v)).item() for v in vs], torch.stack(vs, dim=1)

        def basis(dim, k):
            return torch.eye(dim)[:, :k]
    else:  # noise
        def power(matvec, dim, num_iters=200, tol=1e-10, seed=0):
            return torch.randn(()).item(), start(dim, 99), torch.rand(num_iters).tolist()

        def deflated(matvec, dim, k, num_iters_per=300, seed=0):
            return torch.randn(k), torch.linalg.qr(torch.randn(dim, k))[0]

        def basis(dim, k):
            return torch.linalg.qr(torch.randn(dim, k))[0]

    def lanczos(matvec, dim, k, seed=0):
        Q = basis(dim, k)
        return _rayleigh_ritz(matvec, Q), Q

    def track(matvec, dim, k, reorth="none", seed=0):
        Q = basis(dim, k)
        history = [ref.orthogonality_error(Q[:, :j + 1], entrywise=True) for j in range(k)]
        return _rayleigh_ritz(matvec, Q), Q, history

    return {"power_iteration": power, "power_iteration_deflated": deflated,
            "lanczos_no_reorth": lanczos, "lanczos_track_orth": track,
            "var_ritz_init": lambda: torch.randn(30), "var_ritz_trained": lambda: torch.randn(30)}


@pytest.mark.parametrize("kind", ["zeros", "constants", "echo", "noise"])
def test_trivial_answers_pass_no_check(kind):
    torch.manual_seed(0)
    student = _student(**_trivial(kind))
    passed = {exercise: [name for name, _ in checks_of(exercise)
                         if name not in _failing(student, exercise)]
              for exercise in SECTION_2_TO_6}
    assert not any(passed.values()), passed


# --- Section 1: trivial HVPs, and the side effect of a finite difference ------------


def _toy_notebook():
    """Section 1's setup cell: the seeded toy model, its batch and v."""
    from src.tiny_models import toy_mlp

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = toy_mlp(seed=1)
        X = torch.randn(8, 20)
        y = torch.randint(0, 4, (8,))
        v = torch.randn(sum(p.numel() for p in model.parameters()))
        v_test = torch.randn(v.numel())
    return model, X, y, v, v_test


def _fd_in_place(restore: bool):
    """The in-place central difference of hvp_correct_params_list, with or without
    its last line (verdicts_fd_never_restores)."""
    def hvp_finite_difference(model, X, y, v, eps=1e-3):
        params = list(model.parameters())

        def flat_grad():
            loss = F.cross_entropy(model(X), y)
            return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

        def nudge(step):
            with torch.no_grad():
                i = 0
                for p in params:
                    p.add_(step * v[i:i + p.numel()].view_as(p))
                    i += p.numel()

        nudge(eps)
        g_plus = flat_grad()
        nudge(-2 * eps)
        g_minus = flat_grad()
        if restore:
            nudge(eps)
        return (g_plus - g_minus) / (2 * eps)

    return hvp_finite_difference


def _section1_student(hvp, jvp, fd) -> FakeStudent:
    """The notebook after Section 1: its cells call each HVP once on v_test (1.3)
    and 21 times on v (1.4), on the notebook's own model."""
    model, X, y, v, v_test = _toy_notebook()
    for function in (hvp, jvp, fd):
        function(model, X, y, v_test)
        for _ in range(21):
            function(model, X, y, v)
    variables = {"model": lambda: model, "X": lambda: X, "y": lambda: y, "v": lambda: v,
                 "v_test": lambda: v_test, "t_dbl": lambda: 1e-3, "t_jvp": lambda: 2e-3,
                 "t_fd": lambda: 1.5e-3}
    return FakeStudent({"hvp_double_backward": hvp, "hvp_jvp_of_grad": jvp,
                        "hvp_finite_difference": fd}, variables)


def _reference_fd(model, X, y, v, eps=1e-3):
    return ref.hvp_finite_difference(model, X, y, v, eps=eps)


def test_section1_correct_styles_get_full_marks():
    student = _section1_student(ref.hvp_double_backward, ref.hvp_jvp_of_grad,
                                _fd_in_place(restore=True))
    for exercise in ("1.1", "1.2", "1.3", "1.4"):
        assert not _failing(student, exercise), exercise


@pytest.mark.parametrize("kind", ["zeros", "constants", "echo", "noise"])
def test_trivial_hvps_pass_no_check(kind):
    trivial = {"zeros": torch.zeros_like, "constants": torch.ones_like, "echo": lambda v: v,
               "noise": torch.randn_like}[kind]

    def hvp(model, X, y, v, eps=1e-3):
        return trivial(v)

    student = _section1_student(hvp, hvp, hvp)
    passed = {exercise: [name for name, _ in checks_of(exercise)
                         if name not in _failing(student, exercise)]
              for exercise in ("1.1", "1.2", "1.3", "1.4")}
    assert not any(passed.values()), passed


def test_fd_that_never_restores_the_model_loses_the_side_effect_check():
    student = _section1_student(ref.hvp_double_backward, ref.hvp_jvp_of_grad,
                                _fd_in_place(restore=False))
    failing = _failing(student, "1.3")
    assert set(failing) == {"test_hvp_leaves_its_inputs_as_it_found_them"}, failing
    message = failing["test_hvp_leaves_its_inputs_as_it_found_them"]
    assert "hvp_finite_difference(model, X, y, v) changed model's" in message
    for exercise in ("1.1", "1.2", "1.4"):
        assert not _failing(student, exercise), exercise


def _normalizes_v_in_place(model, X, y, v):
    """The right H v, computed on v divided by its norm in place, then scaled back
    (verdicts_hvp_normalizes_v_in_place): the caller's v is left a unit vector."""
    norm = v.norm()
    v /= norm
    return ref.hvp_double_backward(model, X, y, v) * norm


def test_an_hvp_that_changes_v_in_place_loses_only_the_side_effect_check():
    student = _section1_student(_normalizes_v_in_place, ref.hvp_jvp_of_grad,
                                _fd_in_place(restore=True))
    failing = _failing(student, "1.1")
    assert set(failing) == {"test_hvp_leaves_its_inputs_as_it_found_them"}, failing
    assert "hvp_double_backward(model, X, y, v) changed v of what it was called with" \
        in failing["test_hvp_leaves_its_inputs_as_it_found_them"]
    for exercise in ("1.2", "1.3", "1.4"):  # a perturb-and-restore leaves only rounding
        assert not _failing(student, exercise), exercise


# --- one slip, one deduction ----------------------------------------------------------


def _track_extra_column(matvec, dim, k, reorth="none", seed=0):
    """The notebook's loop run to the end of the last step: Q gets a (k+1)-th column
    (verdicts_track_orth_k_plus_one_columns)."""
    q = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    Q = [q / q.norm()]
    alphas, betas, history = [], [], []
    q_prev, beta = torch.zeros(dim), 0.0
    for j in range(k):
        Qj = torch.stack(Q, dim=1)
        history.append((Qj.T @ Qj - torch.eye(j + 1)).abs().max().item())
        w = matvec(Q[j])
        alpha = (Q[j] @ w).item()
        r = w - alpha * Q[j] - beta * q_prev
        if reorth == "full":
            for _ in range(2):
                r = r - Qj @ (Qj.T @ r)
        elif reorth == "selective" and r.norm() < 0.717 * w.norm():
            r = r - Qj @ (Qj.T @ r)
        alphas.append(alpha)
        beta = r.norm().item()
        betas.append(beta)
        q_prev = Q[j]
        Q.append(r / beta)
    T = ref.tridiagonal(alphas, betas[:-1], torch.float32)
    return torch.linalg.eigvalsh(T), torch.stack(Q, dim=1), history


def test_a_basis_with_an_extra_column_costs_one_check_per_exercise():
    def lanczos_no_reorth(matvec, dim, k, seed=0):
        return _track_extra_column(matvec, dim, k, seed=seed)[:2]

    student = _student(lanczos_track_orth=_track_extra_column,
                       lanczos_no_reorth=lanczos_no_reorth)
    failing = _failing(student, "4.1")
    assert set(failing) == {"test_lanczos_returns_k_ritz_values_and_a_dim_by_k_basis"}, failing
    assert "one column more" in failing["test_lanczos_returns_k_ritz_values_and_a_dim_by_k_basis"]
    failing = _failing(student, "5.1")
    assert set(failing) == {"test_track_orth_returns_k_values_a_basis_and_k_errors"}, failing
    for exercise in ("4.2", "5.2", "5.3", "6.0", "6.1"):
        assert not _failing(student, exercise), exercise


def test_a_transposed_basis_costs_one_check_per_exercise():
    functions = correct_functions(Style(1))
    track = functions["lanczos_track_orth"]

    def transposed(matvec, dim, k, reorth="none", seed=0):
        ritz, Q, history = track(matvec, dim, k, reorth=reorth, seed=seed)
        return ritz, torch.stack(Q, dim=1).T if isinstance(Q, list) else Q.T, history

    def lanczos_no_reorth(matvec, dim, k, seed=0):
        return transposed(matvec, dim, k, seed=seed)[:2]

    student = _student(lanczos_track_orth=transposed, lanczos_no_reorth=lanczos_no_reorth)
    failing = _failing(student, "4.1")
    assert set(failing) == {"test_lanczos_returns_k_ritz_values_and_a_dim_by_k_basis"}
    assert "transpose" in failing["test_lanczos_returns_k_ritz_values_and_a_dim_by_k_basis"]
    assert set(_failing(student, "5.1")) == {
        "test_track_orth_returns_k_values_a_basis_and_k_errors"}


# --- order ----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["value", "magnitude", "ascending magnitude"])
def test_deflation_in_any_order_keeps_full_marks(order):
    deflated = correct_functions(Style(0))["power_iteration_deflated"]

    def sorted_deflation(matvec, dim, k, num_iters_per=300, seed=0):
        values, vectors = deflated(matvec, dim, k, num_iters_per=num_iters_per, seed=seed)
        values = torch.as_tensor(list(values), dtype=torch.float64)
        V = torch.stack(vectors, dim=1) if isinstance(vectors, list) else vectors
        key = {"value": values, "magnitude": -values.abs(),
               "ascending magnitude": values.abs()}[order]
        index = key.argsort()
        return values[index].tolist(), V[:, index]

    student = _student(power_iteration_deflated=sorted_deflation)
    for exercise in ("3.1", "3.2"):
        assert not _failing(student, exercise), exercise


# --- each touched check catches the mutant it names ----------------------------------


def _power_variant(start_normalized=True, guard=0.0, estimates=False):
    """The notebook's power_iteration with one of a student's slips."""
    def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):
        v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
        if start_normalized:
            v = v / (v.norm() + guard)
        eig, history = None, []
        for _ in range(num_iters):
            w = matvec(v)
            new = (v @ w).item()
            if estimates:
                history.append(new)
                stop = len(history) > 1 and abs(history[-1] - history[-2]) < tol
            else:
                if eig is not None:
                    history.append(abs(new - eig))
                stop = bool(history) and history[-1] < tol
            eig = new
            v = w / (w.norm() + guard)
            if stop:
                break
        return eig, v, history
    return power_iteration


def test_a_norm_guard_is_told_its_norm_not_to_normalize():
    failing = _failing(_student(power_iteration=_power_variant(guard=1e-6)), "2.1")
    assert set(failing) == {"test_large_and_small_scales"}, failing
    message = failing["test_large_and_small_scales"]
    assert "returned a vector of norm 0.99" in message and "guard" in message, message
    assert "normalize v = w / w.norm() after every matvec" not in message


def test_an_unnormalized_start_is_told_about_the_start_vector():
    failing = _failing(_student(power_iteration=_power_variant(start_normalized=False)), "2.1")
    message = failing["test_history_of_changes"]
    assert "normalize the start vector" in message and "record the changes" not in message


def test_a_history_of_estimates_is_told_to_record_changes():
    failing = _failing(_student(power_iteration=_power_variant(estimates=True)), "2.1")
    message = failing["test_history_of_changes"]
    assert "record the changes" in message and "start vector" not in message


def _deflation_variant(tol=1e-10, project=True):
    power = correct_functions(Style(0))["power_iteration"]

    def power_iteration_deflated(matvec, dim, k, num_iters_per=300, seed=0):
        values, vectors = [], []

        def deflated(v):
            out = matvec(v)
            for lam, u in zip(values, vectors):
                out = out - lam * ((u @ v) if project else 1.0) * u
            return out

        for i in range(k):
            lam, u, _ = power(deflated, dim, num_iters=num_iters_per, tol=tol, seed=seed + i)
            values.append(float(lam))
            vectors.append(u / u.norm())
        return values, torch.stack(vectors, dim=1)

    return power_iteration_deflated


def test_a_loose_tolerance_is_told_to_converge_not_to_fix_the_formula():
    failing = _failing(_student(power_iteration_deflated=_deflation_variant(tol=1e-2)), "3.1")
    message = failing["test_deflated_signed_top_k"]
    assert "not converged" in message and "deflate with" not in message, message


def test_a_wrong_deflation_is_told_to_fix_the_formula():
    failing = _failing(_student(power_iteration_deflated=_deflation_variant(project=False)),
                       "3.1")
    message = failing["test_deflated_signed_top_k"]
    assert "deflate with" in message and "not converged" not in message, message


def _mnist_hessian_values(which: int, cut: slice) -> torch.Tensor:
    from tests.test_verdicts_robustness import _mnist_models

    mnist = _mnist_models()
    H = ref.dense_hessian(mnist[which], mnist[2], mnist[3]).float()
    return torch.linalg.eigvalsh(H)[cut]


@pytest.mark.parametrize("cut", [slice(-30, None), slice(None)], ids=["top30", "all"])
def test_section6_from_eigvalsh_fails_the_method_checks(cut):
    student = _student(var_ritz_init=lambda: _mnist_hessian_values(0, cut),
                       var_ritz_trained=lambda: _mnist_hessian_values(1, cut))
    assert "test_ritz_init_comes_from_lanczos" in _failing(student, "6.0")
    assert "test_ritz_trained_comes_from_lanczos" in _failing(student, "6.1")


def test_ritz_trained_of_the_untrained_model_fails_the_check_made_for_it():
    functions = correct_functions(Style(3))
    from tests.test_verdicts_robustness import _mnist_models

    init, _, X, y = _mnist_models()
    untrained = copy.deepcopy(init)
    ritz = functions["lanczos_track_orth"](
        lambda v: ref.hvp_double_backward(untrained, X, y, v.float()).to(v.dtype), 1930, 30,
        reorth="selective")[0]
    failing = _failing(_student(var_ritz_trained=lambda: ritz), "6.1")
    assert "test_ritz_trained_comes_from_the_trained_model" in failing, failing
    assert "initialization" in failing["test_ritz_trained_comes_from_the_trained_model"]


# --- the truths the checks now compute in closed form -----------------------------------


@pytest.mark.parametrize("kind", ["toy", "tiny", "other architecture"])
def test_dense_hessian_is_the_materialized_hessian(kind):
    """reference.dense_hessian (closed form for Linear-Tanh-Linear, torch.func otherwise)
    equals the Hessian built from fp64 HVPs, which the checks used before."""
    from fixtures.models import hvp_case

    case = hvp_case(5, 20, torch.float64, "toy" if kind == "toy" else "tiny")
    model = case.model
    if kind == "other architecture":
        model = torch.nn.Sequential(torch.nn.Linear(20, 6), torch.nn.Softplus(),
                                    torch.nn.Linear(6, 4)).double()
        case = hvp_case(5, 20, torch.float64, "toy")
    dim = sum(p.numel() for p in model.parameters())
    H = ref.dense_hessian(model, case.X, case.y)
    materialized = ref.materialize(ref.hessian_matvec(model, case.X, case.y), dim,
                                   torch.float64)
    assert (H - materialized).abs().max().item() <= 1e-12
