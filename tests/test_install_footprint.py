"""Grading needs only the core dependencies: the staff's tools (nbgrader, which pulls in
JupyterLab, SQLAlchemy, PyYAML, Dask) are extras, and a command that needs one says
which extra to install instead of failing with a traceback."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.corpus.build import write
from tests.notebooks import ROOT

ENGINE = ROOT / "tests" / "engine_assignment"
STAFF = ("nbgrader", "sqlalchemy", "yaml", "distributed", "dask", "playwright")
BLOCK = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


def without_staff_tools(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCK.format(names=STAFF))
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(tmp_path),
                               "OMP_NUM_THREADS": "1"})


def test_the_core_dependencies_hold_no_staff_tool():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("<")[0].split("=")[0].strip() for d in
            project["dependencies"]}
    assert not core & {"nbgrader", "sqlalchemy", "pyyaml", "distributed", "playwright",
                       "nbclient", "ipykernel"}
    extras = project["optional-dependencies"]
    assert {"authoring", "cohort", "dask", "test"} <= set(extras)


def test_a_submission_grades_without_any_staff_tool(tmp_path):
    import nbformat

    nb = nbformat.read(ENGINE / "master" / "demo.ipynb", as_version=4)
    path = write(nb, tmp_path / "alice.ipynb")
    run = without_staff_tools(tmp_path, "grade", str(path), "--out", str(tmp_path / "out"),
                              "--assignment", str(ENGINE))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "6.0 / 6" in run.stdout
    assert (tmp_path / "out" / "results.json").is_file()


def test_a_command_that_needs_an_extra_names_it(tmp_path):
    run = without_staff_tools(tmp_path, "release", str(ENGINE), "--out", str(tmp_path / "r"))
    assert run.returncode == 2
    assert "pip install 'krylov-autograder[authoring]'" in run.stderr
    assert "Traceback" not in run.stderr
