"""The matrices and Hessians the visible checks compare answers with (the answer
readers live in `autograder.testing`)."""

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian


def rotated(eigs: list[float], seed: int) -> torch.Tensor:
    """Q diag(eigs) Q^T in fp64 for a random orthogonal Q drawn from `seed`."""
    n = len(eigs)
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    return Q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ Q.T


def dense_hessian(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy Hessian by torch.func.hessian, in fp64."""
    model = copy.deepcopy(model).double()
    shapes = [(name, p.shape) for name, p in model.named_parameters()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in shapes:
            params[name] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, params, (X.double(),)), y)

    return hessian(loss)(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
