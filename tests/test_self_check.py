"""The student's self-check: what the release ships for it, `autograder check` run
from the release folder with the engine copy the release holds (in the sandbox on
Linux, and in a plain child Python where Linux's modules are missing, as on macOS
and Windows), and `check()` from inside a running notebook kernel."""

import os
import re
import subprocess
import sys
import tomllib

import nbformat
import pytest

from autograder.assignment import Assignment
from autograder.release import STUDENT_REQUIREMENTS, build_release
from autograder.selfcheck import check_file
from tests.corpus import build
from tests.corpus.build import master, unfilled, write
from tests.corpus.mutants import MUTANTS
from tests.corpus.mutants_hvp import NO_CREATE_GRAPH
from tests.corpus.mutants_power import TWO_MATVECS
from tests.notebooks import ASSIGNMENT, ROOT

# Stands in for macOS and Windows (no Linux-only module, no fork) on a student's own
# machine (none of the staff's packages).
NOT_A_STAFF_LINUX_MACHINE = """import os, sys
for name in ("resource", "fcntl", "nbgrader", "sqlalchemy", "distributed", "dask",
             "playwright", "yaml"):
    sys.modules[name] = None
del os.fork
"""
STAFF_TEXT = re.compile(r"sandbox|landlock|seccomp|cgroup|layer|\buid\b|staff|internal",
                        re.IGNORECASE)
EXERCISE_ROW = re.compile(r"([✓✗]) +(\d+\.\d+) ")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(Assignment.load(ASSIGNMENT), tmp_path_factory.mktemp("release"))


def check(release, nb, tmp_path, portable: bool = False) -> subprocess.CompletedProcess:
    """Run the check as a student would: from the release folder, no PYTHONPATH (or,
    `portable`, only a sitecustomize that takes Linux's modules away)."""
    path = write(nb, release / "notebooks" / f"{tmp_path.name}.ipynb")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if portable:
        (tmp_path / "sitecustomize.py").write_text(NOT_A_STAFF_LINUX_MACHINE)
        env["PYTHONPATH"] = str(tmp_path)
    return subprocess.run([sys.executable, "-m", "autograder", "check", str(path)],
                          cwd=release, env={**env, "OMP_NUM_THREADS": "1"}, check=False,
                          capture_output=True, text=True, timeout=600)


def rows(text: str) -> dict[str, str]:
    """Exercise id -> its mark, from the table a check prints."""
    return {found.group(2): found.group(1) for found in map(EXERCISE_ROW.match,
                                                             text.splitlines()) if found}


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
    # The engine's copy is the engine, file for file (its scaffold's templates mention
    # a `reference` module by design); everything else holds no reference to secrets.
    engine = release / "autograder"
    for path in engine.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (ROOT / "autograder" / path.relative_to(engine)
                                         ).read_bytes(), path
    for path in shipped:
        if path.suffix in {".py", ".toml", ".ipynb", ".ini"} and not path.is_relative_to(engine):
            text = path.read_text()
            assert "import reference" not in text and "from reference" not in text, path
            assert "from fixtures" not in text, path
            assert "BEGIN SOLUTION" not in text, path


def test_the_release_explains_itself_and_needs_no_staff_tool(release):
    readme = (release / "README.md").read_text()
    for needed in ("pip install -r requirements.txt",
                   "python -m autograder check notebooks/01_krylov.ipynb", 'check("2.1")',
                   "3.11", "## Submit", "visible checks only"):
        assert needed in readme, needed
    requirements = (release / "requirements.txt").read_text().split()
    assert requirements == list(STUDENT_REQUIREMENTS)
    names = {re.split(r"[<>=]", r)[0] for r in requirements}
    assert not names & {"nbgrader", "sqlalchemy", "distributed", "dask", "playwright", "pyyaml"}
    engine = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in requirements:  # the engine's own range, where it names the package
        name = re.split(r"[<>=]", requirement)[0]
        ours = [d for d in engine if re.split(r"[<>=]", d)[0] == name]
        assert not ours or ours == [requirement], (requirement, ours)
    project = tomllib.loads((release / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == requirements
    assert project["scripts"]["autograder"] == "autograder.__main__:entry"


def test_a_finished_notebook_passes_every_visible_check(release, tmp_path):
    result = check(release, master(), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "100.0 / 100" in result.stdout, result.stdout
    assert "✗" not in result.stdout
    assert "visible checks only" in result.stdout


def test_the_unfilled_release_is_told_what_to_implement(release, tmp_path):
    result = check(release, unfilled(), tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]  # not every visible check passed
    assert "0.0 / 100" in result.stdout
    assert "hvp_double_backward is not implemented yet" in result.stdout


def two_bugs() -> nbformat.NotebookNode:
    """An HVP without create_graph (1.1), a power iteration that spends two matvecs
    per step (2.1)."""
    return build.variant({"ex1_1_code": NO_CREATE_GRAPH, "ex2_1_code": TWO_MATVECS})


@pytest.mark.parametrize("portable", [False, True], ids=["sandboxed", "portable"])
def test_two_bugs_exit_1_and_name_what_was_observed(release, tmp_path, portable):
    result = check(release, two_bugs(), tmp_path, portable)
    assert result.returncode == 1, result.stderr[-2000:]
    out = result.stdout
    marks = rows(out)
    assert marks["1.1"] == marks["2.1"] == "✗" and marks["0.1"] == marks["3.1"] == "✓", out
    assert "To fix:" in out and "called the matvec 60 times" in out
    assert "running cell 1 of" in result.stderr  # progress while the notebook runs
    assert not STAFF_TEXT.search(out), STAFF_TEXT.search(out)


def test_the_portable_path_grades_the_solution_to_full_marks(release, tmp_path):
    result = check(release, master(), tmp_path, portable=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "100.0 / 100" in result.stdout and "✗" not in result.stdout
    assert not STAFF_TEXT.search(result.stdout)


def test_the_portable_path_survives_a_notebook_that_exits(release, tmp_path):
    result = check(release, build.appended("import os\nos._exit(3)"), tmp_path, portable=True)
    assert result.returncode == 1
    assert "stopped the Python running it (exit code 3)" in result.stdout


@pytest.mark.parametrize("name", ["power_correct_fp64_tensor_history",
                                  "power_bug_two_matvecs_per_step",
                                  "deflation_bug_no_projection"])
def test_both_transports_give_the_same_verdicts(release, name):
    """The same check files, through the sandboxed runner and through the live
    namespace of a child Python: check by check, the same verdicts."""
    mutant = next(m for m in MUTANTS if m.name == name)
    path = write(mutant.build(), release / "notebooks" / f"{name}.ipynb")
    assignment = Assignment.load(release)
    sandboxed = check_file(path, assignment, sandboxed=True)
    live = check_file(path, assignment, sandboxed=False)
    assert sandboxed.verdicts == live.verdicts
    assert len(live.verdicts) == 42
    assert live.passed == (mutant.kind == "correct")


def test_check_from_inside_a_running_kernel(release):
    """A student's kernel, started by Jupyter's own client: check("2.1") runs only
    that exercise's visible checks on the live definitions, without saving or
    re-running anything, in the command line's words."""
    from nbclient import NotebookClient

    nb = build.variant({"ex2_1_code": TWO_MATVECS})
    nb.cells.append(nbformat.v4.new_code_cell(
        'from autograder.selfcheck import check\ncheck("2.1")'))
    nb.cells.append(nbformat.v4.new_code_cell("check(0)"))
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(release / "notebooks")}}).execute()
    one, section = ("".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells[-2:])
    assert rows(one) == {"2.1": "✗"}, one
    assert "called the matvec 60 times" in one and "To fix:" in one
    assert "visible checks only" in one
    assert rows(section) == {"0.1": "✓", "0.2": "✓", "0.3": "✓"}, section


def test_check_outside_a_release_says_so_and_raises_nothing(tmp_path):
    """A check() left in a submission runs in the grader's sandbox, where there is
    no release: it prints why and the notebook goes on."""
    code = (f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\nos.chdir({str(tmp_path)!r})\n"
            "from autograder.selfcheck import check\ncheck()\nprint('went on')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0 and "no assignment.toml" in run.stdout, run.stderr[-1000:]
    assert "went on" in run.stdout


def test_check_without_an_assignment_is_a_clear_error(tmp_path):
    path = write(master(), tmp_path / "lonely.ipynb")
    result = subprocess.run([sys.executable, "-m", "autograder", "check", str(path)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no assignment.toml" in result.stderr


def test_check_of_a_missing_notebook_is_misuse(release):
    result = subprocess.run([sys.executable, "-m", "autograder", "check", "nope.ipynb"],
                            cwd=release, check=False, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "no such notebook file" in result.stderr
