"""Tests for the notebook's plotting helpers."""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "assignments" / "krylov_hessian"))

from src.plotting import (
    apply_style,
    eigenvalue_compare,
    semilog_convergence,
)

VALUES = [1.0, 0.5, 1e-3, 0.0]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def restore_rcparams():
    saved = matplotlib.rcParams.copy()
    yield
    matplotlib.rcParams.update(saved)


def _as(kind, values):
    if kind == "list":
        return list(values)
    if kind == "array":
        return np.asarray(values)
    if kind == "float32":
        return torch.tensor(values, dtype=torch.float32)
    if kind == "float64":
        return torch.tensor(values, dtype=torch.float64)
    raise ValueError(kind)


INPUT_KINDS = ["list", "array", "float32", "float64"]


def test_apply_style_changes_rcparams_not_backend(restore_rcparams):
    matplotlib.rcdefaults()
    backend = matplotlib.get_backend()
    apply_style()
    rc = matplotlib.rcParams
    assert matplotlib.get_backend() == backend
    assert tuple(rc["figure.figsize"]) == pytest.approx((6.5, 4.0))
    assert rc["figure.dpi"] == 100
    assert rc["axes.grid"] is True
    assert 0 < rc["grid.alpha"] < 1
    assert rc["axes.spines.top"] is False
    assert rc["axes.spines.right"] is False
    assert rc["legend.frameon"] is False


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_semilog_clips_to_floor(kind):
    ax = semilog_convergence([_as(kind, VALUES)], floor=1e-12)
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "iteration"
    assert ax.get_ylabel() == "change in estimate"
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_allclose(line.get_ydata(), [1.0, 0.5, 1e-3, 1e-12], rtol=1e-6)


def test_semilog_default_floor_and_dict_labels():
    histories = {"power": [1.0, 0.0], "lanczos": torch.tensor([0.1, 0.01, 0.0])}
    ax = semilog_convergence(histories, title="convergence")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["power", "lanczos"]
    assert lines[0].get_ydata()[-1] == pytest.approx(1e-30)
    assert len(lines[1].get_ydata()) == 3
    assert ax.get_title() == "convergence"
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["power", "lanczos"]


def test_semilog_uses_given_axes_and_labels():
    _, ax = plt.subplots()
    out = semilog_convergence(
        [np.array([1.0, 0.1]), [2.0, 0.2]], ax=ax, labels=["a", "b"]
    )
    assert out is ax
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]


def test_semilog_rejects_wrong_number_of_labels():
    with pytest.raises(ValueError):
        semilog_convergence([[1.0], [2.0]], labels=["only one"])


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_eigenvalue_compare_positions(kind):
    true_eigs = [3.0, -1.0, 0.5, 2.0, 10.0]
    ritz = [9.75, -0.5]
    ax = eigenvalue_compare(_as(kind, true_eigs), _as(kind, ritz))

    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"true", "Ritz"}

    true_line, ritz_line = lines["true"], lines["Ritz"]
    np.testing.assert_array_equal(true_line.get_xdata(), np.zeros(5))
    np.testing.assert_array_equal(ritz_line.get_xdata(), np.ones(2))
    np.testing.assert_allclose(
        sorted(true_line.get_ydata()), sorted(true_eigs), rtol=1e-6
    )
    np.testing.assert_allclose(sorted(ritz_line.get_ydata()), sorted(ritz), rtol=1e-6)
    assert true_line.get_marker() == "_"

    assert list(ax.get_xticks()) == [0, 1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["true", "Ritz"]
    assert ax.get_ylabel() == "eigenvalue"


def test_eigenvalue_compare_in_shared_grid():
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64)
    true_eigs = torch.linalg.eigvalsh(a + a.T)
    fig, axes = plt.subplots(1, 4, sharey=True)
    for k, ax in enumerate(axes, start=1):
        ritz = torch.cat([true_eigs[:k], true_eigs[-k:]])
        out = eigenvalue_compare(true_eigs, ritz, ax=ax, title=f"k={k}")
        assert out is ax
        assert ax.get_title() == f"k={k}"
    assert len(fig.axes) == 4
    lo, hi = axes[0].get_ylim()
    assert lo <= true_eigs.min().item() and hi >= true_eigs.max().item()


def test_eigenvalue_compare_accepts_low_precision_tensor():
    true_eigs = torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16)
    ritz = torch.tensor([3.0], dtype=torch.float16)
    ax = eigenvalue_compare(true_eigs, ritz)
    ys = sorted(y for line in ax.get_lines() for y in line.get_ydata())
    np.testing.assert_allclose(ys, [1.0, 2.0, 3.0, 3.0])


def test_eigenvalue_compare_accepts_tensor_requiring_grad():
    true_eigs = torch.tensor([1.0, 4.0], requires_grad=True)
    ax = eigenvalue_compare(true_eigs * 2, true_eigs[:1] * 2)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(sorted(lines["true"].get_ydata()), [2.0, 8.0])
