"""Tests for the TAs' cohort report: its numbers, recomputed here with numpy from the same
synthetic cohort, its escaping of student strings, and its rendering in a real headless
Chromium (Debian's, driven by playwright)."""

from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from autograder.assignment import Assignment
from autograder.cohort.report import write_cohort_report
from autograder.outcome import CohortEntry
from tests.notebooks import ROOT

ASSIGNMENTS = {"engine": "tests/engine_assignment", "krylov": "assignments/krylov_hessian"}

# Each payload, if it ran, would set window.pwned.
SCRIPT = "<script>window.pwned = 1</script>"
IMG = '"><img src=x onerror="window.pwned = 2">'
SVG = "</title></rect><script>window.pwned = 3</script>"
HOSTILE = (SCRIPT, IMG, SVG)
MESSAGES = ("AssertionError: wrong shape (3, 1), expected (3,)",
            "NotImplementedError",
            "result off by\n    more than 1e-6",  # the same failure as the next, wrapped
            "result off by more than 1e-6",
            SCRIPT,
            IMG,
            "expected a symmetric matrix")


def graded(assignment: Assignment, student: str, fractions: tuple[float, ...], runtime: float,
           flags: tuple[str, ...] = (), digest: str = "") -> CohortEntry:
    """A graded entry with fractions[i % len] of exercise i's points; each exercise short of
    full points fails with a message that depends on the student and the exercise."""
    points, failures = {}, []
    for i, ex in enumerate(assignment.exercises):
        points[ex.id] = round(ex.points * fractions[i % len(fractions)], 4)
        if points[ex.id] < ex.points:
            failures.append((ex.id, MESSAGES[(len(student) + i) % len(MESSAGES)]))
    return CohortEntry(student=student, source=f"submissions/{student}.ipynb", status="graded",
                       score=round(sum(points.values()), 4),
                       max_score=sum(ex.points for ex in assignment.exercises),
                       exercises=points, failures=failures, runtime_s=runtime,
                       flags=list(flags), digest=digest or f"sha-{student}")


def not_graded(student: str, status: str, reason: str, runtime: float = 0.0,
               flags: tuple[str, ...] = ()) -> CohortEntry:
    return CohortEntry(student=student, source=f"submissions/{student}.ipynb", status=status,
                       reason=reason, runtime_s=runtime, flags=list(flags))


def cohort(assignment: Assignment) -> list[CohortEntry]:
    """Twenty-two inputs: full marks, partial, timeouts, a sandbox violation, identical twins,
    rejected, duplicate and error entries, and hostile ids, reasons, flags and messages."""
    entries = [graded(assignment, name, (1.0,), runtime)
               for name, runtime in [("alice", 31.2), ("bob", 28.9), ("carol", 40.5),
                                     ("dave", 35.0)]]
    entries += [graded(assignment, name, fractions, runtime) for name, fractions, runtime in [
        ("erin", (1.0, 0.5, 0.0), 33.3), ("frank", (0.5,), 29.0), ("grace", (0.0, 1.0), 45.1),
        ("heidi", (1.0, 1.0, 0.25), 38.7), ("ivan", (0.0,), 12.4), ("judy", (0.75, 0.0), 30.0),
        (SCRIPT, (1.0, 0.0), 27.5), (IMG, (0.5, 1.0), 26.0)]]
    entries += [
        graded(assignment, "mallory", (1.0, 0.0, 0.0), 600.0, ("timeout",)),
        graded(assignment, "niaj", (0.25,), 598.2, ("timeout",)),
        graded(assignment, "oscar", (0.0,), 3.1, ("sandbox violation",)),
        graded(assignment, "peggy", (1.0, 0.5), 36.0, ("identical to trent",), "sha-twins"),
        graded(assignment, "trent", (1.0, 0.5), 34.0, ("identical to peggy", IMG), "sha-twins"),
        not_graded("victor", "rejected", "not a notebook: invalid JSON at line 1"),
        not_graded(SVG, "rejected", f"notebook has no cells {SCRIPT}"),
        not_graded("alice", "duplicate", "same file as submissions/alice.ipynb"),
        not_graded("walter", "error", f"grader fault: runner exited 137 {IMG}", 61.0),
        not_graded("xena", "error", "grader fault: protocol error", 0.0, (SVG,)),
    ]
    # A failure outside any exercise, and one reported twice for the same student.
    entries[0].failures.append(("setup", "ImportError: no module named 'solution'"))
    entries[5].failures.append(entries[5].failures[0])
    return entries


class Page(HTMLParser):
    """What the report shows: table cells by table id, bar tooltips by chart id, the page
    title, and every tag with its attributes (to prove no student markup became a tag)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.bars: dict[str, list[str]] = {}
        self.tags: list[tuple[str, dict]] = []
        self.title = ""
        self._table = self._row = self._cell = self._chart = self._text = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "svg":
            self._chart = self.bars.setdefault(attrs.get("id"), [])
        elif tag == "title":
            self._text = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = self._row = None
        elif tag == "svg":
            self._chart = None
        elif tag == "title" and self._text is not None:
            text, self._text = "".join(self._text), None
            if self._chart is not None:
                self._chart.append(text)
            else:
                self.title = text

    def handle_data(self, data):
        for sink in (self._cell, self._text):
            if sink is not None:
                sink.append(data)


def rows(page: Page, table: str) -> list[dict[str, str]]:
    """A table's body rows as dicts keyed by its head."""
    head, *body = page.tables[table]
    return [dict(zip(head, row, strict=True)) for row in body]


def first_number(text: str) -> float:
    return float(text.split()[0].rstrip("%"))


def bar_counts(page: Page, chart: str) -> tuple[list[int], float]:
    """Counts from the bars' tooltips ("lo–hi: n") and the chart's upper end."""
    tips = page.bars[chart]
    return [int(t.rsplit(": ", 1)[1]) for t in tips], float(tips[-1].split("–")[1].split(":")[0])


@pytest.fixture(scope="module", params=sorted(ASSIGNMENTS))
def assignment(request) -> Assignment:
    return Assignment.load(ROOT / ASSIGNMENTS[request.param])


@pytest.fixture
def report(assignment, tmp_path) -> tuple[list[CohortEntry], Path]:
    entries = cohort(assignment)
    return entries, write_cohort_report(entries, assignment, tmp_path / "cohort")


def test_writes_one_file_into_a_folder_or_at_an_html_path(assignment, tmp_path):
    written = write_cohort_report(cohort(assignment), assignment, tmp_path / "out")
    assert written == tmp_path / "out" / "report.html"
    assert [p.name for p in written.parent.iterdir()] == ["report.html"]
    named = write_cohort_report([], assignment, tmp_path / "ta" / "week3.html")
    assert named == tmp_path / "ta" / "week3.html" and named.is_file()


def test_headline_and_score_histogram(report, assignment):
    entries, path = report
    page = Page(path.read_text(encoding="utf-8"))
    assert page.title == f"{assignment.title}: cohort report"
    totals = np.array([e.score for e in entries if e.status == "graded"])
    max_total = sum(ex.points for ex in assignment.exercises)
    (summary,) = rows(page, "summary")
    assert {k: summary[k] for k in ("Inputs", "Graded", "Rejected", "Duplicates", "Errors")} == {
        "Inputs": "22", "Graded": "17", "Rejected": "2", "Duplicates": "1", "Errors": "2"}
    for key, value in (("Mean total", totals.mean()), ("Median total", np.median(totals))):
        assert first_number(summary[key]) == pytest.approx(value, abs=0.005)
        assert summary[key].endswith(f"/ {max_total:g}")
    counts, hi = bar_counts(page, "score-histogram")
    assert hi == max_total
    assert counts == np.histogram(totals, bins=len(counts), range=(0, hi))[0].tolist()


def test_exercise_table(report, assignment):
    entries, path = report
    graded_entries = [e for e in entries if e.status == "graded"]
    table = rows(Page(path.read_text(encoding="utf-8")), "exercises")
    assert [row["Exercise"] for row in table] == [ex.id for ex in assignment.exercises]
    for row, ex in zip(table, assignment.exercises, strict=True):
        points = np.array([e.exercises[ex.id] for e in graded_entries])
        assert row["Name"] == ex.name and float(row["Points"]) == ex.points
        assert float(row["Mean score"]) == pytest.approx(points.mean(), abs=0.005)
        pass_rate = 100 * np.isclose(points, ex.points).mean()
        assert first_number(row["Pass rate"]) == pytest.approx(pass_rate, abs=0.5)


def test_top_failures_per_exercise(report, assignment):
    entries, path = report
    expected: dict[str, Counter] = {}
    for entry in entries:
        if entry.status == "graded":
            for ex, msg in {(ex, " ".join(msg.split())) for ex, msg in entry.failures}:
                expected.setdefault(ex, Counter())[msg] += 1
    shown: dict[str, list[tuple[str, int]]] = {}
    for row in rows(Page(path.read_text(encoding="utf-8")), "failures"):
        shown.setdefault(row["Exercise"], []).append((row["Message"], int(row["Students"])))
    ids = [ex.id for ex in assignment.exercises]
    assert list(shown) == [i for i in ids if i in expected] + ["setup"]
    for ex, top in shown.items():
        counts = [n for _, n in top]
        assert len(top) == min(3, len(expected[ex])) and counts == sorted(counts, reverse=True)
        assert all(expected[ex][msg] == n for msg, n in top)
        assert counts[-1] >= max([n for m, n in expected[ex].items()
                                  if m not in dict(top)], default=0)


def test_runtime_distribution(report):
    entries, path = report
    page = Page(path.read_text(encoding="utf-8"))
    run = np.array([e.runtime_s for e in entries if e.status != "duplicate" and e.runtime_s > 0])
    (stats,) = rows(page, "runtime")
    expected = {"min": run.min(), "median": np.median(run), "p90": np.percentile(run, 90),
                "max": run.max()}
    for key, value in expected.items():
        assert stats[key].endswith(" s")
        assert first_number(stats[key]) == pytest.approx(value, abs=0.005)
    counts, hi = bar_counts(page, "runtime-histogram")
    assert hi >= run.max() and sum(counts) == len(run) == 18
    assert counts == np.histogram(run, bins=len(counts), range=(0, hi))[0].tolist()


def test_flagged_submissions(report):
    entries, path = report
    table = rows(Page(path.read_text(encoding="utf-8")), "flagged")
    expected = [e for e in entries if e.status != "graded" or e.flags]
    assert sorted((r["Student"], r["Status"], r["Flags"], r["Reason"]) for r in table) == sorted(
        (e.student + e.source, e.status, "; ".join(e.flags), e.reason) for e in expected)
    assert [r["Status"] for r in table[:2]] == ["error", "error"]  # worst first
    assert {"timeout", "sandbox violation", "identical to peggy; " + IMG} <= {
        r["Flags"] for r in table}


def test_student_strings_are_escaped(report):
    _, path = report
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert {tag for tag, _ in page.tags} <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "thead",
        "tbody", "tr", "th", "td", "br", "span", "svg", "rect", "text", "line"}
    assert not [attrs for _, attrs in page.tags if any(k.startswith("on") for k in attrs)]
    for payload in HOSTILE:
        assert payload not in text
    shown = [cell for table in page.tables.values() for row in table for cell in row]
    assert {SCRIPT, IMG, SVG} <= set(shown)  # shown as text, exactly as the student wrote it
    assert "://" not in text and "url(" not in text  # nothing loaded from outside


def test_student_strings_are_never_template_code(assignment, tmp_path):
    """Ids, sources, reasons, flags and messages are data for the template, printed as
    written: a Jinja expression or tag in them is never evaluated."""
    jinja = ("{{ 7*7 }}", "{% raw %}", "{# hidden #}", "{{ self.__init__.__globals__ }}")
    entries = [graded(assignment, jinja[0], (0.0,), 12.0, flags=(jinja[1],)),
               not_graded(jinja[3], "rejected", f"bad {jinja[2]}")]
    entries[0].failures = [(ex, f"wrong {jinja[1]} {jinja[0]}") for ex, _ in entries[0].failures]
    text = write_cohort_report(entries, assignment, tmp_path).read_text(encoding="utf-8")
    page = Page(text)
    flagged = {row["Student"]: row for row in rows(page, "flagged")}
    assert flagged[jinja[0] + f"submissions/{jinja[0]}.ipynb"]["Flags"] == jinja[1]
    assert flagged[jinja[3] + f"submissions/{jinja[3]}.ipynb"]["Reason"] == f"bad {jinja[2]}"
    assert {row["Message"] for row in rows(page, "failures")} == {f"wrong {jinja[1]} {jinja[0]}"}
    assert "49" not in text and "Template" not in text


def test_empty_cohort(assignment, tmp_path):
    page = Page(write_cohort_report([], assignment, tmp_path).read_text(encoding="utf-8"))
    (summary,) = rows(page, "summary")
    assert summary["Inputs"] == summary["Graded"] == "0" and summary["Mean total"] == "–"
    assert [(r["Mean score"], r["Pass rate"]) for r in rows(page, "exercises")] == [
        ("–", "–")] * len(assignment.exercises)
    assert not page.bars and set(page.tables) == {"summary", "exercises"}


def test_nothing_graded(assignment, tmp_path):
    entries = [e for e in cohort(assignment) if e.status != "graded"]
    page = Page(write_cohort_report(entries, assignment, tmp_path).read_text(encoding="utf-8"))
    (summary,) = rows(page, "summary")
    assert (summary["Inputs"], summary["Graded"], summary["Median total"]) == ("5", "0", "–")
    assert list(page.bars) == ["runtime-histogram"]  # walter's 61 s; no score histogram
    assert len(rows(page, "flagged")) == 5 and "failures" not in page.tables


# In a real browser


INNER_TEXTS = "cells => cells.map(c => c.innerText)"


def open_report(browser, path: Path):
    """A page showing the report, with the console errors and requests it caused."""
    page = browser.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    return page, errors, requests


def test_renders_in_chromium(browser, report, assignment, tmp_path):
    entries, path = report
    page, errors, requests = open_report(browser, path)
    assert page.title() == f"{assignment.title}: cohort report"
    assert page.inner_text("h1") == f"{assignment.title}: cohort report"
    graded_entries = [e for e in entries if e.status == "graded"]
    summary = dict(zip(*(page.eval_on_selector_all(f"#summary {cell}", INNER_TEXTS)
                         for cell in ("th", "td")), strict=True))
    assert (summary["Inputs"], summary["Graded"], summary["Errors"]) == ("22", "17", "2")
    assert first_number(summary["Mean total"]) == pytest.approx(
        np.mean([e.score for e in graded_entries]), abs=0.005)
    for chart in ("#score-histogram", "#runtime-histogram"):
        box = page.locator(chart).bounding_box()
        assert page.locator(chart).is_visible() and box["width"] > 100 and box["height"] > 100
        heights = page.eval_on_selector_all(
            f"{chart} rect.bar", "bars => bars.map(b => b.getBoundingClientRect().height)")
        assert max(heights) > 50
    cells = page.eval_on_selector_all(
        "#exercises tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
    assert len(cells) == len(assignment.exercises)
    for (ex_id, name, points, mean, rate), ex in zip(cells, assignment.exercises, strict=True):
        scores = np.array([e.exercises[ex.id] for e in graded_entries])
        assert (ex_id, name, float(points)) == (ex.id, ex.name, ex.points)
        assert float(mean) == pytest.approx(scores.mean(), abs=0.005)
        assert float(rate.rstrip("%")) == pytest.approx(
            100 * np.isclose(scores, ex.points).mean(), abs=0.5)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('script, img, iframe').length") == 0
    assert SCRIPT in page.inner_text("#flagged")  # shown, not run
    shot = page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert shot.startswith(b"\x89PNG") and len(shot) > 20_000
    page.emulate_media(media="print")
    assert page.locator("#score-histogram").is_visible()
    assert page.pdf(path=tmp_path / "report.pdf").startswith(b"%PDF")
    assert errors == [] and requests == [path.as_uri()]
    page.close()


def test_empty_cohort_renders_in_chromium(browser, assignment, tmp_path):
    page, errors, requests = open_report(browser, write_cohort_report([], assignment, tmp_path))
    assert "No graded submissions." in page.inner_text("body")
    assert page.locator("#exercises tbody tr").count() == len(assignment.exercises)
    assert errors == [] and len(requests) == 1
    page.close()
