"""What the visible checks share: counted matvecs over matrices of known spectrum
(from the release's src.krylov), and the notebook's own problem rebuilt from src."""

import functools

import torch
from src.data import load_mnist_7x7
from src.hessian import dense_hessian
from src.krylov import with_spectrum
from src.tiny_models import small_mlp


def counted(student, A: torch.Tensor, budget: int, hint: str):
    """A budgeted operator for A (fp64) taking one vector at a time."""
    A = A.double()
    return student.operator(lambda v: A @ v, dim=A.shape[0], dtype=torch.float64,
                            budget=budget, name="the matvec", hint=hint)


def spectrum(eigs, seed: int) -> torch.Tensor:
    return with_spectrum(torch.as_tensor(eigs, dtype=torch.float64), seed).double()


@functools.cache
def notebook_hessian() -> tuple[torch.Tensor, torch.Tensor]:
    """The notebook's Hessian (fp64) and its eigenvalues."""
    X, y = load_mnist_7x7(256, 0)
    H = dense_hessian(small_mlp(0).double(), X.double(), y)
    return H, torch.linalg.eigvalsh(H)
