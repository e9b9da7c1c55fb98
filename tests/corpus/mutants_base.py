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
