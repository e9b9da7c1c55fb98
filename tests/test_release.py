"""The student release: generated reproducibly from the master, the same as
nbgrader's own generate_assignment, shaped as the seed shows it, and it runs
with every exercise stopping at its own stub."""

import filecmp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.assignment import Assignment, AssignmentError
from autograder.release import build_release, release_notebook
from tests.notebooks import ASSIGNMENT, MASTER, SHARED, errors, execute, grade_id

SEED = SHARED / "seed" / "000_bc8304b623cb18b3.txt"
STUDENT_FUNCTIONS = ["hvp_double_backward", "hvp_jvp_of_grad", "hvp_finite_difference",
                     "power_iteration", "power_iteration_deflated", "lanczos_no_reorth",
                     "lanczos_track_orth"]


@pytest.fixture(scope="module")
def assignment():
    return Assignment.load(ASSIGNMENT)


@pytest.fixture(scope="module")
def release_dir(assignment, tmp_path_factory):
    return build_release(assignment, tmp_path_factory.mktemp("release"))


def _code(nb):
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_release_layout_is_src_beside_the_notebook_folder(release_dir):
    assert (release_dir / "src" / "tests.py").is_file()
    data = release_dir / "src" / "mnist_7x7.npz"
    assert data.is_file() and not data.is_symlink()
    assert (release_dir / "notebooks" / "01_krylov.ipynb").is_file()
    assert not list(release_dir.rglob("__pycache__"))


def test_release_is_reproducible(assignment, release_dir, tmp_path):
    again = build_release(assignment, tmp_path)
    comparison = filecmp.dircmp(release_dir, again)
    stack = [comparison]
    while stack:
        cmp = stack.pop()
        assert not cmp.left_only and not cmp.right_only
        _, mismatch, error = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files,
                                              shallow=False)
        assert not mismatch and not error, mismatch
        stack.extend(cmp.subdirs.values())


def test_release_has_no_solutions_and_the_seeds_stubs(assignment):
    nb = release_notebook(assignment)
    code = _code(nb)
    assert "SOLUTION" not in code
    master = _code(nbformat.read(MASTER, as_version=4))
    solution_pattern = r"### BEGIN SOLUTION\n(.*?)### END SOLUTION"
    solution_lines = {ln.strip() for region in re.findall(solution_pattern, master, re.DOTALL)
                      for ln in region.splitlines()}
    given_lines = {ln.strip() for ln in re.sub(solution_pattern, "", master, flags=re.DOTALL).splitlines()}
    release_lines = {ln.strip() for ln in code.splitlines()}
    assert len(solution_lines - given_lines) > 40
    assert not (solution_lines - given_lines) & release_lines
    for name in STUDENT_FUNCTIONS:
        body = re.search(rf"def {name}\(.*?\):\n(.*?)(?=\n\S|\Z)", code, re.DOTALL).group(1)
        lines = [ln.strip() for ln in body.strip().splitlines()
                 if not ln.strip().startswith(("'''", "#")) or "YOUR CODE HERE" in ln]
        assert lines[-2:] == ["# YOUR CODE HERE", "raise NotImplementedError()"], (name, body)
    for cell in nb.cells:
        assert cell.get("outputs", []) == [] and cell.get("execution_count") is None


@pytest.mark.skipif(not SEED.exists(), reason="the seed text is not beside this checkout")
def test_release_keeps_every_fill_in_line_of_the_seed(assignment):
    code = {ln.strip() for ln in _code(release_notebook(assignment)).splitlines()}
    seed_fill_ins = [ln.strip() for ln in SEED.read_text(encoding="utf-8").splitlines()
                     if re.match(r"\s*\w+ = None( # YOUR CODE HERE.*)?$", ln)]
    assert len(seed_fill_ins) == 7  # op_norm, fro_norm, x_hat, eps32, eps64, ritz_init/_trained
    for line in seed_fill_ins:
        assert line in code, line


def test_release_matches_nbgrader_generate_assignment(assignment, tmp_path):
    course = tmp_path / "course"
    source = course / "source" / assignment.name
    source.mkdir(parents=True)
    shutil.copy(assignment.master, source / assignment.master.name)
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.ClearSolutions.code_stub = {{'python': {assignment.code_stub!r}}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", assignment.name, "--force"],
        cwd=course, check=False, capture_output=True, text=True, timeout=300,
        # nbgrader shells out to `alembic` from the environment's bin folder.
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = nbformat.read(course / "release" / assignment.name / assignment.master.name, 4)
    ours = release_notebook(assignment)
    assert len(theirs.cells) == len(ours.cells)
    for mine, other in zip(ours.cells, theirs.cells):
        assert mine.cell_type == other.cell_type
        assert mine.source == other.source
        assert mine.metadata.get("nbgrader") == other.metadata.get("nbgrader")


def test_bad_assignment_folder_is_a_clear_error(tmp_path):
    with pytest.raises(AssignmentError, match="no assignment.toml"):
        Assignment.load(tmp_path)
    (tmp_path / "assignment.toml").write_text('name = "x"\nmaster = "missing.ipynb"\n[release]\n')
    with pytest.raises(AssignmentError, match="master notebook"):
        Assignment.load(tmp_path)
    (tmp_path / "assignment.toml").write_text("name = \n")
    with pytest.raises(AssignmentError):
        Assignment.load(tmp_path)


def test_release_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "autograder", "release", str(ASSIGNMENT),
                             "--out", str(tmp_path)], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "krylov_hessian" / "notebooks" / "01_krylov.ipynb").is_file()
    bad = subprocess.run([sys.executable, "-m", "autograder", "release", str(tmp_path)],
                         check=False, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "assignment.toml" in bad.stderr


def test_release_stops_at_each_exercise_and_nowhere_else(release_dir):
    path = release_dir / "notebooks" / "01_krylov.ipynb"
    nb = execute(nbformat.read(path, as_version=4), path.parent)
    failed = errors(nb)
    stray = {i: (e.ename, e.evalue) for i, e in failed.items()
             if e.ename not in ("NotImplementedError", "AssertionError")}
    assert not stray, stray
    for index, error in failed.items():
        if error.ename == "AssertionError":  # only the seed's own "fill me in" guards
            cell = nb.cells[index]
            assert cell.metadata["nbgrader"]["solution"], cell.source[:200]
            traceback = re.sub(r"\x1b\[[0-9;]*m", "", "".join(error.traceback))
            assert "is not None" in traceback, traceback[-500:]
    graded = {grade_id(c) for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    stopped = {grade_id(nb.cells[i]) for i in failed}
    assert graded <= stopped, graded - stopped
