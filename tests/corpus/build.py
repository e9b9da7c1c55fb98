"""Build submission notebooks from the master: the solution, or variants of it.

A variant replaces whole solution cells (named by their nbgrader grade id,
e.g. "ex2_1_code") with other source, the way a student's notebook differs
from the solution. `unfilled()` is the student release itself.
"""

from pathlib import Path

import nbformat

from autograder.assignment import Assignment
from autograder.release import release_notebook
from tests.notebooks import ASSIGNMENT, MASTER


def master() -> nbformat.NotebookNode:
    return nbformat.read(MASTER, as_version=4)


def unfilled() -> nbformat.NotebookNode:
    return release_notebook(Assignment.load(ASSIGNMENT))


def variant(replacements: dict[str, str], base: nbformat.NotebookNode | None = None
            ) -> nbformat.NotebookNode:
    """The master (or `base`) with the cells of the given grade ids replaced."""
    nb = base if base is not None else master()
    remaining = dict(replacements)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in remaining:
            cell.source = remaining.pop(grade_id)
    if remaining:
        raise KeyError(f"no cells with grade ids {sorted(remaining)}")
    return nb


def appended(code: str, base: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    """The master (or `base`) with one more code cell at the end."""
    nb = base if base is not None else master()
    nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    nbformat.write(nb, path)
    return path
