"""`autograder new NAME`: a new assignment that validates and grades out of the box.

It writes, under a project folder laid out like this one:
`assignments/NAME/` (assignment.toml, a master notebook with one exercise in
nbgrader solution regions, `src/` for the package students import, a hidden
and a visible suite written with `autograder.testing`, a README of next
steps) and `reference/NAME.py` (the reference the hidden checks compare
with, named in `grading.depends`, so that no other assignment's reference
changes this one's grader version).
"""

import re
from pathlib import Path
from string import Template

import nbformat

from .assignment import AssignmentError

NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")

CONFIG = Template('''# Every key is documented in docs/assignment-toml.md (`autograder config-keys`).
name = "$name"
title = "$title"
master = "master/$name.ipynb"

[release]
include = ["src"]
notebook_dir = "notebooks"
code_stub = "# YOUR CODE HERE"

[grading]
hidden = "hidden"
visible = "visible"
depends = ["../../reference/$name.py"]
total_timeout_s = 120
grade_timeout_s = 300
checks_reserve_s = 60

[[exercises]]
id = "1.1"
grade_id = "ex1_1"
name = "Scale a vector"

[[exercises]]
id = "1.2"
grade_id = "ex1_2"
name = "One step of power iteration"
''')

REFERENCE = '''"""The reference solutions of $name: what the hidden checks compare answers with.
Never shipped to students, never imported by the runner."""

import torch


def scale(v: torch.Tensor, c: float) -> torch.Tensor:
    return c * v


def power_step(matvec, v: torch.Tensor) -> torch.Tensor:
    w = matvec(v)
    return w / torch.linalg.vector_norm(w)
'''

HIDDEN_CONFTEST = '''"""Puts the project folder on sys.path, so that `reference` imports here (and in the
Gradescope image, which mirrors the project's layout)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
'''

HIDDEN_TEST = '''"""Hidden checks of exercise 1.1, on inputs the student never sees."""

import torch
from reference import $name as ref

from autograder.testing import check, vector


@check(exercise="1.1", weight=2)
def test_scale_matches_the_reference(student):
    """scale(v, c) is c times v, for any v and c"""
    v = torch.randn(7, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    got = vector(student.call("scale", v, -2.5), "scale(v, c)", length=7)
    error = (got - ref.scale(v, -2.5)).abs().max().item()
    assert error <= 1e-12, f"scale(v, -2.5) is {error:.2g} away from -2.5 v at worst"


@check(exercise="1.1", weight=1)
def test_scale_does_no_work_for_zero(student):
    """scale(v, 0) is the zero vector (a constant answer is not scaling)"""
    v = torch.arange(1.0, 5.0, dtype=torch.float64)
    got = vector(student.call("scale", v, 0.0), "scale(v, 0)", length=4)
    assert got.abs().max().item() == 0.0, \\
        f"scale(v, 0) has largest entry {got.abs().max().item():.3g}; it should be all zeros"


@check(exercise="1.2", weight=2)
def test_power_step_spends_one_matvec(student):
    """power_step(matvec, v) is the normalized matvec(v), for one matvec"""
    g = torch.Generator().manual_seed(12)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = A + A.T
    v = torch.randn(6, generator=g, dtype=torch.float64)
    op = student.operator(lambda x: A @ x, dim=6, budget=1, name="the matvec",
                          hint="one step of power iteration costs one matvec")
    got = vector(student.call("power_step", op, v), "power_step(matvec, v)", length=6)
    error = (got - ref.power_step(lambda x: A @ x, v)).abs().max().item()
    assert error <= 1e-12, f"power_step(matvec, v) is {error:.2g} away from A v / |A v|"
'''

VISIBLE_TEST = '''"""Visible checks of exercise 1.1: students run these with `autograder check`."""

import torch

from autograder.testing import check, vector


@check(exercise="1.1", weight=1)
def test_scale_of_ones(student):
    """scale(ones, 3) is all threes"""
    got = vector(student.call("scale", torch.ones(3, dtype=torch.float64), 3.0),
                 "scale(ones(3), 3.0)", length=3)
    assert torch.equal(got, torch.full((3,), 3.0, dtype=torch.float64)), \\
        f"scale(ones(3), 3.0) returned {got.tolist()}; expected [3.0, 3.0, 3.0]"


@check(exercise="1.2", weight=1)
def test_power_step_of_a_diagonal_matrix(student):
    """power_step on diag(2, 1) keeps a unit vector along the first axis"""
    op = student.operator(lambda x: torch.tensor([2.0, 1.0], dtype=x.dtype) * x, dim=2,
                          budget=1, name="the matvec", hint="one matvec per step")
    got = vector(student.call("power_step", op, torch.tensor([1.0, 0.0])),
                 "power_step(matvec, e1)", length=2)
    assert torch.allclose(got, torch.tensor([1.0, 0.0], dtype=torch.float64)), \\
        f"power_step(matvec, e1) returned {got.tolist()}; expected [1.0, 0.0]"
'''

PYTEST_INI = "[pytest]\npython_files = test_*.py\n"

README = '''# $title

Scaffolded by `autograder new $name`. Next steps:

1. Write the notebook: `master/$name.ipynb`. Put each answer in an nbgrader
   solution region (`### BEGIN SOLUTION` / `### END SOLUTION`) of a cell with a
   grade id, and give each exercise a grade cell with its points.
2. Name each exercise in `assignment.toml` (`[[exercises]]`: id, grade_id, name,
   visibility). Every key: `docs/assignment-toml.md`.
3. Write the reference solutions in `reference/$name.py`, the hidden checks in
   `hidden/` and the checks students may run in `visible/`, with
   `autograder.testing` (see `docs/authoring.md`).
4. `autograder validate assignments/$name` until it passes; then
   `autograder release assignments/$name` and `autograder gradescope build`.
'''


def _notebook(title: str) -> nbformat.NotebookNode:
    def meta(grade_id: str, *, grade: bool, solution: bool, points: float | None = None):
        fields = {"grade": grade, "grade_id": grade_id, "locked": not solution,
                  "schema_version": 3, "solution": solution, "task": False}
        if points is not None:
            fields["points"] = points
        return {"nbgrader": fields}

    cells = [
        nbformat.v4.new_markdown_cell(f"# {title}"),
        nbformat.v4.new_code_cell("import sys, os\nsys.path.insert(0, os.path.abspath('..'))\n"
                                  "import torch"),
        nbformat.v4.new_markdown_cell("### Exercise 1.1: Scale a vector\n\n"
                                      "Return `c` times the vector `v`."),
        nbformat.v4.new_code_cell("def scale(v, c):\n    ### BEGIN SOLUTION\n    return c * v\n"
                                  "    ### END SOLUTION\n    raise NotImplementedError()",
                                  metadata=meta("ex1_1_code", grade=False, solution=True)),
        nbformat.v4.new_code_cell("assert torch.equal(scale(torch.ones(2), 3.0), "
                                  "torch.full((2,), 3.0))\nprint('scale looks right')",
                                  metadata=meta("ex1_1", grade=True, solution=False, points=3)),
        nbformat.v4.new_markdown_cell("### Exercise 1.2: One step of power iteration\n\n"
                                      "Return `matvec(v)` normalized, calling `matvec` once."),
        nbformat.v4.new_code_cell("def power_step(matvec, v):\n    ### BEGIN SOLUTION\n"
                                  "    w = matvec(v)\n    return w / torch.linalg.vector_norm(w)\n"
                                  "    ### END SOLUTION\n    raise NotImplementedError()",
                                  metadata=meta("ex1_2_code", grade=False, solution=True)),
        nbformat.v4.new_code_cell("step = power_step(lambda x: 2 * x, torch.tensor([3.0, 4.0]))\n"
                                  "assert torch.allclose(step, torch.tensor([0.6, 0.8]))",
                                  metadata=meta("ex1_2", grade=True, solution=False, points=2)),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}
    return nb


def scaffold(name: str, project: Path, title: str | None = None) -> Path:
    """Write the new assignment `name` into `project`; returns its folder. Refuses a
    name that is not a lowercase identifier, and any file that exists already."""
    if not NAME.fullmatch(name):
        raise AssignmentError(f"assignment name {name!r}: use lowercase letters, digits and "
                              "underscores, starting with a letter (it names a module)")
    folder, reference = project / "assignments" / name, project / "reference" / f"{name}.py"
    for path in (folder, reference):
        if path.exists():
            raise AssignmentError(f"{path} exists already; choose another name")
    words = {"name": name, "title": title or name.replace("_", " ").capitalize()}
    files = {
        folder / "assignment.toml": CONFIG.substitute(words),
        folder / "README.md": Template(README).substitute(words),
        folder / "src" / "__init__.py": "",
        folder / "hidden" / "pytest.ini": PYTEST_INI,
        folder / "hidden" / "conftest.py": HIDDEN_CONFTEST,
        folder / "hidden" / "test_ex1.py": Template(HIDDEN_TEST).substitute(words),
        folder / "visible" / "pytest.ini": PYTEST_INI,
        folder / "visible" / "test_ex1.py": VISIBLE_TEST,
        reference: Template(REFERENCE).substitute(words),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (folder / "master").mkdir()
    nbformat.write(_notebook(words["title"]), folder / "master" / f"{name}.ipynb")
    return folder
