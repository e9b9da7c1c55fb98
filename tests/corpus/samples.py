"""Write the sample submissions `make demo` grades: the solution, a typical
student's notebook with three realistic bugs, and the unfilled release.

Usage: python -m tests.corpus.samples OUT_DIR
"""

import sys
from pathlib import Path

from tests.corpus import build

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


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build.write(build.master(), out / "solution.ipynb")
    build.write(build.variant(TYPICAL_STUDENT), out / "typical_student.ipynb")
    build.write(build.unfilled(), out / "unfilled.ipynb")
    print(f"sample submissions written to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
