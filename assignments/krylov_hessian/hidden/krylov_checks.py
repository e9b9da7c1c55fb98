"""What the hidden checks of Notebook 1 share across sections: spectra, the
eigenvalue tolerance of power iteration and deflation, the hidden Lanczos
matrices, and the helpers that call the student's Lanczos and read its answer
(the generic answer readers live in `autograder.testing`)."""

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


def basis(value, dim: int, k: int, call: str) -> torch.Tensor:
    """Q as a (dim, k) fp64 tensor; a list of k basis vectors is stacked as columns."""
    if (isinstance(value, (list, tuple)) and value
            and all(isinstance(v, torch.Tensor) and tuple(v.shape) == (dim,) for v in value)):
        value = torch.stack(list(value), dim=1)
    assert isinstance(value, torch.Tensor), \
        f"the basis Q returned by {call} should be a tensor, got {type(value).__name__}"
    shape = tuple(value.shape)
    assert not (shape == (k, dim) and k != dim), \
        f"Q returned by {call} has shape {shape}, the transpose of what the notebook asks: " \
        f"return the basis vectors as the columns of a ({dim}, {k}) tensor"
    assert shape == (dim, k), f"Q returned by {call} should have shape ({dim}, {k}), one " \
                              f"column per step, got {shape}"
    Q = value.detach().double()
    assert torch.isfinite(Q).all(), f"Q returned by {call} contains NaN or infinite entries"
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
    assert (ritz - projected).abs().max().item() <= CONSISTENCY_RTOL * scale, \
        f"the Ritz values returned by {call} are not the eigenvalues of Q^T A Q for the Q " \
        "it returned: check the alphas and betas that go into T (beta_j sits between " \
        "steps j-1 and j) and the beta_j q_{j-1} term of the recurrence"


def assert_one_matvec_per_step(op, k: int, call: str) -> None:
    # k steps, k matvecs; one more is allowed for a loop that also forms A q_k.
    assert k <= op.calls <= k + 1, \
        f"{call} called the matvec {op.calls} times; Lanczos uses exactly one matvec per " \
        f"step, so k = {k} steps should cost {k}"
