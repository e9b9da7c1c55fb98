"""The student's self-check: what the release ships for it, and `autograder check`
run from the release folder with the engine copy the release holds."""

import os
import subprocess
import sys
import tomllib

import pytest

from autograder.assignment import Assignment
from autograder.release import build_release
from tests.corpus.build import master, unfilled, write
from tests.notebooks import ASSIGNMENT


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(Assignment.load(ASSIGNMENT), tmp_path_factory.mktemp("release"))


def check(release, nb, tmp_path) -> subprocess.CompletedProcess:
    """Run the check as a student would: from the release folder, no PYTHONPATH."""
    path = write(nb, release / "notebooks" / f"{tmp_path.name}.ipynb")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "autograder", "check", str(path)],
                          cwd=release, env={**env, "OMP_NUM_THREADS": "1"}, check=False,
                          capture_output=True, text=True, timeout=600)


def test_the_release_ships_the_engine_the_visible_checks_and_their_config(release):
    assert (release / "autograder" / "sandbox" / "runner.py").is_file()
    assert sorted(p.name for p in (release / "checks").glob("test_*.py")) == sorted(
        p.name for p in (ASSIGNMENT / "visible").glob("test_*.py"))
    config = tomllib.loads((release / "assignment.toml").read_text())
    assert config["grading"]["visible"] == "checks" and "hidden" not in config["grading"]
    assert [e["id"] for e in config["exercises"]] == [
        e.id for e in Assignment.load(ASSIGNMENT).exercises]
    assert Assignment.load(release).visible == release / "checks"


def test_the_release_holds_no_hidden_test_and_no_reference(release):
    hidden = ASSIGNMENT / "hidden"
    # Hidden and visible checks share file names (one per section): compare contents.
    shipped = list(release.rglob("*"))
    assert "krylov_checks.py" not in {p.name for p in shipped}
    hidden_files = {p.read_bytes() for p in hidden.glob("*.py")}
    assert not [p for p in shipped if p.is_file() and p.read_bytes() in hidden_files]
    assert not [p for p in shipped if p.name in {"reference", "fixtures", "hidden", "master"}]
    for path in shipped:
        if path.suffix in {".py", ".toml", ".ipynb", ".ini"}:
            text = path.read_text()
            assert "import reference" not in text and "from reference" not in text, path
            assert "from fixtures" not in text, path
            assert "BEGIN SOLUTION" not in text, path


def test_a_finished_notebook_passes_every_visible_check(release, tmp_path):
    result = check(release, master(), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "100.0 / 100" in result.stdout, result.stdout
    assert "✗" not in result.stdout
    assert "visible checks only" in result.stdout


def test_the_unfilled_release_is_told_what_to_implement(release, tmp_path):
    result = check(release, unfilled(), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0.0 / 100" in result.stdout
    assert "hvp_double_backward is not implemented yet" in result.stdout


def test_check_without_an_assignment_is_a_clear_error(tmp_path):
    path = write(master(), tmp_path / "lonely.ipynb")
    result = subprocess.run([sys.executable, "-m", "autograder", "check", str(path)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no assignment.toml" in result.stderr
