"""What the hidden checks of Notebook 1 share across sections: spectra, the
eigenvalue tolerance of power iteration and deflation, the hidden Lanczos
matrices, and the helpers that call the student's Lanczos and read its answer
(the generic answer readers live in `autograder.testing`).

Lanczos checks (sections 4 to 6): Ritz values depend on the start vector,
which students may draw differently from the reference, so every check of
them holds for any start: consistency of
the returned Ritz values with the returned basis, orthonormality, the whole
spectrum at k = dim, the extremes after enough steps, matvec counts. The
matrices reach the student's code only as opaque operators.

The notebook's own solution works in fp32 whatever the operator's precision
(its start vector is fp32 and the operator answers in the caller's dtype),
so tolerances allow fp32 work: fp32 unit roundoff is 6e-8, a fp32 Lanczos
basis of a few dozen columns is orthonormal to a few 1e-7 until a Ritz value
converges, and eigenvalues computed from it carry errors of ~1e-6 ||A||.
"""

import functools

import torch
from torch import nn

from autograder.testing import vector
from fixtures import spectra
from reference import krylov_hessian as ref


def eigenvalues_from(*parts) -> torch.Tensor:
    """fp64 eigenvalues from fixed values (floats) and linspace tuples (low, high, count)."""
    pieces = []
    for part in parts:
        if isinstance(part, tuple):
            pieces.append(torch.linspace(*part, dtype=torch.float64))
        else:
            pieces.append(torch.tensor([part], dtype=torch.float64))
    return torch.cat(pieces)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Section 1's setup cell: toy_mlp(seed=1), X = torch.randn(8, 20), y of 8 labels.
TOY_PARAMS, TOY_BATCH = 254, (8, 20)


def notebook_toy_problem(student) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The notebook's model, X and y, once they are shown to be Section 1's toy MLP
    and batch. Checks compute that problem's exact Hessian here, in the grader, where
    no runner budget applies and the cost grows with the square of the parameters:
    a notebook that rebinds them to a bigger model or batch is refused by size,
    before any computation."""
    model, X, y = student.get("model"), student.get("X"), student.get("y")
    assert isinstance(model, nn.Module) and isinstance(X, torch.Tensor) \
        and isinstance(y, torch.Tensor), \
        "model, X and y should still be Section 1's toy MLP and batch when the notebook ends"
    params = count_params(model)
    assert params == TOY_PARAMS and tuple(X.shape) == TOY_BATCH \
        and tuple(y.shape) == TOY_BATCH[:1], \
        f"when the notebook ends, model has {params} parameters and X has shape " \
        f"{tuple(X.shape)}; Section 1's toy MLP has {TOY_PARAMS} and its batch is " \
        f"{TOY_BATCH}: keep model, X and y as the setup cell made them"
    return model, X, y


def signed_top(eigs: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The k eigenvalues of largest magnitude, signed, in descending magnitude."""
    return eigs[eigs.abs().argsort(descending=True)][:k]


# An fp32 Rayleigh quotient is within a few 1e-7 relative of the true top
# eigenvalue once converged; 1e-4 leaves room for any correct style and is
# still far below what a lost sign, a wrong quotient or overflow produce.
EIG_RTOL = 1e-4


# Measured on the reference and on the notebook's solution over many start
# vectors; each tolerance below says how it relates to these numbers.
CONSISTENCY_RTOL = 1e-4  # fp32 work: eig(Q^T A Q) vs Ritz values agree to ~2e-6 ||A||


# A Lanczos basis built in fp32 has unit columns to ~1e-7 and puts each A q_j in
# span(q_0, ..., q_(j+1)) up to ~1e-6 ||A|| (measured on every fixture here,
# reorthogonalized or not, orthogonality lost or not); zeros, constants, the
# identity's columns and random orthonormal bases are off by O(1).
UNIT_TOL = 1e-3
KRYLOV_RTOL = 1e-4


# --- fixtures: hidden matrices, all built in fp64 from private generators ------------


@functools.cache
def hidden_matrix(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A in fp64, its exact eigenvalues ascending) for the named hidden fixture."""
    if name == "spread":
        # Evenly spread spectrum: nothing converges within ~16 steps, so a fp32
        # basis stays orthonormal and T_k = Q^T A Q holds to roundoff.
        eigs = eigenvalues_from((-3.0, 5.0, 120))
        seed = 101
    elif name == "spread90":
        eigs = eigenvalues_from((-4.0, 2.0, 90))
        seed = 103
    elif name == "small":
        # k = dim = 8 with evenly spaced eigenvalues: fp32 Lanczos recovers all
        # of them to ~2e-6 for every start (measured on 60 starts). Larger or
        # unevenly spaced ones (12x12 with isolated extremes) lose orthogonality
        # before the end and miss an eigenvalue for some starts even in correct code.
        eigs = eigenvalues_from((-3.0, 4.0, 8))
        seed = 107
    elif name == "extremes":
        # Isolated extremes 9 and -7 over a bulk in [-3, 4]: after 30 steps both
        # have converged to fp32 accuracy (worst 6e-6 over 40 starts).
        eigs = eigenvalues_from(9.0, -7.0, (-3.0, 4.0, 198))
        seed = 109
    elif name == "convergence":
        # Extremes 6 and -4 with moderate gaps: far off at k = 5 (errors 0.1-2),
        # converged at k = 20 (~1e-6), for every start tried.
        eigs = eigenvalues_from(6.0, 4.5, -4.0, (-3.0, 3.0, 147))
        seed = 113
    elif name == "indefinite30":
        spectrum = spectra.make("indefinite", 30, seed=127)
        return spectrum.matrix, spectrum.eigenvalues
    else:
        raise KeyError(name)
    A = spectra.with_spectrum(eigs, seed)
    return A, eigs.sort().values


# --- calling the student's Lanczos ----------------------------------------------------


def call_lanczos(student, name: str, A: torch.Tensor, k: int, *, dtype: torch.dtype,
                 seed: int, budget: int | None = None, fn=None, **kwargs):
    """Run the student's Lanczos on an opaque operator; return (result, operator, call).

    The default budget, 2k + 2, lets a wasteful but honest loop (two matvecs
    per step) through, so that only the check that counts matvecs (budget
    k + 1) fails it, and still refuses to build the matrix from dim matvecs
    wherever dim > 2k + 2. Where k is close to dim, building the matrix costs
    no more than Lanczos itself and no count can tell them apart.
    """
    dim = A.shape[0]
    matrix = A.to(dtype)
    op = student.operator(fn or (lambda v: matrix @ v), dim=dim, dtype=dtype,
                          budget=budget if budget is not None else 2 * k + 2, name="the matvec",
                          hint="Lanczos spends one matvec per step and never builds the matrix")
    call = f"{name}(matvec, dim={dim}, k={k}" + "".join(
        f", {key}={value!r}" for key, value in kwargs.items()) + ")"
    return student.call(name, op, dim, k, seed=seed, **kwargs), op, call


def unpack(result, count: int, call: str, names: str) -> tuple:
    assert isinstance(result, (tuple, list)) and len(result) == count, \
        f"{call} should return a tuple {names}, got {type(result).__name__}" + (
            f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
    return tuple(result)


def ritz_values(value, k: int, call: str) -> torch.Tensor:
    """The Ritz values, ascending, whatever order or container the student used."""
    return vector(value, f"the Ritz values returned by {call}", length=k).sort().values


def _as_columns(value, dim: int):
    """A list of basis vectors stacked as columns; anything else as it is."""
    if (isinstance(value, (list, tuple)) and value
            and all(isinstance(v, torch.Tensor) and tuple(v.shape) == (dim,) for v in value)):
        return torch.stack(list(value), dim=1)
    return value


def assert_basis_shape(value, dim: int, k: int, call: str) -> None:
    """The one check of Q's layout: a (dim, k) tensor, one column per step.

    Every other check reads Q with `basis`, which takes what it can from a
    slipped layout, so a slip costs this check only.
    """
    value = _as_columns(value, dim)
    assert isinstance(value, torch.Tensor), \
        f"the basis Q returned by {call} should be a tensor, got {type(value).__name__}"
    shape = tuple(value.shape)
    assert not (shape == (k, dim) and k != dim), \
        f"Q returned by {call} has shape {shape}, the transpose of what the notebook asks: " \
        f"return the basis vectors as the columns of a ({dim}, {k}) tensor"
    assert shape != (dim, k + 1), \
        f"Q returned by {call} has shape {shape}: one column more than the {k} steps. " \
        f"q_0 ... q_(k-1) span the Krylov space of T_k; stop before normalizing a " \
        f"(k+1)-th vector and return a ({dim}, {k}) tensor"
    assert shape == (dim, k), f"Q returned by {call} should have shape ({dim}, {k}), one " \
                              f"column per step, got {shape}"


def basis(value, dim: int, k: int, call: str) -> torch.Tensor:
    """Q as a (dim, k) fp64 tensor, read as far as its layout allows.

    Accepted besides (dim, k): a list of basis vectors, the transpose, and
    extra columns (the first k are the k steps). The layout itself is graded
    once, by `assert_basis_shape`.
    """
    value = _as_columns(value, dim)
    assert isinstance(value, torch.Tensor), \
        f"the basis Q returned by {call} should be a tensor, got {type(value).__name__}"
    shape = tuple(value.shape)
    if value.dim() == 2 and shape[0] != dim and shape[1] == dim:
        value = value.T
    assert value.dim() == 2 and value.shape[0] == dim and value.shape[1] >= k, \
        f"Q returned by {call} has shape {shape}; the checks need its {k} columns, one per " \
        f"step, as a ({dim}, {k}) tensor"
    Q = value[:, :k].detach().double()
    assert torch.isfinite(Q).all(), f"Q returned by {call} contains NaN or infinite entries"
    return Q


def assert_krylov_basis(Q: torch.Tensor, apply, call: str) -> None:
    """Q is a Lanczos basis: unit columns, and A q_j in span(q_0, ..., q_(j+1)).

    The gate of every check that reads Q for a property (its shape, its
    orthogonality or the lack of it, the consistency of the Ritz values with
    it, the matvecs spent on it): zeros, the identity's columns or a random
    orthonormal basis have these properties without any Lanczos, so those
    checks count only for a basis that Lanczos built (caught:
    trivial_zeros, trivial_constants, trivial_noise in tests/corpus). It holds
    for every variant of the recurrence, right or wrong, reorthogonalized or
    not, since q_(j+1) is A q_j minus multiples of earlier q's; `apply` maps
    Q (fp64) to A Q.
    """
    norms = Q.norm(dim=0)
    assert ((norms - 1).abs() <= UNIT_TOL).all(), \
        f"the columns of Q returned by {call} have norms from {norms.min().item():.3g} to " \
        f"{norms.max().item():.3g}; every Lanczos vector q_j is normalized to unit length"
    AQ = apply(Q)
    scale = AQ.norm(dim=0).max().item()
    worst, where = 0.0, 0
    for j in range(Q.shape[1] - 1):
        span = Q[:, :j + 2]
        coef = torch.linalg.lstsq(span, AQ[:, j:j + 1]).solution
        outside = (AQ[:, j:j + 1] - span @ coef).norm().item()
        if outside > worst:
            worst, where = outside, j
    assert worst <= KRYLOV_RTOL * max(scale, 1e-300), \
        f"Q returned by {call} is not a Lanczos basis: A q_{where} has a part of norm " \
        f"{worst / max(scale, 1e-300):.2g} (relative to ||A q_j||) outside the span of " \
        f"q_0, ..., q_{where + 1}, where Lanczos puts it exactly (each q_(j+1) is A q_j " \
        "minus multiples of the earlier q's, normalized)"


def lanczos_basis(value, dim: int, k: int, call: str, apply) -> torch.Tensor:
    """Q read by `basis` (its first k columns), after the real-work gate.

    At k = dim a transposed basis has the right shape; if its columns fail the
    gate and its rows pass, the rows are read (the layout is charged once, by
    the shape check at k < dim).
    """
    Q = basis(value, dim, k, call)
    try:
        assert_krylov_basis(Q, apply, call)
    except AssertionError:
        if k != dim:
            raise
        try:
            assert_krylov_basis(Q.T.contiguous(), apply, call)
        except AssertionError:
            pass
        else:
            return Q.T.contiguous()
        raise
    return Q


def orth_error(Q: torch.Tensor) -> float:
    """max |(Q^T Q - I)_ij|, the entrywise infinity norm (the smaller of the two)."""
    return ref.orthogonality_error(Q, entrywise=True)


def assert_consistent(ritz, Q, A: torch.Tensor, call: str) -> None:
    """The Ritz values are the eigenvalues of Q^T A Q (T_k = Q_k^T A Q_k)."""
    projected = torch.linalg.eigvalsh(Q.T @ A @ Q)
    scale = torch.linalg.matrix_norm(A, ord=2).item()
    # A beta in the wrong place of T or a lost beta * q_prev term moves them by
    # >= 3e-2 ||A|| on these matrices; correct fp32 work by ~2e-6 ||A||.
    gap = (ritz - projected).abs().max().item() / scale
    assert gap <= CONSISTENCY_RTOL, \
        f"the Ritz values returned by {call} differ by up to {gap:.2g} ||A|| from the " \
        "eigenvalues of Q^T A Q for the Q it returned: check the alphas and betas that go " \
        "into T (beta_j sits between steps j-1 and j) and the beta_j q_{j-1} term of the " \
        "recurrence"


def assert_one_matvec_per_step(op, k: int, call: str) -> None:
    # k steps, k matvecs; one more is allowed for a loop that also forms A q_k.
    assert k <= op.calls <= k + 1, \
        f"{call} called the matvec {op.calls} times; Lanczos uses exactly one matvec per " \
        f"step, so k = {k} steps should cost {k}"


def matrix_apply(A: torch.Tensor):
    """`apply` for assert_krylov_basis: Q -> A Q in fp64."""
    A64 = A.double()
    return lambda Q: A64 @ Q
