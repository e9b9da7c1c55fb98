"""src/tests.py, the checks students run inline: correct code passes, and
typical mistakes fail with a message that names the problem."""

import pytest
import torch
import torch.nn.functional as F
from src import tests as visible
from torch.func import functional_call

from reference import krylov_hessian as ref


def _loss_of(model, X, y, theta, reduction="mean"):
    params, start = {}, 0
    for name, p in model.named_parameters():
        params[name] = theta[start:start + p.numel()].view_as(p)
        start += p.numel()
    return F.cross_entropy(functional_call(model, params, (X,)), y, reduction=reduction)


def _loss_and_theta(model, X, y, reduction="mean"):
    theta = ref.flat_params(model).requires_grad_(True)
    return _loss_of(model, X, y, theta, reduction), theta


def hvp_of_summed_loss(model, X, y, v):
    loss, theta = _loss_and_theta(model, X, y, reduction="sum")
    (g,) = torch.autograd.grad(loss, theta, create_graph=True)
    return torch.autograd.grad(g @ v, theta)[0]


def hvp_second_grad_of_g_sum(model, X, y, v):
    loss, theta = _loss_and_theta(model, X, y)
    (g,) = torch.autograd.grad(loss, theta, create_graph=True)
    return torch.autograd.grad(g.sum(), theta)[0] * v


def hvp_returns_gradient(model, X, y, v):
    loss, theta = _loss_and_theta(model, X, y)
    return torch.autograd.grad(loss, theta)[0]


def hvp_column_vector(model, X, y, v):
    return ref.hvp_double_backward(model, X, y, v).unsqueeze(1)


def hvp_normalizes_v(model, X, y, v):
    return ref.hvp_double_backward(model, X, y, v / v.norm())


def hvp_as_list(model, X, y, v):
    return ref.hvp_double_backward(model, X, y, v).tolist()


def hvp_in_place(model, X, y, v):
    out = ref.hvp_double_backward(model, X, y, v)
    v.mul_(0)
    return out


def hvp_forward_difference_big_eps(model, X, y, v, eps=1e-1):
    theta = ref.flat_params(model)
    grad = torch.func.grad(lambda t: _loss_of(model, X, y, t))
    return (grad(theta + eps * v) - grad(theta)) / eps


# Not finite differences: in fp32 their rounding error (~eps_mach / eps) is
# above test_hvp's tolerance, which is why the notebook checks FD at 5e-3.
@pytest.mark.parametrize("hvp", [ref.hvp_double_backward, ref.hvp_jvp_of_grad])
def test_correct_hvps_pass(hvp, capsys):
    visible.test_hvp(hvp)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize(("hvp", "message"), [
    (hvp_of_summed_loss, "disagrees with H @ v"),
    (hvp_second_grad_of_g_sum, "disagrees with H @ v"),
    (hvp_returns_gradient, "disagrees with H @ v"),
    (hvp_column_vector, "shape"),
    (hvp_normalizes_v, "disagrees with H @ v"),
    (hvp_as_list, "torch.Tensor"),
    (hvp_in_place, "in place"),
    (hvp_forward_difference_big_eps, "disagrees with H @ v"),
])
def test_buggy_hvps_fail_with_a_useful_message(hvp, message):
    with pytest.raises(AssertionError, match=message):
        visible.test_hvp(hvp)


def _power(matvec, dim, num_iters, seed):
    return ref.power_iteration(matvec, dim, num_iters, seed=seed)[:2]


def power_abs_eigenvalue(matvec, dim, num_iters, seed):
    eig, vec = _power(matvec, dim, num_iters, seed)
    return abs(eig), vec


def power_norm_not_rayleigh(matvec, dim, num_iters, seed):
    _, vec = _power(matvec, dim, num_iters, seed)
    return matvec(vec).norm().item(), vec


def power_unnormalized_vector(matvec, dim, num_iters, seed):
    eig, vec = _power(matvec, dim, num_iters, seed)
    return eig, matvec(vec)


def power_two_matvecs_per_step(matvec, dim, num_iters, seed):
    counted = lambda v: (matvec(v), matvec(v))[0]
    return _power(counted, dim, num_iters, seed)


def power_too_few_iterations(matvec, dim, num_iters, seed):
    return _power(matvec, dim, 3, seed)


def test_correct_power_iteration_passes(capsys):
    visible.test_power_iteration(_power)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize(("power", "message"), [
    (power_abs_eigenvalue, "negative dominant"),
    (power_norm_not_rayleigh, "negative dominant"),
    (power_unnormalized_vector, "norm"),
    (power_two_matvecs_per_step, "matvec calls"),
    (power_too_few_iterations, "expected"),
])
def test_buggy_power_iterations_fail_with_a_useful_message(power, message):
    with pytest.raises(AssertionError, match=message):
        visible.test_power_iteration(power)
