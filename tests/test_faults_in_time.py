"""Faults stay local in time: a hang costs its own exercises, never the grade.

On the engine's demo assignment with tight budgets (a 6 s notebook, 2 s for
each cell after that, 40 s for the whole grade), so that every scenario runs
in seconds: a function that hangs in every call, one that hangs only on the
hidden inputs, one that hangs once the notebook's budget is partly spent, a
hang in a given cell, a hang that ignores the interrupt. Each keeps full
marks on the independent exercises and ends inside the deadline. A grader
killed with SIGKILL mid-checks leaves a valid results.json with the scores
earned so far.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.assignment import Assignment
from autograder.grader import grade
from autograder.sandbox import CellStatus
from tests.corpus.build import variant, write
from tests.corpus.mutants_time import power_iteration_never_returns
from tests.notebooks import ASSIGNMENT

ENGINE = Path(__file__).resolve().parent / "engine_assignment"
FULL = {"A": 3.0, "B": 1.0, "C": 2.0}
TIGHT = {"cell_timeout_s": 4, "total_timeout_s": 6, "late_cell_timeout_s": 2,
         "call_timeout_s": 3, "grade_timeout_s": 40, "checks_reserve_s": 20}
HANG = "while True:\n    pass"


def _with_budgets(folder: Path, budgets: dict) -> Assignment:
    """A copy of the demo assignment in `folder` with these [grading] budgets."""
    root = folder / "engine_assignment"
    shutil.copytree(ENGINE, root, ignore=shutil.ignore_patterns("__pycache__"))
    config = root / "assignment.toml"
    lines = [line for line in config.read_text().splitlines()
             if line.split("=")[0].strip() not in budgets]
    at = lines.index("[grading]") + 1
    lines[at:at] = [f"{key} = {value}" for key, value in budgets.items()]
    config.write_text("\n".join(lines) + "\n")
    return Assignment.load(root)


@pytest.fixture(scope="module")
def tight(tmp_path_factory) -> Assignment:
    return _with_budgets(tmp_path_factory.mktemp("tight"), TIGHT)


def demo() -> nbformat.NotebookNode:
    return nbformat.read(ENGINE / "master" / "demo.ipynb", as_version=4)


def square(body: str) -> dict:
    return {"exA_code": "def square(x):\n" + "".join(f"    {line}\n"
                                                     for line in body.splitlines())}


def given_cell(nb: nbformat.NotebookNode, code: str, at: int = 2) -> nbformat.NotebookNode:
    nb.cells.insert(at, nbformat.v4.new_code_cell(code))
    return nb


def graded(nb, assignment, tmp_path):
    started = time.monotonic()
    report = grade(write(nb, tmp_path / "submission.ipynb"), assignment, tmp_path / "out")
    return report, time.monotonic() - started


def scores(report) -> dict[str, float]:
    return {e.id: e.score for e in report.exercises}


def cell(report, index: int):
    return next(c for c in report.cells if c.index == index)


def test_a_function_that_hangs_in_every_call_costs_only_its_exercise(tight, tmp_path):
    report, took = graded(variant(square(HANG), demo()), tight, tmp_path)
    assert scores(report) == {**FULL, "A": 0.0}
    assert took < TIGHT["grade_timeout_s"]
    # The grade cell that calls it was cut at its budget; the checks after the first
    # timeout got a fifth of theirs.
    assert cell(report, 3).status == CellStatus.TIMEOUT
    assert "ran past 4 s and was interrupted" in cell(report, 3).error
    messages = [c.message for e in report.exercises for c in e.checks if e.id == "A"]
    assert "did not finish within 3 s" in messages[0]
    assert "a shorter budget, since an earlier call of square did not finish" in messages[1]


def test_a_function_that_hangs_only_on_the_hidden_inputs(tight, tmp_path):
    body = "import torch\nif isinstance(x, torch.Tensor):\n    while True:\n        pass\nreturn x * x"
    report, took = graded(variant(square(body), demo()), tight, tmp_path)
    assert cell(report, 3).status == CellStatus.OK  # the notebook's own use is fine
    assert scores(report) == {**FULL, "A": FULL["A"] / 3}  # the tensor check (weight 2) lost
    assert took < TIGHT["grade_timeout_s"]


def test_a_hang_once_the_notebook_budget_is_partly_spent_keeps_later_definitions(
        tight, tmp_path):
    """3 s of the notebook's 6 s go to a slow given cell; square's grade cell then hangs
    and is cut where the budget runs out; the cells after it still run, 2 s each."""
    nb = given_cell(variant(square(HANG), demo()), "import time\ntime.sleep(3)")
    report, took = graded(nb, tight, tmp_path)
    assert scores(report) == {**FULL, "A": 0.0}
    hung = cell(report, 4)  # the grade cell of A, after the inserted one
    assert hung.status == CellStatus.TIMEOUT
    assert "the notebook's total budget of 6 s ran out" in hung.error
    assert all(c.status == CellStatus.OK for c in report.cells if c.index > 4)
    assert took < TIGHT["grade_timeout_s"]


def test_cells_after_the_budget_are_cut_only_when_slow(tight, tmp_path):
    """Two hanging given cells spend the notebook's whole budget (4 s, then the 2 s
    left); later quick cells complete, a later slow one is cut at the short budget,
    and the cell list says why."""
    nb = given_cell(given_cell(demo(), HANG), HANG)
    nb.cells.insert(7, nbformat.v4.new_code_cell("import time\ntime.sleep(30)"))
    report, took = graded(nb, tight, tmp_path)
    assert scores(report) == FULL
    assert cell(report, 2).status == cell(report, 3).status == CellStatus.TIMEOUT
    assert "the notebook's total budget of 6 s ran out" in cell(report, 3).error
    slow = cell(report, 7)
    assert slow.status == CellStatus.TIMEOUT and "each later cell gets 2 s" in slow.error
    assert took < TIGHT["grade_timeout_s"]


def test_a_hang_that_ignores_the_interrupt_is_killed_and_replayed_without(tight, tmp_path):
    stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" + HANG
    report, took = graded(given_cell(demo(), stubborn), tight, tmp_path)
    assert scores(report) == FULL
    assert "did not stop when interrupted" in cell(report, 2).error
    assert took < TIGHT["grade_timeout_s"]


def test_a_hang_in_a_check_cannot_outlast_the_grading_deadline(tmp_path):
    """Calls may take 30 s, but the grade has 15 s: the hanging call is cut at the
    deadline, the check after it is reported as not run, and what A and B earned
    before is kept."""
    budgets = {**TIGHT, "call_timeout_s": 30, "grade_timeout_s": 15, "checks_reserve_s": 8}
    assignment = _with_budgets(tmp_path, budgets)
    nb = variant({"exC_code": "def apply_twice(op, v):\n" + "".join(
        f"    {line}\n" for line in HANG.splitlines())}, demo())
    report, took = graded(nb, assignment, tmp_path)
    assert took < budgets["grade_timeout_s"] + 5
    assert scores(report) == {**FULL, "C": 0.0}
    first, second = next(e for e in report.exercises if e.id == "C").checks
    assert first.ran and "(the grading deadline was reached)" in first.message
    assert not second.ran and "grading deadline was reached" in second.message
    assert report.complete  # the grade itself finished; only C's checks ran out of time


GRADER_SIDE_WORK = '''"""A check whose own (trusted) work grows with what the notebook bound."""

from autograder.testing import check


@check(exercise="B", weight=1)
def test_answer_is_a_modest_size(student):
    """work proportional to answer"""
    total = 0
    for i in range(int(student.get("answer")) * 1000):  # materializing a Hessian, say
        total += i
    assert total >= 0
'''


def test_grader_side_work_on_a_student_sized_object_stops_at_the_deadline(tmp_path):
    """The notebook binds an enormous `answer`; a check computes on it in the grader,
    where the runner's budgets do not reach. An alarm at the grade's deadline fails
    that check with a reason, and the checks that ran before keep their points."""
    budgets = {**TIGHT, "grade_timeout_s": 15, "checks_reserve_s": 8}
    assignment = _with_budgets(tmp_path, budgets)
    (assignment.root / "hidden" / "test_zz_grader_work.py").write_text(GRADER_SIDE_WORK)
    nb = variant({"exB": "answer = 10**9"}, demo())
    report, took = graded(nb, assignment, tmp_path)
    assert took < budgets["grade_timeout_s"] + 5
    heavy = next(c for e in report.exercises for c in e.checks if c.name.startswith("work"))
    assert heavy.ran and not heavy.passed and "grading deadline was reached" in heavy.message
    assert scores(report) == {**FULL, "B": 0.0}


def test_killing_the_grader_mid_checks_leaves_valid_partial_results(tight, tmp_path):
    slow = {"exC_code": "def apply_twice(op, v):\n    import time\n    time.sleep(2)\n"
                        "    return op(op(v))"}
    path = write(variant(slow, demo()), tmp_path / "s.ipynb")
    out = tmp_path / "out"
    grader = subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(path),
                               "--assignment", str(tight.root), "--out", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    results = out / "results.json"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            # Once A's two checks and B's have run, the grader is in C's slow checks.
            if results.is_file() and "3 of 5 checks" in results.read_text():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the grader never reported 3 checks")
    finally:
        os.killpg(grader.pid, signal.SIGKILL)
        grader.wait()
    data = json.loads(results.read_text())
    assert "Grading was cut short" in data["output"]
    tests = {t["number"]: t for t in data["tests"]}
    assert tests["A"]["score"] == FULL["A"] and tests["B"]["score"] == FULL["B"]
    assert tests["C"]["score"] == 0.0 and "not run" in tests["C"]["output"]


def test_a_krylov_power_iteration_that_never_returns_costs_only_what_builds_on_it(tmp_path):
    """The issue's case: sections 0, 1, 4, 5, 6 keep full marks, and the grade ends
    well inside Gradescope's 10 minutes (its budgets scale from costs.json)."""
    krylov = Assignment.load(ASSIGNMENT)
    assert krylov.costs.cells, "measure the master first: autograder costs"
    started = time.monotonic()
    report = grade(write(power_iteration_never_returns(), tmp_path / "hang.ipynb"), krylov)
    took = time.monotonic() - started
    depends = {"2.1", "2.2", "2.3", "3.1", "3.2"}
    for exercise in report.exercises:
        if exercise.id in depends:
            assert exercise.score < exercise.max_score, exercise.id
        else:
            assert exercise.score == exercise.max_score, (exercise.id, [
                c.message for c in exercise.checks if not c.passed])
    assert took < 300, f"graded in {took:.0f} s"
