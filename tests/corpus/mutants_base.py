"""The reference solution itself and cross-cutting variants of it, and the
unfilled release (with and without fabricated outputs)."""

import nbformat

from tests.corpus import build
from tests.corpus.mutants import ALL_EXERCISES, register


def noisy_solution() -> nbformat.NotebookNode:
    """What real notebooks carry: magics, shell lines, warnings, stderr, a stray error."""
    nb = build.master()
    nb.cells.insert(1, nbformat.v4.new_code_cell(
        "%load_ext autoreload\n%autoreload 2\n%matplotlib inline\n!pip install torch"))
    nb.cells.append(nbformat.v4.new_code_cell(
        "%%time\nimport warnings, sys\nwarnings.warn('deprecated thing')\n"
        "print('debug output', file=sys.stderr)\nprint('x' * 100_000)"))
    nb.cells.append(nbformat.v4.new_code_cell("undefined_name + 1  # scratch cell left behind"))
    return nb


def fabricated_outputs() -> nbformat.NotebookNode:
    """The unfilled release with outputs pasted in from someone else's run."""
    nb = build.unfilled()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="✓ all tests passed\n")]
            cell.execution_count = 1
    return nb


register("master_solution", "correct", build.master)
register("noisy_solution", "correct", noisy_solution)
register("unfilled_release", "unfilled", build.unfilled, loses=ALL_EXERCISES, max_total=0)
register("fabricated_outputs", "cheat", fabricated_outputs, loses=ALL_EXERCISES, max_total=0)


def section0(op_norm: str = "torch.linalg.matrix_norm(A, ord=2).item()",
             solve: str = "torch.linalg.solve(A, b)",
             eps32: str = "find_eps(torch.float32)") -> nbformat.NotebookNode:
    """The master with the answers of Section 0 written another way."""
    nb = build.master()
    for cell in nb.cells:
        cell.source = (cell.source
                       .replace("op_norm = torch.linalg.matrix_norm(A, ord=2).item()",
                                f"op_norm = {op_norm}")
                       .replace("    x_hat = torch.linalg.solve(A, b)", f"    x_hat = {solve}")
                       .replace("eps32 = find_eps(torch.float32)", f"eps32 = {eps32}"))
    return nb


register("section0_correct_svd_and_fp64_solve", "correct", lambda: section0(
    op_norm="torch.linalg.svdvals(A)[0]",
    solve="torch.linalg.solve(A.double(), b.double()).float()",
    eps32="torch.finfo(torch.float32).eps"))
register("section0_bug_op_norm_is_max_abs_eigenvalue", "bug", lambda: section0(
    op_norm="torch.linalg.eigvals(A).abs().max().item()"), loses={"0.1"})
register("section0_bug_solve_with_inverse", "bug", lambda: section0(
    solve="torch.linalg.inv(A) @ b"), loses={"0.2"})
register("section0_bug_eps_is_the_halfway_point", "bug", lambda: section0(eps32="2.0 ** -24"),
         loses={"0.3"})
