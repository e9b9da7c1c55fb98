"""The shipped 7x7 MNIST must match its derivation, and the loader must be reproducible."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.notebooks import SHARED

ROOT = Path(__file__).resolve().parent.parent
SOURCE = SHARED / "data" / "mnist"
SHIPPED = ROOT / "fixtures" / "mnist_7x7.npz"

sys.path.insert(0, str(ROOT / "assignments" / "krylov_hessian"))
from src.data import load_mnist_7x7


def _load_script():
    """Import fixtures/make_mnist_7x7.py, which is a script, not a package module."""
    spec = importlib.util.spec_from_file_location(
        "make_mnist_7x7", ROOT / "fixtures" / "make_mnist_7x7.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _load_script()


@pytest.mark.skipif(not SOURCE.is_dir(), reason=f"MNIST source not available at {SOURCE}")
def test_rederived_arrays_match_shipped_file():
    images, labels = make.derive(SOURCE)
    with np.load(SHIPPED, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["images", "labels"]
        np.testing.assert_array_equal(npz["images"], images)
        np.testing.assert_array_equal(npz["labels"], labels)
        assert npz["images"].dtype == np.uint8 and npz["images"].shape == (10000, 7, 7)
        assert npz["labels"].dtype == np.uint8 and npz["labels"].shape == (10000,)
    assert make.label_counts(labels) == (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


def test_write_is_byte_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 7, 7), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50, dtype=np.uint8)
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    make.write(images, labels, first)
    make.write(images, labels, second)
    assert first.read_bytes() == second.read_bytes()
    with np.load(first, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["images"], images)
        np.testing.assert_array_equal(npz["labels"], labels)


def test_shipped_file_is_what_write_produces(tmp_path):
    with np.load(SHIPPED, allow_pickle=False) as npz:
        images, labels = npz["images"], npz["labels"]
    rewritten = tmp_path / "mnist_7x7.npz"
    make.write(images, labels, rewritten)
    assert rewritten.read_bytes() == SHIPPED.read_bytes()


def test_loader_shapes_and_dtypes():
    X, y = load_mnist_7x7(n=123, seed=3)
    assert X.shape == (123, 49) and X.dtype == torch.float32
    assert y.shape == (123,) and y.dtype == torch.int64
    assert torch.isfinite(X).all()
    assert 0 <= int(y.min()) and int(y.max()) <= 9


def test_loader_is_standardized_over_whole_file():
    X, _ = load_mnist_7x7(n=10000)
    assert abs(X.mean().item()) < 1e-4
    assert abs(X.std().item() - 1.0) < 1e-3


def test_loader_same_seed_same_sample():
    X1, y1 = load_mnist_7x7(n=200, seed=7)
    X2, y2 = load_mnist_7x7(n=200, seed=7)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)


def test_loader_different_seeds_differ():
    X1, _ = load_mnist_7x7(n=200, seed=0)
    X2, _ = load_mnist_7x7(n=200, seed=1)
    assert not torch.equal(X1, X2)


def test_loader_leaves_global_rng_alone():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    load_mnist_7x7(n=50, seed=5)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("n", [0, -1, 10001, 2.5])
def test_loader_rejects_bad_n(n):
    with pytest.raises(ValueError, match="1..10000"):
        load_mnist_7x7(n=n)
