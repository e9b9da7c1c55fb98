"""`autograder new` writes an assignment that validates and grades out of the box, and
`autograder validate` reports each way an author can break one."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def autograder(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A fresh project with one scaffolded assignment, validated once."""
    project = tmp_path_factory.mktemp("project")
    run = autograder("new", "pendulum", "--project", str(project), "--title", "Pendulums")
    assert run.returncode == 0, run.stderr
    return project


def copy(made: Path, tmp_path: Path) -> Path:
    """A copy of the made project to break; returns the assignment folder."""
    shutil.copytree(made, tmp_path / "project", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "project" / "assignments" / "pendulum"


def test_the_scaffold_validates_and_records_its_costs(made):
    folder = made / "assignments" / "pendulum"
    run = autograder("validate", str(folder))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "✗" not in run.stdout and "the assignment is ready" in run.stdout
    assert "1.1 Scale a vector: visible" in run.stdout and "1.2 One step" in run.stdout
    assert (folder / "costs.json").is_file()
    assert (made / "reference" / "pendulum.py").is_file()


def test_the_scaffold_refuses_a_bad_name_and_an_existing_one(made):
    assert "lowercase letters" in autograder("new", "Bad-Name", "--project", str(made)).stderr
    again = autograder("new", "pendulum", "--project", str(made))
    assert again.returncode == 2 and "exists already" in again.stderr


def test_a_typo_key_is_reported(made, tmp_path):
    folder = copy(made, tmp_path)
    config = folder / "assignment.toml"
    config.write_text(config.read_text().replace('name = "Scale a vector"',
                                                 'name = "Scale a vector"\nvisiblity = "hidden"'))
    run = autograder("validate", str(folder))
    assert run.returncode == 2 and "did you mean 'visibility'?" in run.stderr


def test_a_missing_pytest_ini_is_reported(made, tmp_path):
    folder = copy(made, tmp_path)
    (folder / "hidden" / "pytest.ini").unlink()
    run = autograder("validate", str(folder))
    assert run.returncode == 2 and "has no pytest.ini" in run.stderr


def test_a_hidden_file_in_the_release_is_reported(made, tmp_path):
    folder = copy(made, tmp_path)
    shutil.copy(folder / "hidden" / "test_ex1.py", folder / "src" / "answers_to_check.py")
    run = autograder("validate", str(folder))
    assert run.returncode == 1
    assert "✗ no hidden or reference file reaches the release" in run.stdout
    assert "src/answers_to_check.py is a copy of" in run.stdout


def test_a_budget_that_cannot_fit_is_reported(made, tmp_path):
    folder = copy(made, tmp_path)
    config = folder / "assignment.toml"
    config.write_text(config.read_text().replace("total_timeout_s = 120", "total_timeout_s = 500")
                      .replace("grade_timeout_s = 300", "grade_timeout_s = 900"))
    run = autograder("validate", str(folder))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "✗ the budgets fit Gradescope's 600 s limit" in run.stdout


def test_a_master_that_loses_points_is_reported_and_its_costs_not_recorded(made, tmp_path):
    folder = copy(made, tmp_path)
    (folder / "costs.json").unlink(missing_ok=True)
    reference = folder.parent.parent / "reference" / "pendulum.py"
    reference.write_text(reference.read_text().replace("return c * v", "return c * v + 1"))
    run = autograder("validate", str(folder))
    assert run.returncode == 1
    assert "✗ the master scores full marks on the hidden suite" in run.stdout
    assert "scale(v, -2.5) is 1 away" in run.stdout
    assert not (folder / "costs.json").exists()


def test_a_grade_cell_no_exercise_names_is_reported(made, tmp_path):
    folder = copy(made, tmp_path)
    config = folder / "assignment.toml"
    text = config.read_text()
    config.write_text(text[:text.index("[[exercises]]")])
    run = autograder("validate", str(folder))
    assert run.returncode == 1
    assert "grade cell ex1_1 (3 points) is no exercise's" in run.stdout
