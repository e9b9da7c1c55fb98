"""Build submission notebooks from a master: the solution, or variants of it.

A variant replaces whole solution cells (named by their nbgrader grade id,
e.g. "ex2_1_code") with other source, the way a student's notebook differs
from the solution. `unfilled()` is the student release itself.

`Builder` does this for any assignment; the module-level functions are
Notebook 1's (krylov_hessian), which most of the project's tests use.
"""

from pathlib import Path

import nbformat

from autograder.assignment import Assignment
from autograder.release import release_notebook
from tests.notebooks import ASSIGNMENT, MASTER


class Builder:
    """Notebooks built from one assignment's master."""

    def __init__(self, assignment: Path, master: Path):
        self.assignment, self.master_path = assignment, master

    def master(self) -> nbformat.NotebookNode:
        return nbformat.read(self.master_path, as_version=4)

    def unfilled(self) -> nbformat.NotebookNode:
        return release_notebook(Assignment.load(self.assignment))

    def cell(self, grade_id: str) -> str:
        """The master's source of the cell with this grade id."""
        return next(c.source for c in self.master().cells
                    if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)

    def variant(self, replacements: dict[str, str],
                base: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
        """The master (or `base`) with the cells of the given grade ids replaced."""
        nb = base if base is not None else self.master()
        remaining = dict(replacements)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in remaining:
                cell.source = remaining.pop(grade_id)
        if remaining:
            raise KeyError(f"no cells with grade ids {sorted(remaining)}")
        return nb

    def appended(self, code: str,
                 base: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
        """The master (or `base`) with one more code cell at the end."""
        nb = base if base is not None else self.master()
        nb.cells.append(nbformat.v4.new_code_cell(code))
        return nb


KRYLOV = Builder(ASSIGNMENT, MASTER)
master = KRYLOV.master
unfilled = KRYLOV.unfilled
variant = KRYLOV.variant
appended = KRYLOV.appended


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    nbformat.write(nb, path)
    return path
