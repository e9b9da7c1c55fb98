"""Paid while the notebook executes: first-use costs of what the checks call.

Autograd's double backward and LAPACK's first eigvalsh each cost a tenth of a
second the first time in a process. Not torch.func's first grad or jvp (over a
second: it imports torch._dynamo): the checks' only uses of it, the reference
finite differences, come from the answer key.
"""

import torch

from reference import krylov_hessian as ref


def warm_up() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    X, y = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1])
    for dtype in (torch.float32, torch.float64):
        m = model.to(dtype)
        v = torch.randn(sum(p.numel() for p in m.parameters()), dtype=dtype)
        Xd = X.to(dtype)
        ref.hvp_double_backward(m, Xd, y, v)
        A = torch.randn(6, 6, dtype=dtype)
        ref.lanczos_track_orth(lambda q, A=A + A.T: A @ q, 6, 6, reorth="full", dtype=dtype)
