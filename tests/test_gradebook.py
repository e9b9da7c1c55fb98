"""The nbgrader gradebook export: read back with nbgrader's own API and CLI."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy import text

from autograder.assignment import Assignment
from autograder.cohort.gradebook import export_gradebook, gradebook_id
from autograder.outcome import CohortEntry
from autograder.release import release_notebook
from tests.notebooks import ASSIGNMENT, ROOT

DEMO = ROOT / "tests" / "engine_assignment"
ODD = "Zoë O'Brien-Łukasz 李 (2nd)"
TABLES = ("student", "assignment", "notebook", "base_cell", "grade_cells", "solution_cells",
          "source_cell", "submitted_assignment", "submitted_notebook", "grade", "comment")


def _cohort(assignment: Assignment) -> list[CohortEntry]:
    """One of each status; the duplicate and error rows carry scores that must not land."""
    ids = [e.id for e in assignment.exercises]
    full = {e.id: e.points for e in assignment.exercises}
    partial = {i: (full[i] / 2 if n % 2 else 0.0) for n, i in enumerate(ids)}
    del partial[ids[-1]]  # an exercise the entry does not mention scores 0
    return [
        CohortEntry("alice", "alice.ipynb", "graded", score=sum(full.values()), exercises=full),
        CohortEntry(ODD, "odd.ipynb", "graded", score=sum(partial.values()), exercises=partial),
        CohortEntry("bob", "bob.txt", "rejected", reason="not a notebook",
                    exercises={ids[0]: 1.0}),  # stray points: a rejection still scores 0
        CohortEntry("alice", "alice (1).ipynb", "duplicate", score=1.0, exercises={ids[0]: 1.0}),
        CohortEntry("dave", "dave.ipynb", "error", reason="grader fault", exercises=full),
    ]


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gradebook.db'}"


def _counts(url: str) -> dict[str, int]:
    with Gradebook(url) as gb:
        return {t: gb.db.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TABLES}


def _expected(entry: CohortEntry, assignment: Assignment) -> dict[str, float]:
    if entry.status == "rejected":
        return {e.grade_id: 0.0 for e in assignment.exercises}
    return {e.grade_id: entry.exercises.get(e.id, 0.0) for e in assignment.exercises}


@pytest.mark.parametrize("root", [ASSIGNMENT, DEMO], ids=["krylov_hessian", "engine_demo"])
def test_export_writes_what_nbgrader_reads_back(root, tmp_path):
    assignment = Assignment.load(root)
    entries = _cohort(assignment)
    url = _url(tmp_path)
    assert export_gradebook(entries, assignment, url) == 3
    master = nbformat.read(assignment.master, as_version=4)
    solutions = {c.metadata.nbgrader["grade_id"] for c in master.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    with Gradebook(url) as gb:
        assert [a.name for a in gb.assignments] == [assignment.name]
        notebook = gb.find_notebook(assignment.master.stem, assignment.name)
        assert {c.name: c.max_score for c in notebook.grade_cells} == \
            {e.grade_id: e.points for e in assignment.exercises}
        assert notebook.max_score == sum(e.points for e in assignment.exercises)
        assert {c.name for c in notebook.solution_cells} == solutions
        assert {s.id for s in gb.students} == {"alice", gradebook_id(ODD), "bob"}
        for entry in entries[:3]:
            submission = gb.find_submission(assignment.name, gradebook_id(entry.student))
            scores = _expected(entry, assignment)
            nb = gb.find_submission_notebook(assignment.master.stem, assignment.name,
                                             gradebook_id(entry.student))
            assert {g.name: g.auto_score for g in nb.grades} == pytest.approx(scores)
            assert not any(g.needs_manual_grade for g in nb.grades)
            assert submission.score == pytest.approx(sum(scores.values()))
            assert submission.max_score == notebook.max_score
        assert gb.find_submission(assignment.name, "bob").score == 0.0
        assert gb.find_submission(assignment.name, "alice").score == \
            pytest.approx(entries[0].score)  # the duplicate did not overwrite her
        with pytest.raises(MissingEntry):
            gb.find_student("dave")


def test_reexport_updates_in_place_and_keeps_manual_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.defpath)  # a new gradebook needs no `alembic` executable
    assignment = Assignment.load(DEMO)
    entries = _cohort(assignment)
    url = _url(tmp_path)
    export_gradebook(entries, assignment, url)
    first = _counts(url)
    assert export_gradebook(entries, assignment, url) == 3
    assert _counts(url) == first
    with Gradebook(url) as gb:  # a TA overrides one cell in formgrader
        grade = gb.find_grade("exA", "demo", assignment.name, "bob")
        grade.manual_score = 2.5
        gb.db.commit()
    entries[1].exercises = {"A": 3.0, "B": 1.0, "C": 0.5}  # ODD's score changed on regrade
    export_gradebook(entries, assignment, url)
    assert _counts(url) == first
    with Gradebook(url) as gb:
        assert gb.find_submission(assignment.name, gradebook_id(ODD)).score == pytest.approx(4.5)
        assert gb.find_grade("exC", "demo", assignment.name, gradebook_id(ODD)).auto_score == 0.5
        bob = gb.find_grade("exA", "demo", assignment.name, "bob")
        assert (bob.manual_score, bob.auto_score, bob.needs_manual_grade) == (2.5, 0.0, True)
        assert gb.find_submission(assignment.name, "bob").score == 2.5


def test_nbgrader_commands_read_the_gradebook(tmp_path):
    """`nbgrader export` (the CSV staff download) and `generate_feedback` (the
    GetGrades lookups formgrader's grading view relies on) against the export."""
    assignment = Assignment.load(DEMO)
    entries = _cohort(assignment)
    course = tmp_path / "course"
    course.mkdir()
    url = f"sqlite:///{course / 'gradebook.db'}"
    export_gradebook(entries, assignment, url)
    # formgrader shows a submission from autograded/<student>/<assignment>/<notebook>.ipynb
    nb = release_notebook(assignment)
    for student in ("alice", ODD):
        folder = course / "autograded" / gradebook_id(student) / assignment.name
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / assignment.master.name)
    env = {**os.environ, "PYTHONUTF8": "1"}  # nbgrader writes the CSV in the locale's encoding
    config = [f"--CourseDirectory.root={course}", f"--CourseDirectory.db_url={url}"]

    def nbgrader(*args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "nbgrader", *args, *config], check=False,
                                cwd=course, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]

    nbgrader("export", "--to", str(course / "grades.csv"))
    with open(course / "grades.csv", encoding="utf-8", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"alice", gradebook_id(ODD), "bob"}
    for entry in entries[:3]:
        row = rows[gradebook_id(entry.student)]
        assert row["assignment"] == assignment.name
        assert float(row["score"]) == pytest.approx(sum(_expected(entry, assignment).values()))
        assert float(row["max_score"]) == 6.0

    nbgrader("generate_feedback", assignment.name)  # fails on any grade or comment row missing
    for entry in entries[:2]:
        html = (course / "feedback" / gradebook_id(entry.student) / assignment.name /
                "demo.html").read_text(
            encoding="utf-8")
        scores = _expected(entry, assignment)
        assert f"demo (Score: {round(sum(scores.values()), 2)} / 6.0)" in html
        for exercise in assignment.exercises:
            assert re.search(rf'href="#{exercise.grade_id}">[^<]*</a> \(Score: '
                             rf'{round(scores[exercise.grade_id], 2)} / {exercise.points}\)', html)
