"""Figures: each is kept as its cell left it, drawn (with a CPU to spare) by a fork of
the runner while the notebook goes on, and a figure that cannot be drawn costs its
picture and nothing else (`runner.FigureCollector`)."""

import json
import shutil

import nbformat
import pytest

from autograder import grader
from autograder.assignment import Assignment
from autograder.report import staff_report
from autograder.sandbox import CellStatus, protocol
from autograder.sandbox import session as session_module
from autograder.sandbox.calls import StudentCrash
from autograder.sandbox.protocol import DRAWING_S
from autograder.sandbox.session import NotebookSession
from autograder.submission import CodeCell, Submission
from tests.corpus.build import write
from tests.test_grading_faults import ENGINE, FULL, demo, scores
from tests.test_overlap import grade_watched

FIRST = ("fig, ax = plt.subplots()\n"
         "ax.plot([0, 1, 2], [3, 1, 2], label='kept')\n"
         "ax.set_title('as drawn')\n")
LATER = ("ax.set_title('changed later')\n"
         "ax.lines[0].set_ydata([9, 9, 9])\n"
         "fig.set_facecolor('red')\n")
# A figure with an artist that draws itself by running `draw`.
STUCK = ("import time\n"
         "import matplotlib.artist\n"
         "class Stuck(matplotlib.artist.Artist):\n"
         "    def draw(self, renderer):\n"
         "        {draw}\n"
         "fig = plt.figure()\n"
         "fig.add_artist(Stuck())\n"
         "plt.plot([1, 2], [5, 6])\n")


@pytest.fixture(scope="module")
def assignment():
    return Assignment.load(ENGINE)


def with_cells(*sources: str, at: int | None = None) -> nbformat.NotebookNode:
    """The engine demo with code cells added after its plot (or at position `at`)."""
    nb = demo()
    cells = [nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\n" + sources[0]),
             *(nbformat.v4.new_code_cell(s) for s in sources[1:])]
    position = len(nb.cells) if at is None else at
    nb.cells[position:position] = cells
    return nb


def graded(nb, assignment, tmp_path, name: str, spare_cpu: bool = True):
    """The report, and how many checks ran on a snapshot."""
    report, watched = grade_watched(write(nb, tmp_path / f"{name}.ipynb"), assignment, spare_cpu)
    return report, watched.provisional


@pytest.mark.parametrize("spare_cpu", [True, False], ids=["drawn aside", "drawn in the cell"])
def test_a_picture_shows_the_figure_as_its_cell_left_it(assignment, tmp_path, spare_cpu):
    """A later cell changing a figure that was already shown (its title, its line, its
    colour) changes neither its picture nor its line data: both are of the cell that
    drew it, as in Jupyter, wherever it is drawn."""
    alone, _ = graded(with_cells(FIRST), assignment, tmp_path, "alone", spare_cpu)
    then, _ = graded(with_cells(FIRST, LATER), assignment, tmp_path, "then", spare_cpu)
    changed, _ = graded(with_cells(FIRST + LATER), assignment, tmp_path, "changed", spare_cpu)
    assert [len(r.figures) for r in (alone, then, changed)] == [2, 2, 2]
    assert all(f.png.startswith(b"\x89PNG") for r in (alone, then, changed) for f in r.figures)
    assert then.figures[1].png == alone.figures[1].png
    assert changed.figures[1].png != alone.figures[1].png  # the changes do show when made
    axes = then.figures[1].axes[0]
    assert axes["title"] == "as drawn" and axes["lines"][0]["y"] == [3.0, 1.0, 2.0]
    assert not then.warnings


def test_without_pictures_no_figure_is_drawn_and_its_lines_are_kept(assignment, tmp_path):
    """A grade whose feedback nobody sees (Gradescope shows results.json alone) draws
    nothing, and says nothing of pictures: the plot checks' line data is all it keeps."""
    path = write(with_cells(FIRST), tmp_path / "unseen.ipynb")
    report = grader.grade(path, assignment, pictures=False,
                          runners=grader.RunnerSupply(assignment, spare_cpu=True))
    assert scores(report) == FULL
    assert len(report.figures) == 2 and all(f.png == b"" for f in report.figures)
    axes = report.figures[1].axes[0]
    assert axes["title"] == "as drawn" and axes["lines"][0]["y"] == [3.0, 1.0, 2.0]
    assert not report.warnings
    staff = json.loads(json.dumps(staff_report(report)))  # report.json keeps the lines
    assert [f["file"] for f in staff["figures"]] == [None, None]
    assert staff["figures"][1]["axes"][0]["lines"][0]["y"] == [3.0, 1.0, 2.0]


def test_pictures_past_the_size_kept_are_reported_as_such(assignment, tmp_path, monkeypatch):
    """A picture drawn aside that arrives past the notebook's size budget is left out
    for its size, and the report says that, not that drawing failed."""
    monkeypatch.setattr(session_module, "MAX_FIGURE_BYTES", 1)
    report, _ = graded(with_cells(FIRST), assignment, tmp_path, "big")
    assert scores(report) == FULL
    assert all(f.png == b"" for f in report.figures)
    warning = " ".join(report.warnings)
    assert "figures exceed the size kept" in warning
    assert "could not be drawn" not in warning


@pytest.mark.parametrize("draw", ["time.sleep(10 ** 6)", "raise ValueError('no picture')"],
                         ids=["for ever", "raises"])
def test_a_figure_that_cannot_be_drawn_costs_its_picture_only(assignment, tmp_path, draw):
    """A figure whose artist draws for ever, or raises: its cell, the cells after it and
    every exercise are unaffected, its line data is kept, and the report says its
    picture is missing and why."""
    nb = with_cells(STUCK.format(draw=draw), "after = 41 + 1")
    report, _ = graded(nb, assignment, tmp_path, "stuck")
    assert scores(report) == FULL
    assert all(c.status == CellStatus.OK for c in report.cells), report.cells
    stuck = report.figures[1]
    assert stuck.png == b"" and stuck.axes[0]["lines"][0]["y"] == [5.0, 6.0]
    assert report.figures[0].png.startswith(b"\x89PNG")  # the demo's own plot
    warning = " ".join(report.warnings)
    assert f"could not be drawn (drawing raised an error or took more than {DRAWING_S:.0f} s)" \
        in warning
    assert f"cell(s) {stuck.cell}" in warning


def test_figures_are_drawn_in_the_cell_when_no_fork_can_be_made(assignment, tmp_path):
    """A notebook that spent its process budget (here: took `os.fork` away) still
    gets its pictures, drawn in the cell as before."""
    nb = with_cells("import os\n"
                    "def no_fork():\n"
                    "    raise BlockingIOError(11, 'Resource temporarily unavailable')\n"
                    "os.fork = no_fork\n" + FIRST)
    report, _ = graded(nb, assignment, tmp_path, "noforks")
    assert report.figures[1].png.startswith(b"\x89PNG")
    assert report.figures[1].axes[0]["title"] == "as drawn"


def test_a_snapshot_taken_while_a_figure_is_drawn_serves_its_checks(tmp_path):
    """The runner's socket to a fork still drawing is no reason to refuse a snapshot:
    the exercise after a slow figure is checked beside execution, and the picture
    arrives."""
    measured = shutil.copytree(ENGINE, tmp_path / "engine")
    # Exercise B's cell measured slow: exercise A's checks are worth a snapshot.
    (measured / "costs.json").write_text(json.dumps({"cells": {"exB": 5.0}, "calls": {}}))
    nb = with_cells(STUCK.format(draw="time.sleep(3)"), at=2)  # before exercise A's cells
    report, provisional = graded(nb, Assignment.load(measured), tmp_path, "slow")
    assert provisional > 0, "no check ran on a snapshot"
    assert scores(report) == FULL
    assert all(f.png.startswith(b"\x89PNG") for f in report.figures)
    assert not report.warnings


def test_pictures_sent_late_are_still_taken_before_any_check(assignment, tmp_path,
                                                             monkeypatch):
    """The runner answers `serve` with the pictures still being drawn, within DRAWING_S
    unless held off the CPU. Here that answer comes after the grader's wait without a
    deadline (made 2 s, against a 6 s drawing): a grade has a deadline and waits until
    then, so a check's fork reads its own answer, not the pictures (as it once did,
    and every check of the final state failed), and the picture is kept."""
    monkeypatch.setattr(protocol, "DRAWING_S", 0.0)
    monkeypatch.setattr(session_module, "IO_TIMEOUT_S", 2.0)
    nb = with_cells(STUCK.format(draw="time.sleep(6)"))
    path = write(nb, tmp_path / "late.ipynb")
    report = grader.grade(path, assignment,
                          runners=grader.RunnerSupply(assignment, spare_cpu=True))
    assert scores(report) == FULL, [c.message for e in report.exercises for c in e.checks]
    assert all(f.png.startswith(b"\x89PNG") for f in report.figures)
    assert not report.warnings


def test_a_runner_that_does_not_answer_in_time_is_dropped_not_misread(assignment, tmp_path,
                                                                      monkeypatch):
    """Without a deadline the wait is DRAWING_S + IO_TIMEOUT_S (here 2 s): past it, the
    runner is stopped and the report says so; no later check reads the late answer."""
    monkeypatch.setattr(protocol, "DRAWING_S", 0.0)
    monkeypatch.setattr(session_module, "IO_TIMEOUT_S", 2.0)
    workspace, runner = grader.RunnerSupply(assignment).take()
    source = "import matplotlib.pyplot as plt\n" + STUCK.format(draw="time.sleep(6)")
    notebook = Submission(tmp_path / "late.ipynb", (CodeCell(0, source, "ex_late"),))
    session = NotebookSession(notebook, workspace, grader.policy_for(assignment), runner,
                              draw_aside=True)
    try:
        session.execute()
        assert session.runner is None
        assert any("did not answer after its last cell" in w for w in session.warnings)
        with pytest.raises(StudentCrash, match="not running"):
            session.student()
    finally:
        session.close()
        workspace.remove()
