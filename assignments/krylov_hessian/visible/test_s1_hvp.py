"""Visible checks, Section 1: the three Hessian-vector products and their timings.

Each HVP is compared with H @ v for the Hessian materialized here by
torch.func.hessian in fp64, on a small toy_mlp and batch built below from
fixed seeds. Errors are relative, in the 2-norm over the whole vector.
"""

import math

import pytest
import torch
from src.tiny_models import count_params, toy_mlp
from visible_checks import dense_hessian

from autograder.testing import check

AUTODIFF_HVPS = {"1.1": "hvp_double_backward", "1.2": "hvp_jvp_of_grad"}
FD_NAME = "hvp_finite_difference"


def autodiff_checks(weight: float) -> pytest.MarkDecorator:
    """One check body for 1.1 and for 1.2, each scored on its own exercise."""
    return pytest.mark.parametrize("name", [
        pytest.param(name, id=exercise, marks=check(exercise=exercise, weight=weight))
        for exercise, name in AUTODIFF_HVPS.items()])


def _case(dtype: torch.dtype):
    """toy_mlp(seed=5) (254 parameters), a batch of 12 and a direction v that is not a
    unit vector (its length is ~16), in the given precision."""
    g = torch.Generator().manual_seed(55)
    model = toy_mlp(seed=5)
    X = torch.randn(12, 20, generator=g)
    y = torch.randint(0, 4, (12,), generator=g)
    v = torch.randn(count_params(model), generator=g)
    return model.to(dtype), X.to(dtype), y, v.to(dtype)


def _dense_hvp(model, X, y, v) -> torch.Tensor:
    """H v with H = torch.func.hessian of the mean cross-entropy, all in fp64."""
    return dense_hessian(model, X, y) @ v.double()


def _as_hvp(value, name: str, dim: int) -> torch.Tensor:
    """The answer as a flat fp64 vector; per-parameter pieces are concatenated here
    (the shape has a check of its own)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(t, torch.Tensor)
                                                          for t in value):
        value = torch.cat([t.reshape(-1) for t in value])
    assert isinstance(value, torch.Tensor), \
        f"{name} returned {type(value).__name__}; return H v as a torch.Tensor"
    assert value.is_floating_point(), f"{name} returned a tensor of dtype {value.dtype}"
    assert value.numel() == dim, \
        f"{name} returned {value.numel()} numbers for a model with {dim} parameters; " \
        "H v has one entry per parameter"
    value = value.detach().reshape(-1).double()
    assert torch.isfinite(value).all(), f"{name} returned NaN or infinite entries"
    return value


def _relative_error(value: torch.Tensor, expected: torch.Tensor) -> float:
    return ((value - expected).norm() / expected.norm()).item()


def _hint(value: torch.Tensor, v: torch.Tensor, batch: int, expected: torch.Tensor,
          advice: str) -> str:
    """Name the usual mistake when the answer is one of them, else give the advice."""
    def near(other: torch.Tensor) -> bool:
        return _relative_error(value, other) < 1e-3

    if near(expected * batch):
        return "it is H v of the summed loss: use the mean cross-entropy " \
               "(F.cross_entropy's default reduction)"
    if near(expected / v.double().norm()):
        return "it is H v for v scaled to unit length: H v is linear in v, do not normalize v"
    if near(-expected):
        return "it has the wrong sign"
    return advice


AUTODIFF_ADVICE = ("check that you differentiate the mean cross-entropy loss, that the second "
                   "gradient is of g . v (not of g, nor of g.sum() times v), and that entries "
                   "follow model.parameters() order")


@autodiff_checks(weight=2)
def test_autodiff_hvp_matches_the_dense_hessian(student, name):
    """agrees with H @ v for a materialized Hessian (fp32 toy MLP)"""
    model, X, y, v = _case(torch.float32)
    dim = count_params(model)
    value = _as_hvp(student.call(name, model, X, y, v), name, dim)
    expected = _dense_hvp(model, X, y, v)
    # fp32 autodiff agrees with the fp64 answer to ~1e-7; wrong formulas are O(1) off.
    assert _relative_error(value, expected) <= 1e-4, \
        f"{name}(model, X, y, v) on toy_mlp(seed=5) with a batch of 12 (fp32) differs from " \
        f"H @ v by more than 1e-4 relative: {_hint(value, v, len(y), expected, AUTODIFF_ADVICE)}"


@autodiff_checks(weight=1)
def test_autodiff_hvp_in_fp64(student, name):
    """works for fp64 models and vectors too"""
    model, X, y, v = _case(torch.float64)
    dim = count_params(model)
    value = _as_hvp(student.call(name, model, X, y, v), name, dim)
    expected = _dense_hvp(model, X, y, v)
    assert _relative_error(value, expected) <= 1e-4, \
        f"{name}(model, X, y, v) with an fp64 model, batch and v differs from H @ v by more " \
        "than 1e-4 relative: work in the dtype of the inputs (do not create fp32 tensors " \
        f"with a fixed dtype inside); {AUTODIFF_ADVICE}"


@autodiff_checks(weight=1)
def test_autodiff_hvp_is_one_flat_tensor(student, name):
    """returns one flat tensor of shape (P,)"""
    model, X, y, v = _case(torch.float32)
    dim = count_params(model)
    value = student.call(name, model, X, y, v)
    assert not isinstance(value, (list, tuple)), \
        f"{name} returned a {type(value).__name__}; concatenate the per-parameter pieces " \
        f"into one flat tensor of shape ({dim},), in model.parameters() order"
    assert isinstance(value, torch.Tensor), \
        f"{name} returned {type(value).__name__}; return a torch.Tensor"
    assert tuple(value.shape) == (dim,), \
        f"{name} returned shape {tuple(value.shape)} for a model with {dim} parameters; " \
        f"return a flat tensor of shape ({dim},)"


FD_ADVICE = ("use (grad(theta + eps v) - grad(theta - eps v)) / (2 eps) of the mean "
             "cross-entropy loss, with entries in model.parameters() order")


@check(exercise="1.3", weight=1)
def test_fd_agrees_with_the_dense_hessian(student):
    """agrees with H @ v to finite-difference accuracy (fp32, default eps)"""
    model, X, y, v = _case(torch.float32)
    value = _as_hvp(student.call(FD_NAME, model, X, y, v), FD_NAME, count_params(model))
    expected = _dense_hvp(model, X, y, v)
    # Central differences with this v and eps = 1e-3 are ~5e-5 off in fp32.
    assert _relative_error(value, expected) <= 1e-2, \
        f"{FD_NAME}(model, X, y, v) on toy_mlp(seed=5) (fp32) differs from H @ v by more " \
        f"than 1e-2 relative: {_hint(value, v, len(y), expected, FD_ADVICE)}"


@check(exercise="1.3", weight=2)
def test_fd_is_a_central_difference(student):
    """has the small O(eps^2) error of a central difference (fp64, eps = 1e-3)"""
    model, X, y, v = _case(torch.float64)
    value = _as_hvp(student.call(FD_NAME, model, X, y, v, eps=1e-3), FD_NAME,
                    count_params(model))
    error = _relative_error(value, _dense_hvp(model, X, y, v))
    assert error <= 1e-2, \
        f"{FD_NAME}(model, X, y, v, eps=1e-3) in fp64 is far from H @ v: {FD_ADVICE}"
    # Here a central difference is ~4e-5 off and a forward difference ~5e-3.
    assert error <= 5e-4, \
        f"{FD_NAME}(model, X, y, v, eps=1e-3) in fp64 has an error far above the O(eps^2) " \
        "of a central difference (a one-sided difference gives that): " \
        "use (grad(theta + eps v) - grad(theta - eps v)) / (2 eps) with the eps passed in"


@check(exercise="1.4", weight=1)
def test_timings_are_plausible(student):
    """t_dbl, t_jvp and t_fd are plausible times per HVP, in seconds"""
    for variable in ("t_dbl", "t_jvp", "t_fd"):
        value = student.get(variable)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        assert isinstance(value, (int, float)) and not isinstance(value, bool), \
            f"{variable} should be a number (time_hvp's result), got {type(value).__name__}"
        # One HVP of the 254-parameter model takes about a millisecond on a laptop.
        assert math.isfinite(value) and 1e-6 <= value <= 5.0, \
            f"{variable} should be the mean time of one call in seconds (time_hvp's " \
            "result); it is outside 1 microsecond .. 5 seconds"
