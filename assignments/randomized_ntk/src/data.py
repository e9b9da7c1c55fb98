"""Load the small 7x7 MNIST that ships with the assignment.

The file ``mnist_7x7.npz`` (10,000 MNIST test images pooled to 7x7, see
``fixtures/make_mnist_7x7.py`` in the course repository) sits next to this
module, so nothing is downloaded and every student gets the same data.
"""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import torch

DATA_FILE = Path(__file__).with_name("mnist_7x7.npz")
N_TOTAL = 10_000


def load_mnist_7x7(n: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``n`` distinct examples ``(X, y)`` drawn reproducibly from the file.

    X is float32 of shape (n, 49): pixels scaled to [0, 1], then standardized
    with one mean and one standard deviation computed over all pixels of the
    whole 10,000-image file at load time, so the features are roughly zero
    mean and unit variance overall and do not depend on which ``n`` rows are
    drawn.  (A single scalar is used because per-pixel standardization would
    divide by zero: some border pixels are always 0.)  y is int64 of shape
    (n,) holding the digit 0..9.

    The rows are ``torch.randperm(10000, generator=...)[:n]`` with a private
    generator seeded by ``seed``, so the global torch RNG is left untouched.
    """
    try:
        count = operator.index(n)  # accepts numpy integers, rejects floats
    except TypeError:
        count = None
    if count is None or isinstance(n, bool) or not 1 <= count <= N_TOTAL:
        raise ValueError(f"n must be an integer in 1..{N_TOTAL}, got {n!r}")
    if not DATA_FILE.is_file():
        raise FileNotFoundError(
            f"{DATA_FILE} not found: the release must carry mnist_7x7.npz "
            "next to src/data.py"
        )
    with np.load(DATA_FILE, allow_pickle=False) as npz:
        images = npz["images"]
        labels = npz["labels"]

    pixels = images.reshape(len(images), -1).astype(np.float64) / 255.0
    standardized = (pixels - pixels.mean()) / pixels.std()

    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(N_TOTAL, generator=generator)[:count]
    X = torch.from_numpy(standardized).to(torch.float32)[index]
    y = torch.from_numpy(labels.astype(np.int64))[index]
    return X, y
