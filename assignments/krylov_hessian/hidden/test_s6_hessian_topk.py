"""Section 6: the top of the tiny MLP's Hessian spectrum, at initialization and after training.

Ritz values depend on the start vector, which students may draw differently
from the reference, so every check here holds for any start.
"""

import functools

import torch
import torch.nn.functional as F

from autograder.testing import check, vector
from fixtures.models import _student_modules
from reference import krylov_hessian as ref

# --- 6.0 / 6.1 the Hessian of the tiny MLP ---------------------------------------------


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The notebook's data, load_mnist_7x7(n=500, seed=0), rebuilt in the grader."""
    _, data = _student_modules()
    return data.load_mnist_7x7(500, 0)


def _hessian_top(model: torch.nn.Module, n: int) -> torch.Tensor:
    """The n largest |eigenvalues| of the loss Hessian on the notebook's data.

    80 steps of fully reorthogonalized Lanczos (0.2 s) instead of materializing
    (1,930 HVPs, ~3 s): checked offline against the materialized Hessian, at
    initialization and after training with several SGD histories, the top 10
    agree to <= 8e-7 relative.
    """
    X, y = _mnist()
    return ref.top_by_magnitude(ref.hessian_ritz(model, X, y, k=80, reorth="full").double(), n)


@functools.lru_cache(maxsize=1)
def _init_top() -> torch.Tensor:
    tiny_models, _ = _student_modules()
    return _hessian_top(tiny_models.tiny_mlp(seed=0), 10)


def _top_of(value, name: str, n: int) -> torch.Tensor:
    values = vector(value, name)
    assert values.numel() >= n, f"{name} should hold at least {n} Ritz values, got " \
                                f"{values.numel()}"
    return ref.top_by_magnitude(values, n)


@check(exercise="6.0", weight=1)
def test_ritz_init_holds_ten_values(student):
    """ritz_init holds at least 10 finite Ritz values"""
    _top_of(student.get("ritz_init"), "ritz_init", 10)


@check(exercise="6.0", weight=3)
def test_ritz_init_top5_match_the_hessian(student):
    """the top-5 |ritz_init| match the Hessian's top-5 at initialization"""
    got = _top_of(student.get("ritz_init"), "ritz_init", 10)[:5]
    want = _init_top()[:5]
    # 30 steps resolve the top 5 for every start (worst 2.5e-5 relative over 40
    # starts; the 7th-9th are still off by up to 12%); without reorthogonalization
    # a ghost copy of the top value shifts them by ~20%.
    assert ((got - want).abs() <= 1e-3 * want).all(), \
        "the 5 largest |ritz_init| do not match the top-5 |eigenvalues| of the Hessian of " \
        "tiny_mlp(seed=0) on the 500 samples: run lanczos_track_orth with " \
        "reorth='selective', k=30, on hvp_double_backward of the untrained model"


@check(exercise="6.1", weight=1)
def test_ritz_trained_comes_from_the_trained_model(student):
    """ritz_trained is computed after training (model_mnist trained, spectrum not the init one)"""
    got = _top_of(student.get("ritz_trained"), "ritz_trained", 10)
    model = student.get("model_mnist")
    tiny_models, _ = _student_modules()
    init = tiny_models.tiny_mlp(seed=0)
    assert isinstance(model, torch.nn.Module) and \
        sum(p.numel() for p in model.parameters()) == 1930, \
        "model_mnist should still be the tiny_mlp of Exercise 6.0 (1,930 parameters)"
    X, y = _mnist()
    with torch.no_grad():
        moved = (ref.flat_params(model) - ref.flat_params(init)).abs().max().item()
        # 200 SGD steps at lr 0.1 take the loss from 2.28 to ~0.55.
        trained_loss = F.cross_entropy(model(X), y).item()
        init_loss = F.cross_entropy(init(X), y).item()
    assert moved > 1e-3 and trained_loss < 0.9 * init_loss, \
        "model_mnist still looks untrained: run the 200 SGD steps of Exercise 6.1 on it " \
        "before computing ritz_trained"
    # The init spectrum's top-10 sit ~50% away from the trained one's (see below).
    init_top = _hessian_top(init, 10)
    assert not ((got - init_top).abs() <= 2e-2 * init_top).all(), \
        "ritz_trained matches the Hessian at initialization: compute it after the SGD steps"


@check(exercise="6.1", weight=3)
def test_ritz_trained_top10_match_the_trained_hessian(student):
    """the top-10 |ritz_trained| match the Hessian of your trained model_mnist"""
    got = _top_of(student.get("ritz_trained"), "ritz_trained", 10)
    model = student.get("model_mnist")
    assert isinstance(model, torch.nn.Module) and \
        sum(p.numel() for p in model.parameters()) == 1930, \
        "model_mnist should still be the tiny_mlp of Exercise 6.0 (1,930 parameters)"
    want = _hessian_top(model, 10)
    # After training the top 10 separate: over 11 SGD histories x 8 starts the
    # worst relative error at k = 30 was 3e-3 (rank 10, 1.4-5% from rank 11),
    # ~1e-6 for the rest. Other models or data are off by >= 20% (the init model
    # by ~50%, the last minibatch's Hessian by 22-78%, ghosts of no reorth by > 1).
    assert ((got - want).abs() <= 2e-2 * want).all(), \
        "the 10 largest |ritz_trained| do not match the Hessian of your trained model_mnist " \
        "on X_train, y_train: after the SGD steps run lanczos_track_orth with " \
        "reorth='selective', k=30, on hvp_double_backward of model_mnist over all 500 samples"
