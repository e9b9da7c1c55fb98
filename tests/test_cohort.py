"""Cohort grading: every input layout, exactly-once outputs, resume after kill -9,
changed submissions and --regrade, on the engine demo assignment (fast)."""

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.assignment import Assignment
from autograder.cohort.inputs import CohortInputError, find_inputs
from autograder.cohort.pool import Task, feedback_folder, grade_cohort, run_parallel
from autograder.outcome import CohortEntry
from autograder.release import release_notebook
from tests.corpus.build import variant, write

ENGINE = Path(__file__).resolve().parent / "engine_assignment"
FULL = 6.0


@pytest.fixture(scope="module")
def assignment():
    return Assignment.load(ENGINE)


def demo() -> nbformat.NotebookNode:
    return nbformat.read(ENGINE / "master" / "demo.ipynb", as_version=4)


def wrong_square() -> nbformat.NotebookNode:
    return variant({"exA": "def square(x):\n    return x + x"}, demo())


def rows(out: Path) -> dict[str, dict]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as handle:
        listed = list(csv.DictReader(handle))
    students = [r["student"] for r in listed]
    assert len(students) == len(set(students)), "a student appears twice in grades.csv"
    return {r["student"]: r for r in listed}


def graded_now(progress: io.StringIO) -> int:
    """How many submissions this run graded (its last progress line)."""
    lines = progress.getvalue().split()
    return int(next(w for w in reversed(lines) if "/" in w).split("/")[0]) if lines else 0


def test_a_folder_of_notebooks_with_every_kind_of_bad_entry(assignment, tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    write(demo(), cohort / "alice.ipynb")
    write(wrong_square(), cohort / "bob.ipynb")
    write(release_notebook(assignment), cohort / "carol.ipynb")  # nothing filled in
    (cohort / "dave.ipynb").write_text("{ not json")
    (cohort / "erin.pdf").write_bytes(b"%PDF-1.4")
    (cohort / "frank").mkdir()  # a student folder with no notebook
    (cohort / "gina").mkdir()  # a student folder with two unrelated notebooks
    write(demo(), cohort / "gina" / "a.ipynb")
    write(demo(), cohort / "gina" / "b.ipynb")
    (cohort / "hank").mkdir()  # a student folder holding the notebook
    write(demo(), cohort / "hank" / "demo.ipynb")
    write(demo(), cohort / "ALICE.ipynb")  # the same student again: sorts first, is graded
    out = tmp_path / "out"
    progress = io.StringIO()
    entries = grade_cohort(cohort, assignment, out, workers=2, progress_stream=progress)
    table = rows(out)
    assert len(table) == len(entries) == 9  # every input exactly once
    assert table["ALICE"]["status"] == "graded" and float(table["ALICE"]["score"]) == FULL
    assert float(table["bob"]["A"]) == 0.0 and float(table["bob"]["score"]) == FULL - 3
    assert float(table["carol"]["score"]) == 0.0
    assert table["dave"]["status"] == "rejected" and "not valid JSON" in table["dave"]["reason"]
    assert table["erin"]["status"] == "rejected" and "not a notebook" in table["erin"]["reason"]
    assert "no notebook" in table["frank"]["reason"]
    assert "2 notebooks" in table["gina"]["reason"]
    assert float(table["hank"]["score"]) == FULL
    duplicates = [r for r in table.values() if r["status"] == "duplicate"]
    assert len(duplicates) == 1 and duplicates[0]["source"] == "alice.ipynb"
    assert "ALICE.ipynb" in duplicates[0]["reason"]
    assert "identical code to hank" in table["ALICE"]["flags"]  # the same notebook twice
    assert table["carol"]["flags"] == ""  # unfilled copies are alike, not copied
    assert graded_now(progress) == 5  # ALICE, bob, carol, dave, hank
    for student in ("ALICE", "bob", "hank"):
        assert (out / "feedback" / feedback_folder(student) / "feedback.html").is_file()
    assert (out / "report.html").is_file()


def test_nbgrader_submitted_layout(assignment, tmp_path):
    submitted = tmp_path / "course" / "submitted"
    for student, nb in (("s001", demo()), ("s002", wrong_square())):
        folder = submitted / student / assignment.name
        folder.mkdir(parents=True)
        write(nb, folder / "demo.ipynb")
    (submitted / "s003" / "ps1").mkdir(parents=True)  # the one folder, named otherwise, empty
    for name in ("ps1", "ps2"):
        (submitted / "s004" / name).mkdir(parents=True)
    out = tmp_path / "out"
    grade_cohort(tmp_path / "course", assignment, out, workers=1, progress_stream=io.StringIO())
    table = rows(out)
    assert float(table["s001"]["score"]) == FULL and float(table["s002"]["A"]) == 0.0
    assert table["s003"]["status"] == "rejected" and "no notebook" in table["s003"]["reason"]
    assert "engine_demo" in table["s004"]["reason"] and "ps1, ps2" in table["s004"]["reason"]


def _gradescope_export(root: Path) -> Path:
    export = root / "assignment_1234_export"
    for sid, nb in (("1001", demo()), ("1002", wrong_square())):
        (export / f"submission_{sid}").mkdir(parents=True)
        write(nb, export / f"submission_{sid}" / "demo.ipynb")
    (export / "submission_1003").mkdir()  # listed, uploaded a PDF only
    (export / "submission_1003" / "report.pdf").write_bytes(b"%PDF")
    (export / "submission_metadata.yml").write_text(
        "submission_1001:\n  :submitters:\n  - :name: Ada L\n    :sid: A1\n    :email: a@x.edu\n"
        "  :score: 0.0\nsubmission_1002:\n  :submitters:\n  - :name: Bo\n    :sid: ''\n"
        "    :email: bo@x.edu\n  - :name: Cy\n    :sid: C3\n    :email: cy@x.edu\n"
        "submission_1003:\n  :submitters:\n  - :name: Di\n    :sid: D4\n")
    return export


def test_gradescope_export_folder_and_zip(assignment, tmp_path):
    export = _gradescope_export(tmp_path / "folder")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(export.parent.rglob("*")):
            zipped.write(path, path.relative_to(export.parent))
    for source in (export, archive):
        out = tmp_path / f"out-{source.name}"
        grade_cohort(source, assignment, out, workers=1, progress_stream=io.StringIO())
        table = rows(out)
        assert set(table) == {"A1", "bo@x.edu+C3", "D4"}  # a group is its members' ids
        assert float(table["A1"]["score"]) == FULL
        assert float(table["bo@x.edu+C3"]["A"]) == 0.0
        assert "no notebook" in table["D4"]["reason"]
        assert not list(out.glob("unpacked-*"))  # the zip's scratch copy is gone


def test_an_unsafe_zip_is_refused(assignment, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../../escaped.ipynb", "{}")
    with pytest.raises(CohortInputError, match="unsafe path"):
        find_inputs(archive, assignment.name, "demo.ipynb", scratch=tmp_path)
    assert not (tmp_path.parent / "escaped.ipynb").exists()


def test_rerun_grades_only_what_changed_and_regrade_forces_one(assignment, tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for name in ("ann", "ben", "cat"):
        write(demo(), cohort / f"{name}.ipynb")
    out = tmp_path / "out"
    first = io.StringIO()
    grade_cohort(cohort, assignment, out, workers=2, progress_stream=first)
    assert graded_now(first) == 3
    again = io.StringIO()
    grade_cohort(cohort, assignment, out, workers=2, progress_stream=again)
    assert graded_now(again) == 0
    write(wrong_square(), cohort / "ben.ipynb")  # ben resubmits
    changed = io.StringIO()
    grade_cohort(cohort, assignment, out, workers=2, progress_stream=changed)
    assert graded_now(changed) == 1 and float(rows(out)["ben"]["A"]) == 0.0
    forced = io.StringIO()
    grade_cohort(cohort, assignment, out, workers=1, regrade=("cat",), progress_stream=forced)
    assert graded_now(forced) == 1
    with pytest.raises(ValueError, match="no such student"):
        grade_cohort(cohort, assignment, out, regrade=("zed",), progress_stream=io.StringIO())


def test_resume_after_kill_9_grades_each_submission_exactly_once(assignment, tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    names = [f"s{i:02d}" for i in range(8)]
    for i, name in enumerate(names):
        write(demo() if i % 2 else wrong_square(), cohort / f"{name}.ipynb")
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "autograder", "cohort", str(cohort),
                            "--assignment", str(ENGINE), "--out", str(out), "--workers", "1"],
                           env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    database = out / "results.db"
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and stored < 2:
        time.sleep(0.2)
        if database.exists():
            try:
                with sqlite3.connect(database) as connection:
                    stored = connection.execute(
                        "select count(*) from results where status = 'graded'").fetchone()[0]
            except sqlite3.Error:
                continue
    os.killpg(run.pid, signal.SIGKILL)  # the whole run, workers included, mid-grading
    run.wait()
    assert 2 <= stored < len(names), "the run finished before it could be killed"
    with sqlite3.connect(database) as connection:
        survived = connection.execute("select count(*) from results").fetchone()[0]
    resumed = io.StringIO()
    grade_cohort(cohort, assignment, out, workers=2, progress_stream=resumed)
    assert graded_now(resumed) == len(names) - survived
    table = rows(out)
    assert sorted(table) == names
    for i, name in enumerate(names):
        assert float(table[name]["score"]) == (FULL if i % 2 else FULL - 3), name


def test_cohort_command_line(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    write(demo(), cohort / "zoe.ipynb")
    gradebook = f"sqlite:///{tmp_path / 'gradebook.db'}"
    result = subprocess.run([sys.executable, "-m", "autograder", "cohort", str(cohort),
                             "--assignment", str(ENGINE), "--out", str(tmp_path / "out"),
                             "--workers", "1", "--gradebook", gradebook], check=False,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 inputs: 1 graded" in result.stdout and "graded 1/1" in result.stderr
    assert "1 submissions exported to the nbgrader gradebook" in result.stdout
    from nbgrader.api import Gradebook

    with Gradebook(gradebook) as book:
        assert book.find_submission("engine_demo", "zoe").score == FULL
    report = json.loads((tmp_path / "out" / "feedback" / "zoe" / "results.json").read_text())
    assert report["score"] == FULL
    missing = subprocess.run([sys.executable, "-m", "autograder", "cohort",
                              str(tmp_path / "nowhere"), "--assignment", str(ENGINE),
                              "--out", str(tmp_path / "o2")], check=False,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_the_dask_path_on_a_local_cluster(assignment, tmp_path):
    distributed = pytest.importorskip("distributed")
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for name, nb in (("uma", demo()), ("vic", wrong_square()), ("wes", demo())):
        write(nb, cohort / f"{name}.ipynb")
    (cohort / "xan.txt").write_text("not a notebook")
    out = tmp_path / "out"
    progress = io.StringIO()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        grade_cohort(cohort, assignment, out, dask=cluster.scheduler_address,
                     progress_stream=progress)
    assert graded_now(progress) == 3
    table = rows(out)
    assert {k: (v["status"], float(v["score"])) for k, v in table.items()} == {
        "uma": ("graded", FULL), "vic": ("graded", FULL - 3), "wes": ("graded", FULL),
        "xan": ("rejected", 0.0)}
    assert (out / "feedback" / "vic" / "feedback.html").is_file()


def _work_that_dies_on_crash(task: Task) -> tuple[CohortEntry, str]:
    """Stands in for grading in a worker: "crash" kills the worker outright."""
    if task.student == "crash":
        os._exit(1)
    time.sleep(0.2)
    return CohortEntry(task.student, task.source, "graded", score=FULL, max_score=FULL), ""


def test_a_submission_that_kills_its_worker_is_blamed_alone(assignment, tmp_path):
    """The pool breaks for every task in flight; only the culprit may get the error."""
    names = ["a", "b", "crash", "c", "d", "e"]
    tasks = [Task(n, f"{n}.ipynb", str(tmp_path / f"{n}.ipynb"), "digest", str(tmp_path))
             for n in names]
    results: dict[str, list[CohortEntry]] = {}
    run_parallel(tasks, assignment, 2,
                 lambda entry, _: results.setdefault(entry.student, []).append(entry),
                 work=_work_that_dies_on_crash)
    assert {n: [e.status for e in results[n]] for n in names} == {
        **{n: ["graded"] for n in names}, "crash": ["error"]}
    assert "killed its worker" in results["crash"][0].reason


def _work_that_hangs(task: Task) -> tuple[CohortEntry, str]:
    """Stands in for a grade stuck in the grader itself (where no runner budget binds)."""
    if task.student == "hang":
        time.sleep(3600)
    time.sleep(0.2)
    return CohortEntry(task.student, task.source, "graded", score=FULL, max_score=FULL), ""


def test_a_task_past_its_wall_clock_limit_is_stopped_and_reported(assignment, tmp_path):
    names = ["a", "hang", "b", "c"]
    tasks = [Task(n, f"{n}.ipynb", str(tmp_path / f"{n}.ipynb"), "digest", str(tmp_path))
             for n in names]
    results: dict[str, list[CohortEntry]] = {}
    started = time.monotonic()
    run_parallel(tasks, assignment, 2,
                 lambda entry, _: results.setdefault(entry.student, []).append(entry),
                 work=_work_that_hangs, task_limit_s=45)
    assert time.monotonic() - started < 200
    assert {n: [e.status for e in results[n]] for n in names} == {
        **{n: ["graded"] for n in names}, "hang": ["error"]}
    assert "longer than 45 s" in results["hang"][0].reason


def _processes_of(uids: range) -> list[int]:
    """Live (not zombie) processes whose uid is in `uids`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            uid = int(status.split("\nUid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if uid in uids and "\nState:\tZ" not in status:
            found.append(int(entry.name))
    return found


def _work_that_dies_leaving_its_runners(task: Task) -> tuple[CohortEntry, str]:
    """A worker killed mid-grade: the runner it took (forked by its zygote) is orphaned,
    in its own session, with its scratch folder and cgroups; the zygote loses its
    grader."""
    from autograder.grader import RunnerSupply
    from autograder.sandbox.process import runner_uids

    RunnerSupply(Assignment.load(ENGINE), zygote=True).take()
    uid = runner_uids(os.getpid())[0]  # the first runner's: a daemon its notebook started
    subprocess.Popen(["sleep", "600"], start_new_session=True,
                     preexec_fn=lambda: (os.setgid(uid), os.setuid(uid)))  # noqa: PLW1509
    owned = _processes_of(runner_uids(os.getpid()))
    with open(Path(task.feedback) / "dead-workers.txt", "a") as log:
        log.write(f"{os.getpid()} {len(owned)}\n")
    os._exit(1)


def test_the_zygote_holds_no_descriptor_but_its_socket():
    """A runner closes every descriptor it inherits but its socket, then reuses their
    numbers: an object made in the zygote that keeps a file open (a font that a first
    figure reads) would later read from, or close, one of the runner's sockets (its
    checks' forks then die). The zygote, done importing, holds nothing else open."""
    from autograder.grader import RunnerSupply

    supply = RunnerSupply(Assignment.load(ENGINE), zygote=True)
    workspace, runner = supply.take()  # answered: the zygote is past its imports
    try:
        folder = Path(f"/proc/{supply.zygote.process.pid}/fd")
        held = sorted(os.readlink(folder / fd) for fd in os.listdir(folder))
        assert held and all(target == "/dev/null" or target.startswith("socket:")
                            for target in held), held
    finally:
        runner.stop()
        workspace.remove()
        supply.close()


@pytest.mark.skipif(os.getuid() != 0, reason="only root runs runners as other uids")
def test_what_a_dead_worker_left_is_reaped_by_the_parent(assignment, tmp_path):
    from autograder.sandbox.process import runner_uids

    tasks = [Task("crash", "crash.ipynb", str(tmp_path / "crash.ipynb"), "digest",
                  str(tmp_path))]
    results: list[CohortEntry] = []
    run_parallel(tasks, assignment, 1, lambda entry, _: results.append(entry),
                 work=_work_that_dies_leaving_its_runners)
    assert [e.status for e in results] == ["error"]
    dead = [line.split() for line in (tmp_path / "dead-workers.txt").read_text().splitlines()]
    assert dead and all(int(count) >= 1 for _, count in dead)  # each left a runner behind
    for pid, _ in dead:
        uids = runner_uids(int(pid))
        left = _processes_of(uids)
        assert not left, f"processes of worker {pid} still running: {left}"
        scratch = [p for p in Path(tempfile.gettempdir()).glob("autograder-*")
                   if p.lstat().st_uid in uids]
        assert not scratch
        cgroups = [p for p in Path("/sys/fs/cgroup").glob("*/autograder-*-*")
                   if int(p.name.split("-")[1]) in uids]
        assert not cgroups


# --- the TA's day: errors retried once, a summary and exit code, links, the version ---


def _cohort_cli(cohort: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", "cohort", str(cohort), "--out",
                           str(out), "--assignment", str(ENGINE), "--workers", "1", *extra],
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_a_row_in_error_is_retried_once_then_left_with_exit_3(tmp_path):
    """The grader fails on bo (its feedback folder cannot be made: a file stands
    there). The first run reports it and exits 3; a rerun retries it once; the
    third leaves it; --retry-errors all tries again, and once the cause is gone
    it is graded and the run exits 0."""
    cohort, out = tmp_path / "cohort", tmp_path / "out"
    cohort.mkdir()
    for name in ("al", "bo"):
        write(demo(), cohort / f"{name}.ipynb")
    (out / "feedback").mkdir(parents=True)
    (out / "feedback" / "bo").write_text("in the way")

    def attempt(*extra: str) -> tuple[int, str]:
        run = _cohort_cli(cohort, out, *extra)
        return run.returncode, run.stdout + run.stderr

    code, said = attempt()
    assert code == 3, said
    assert "1 graded" in said and "1 in error" in said
    assert "report: file://" in said and rows(out)["bo"]["status"] == "error"
    code, said = attempt()  # retried once
    assert code == 3 and "graded 1/1" in said, said
    code, said = attempt()  # not again
    assert code == 3 and "graded 1/1" not in said, said
    (out / "feedback" / "bo").unlink()
    code, said = attempt("--retry-errors", "all")
    assert code == 0, said
    assert rows(out)["bo"]["status"] == "graded"


def test_the_report_links_each_graded_student_to_their_feedback(assignment, tmp_path):
    cohort, out = tmp_path / "cohort", tmp_path / "out"
    cohort.mkdir()
    write(demo(), cohort / "al.ipynb")
    write(wrong_square(), cohort / "x&y.ipynb")
    (cohort / "notes.txt").write_text("not a notebook")
    grade_cohort(cohort, assignment, out, workers=1, progress_stream=io.StringIO())
    page = (out / "report.html").read_text()
    assert '<a href="feedback/al/feedback.html">al</a>' in page
    linked = f"feedback/{feedback_folder('x&y')}/feedback.html"
    assert f'href="{linked}">x&amp;y</a>' in page
    assert (out / linked).is_file()
    assert 'href="feedback/notes' not in page  # rejected: no feedback page to link


def test_version_names_the_engine_and_the_grader_version(assignment):
    from autograder.grader import grader_version

    run = subprocess.run([sys.executable, "-m", "autograder", "--version", "--assignment",
                          str(ENGINE)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("autograder ")
    assert f"engine_demo: grader version {grader_version(assignment)}" in run.stdout


def test_grades_are_also_written_in_gradescopes_and_nbgraders_import_formats(assignment,
                                                                               tmp_path):
    """Only graded rows, ids quoted safely: an email goes to Gradescope's Email column,
    another id to SID, and an id that starts like a formula is neutralized."""
    entries = [
        CohortEntry("ada@uni.edu", "a.ipynb", "graded", score=5.0, max_score=FULL,
                    exercises={"A": 3.0, "B": 0.0, "C": 2.0}),
        CohortEntry("=HYPERLINK(\"x\")", "b.ipynb", "graded", score=6.0, max_score=FULL,
                    exercises={"A": 3.0, "B": 1.0, "C": 2.0}),
        CohortEntry("cy", "c.txt", "rejected", reason="not a notebook", max_score=FULL),
    ]
    from autograder.cohort.exports import NBGRADER_COLUMNS, write_grade_tables

    write_grade_tables(entries, assignment, tmp_path)
    with open(tmp_path / "grades_gradescope.csv", newline="") as handle:
        gradescope = list(csv.DictReader(handle))
    assert [(r["SID"], r["Email"], r["Total Score"]) for r in gradescope] == [
        ("", "ada@uni.edu", "5"), ("'=HYPERLINK(\"x\")", "", "6")]
    assert gradescope[0]["A: square (3 pts)"] == "3"
    with open(tmp_path / "grades_nbgrader.csv", newline="") as handle:
        nbgrader = list(csv.DictReader(handle))
    assert list(nbgrader[0]) == list(NBGRADER_COLUMNS)
    assert [(r["assignment"], r["student_id"], r["score"], r["max_score"]) for r in nbgrader] \
        == [("engine_demo", "ada@uni.edu", "5", "6"), ("engine_demo", "'=HYPERLINK(\"x\")", "6",
                                                       "6")]
