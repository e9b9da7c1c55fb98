"""Section 1: the three HVPs and their timings.

Every HVP answer is compared with the reference double backward run here on
the same hidden model, batch and direction. Relative errors are measured in
the 2-norm over the whole vector. Measured on these fixtures: fp32 autodiff
HVPs are within 2e-7 of the fp64 answer, fp64 ones within 2e-16.
"""

import copy
import dataclasses
import functools
import itertools

import pytest
import torch
import torch.nn.functional as F
from krylov_checks import count_params
from torch import nn

from autograder.testing import (
    MissingName,
    StudentCrash,
    StudentError,
    StudentTimeout,
    answer,
    check,
    number,
)
from fixtures.models import hvp_case
from reference import krylov_hessian as ref

AUTODIFF_HVPS = {"1.1": "hvp_double_backward", "1.2": "hvp_jvp_of_grad"}

# A few thousand fp32 roundings in a sum leave ~1e-6 at worst; 1e-4 accepts
# any fp32 or fp64 working precision and rejects every wrong formula (O(1)).
FP32_RTOL = 1e-4
# fp64 autodiff agrees to ~1e-16; 1e-10 rejects fp32 work hidden inside.
FP64_RTOL = 1e-10

# The matrix-free test: 256 -> 512 -> 256 -> 10, 265,482 parameters, so H
# would hold 7.0e10 floats (282 GB in fp32, 46 times the runner's memory), and
# forming it an HVP per column would take ~265k HVPs. One reference HVP takes
# ~10 ms on one core; the student's gets 20 s. (The model, v and H v cross the
# sandbox boundary on every call: a larger model only makes every grade slower.)
BIG_SIZES = (256, 512, 256, 10)
BIG_TIMEOUT_S = 20.0


def autodiff_checks(weight: float) -> pytest.MarkDecorator:
    """Run one check body for 1.1 and for 1.2, each scored on its own exercise."""
    return pytest.mark.parametrize("name", [
        pytest.param(name, id=exercise, marks=check(exercise=exercise, weight=weight))
        for exercise, name in AUTODIFF_HVPS.items()])


def _as_hvp(value, name: str, dim: int) -> torch.Tensor:
    """A student's HVP as a flat float64 vector, accepting any container of the right size.

    The exact format (one flat tensor of shape (P,)) has its own check, so a
    per-parameter list or a (P, 1) tensor costs that check only.
    """
    if isinstance(value, (list, tuple)) and value and all(isinstance(t, torch.Tensor)
                                                          for t in value):
        value = torch.cat([t.reshape(-1) for t in value])
    assert isinstance(value, torch.Tensor), \
        f"{name} returned {type(value).__name__}; return H v as a torch.Tensor"
    assert value.is_floating_point(), f"{name} returned a tensor of dtype {value.dtype}"
    assert value.numel() == dim, \
        f"{name} returned {value.numel()} numbers for a model with {dim} parameters; " \
        "H v has one entry per parameter"
    value = value.reshape(-1).double()
    assert torch.isfinite(value).all(), f"{name} returned NaN or infinite entries"
    return value


@answer
def _central_difference(model: nn.Module, X: torch.Tensor, y: torch.Tensor, v: torch.Tensor,
                        eps: float) -> torch.Tensor:
    """The reference central difference on a hidden case, from the answer key: computed,
    it is torch.func's first use in the grader, which costs over a second."""
    return ref.hvp_finite_difference(model, X, y, v, eps=eps)


def _relative_error(value: torch.Tensor, expected: torch.Tensor) -> float:
    return ((value - expected).norm() / expected.norm()).item()


def _exact_hvp(case) -> torch.Tensor:
    """H v in fp64 by the reference double backward, whatever the case's precision."""
    return ref.hvp_double_backward(copy.deepcopy(case.model).double(), case.X.double(), case.y,
                                   case.v.double())


def _gradient(case) -> torch.Tensor:
    model = copy.deepcopy(case.model).double()
    loss = F.cross_entropy(model(case.X.double()), case.y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


AUTODIFF_ADVICE = ("check that you differentiate the mean cross-entropy loss, that the second "
                   "gradient is of g . v (not of g, nor of g.sum() times v), and that entries "
                   "follow model.parameters() order")
FD_ADVICE = ("use (grad(theta + eps v) - grad(theta - eps v)) / (2 eps) of the mean "
             "cross-entropy loss, with entries in model.parameters() order")


def _precision(case) -> str:
    return {torch.float32: "fp32", torch.float64: "fp64"}.get(case.v.dtype, str(case.v.dtype))


def _hint(value: torch.Tensor, case, expected: torch.Tensor, advice: str) -> str:
    """Name the usual mistake when the wrong answer is one of them, else give advice."""
    def near(other: torch.Tensor) -> bool:
        return _relative_error(value, other) < 1e-3

    if near(expected * len(case.y)):
        return ("it is H v of the summed loss: use the mean cross-entropy "
                "(F.cross_entropy's default)")
    v_norm = case.v.double().norm().item()
    if abs(v_norm - 1) > 0.1 and near(expected / v_norm):
        return "it is H v for v scaled to unit length: do not normalize v"
    if near(_gradient(case)):
        return "it is the gradient, not H v (with jvp, the tangent output is the second one)"
    if near(-expected):
        return "it has the wrong sign"
    return advice


def _scaled(case, factor: float):
    """The same case with v scaled: the notebook's v is not a unit vector either."""
    return dataclasses.replace(case, v=case.v * factor)


def _agreement(student, name: str, cases, rtol: float) -> None:
    """Each case's answer is H v to within rtol; wrong formulas get a hint first."""
    for case in cases:
        dim = count_params(case.model)
        value = _as_hvp(student.call(name, case.model, case.X, case.y, case.v), name, dim)
        expected = _exact_hvp(case)
        error = _relative_error(value, expected)
        where = f"{name}(model, X, y, v) on a hidden {_precision(case)} MLP with {dim} " \
                f"parameters and a batch of {len(case.y)}"
        assert error <= max(rtol, FP32_RTOL), \
            f"{where} differs from H v by more than {max(rtol, FP32_RTOL):g} relative: " \
            f"{_hint(value, case, expected, AUTODIFF_ADVICE)}"
        assert error <= rtol, \
            f"{where} is accurate only to about fp32 level (error above {rtol:g} relative): " \
            "compute in the dtype of the inputs with exact autodiff (no .float() inside)"


def _assert_did_work(name: str, hv: torch.Tensor, again: torch.Tensor,
                     other_model: torch.Tensor) -> None:
    """The real-work gate of the checks of an HVP's shape, linearity, side effects and timing.

    An answer computed from the model is not zero, is the same when asked
    twice, and changes with the model (`other_model`: the same v on another
    model of the same shape). Zeros, v itself, a constant and fresh random
    noise (trivial_zeros, trivial_echo, trivial_constants, trivial_noise in
    tests/corpus) each fail one of these, and have the shape and (zeros and v)
    the linearity those checks look for. A wrong formula that does use the
    model (the gradient, H 1 times v) passes: it is graded by the checks of H v.
    """
    size = hv.norm().item()
    assert size > 0, f"{name}(model, X, y, v) returned zeros: this check counts only for " \
                     "an answer computed from the model"
    assert (again - hv).norm().item() <= 1e-5 * size, \
        f"{name}(model, X, y, v) returned different answers for the same arguments (they " \
        f"differ by {(again - hv).norm().item() / size:.2g} relative): this check counts " \
        "only for an answer computed from the model"
    assert (other_model - hv).norm().item() > 1e-3 * size, \
        f"{name}(model, X, y, v) returned the same answer for two different models: this " \
        "check counts only for an answer computed from the model"


def _probe(student, name: str, seed: int, n_samples: int, dtype: torch.dtype,
           kind: str) -> torch.Tensor:
    """H v from `name` on hvp_case(seed, ...) after the real-work gate; the flat answer."""
    case = hvp_case(seed, n_samples, dtype, kind)
    other = hvp_case(seed + 1, n_samples, dtype, kind)
    dim = count_params(case.model)

    def hvp(c) -> torch.Tensor:
        return _as_hvp(student.call(name, c.model, c.X, c.y, case.v), name, dim)

    hv = hvp(case)
    _assert_did_work(name, hv, hvp(case), hvp(other))
    return hv


@autodiff_checks(weight=2)
def test_autodiff_hvp_fp32(student, name):
    """agrees with H v on hidden models in fp32"""
    cases = [_scaled(hvp_case(7, 5, torch.float32, "toy"), 2.5),
             _scaled(hvp_case(2, 64, torch.float32, "tiny"), 0.4)]
    _agreement(student, name, cases, FP32_RTOL)


@autodiff_checks(weight=2)
def test_autodiff_hvp_fp64(student, name):
    """agrees with H v on hidden models in fp64, to fp64 accuracy"""
    cases = [_scaled(hvp_case(11, 33, torch.float64, "toy"), 3.0),
             _scaled(hvp_case(3, 100, torch.float64, "tiny"), 1.7)]
    _agreement(student, name, cases, FP64_RTOL)


@functools.lru_cache(maxsize=1)
def _big_case() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded MLP too big for its Hessian to exist, a batch, v, and H v (fp32, reference)."""
    generator = torch.Generator().manual_seed(2024)
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws globally
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(BIG_SIZES)):
            if i:
                layers.append(nn.Tanh())
            layers.append(nn.Linear(fan_in, fan_out))
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Linear):
                bound = layer.in_features ** -0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    model = nn.Sequential(*layers)
    X = torch.randn(32, BIG_SIZES[0], generator=generator)
    y = torch.randint(0, BIG_SIZES[-1], (32,), generator=generator)
    v = torch.randn(count_params(model), generator=generator)
    v = v / v.norm()
    return model, X, y, v, ref.hvp_double_backward(model, X, y, v).double()


@autodiff_checks(weight=3)
def test_autodiff_hvp_is_matrix_free(student, name):
    """works on an MLP whose Hessian is far too big to form (265k parameters)"""
    model, X, y, v, expected = _big_case()
    dim = count_params(model)
    where = f"{name}(model, X, y, v) on an MLP with {dim:,} parameters (its Hessian would " \
            f"need {dim ** 2 * 4 / 1e9:,.0f} GB in fp32)"
    matrix_free = "an HVP costs a few forward and backward passes and never forms the " \
                  "Hessian, row by row or with torch.autograd.functional.hessian / " \
                  "torch.func.hessian / jacfwd / jacrev"
    try:
        value = student.call(name, model, X, y, v, timeout_s=BIG_TIMEOUT_S)
    except MissingName:
        raise
    except (StudentTimeout, StudentCrash) as exc:
        raise AssertionError(f"{where}: {exc}. One HVP of this model needs a few MB and well "
                             f"under a second: {matrix_free}") from None
    except StudentError as exc:
        if "alloc" in str(exc).lower() or "memory" in str(exc).lower():
            raise AssertionError(f"{where} ran out of memory ({exc}): {matrix_free}") from None
        raise AssertionError(f"{where} failed: {exc}") from None
    value = _as_hvp(value, name, dim)
    assert _relative_error(value, expected) <= FP32_RTOL, \
        f"{where} differs from H v by more than {FP32_RTOL:g} relative"


@autodiff_checks(weight=1)
def test_autodiff_hvp_is_linear(student, name):
    """is linear in v: H(-2.5 v) = -2.5 H v and H(u + v) = H u + H v"""
    case = hvp_case(19, 12, torch.float32, "toy")
    dim = count_params(case.model)
    u = torch.randn(dim, generator=torch.Generator().manual_seed(19)) * 0.3

    def hvp(direction: torch.Tensor) -> torch.Tensor:
        return _as_hvp(student.call(name, case.model, case.X, case.y, direction), name, dim)

    # Catches: hvp_bug_normalizes_v; the gate, trivial_zeros and trivial_echo
    # (zeros and v itself are linear in v).
    _probe(student, name, 19, 12, torch.float32, "toy")
    hv, hu = hvp(case.v), hvp(u)
    # fp32 rounding of each HVP is ~1e-7 relative; a rescaled or normalized v is off by O(1).
    assert _relative_error(hvp(-2.5 * case.v), -2.5 * hv) <= FP32_RTOL, \
        f"{name}(model, X, y, -2.5 * v) is not -2.5 times {name}(model, X, y, v): H v is " \
        "linear in v, so do not normalize or otherwise rescale v"
    assert _relative_error(hvp(u + case.v), hu + hv) <= FP32_RTOL, \
        f"{name}(model, X, y, u + v) is not {name}(model, X, y, u) + {name}(model, X, y, v): " \
        "H v must be linear in v"


@autodiff_checks(weight=1)
def test_autodiff_hvp_shape(student, name):
    """returns one flat tensor of shape (P,)"""
    # Catches: hvp_bug_jvp_per_parameter_list; the gate, trivial_zeros,
    # trivial_constants, trivial_echo and trivial_noise (all of shape (P,)).
    case = hvp_case(29, 9, torch.float32, "tiny")
    dim = count_params(case.model)
    _probe(student, name, 29, 9, torch.float32, "tiny")
    value = student.call(name, case.model, case.X, case.y, case.v)
    assert not isinstance(value, (list, tuple)), \
        f"{name} returned a {type(value).__name__} of {len(value)} items; concatenate the " \
        f"per-parameter pieces into one flat tensor of shape ({dim},), in model.parameters() order"
    assert isinstance(value, torch.Tensor), \
        f"{name} returned {type(value).__name__}; return a torch.Tensor"
    assert tuple(value.shape) == (dim,), \
        f"{name} returned shape {tuple(value.shape)} for a model with {dim} parameters; " \
        f"return a flat tensor of shape ({dim},)"


# --- Exercise 1.3: central finite differences ---------------------------------

FD_NAME = "hvp_finite_difference"
# With a unit v and eps = 1e-3 in fp64 (rounding ~1e-13 here), the truncation
# error dominates. Central: (eps^2 / 6) |D3L[v, v, .]| / |H v|, measured
# 4e-8..1.5e-7 on these models; forward: (eps / 2) |D3L[v, v, .]| / |H v|,
# measured 1.8e-4..3.4e-4. 3e-6 is a factor >= 20 away from both.
CENTRAL_RTOL = 3e-6
# Same formula at the same eps in fp64 agrees to ~1e-13 (rounding / eps).
# A different step changes the central truncation error by ~1e-5 relative.
SAME_EPS_RTOL = 1e-8
# fp32, eps = 1e-3, |v| = 2: each gradient carries ~1e-7 * |g| of rounding,
# amplified by |g| / (2 eps |H v|) ~ 1e3 in the difference quotient; measured
# 2e-4..5e-4. 5e-3 leaves 10x room and still rejects an O(1) wrong formula.
FD_FP32_RTOL = 5e-3


def _fd_mismatch(case, what: str) -> str:
    return f"{FD_NAME}(model, X, y, v{what}) on a hidden {_precision(case)} MLP with " \
           f"{count_params(case.model)} parameters"


@check(exercise="1.3", weight=2)
def test_fd_is_central(student):
    """has the O(eps^2) error of a central difference (fp64, eps = 1e-3)"""
    case = hvp_case(17, 20, torch.float64, "toy")
    value = _as_hvp(student.call(FD_NAME, case.model, case.X, case.y, case.v, eps=1e-3),
                    FD_NAME, count_params(case.model))
    error = _relative_error(value, _exact_hvp(case))
    assert error <= 1e-2, \
        f"{_fd_mismatch(case, ', eps=1e-3')} is far from H v: the central difference is " \
        "(grad(theta + eps v) - grad(theta - eps v)) / (2 eps), in model.parameters() order"
    assert error <= CENTRAL_RTOL, \
        f"{_fd_mismatch(case, ', eps=1e-3')} has an error far above the O(eps^2) of a central " \
        "difference with that step (a forward difference, or a step other than eps, gives " \
        "that): use (grad(theta + eps v) - grad(theta - eps v)) / (2 eps) with the eps passed in"


@check(exercise="1.3", weight=1)
def test_fd_honours_eps(student):
    """uses the eps it is given (fp64, eps = 1e-2 and 2e-3)"""
    case = hvp_case(23, 12, torch.float64, "toy")
    for eps in (1e-2, 2e-3):
        value = _as_hvp(student.call(FD_NAME, case.model, case.X, case.y, case.v, eps=eps),
                        FD_NAME, count_params(case.model))
        expected = _central_difference(case.model, case.X, case.y, case.v, eps)
        assert _relative_error(value, expected.double()) <= SAME_EPS_RTOL, \
            f"{_fd_mismatch(case, f', eps={eps:g}')} is not the central difference with step " \
            f"{eps:g}: take the step from the eps argument (not a fixed number) in " \
            "(grad(theta + eps v) - grad(theta - eps v)) / (2 eps)"


@check(exercise="1.3", weight=1)
def test_fd_default_eps(student):
    """uses eps = 1e-3 when called without eps"""
    case = hvp_case(31, 10, torch.float64, "toy")
    value = _as_hvp(student.call(FD_NAME, case.model, case.X, case.y, case.v),
                    FD_NAME, count_params(case.model))
    expected = _central_difference(case.model, case.X, case.y, case.v, 1e-3)
    assert _relative_error(value, expected.double()) <= SAME_EPS_RTOL, \
        f"{_fd_mismatch(case, '')} is not the central difference with step 1e-3: keep the " \
        "signature's default eps=1e-3 and the formula " \
        "(grad(theta + eps v) - grad(theta - eps v)) / (2 eps)"


@check(exercise="1.3", weight=1)
def test_fd_fp32(student):
    """agrees with H v in fp32 to finite-difference accuracy"""
    case = _scaled(hvp_case(8, 50, torch.float32, "tiny"), 2.0)
    value = _as_hvp(student.call(FD_NAME, case.model, case.X, case.y, case.v),
                    FD_NAME, count_params(case.model))
    expected = _exact_hvp(case)
    assert _relative_error(value, expected) <= FD_FP32_RTOL, \
        f"{_fd_mismatch(case, '')} differs from H v by more than {FD_FP32_RTOL:g} relative: " \
        f"{_hint(value, case, expected, FD_ADVICE)}"


@pytest.mark.parametrize("name", [
    pytest.param(name, id=exercise, marks=check(exercise=exercise, weight=1))
    for exercise, name in {**AUTODIFF_HVPS, "1.3": FD_NAME}.items()])
def test_hvp_leaves_its_inputs_as_it_found_them(student, name):
    """leaves model, X, y and v as it found them"""
    # Catches: verdicts_fd_never_restores (nudges the parameters in place to theta +
    # eps v and theta - eps v and returns, leaving them at theta - eps v) and
    # verdicts_hvp_normalizes_v_in_place (divides v by its norm in place, then scales
    # the answer back: the right H v, and the caller's v changed). Every later cell
    # would work on a drifted model or vector. The runner compares each tensor the
    # call received with a copy taken before it; an in-place perturbation that is
    # undone leaves only rounding, which passes.
    # The gate, trivial_zeros: a function that computes nothing changes nothing.
    _probe(student, name, 37, 12, torch.float64, "toy")
    case = hvp_case(43, 9, torch.float64, "toy")
    student.call(name, case.model, case.X, case.y, case.v)
    assert not student.changed, \
        f"{name}(model, X, y, v) changed {', '.join(student.changed)} of what it was " \
        "called with, beyond rounding: every later cell would work on the changed " \
        "values; compute on copies (functional_call with perturbed parameters, " \
        "v / v.norm() rather than v /= ...), or put them back exactly"


# --- Exercise 1.4: timings -----------------------------------------------------


def _plausible_timing(student, variable: str, name: str) -> None:
    # The gate, trivial_zeros and trivial_constants: the time of a function that
    # computes nothing is no time of an HVP.
    _probe(student, name, 41, 8, torch.float32, "toy")
    seconds = number(student.get(variable), variable)
    # One HVP of the 254-parameter model is ~1 ms; the window spans any
    # machine, and no ordering is required since timings are noisy.
    assert 1e-6 <= seconds <= 5.0, \
        f"{variable} is {seconds:.3g}, outside 1 microsecond .. 5 seconds: it should be the " \
        "mean time of one call in seconds (time_hvp's result)"


@check(exercise="1.4", weight=1)
def test_t_dbl(student):
    """t_dbl is a plausible time per double-backward HVP, in seconds"""
    _plausible_timing(student, "t_dbl", "hvp_double_backward")


@check(exercise="1.4", weight=1)
def test_t_jvp(student):
    """t_jvp is a plausible time per jvp-of-grad HVP, in seconds"""
    _plausible_timing(student, "t_jvp", "hvp_jvp_of_grad")


@check(exercise="1.4", weight=1)
def test_t_fd(student):
    """t_fd is a plausible time per finite-difference HVP, in seconds"""
    _plausible_timing(student, "t_fd", FD_NAME)
