"""Section 6: the empirical NTK: per-example Jacobians, the Gram matrix, a
matrix-free NTK-vector product, its top eigenvalues, and its drift in training.

The models are small nn.Sequential MLPs the grader builds (other seeds, widths,
depths and batches than the notebook's), in fp64, so that every correct route
(vmap of jacrev, a loop of backward passes, torch.autograd.functional) agrees
with the reference to rounding: 1e-8 of the largest entry.
"""

import functools

import torch

from autograder.testing import check, matrix, numbers, vector
from fixtures import ntk_models as fx
from reference import randomized_ntk as ref

RTOL = 1e-8


def _cases():
    """(model, X, description): a 2-layer and a 3-layer MLP on hidden batches."""
    X1, _ = fx.mnist(6, 41)
    X2, _ = fx.mnist(5, 42)
    return ((fx.ntk_net(41, (49, 7, 10)), X1.double(), "a 49-7-10 MLP on 6 images"),
            (fx.ntk_net(42, (49, 6, 5, 4)), X2.double(), "a 49-6-5-4 MLP on 5 images"))


def _close(got: torch.Tensor, want: torch.Tensor) -> float:
    return (got - want).abs().max().item() / want.abs().max().item()


@check(exercise="6.1", weight=3)
def test_jacobians_match(student):
    """per_example_jacobians(model, X) is d logits / d theta, of shape (n, C, P)"""
    # Catches: jacobian_of_the_batch_sum (summed over examples), parameters in another
    # order (weights and biases swapped), the transpose (n, P, C); zeros.
    for model, X, what in _cases():
        want = ref.per_example_jacobians(model, X)
        got = student.call("per_example_jacobians", model, X)
        assert isinstance(got, torch.Tensor), \
            f"per_example_jacobians on {what} returned {type(got).__name__}, not a tensor"
        assert tuple(got.shape) == tuple(want.shape), \
            f"per_example_jacobians on {what} has shape {tuple(got.shape)}, not (n, C, P) = " \
            f"{tuple(want.shape)}"
        error = _close(got.double(), want)
        assert error <= RTOL, \
            f"per_example_jacobians on {what} is {error:.2g} (relative to its largest entry) " \
            "from the Jacobian of each example's logits, parameters flattened in " \
            "model.parameters() order"


@check(exercise="6.1", weight=2)
def test_jacobians_of_a_single_example_and_of_fp32(student):
    """per_example_jacobians works for one example and for fp32 models"""
    # Catches: squeeze() that drops the batch axis of one example, a float64 cast that
    # fails on fp32 parameters; zeros.
    model = fx.ntk_net(43, (49, 4, 3), dtype=torch.float32)
    X, _ = fx.mnist(1, 43)
    want = ref.per_example_jacobians(model, X)
    got = student.call("per_example_jacobians", model, X)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape), \
        f"per_example_jacobians on one example should have shape {tuple(want.shape)}, got " \
        f"{tuple(getattr(got, 'shape', ()))}"
    error = _close(got.double(), want.double())
    assert error <= 1e-5, f"per_example_jacobians on a fp32 model is {error:.2g} off"


@check(exercise="6.2", weight=3)
def test_ntk_matches(student):
    """empirical_ntk(model, X) is J J^T of shape (nC, nC), example-major"""
    # Catches: class_major (rows c * n + i), J^T J (P x P), the per-class kernel summed
    # over outputs (n x n); zeros.
    for model, X, what in _cases():
        want = ref.empirical_ntk(model, X)
        got = matrix(student.call("empirical_ntk", model, X), f"empirical_ntk on {what}",
                     shape=tuple(want.shape))
        error = _close(got, want)
        assert error <= RTOL, \
            f"empirical_ntk on {what} is {error:.2g} (relative) from J J^T with rows " \
            "ordered example-major (row i * C + c is output c of example i)"


@check(exercise="6.2", weight=2)
def test_ntk_of_two_identical_examples(student):
    """the NTK of a batch with a repeated example has equal blocks"""
    # Catches: a kernel of the batch mean, or the wrong block layout (the blocks of
    # examples 0 and 2 must be equal when the examples are); zeros (the block is the
    # per-example kernel, checked against the reference).
    model = fx.ntk_net(44, (49, 5, 3))
    X, _ = fx.mnist(2, 44)
    X = torch.cat([X, X[:1]]).double()
    got = matrix(student.call("empirical_ntk", model, X), "empirical_ntk on 3 examples",
                 shape=(9, 9))
    want = ref.empirical_ntk(model, X)
    assert _close(got[6:9, 6:9], want[0:3, 0:3]) <= RTOL and \
        _close(got[0:3, 6:9], want[0:3, 0:3]) <= RTOL, \
        "with examples 0 and 2 equal, the 3 x 3 blocks (0, 0), (0, 2) and (2, 2) of " \
        "empirical_ntk should all be example 0's kernel J_0 J_0^T"


# --- 6.3 the matrix-free product ---------------------------------------------------------


@check(exercise="6.3", weight=3)
def test_ntk_vp_matches(student):
    """ntk_vp(model, X, v) is Theta v, flat, example-major"""
    # Catches: J^T v returned (length P), v read class-major, a missing jvp (J J^T
    # v needs both); zeros.
    for model, X, what in _cases():
        n, C = X.shape[0], model[-1].out_features
        v = torch.randn(n * C, generator=torch.Generator().manual_seed(2601), dtype=torch.float64)
        want = ref.ntk_vp(model, X, v)
        got = vector(student.call("ntk_vp", model, X, v), f"ntk_vp on {what}", length=n * C)
        error = _close(got, want)
        assert error <= RTOL, f"ntk_vp on {what} is {error:.2g} (relative) from Theta v"
    assert not student.changed, f"ntk_vp changed {', '.join(student.changed)}"


@check(exercise="6.3", weight=3)
def test_ntk_vp_is_matrix_free(student):
    """ntk_vp works where the Jacobian would take 14 GB"""
    # Catches: ntk_vp_from_jacobians (empirical_ntk(model, X) @ v, or J built by
    # vmap(jacrev): 15,000 x 240,010 floats, past the memory limit); zeros.
    # fp32 through two passes: 1e-4 relative.
    model = fx.ntk_net(45, (49, 4000, 10), dtype=torch.float32)
    X, _ = fx.mnist(1500, 45)
    v = torch.randn(15000, generator=torch.Generator().manual_seed(2602))
    want = ref.ntk_vp(model, X, v)
    got = vector(student.call("ntk_vp", model, X, v), "ntk_vp on a 49-4000-10 MLP",
                 length=15000)
    error = _close(got, want.double())
    assert error <= 1e-4, f"ntk_vp on a 49-4000-10 MLP with 1,500 images is {error:.2g} " \
                          "(relative) from Theta v"


# --- 6.4 / 6.5 the notebook's kernel -------------------------------------------------------


@functools.cache
def _notebook_kernel_top5() -> torch.Tensor:
    model, X, _ = fx.notebook_problem()
    K = ref.empirical_ntk(model.double(), X[:fx.NOTEBOOK_NTK_SAMPLES].double())
    return torch.linalg.eigvalsh(K).flip(0)[:5]


@check(exercise="6.4", weight=3)
def test_ntk_top5(student):
    """ntk_top5 are the five largest eigenvalues of the notebook's NTK, descending"""
    # Catches: Ritz values in ascending order, the smallest five, eigenvalues of J^T J's
    # top block; zeros. 40 steps resolve them to ~1e-7 (fp32); 1e-4 is the margin.
    got = vector(student.get("ntk_top5"), "ntk_top5", length=5)
    want = _notebook_kernel_top5()
    error = ((got - want).abs() / want).max().item()
    assert error <= 1e-4, f"ntk_top5 is up to {error:.2g} (relative) from the five largest " \
                          "eigenvalues of the NTK of small_mlp(seed=0) on X_ntk, descending"


@functools.cache
def _drifts() -> tuple[float, ...]:
    """The notebook's experiment, rerun in the grader (deterministic full-batch GD)."""
    _, X, y = fx.notebook_problem()
    Xn = X[:fx.NOTEBOOK_NTK_SAMPLES]
    out = []
    for width in (12, 64, 256, 1024):
        net = fx.small_mlp(0, width)
        before = ref.empirical_ntk(net, Xn)
        ref.train_full_batch(net, X, y, 100, 0.5)
        out.append(ref.ntk_drift(before, ref.empirical_ntk(net, Xn)))
    return tuple(out)


@check(exercise="6.5", weight=2)
def test_drifts(student):
    """drifts are the relative Frobenius changes of the NTK for widths 12, 64, 256, 1024"""
    # Catches: the absolute change, the drift of the Jacobian instead of the kernel, the
    # kernel before training compared with itself (0), widths out of order; zeros.
    # Training is deterministic; fp32 rounding through 100 steps moves the drift by
    # ~1e-5 (relative), 1e-2 is the margin for another BLAS.
    widths = [int(w) for w in numbers(student.get("widths"), "widths")]
    assert widths == [12, 64, 256, 1024], f"widths is {widths}; keep the notebook's"
    got = numbers(student.get("drifts"), "drifts", length=4)
    for width, value, want in zip(widths, got, _drifts()):
        assert abs(value - want) <= 1e-2 * want, \
            f"drifts at width {width} is {value:.4g}; the relative change ||Theta_T - " \
            "Theta_0||_F / ||Theta_0||_F after train_full_batch differs from that"
