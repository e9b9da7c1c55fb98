"""Generate the student release of an assignment from its master notebook.

The notebook goes through nbgrader's own preprocessors, in the order
`nbgrader generate_assignment` runs them, minus the steps that need a
course database (SaveCells) or header/test-template files we do not use.
A test checks that the result matches the real `nbgrader generate_assignment`.
Output is byte-for-byte reproducible: same master, same release.
"""

import json
import shutil
from dataclasses import fields
from pathlib import Path

import nbformat
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)
from traitlets.config import Config

from . import ENGINE
from .assignment import Assignment
from .files import copy_release_files, copy_tree
from .render import Verbatim, render_markdown

# What the notebook and the self-check import, nothing of the staff's tools (nbgrader,
# sqlalchemy, dask, playwright, pyyaml); the same ranges as the engine's pyproject.toml.
STUDENT_REQUIREMENTS = ("torch>=2.4,<2.15", "numpy>=1.26", "matplotlib>=3.8", "nbformat>=5.9",
                        "ipython>=8", "pytest>=8", "jinja2>=3.1")
MIN_PYTHON = "3.11"  # tomllib and enum.StrEnum


def nbgrader_config(assignment: Assignment) -> Config:
    """The nbgrader settings this assignment's release depends on."""
    config = Config()
    config.ClearSolutions.code_stub = {"python": assignment.code_stub}
    return config


def release_notebook(assignment: Assignment) -> nbformat.NotebookNode:
    """The master notebook with solutions, outputs and hidden tests removed."""
    nb = nbformat.read(assignment.master, as_version=nbformat.NO_CONVERT)
    config = nbgrader_config(assignment)
    resources: dict = {}
    steps = [LockCells, ClearSolutions, ClearOutput, CheckCellMetadata, ComputeChecksums,
             ClearHiddenTests, ClearMarkScheme, ComputeChecksums, CheckCellMetadata]
    for step in steps:
        nb, resources = step(config=config).preprocess(nb, resources)
    return nb


def build_release(assignment: Assignment, out_dir: str | Path) -> Path:
    """Write the student folder: the included paths plus the stripped notebook.

    Symlinks are copied as the files they point to (the shipped data file
    lives in fixtures/), and caches are left out. Returns the folder.
    """
    target = Path(out_dir) / assignment.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    copy_release_files(assignment.root, assignment.release_include, target)
    notebook_dir = target / assignment.release_notebook_dir
    notebook_dir.mkdir()
    nbformat.write(release_notebook(assignment), notebook_dir / assignment.master.name)
    if assignment.visible is not None:
        _ship_self_check(assignment, target)
    return target


def _ship_self_check(assignment: Assignment, target: Path) -> None:
    """What `python -m autograder check notebooks/NAME.ipynb` needs in the release:
    the engine, the visible suite (as checks/), a config naming only those, and
    what explains and installs them (README.md, requirements.txt, pyproject.toml)."""
    copy_tree(ENGINE, target / "autograder")
    copy_tree(assignment.visible, target / "checks")
    (target / "assignment.toml").write_text(release_config(assignment), encoding="utf-8")
    (target / "README.md").write_text(release_readme(assignment), encoding="utf-8")
    (target / "requirements.txt").write_text("\n".join(STUDENT_REQUIREMENTS) + "\n",
                                             encoding="utf-8")
    (target / "pyproject.toml").write_text(release_pyproject(assignment), encoding="utf-8")


def release_readme(assignment: Assignment) -> str:
    """The release's README.md: install, self-check, its limits, submitting."""
    notebook = f"{assignment.release_notebook_dir}/{assignment.master.name}"
    return render_markdown("release_readme.md.j2", title=assignment.title,
                           notebook=Verbatim(notebook), python=MIN_PYTHON,
                           requirements=[Verbatim(r) for r in STUDENT_REQUIREMENTS],
                           exercises=[{"id": e.id, "name": e.name}
                                      for e in assignment.exercises])


def release_pyproject(assignment: Assignment) -> str:
    """`pip install .` of the release: the engine, as the `autograder` command."""
    name = "".join(c if c.isalnum() else "-" for c in assignment.name) + "-selfcheck"
    requirements = ", ".join(json.dumps(r) for r in STUDENT_REQUIREMENTS)
    return "\n".join([
        "# Written by `autograder release`: `pip install .` gives the `autograder` command.",
        "[build-system]", 'requires = ["setuptools>=68"]',
        'build-backend = "setuptools.build_meta"', "", "[project]",
        f"name = {json.dumps(name)}", 'version = "1.0"',
        f'requires-python = ">={MIN_PYTHON}"', f"dependencies = [{requirements}]", "",
        "[project.scripts]", 'autograder = "autograder.__main__:entry"', "",
        "[tool.setuptools.packages.find]", 'include = ["autograder*"]', "",
        "[tool.setuptools.package-data]", 'autograder = ["templates/*"]', ""])


def release_config(assignment: Assignment) -> str:
    """The release's assignment.toml: its own notebook as master, no hidden suite."""
    def string(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string

    budgets = assignment.budgets
    lines = ["# Written by `autograder release`: the self-check's configuration.",
             f"name = {string(assignment.name)}", f"title = {string(assignment.title)}",
             f"master = {string(assignment.release_notebook_dir + '/' + assignment.master.name)}",
             "", "[release]",
             f"include = [{', '.join(string(i) for i in assignment.release_include)}]",
             f"notebook_dir = {string(assignment.release_notebook_dir)}",
             "", "[grading]", 'visible = "checks"',
             *(f"{f.name} = {getattr(budgets, f.name)!r}" for f in fields(budgets))]
    for exercise in assignment.exercises:
        lines += ["", "[[exercises]]", f"id = {string(exercise.id)}",
                  f"grade_id = {string(exercise.grade_id)}", f"name = {string(exercise.name)}",
                  f"visibility = {string(exercise.visibility)}"]
    return "\n".join(lines) + "\n"
