"""Spectra for the hidden checks of Notebook 1 (the answer readers live in
`autograder.testing`)."""

import torch


def eigenvalues_from(*parts) -> torch.Tensor:
    """fp64 eigenvalues from fixed values (floats) and linspace tuples (low, high, count)."""
    pieces = []
    for part in parts:
        if isinstance(part, tuple):
            pieces.append(torch.linspace(*part, dtype=torch.float64))
        else:
            pieces.append(torch.tensor([part], dtype=torch.float64))
    return torch.cat(pieces)
