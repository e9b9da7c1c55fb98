"""The loss Hessian of Notebook 1, given: an HVP by double backward, and the
matrix itself for models small enough to materialize (the ground truth every
randomized estimate of this notebook is compared with)."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters as one detached flat vector, in model.parameters() order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def unflatten(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """A flat vector as the model's named parameters (views, no copies)."""
    params, start = {}, 0
    for name, p in model.named_parameters():
        params[name] = flat[start:start + p.numel()].view_as(p)
        start += p.numel()
    return params


def hvp(model: nn.Module, X: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H v for the mean cross-entropy loss, by double backward (Exercise 1.1 of Notebook 1)."""
    theta = flat_params(model).requires_grad_(True)
    loss = F.cross_entropy(functional_call(model, unflatten(model, theta), (X,)), y)
    (g,) = torch.autograd.grad(loss, theta, create_graph=True)
    (hv,) = torch.autograd.grad(g @ v, theta)
    return hv


def dense_hessian(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The P x P loss Hessian, materialized with torch.func.hessian (fine for ~1k parameters)."""
    theta = flat_params(model)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, unflatten(model, flat), (X,)), y)

    H = torch.func.hessian(loss)(theta)
    return (H + H.T) / 2
