"""Paid while the notebook executes: first-use costs of what the visible checks call.

torch.func's first hessian, LAPACK's first eigvalsh and the first large
matmul each cost up to a second the first time in a process; the grader
runs this file (if present) alongside the notebook.
"""

import torch
import torch.nn.functional as F
from torch.func import functional_call, hessian


def warm_up() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(),
                                torch.nn.Linear(3, 2)).double()
    X, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1])
    shapes = [(name, p.shape) for name, p in model.named_parameters()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in shapes:
            params[name] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, params, (X,)), y)

    H = hessian(loss)(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.linalg.eigvalsh(H)
    for dtype in (torch.float32, torch.float64):
        A = torch.randn(64, 64, dtype=dtype)
        torch.linalg.eigvalsh(A + A.T)
        torch.linalg.qr(A)
        torch.linalg.svdvals(A)
    torch.einsum("ka,nkl->nal", torch.randn(3, 4), torch.randn(2, 3, 3))
