"""The reference solutions of randomized_ntk: what the hidden checks compare answers with.
Never shipped to students, never imported by the runner."""

import torch


def scale(v: torch.Tensor, c: float) -> torch.Tensor:
    return c * v


def power_step(matvec, v: torch.Tensor) -> torch.Tensor:
    w = matvec(v)
    return w / torch.linalg.vector_norm(w)
