"""Write the sample submissions `make demo` grades, for each assignment: the
solution, a typical student's notebook with realistic bugs, and the unfilled
release. Notebook 1's are OUT_DIR/krylov_hessian/*.ipynb, Notebook 2's
OUT_DIR/randomized_ntk/*.ipynb.

Usage: python -m tests.corpus.samples OUT_DIR
"""

import sys
from pathlib import Path

from tests.corpus import build
from tests.corpus.build import Builder
from tests.corpus_ntk.build import NTK, swapped

TYPICAL_STUDENT = {
    # 1.3: a forward difference instead of a central one.
    "ex1_3_code": '''def hvp_finite_difference(model, X, y, v, eps=1e-3):
    named = dict(model.named_parameters())
    def loss_fn(theta):
        return F.cross_entropy(functional_call(model, unflatten_into_dict(theta, named), (X,)), y)
    theta = flat_params(model)
    return (grad(loss_fn)(theta + eps * v) - grad(loss_fn)(theta)) / eps
''',
    # 2.1: returns |eigenvalue|, losing the sign of a negative dominant eigenvalue.
    "ex2_1_code": '''def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=g)
    v = v / v.norm()
    history, eig = [], 0.0
    for _ in range(num_iters):
        w = matvec(v)
        new = w.norm().item()
        history.append(abs(new - eig))
        eig = new
        v = w / w.norm()
        if history[-1] < tol:
            break
    return eig, v, history
''',
}




def typical_ntk_student() -> dict[str, str]:
    """Notebook 2: Hutch++ forgets to project G, and Nystrom keeps s instead of s^2."""
    return {
        "ex2_1_code": swapped("ex2_1_code", ("    G_perp = G - Q @ (Q.T @ G)", "    G_perp = G")),
        "ex4_1_code": swapped("ex4_1_code", ("(s ** 2 - nu).clamp_min(0.0)",
                                             "(s - nu).clamp_min(0.0)")),
    }


def write_samples(builder: Builder, typical: dict[str, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    build.write(builder.master(), out / "solution.ipynb")
    build.write(builder.variant(typical), out / "typical_student.ipynb")
    build.write(builder.unfilled(), out / "unfilled.ipynb")


def main(out_dir: str) -> None:
    out = Path(out_dir)
    write_samples(build.KRYLOV, TYPICAL_STUDENT, out / "krylov_hessian")
    write_samples(NTK, typical_ntk_student(), out / "randomized_ntk")
    print(f"sample submissions written to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
