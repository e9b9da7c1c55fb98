"""Tests for the report writers: Gradescope's results.json, report.json and the feedback files."""

import base64
import io
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from autograder.outcome import (
    VISIBILITIES,
    CellRun,
    CheckOutcome,
    ExerciseResult,
    Figure,
    GradeReport,
    Status,
)
from autograder.render import CSP, HTML, MARKDOWN, Verbatim, md_escape
from autograder.report import write_outputs
from autograder.sandbox import CellStatus

HOSTILE = "<script>alert(1)</script>"
FORMATS = ("text", "simple_format", "html", "md", "ansi")
SECRET = "expected 42.125, got 41"


def validate_results(data: dict) -> None:
    """The subset of Gradescope's results.json format (module docstring of report.py) we emit."""
    required = {"score": float, "execution_time": float, "output": str, "output_format": str,
                "visibility": str, "stdout_visibility": str, "tests": list}
    for key, kind in required.items():
        assert key in data, key
        assert isinstance(data[key], kind), (key, data[key])
    assert data["output_format"] in FORMATS
    assert data["visibility"] in VISIBILITIES
    assert data["stdout_visibility"] in VISIBILITIES
    test_types = {"number": str, "name": str, "score": float, "max_score": float, "output": str,
                  "visibility": str, "status": str}
    for test in data["tests"]:
        for key, kind in test_types.items():
            assert key in test, key
            assert isinstance(test[key], kind), (key, test[key])
        assert test["visibility"] in VISIBILITIES
        assert test["status"] in ("passed", "failed")
        assert test.get("output_format", "text") in FORMATS
        assert 0 <= test["score"] <= test["max_score"]
        assert (test["status"] == "passed") == (test["score"] == test["max_score"])
    assert 0 <= data["score"] <= sum(t["max_score"] for t in data["tests"])


def check(exercise, name, weight, passed, message="", staff_detail=""):
    return CheckOutcome(exercise, name, weight, passed, message, staff_detail, duration_s=0.25)


def graded_report() -> GradeReport:
    return GradeReport(
        submission="alice.ipynb",
        assignment="Krylov methods",
        status="graded",
        exercises=[
            ExerciseResult("1.1", "Matvec", 4.0, "visible", [
                check("1.1", "shape", 1.0, True),
                check("1.1", "values", 3.0, True, "matches the reference"),
            ]),
            ExerciseResult("2.1", "Lanczos", 6.0, "visible", [
                check("2.1", "orthogonality", 1.0, True),
                check("2.1", "tridiagonal", 2.0, False, "T is not symmetric", SECRET),
            ]),
        ],
        cells=[
            CellRun(3, "ok", 0.1, stdout="hello"),
            CellRun(5, "error", 0.2, error="ValueError: bad shape\nmore detail"),
            CellRun(6, "skipped"),
        ],
        sandbox_layers=["seccomp", "no-network"],
        warnings=["cell 9 took 40 s"],
        execution_time=12.5,
        grader_version="0.1.0",
    )


def write(report: GradeReport, out: Path) -> dict:
    write_outputs(report, out)
    return {name: (out / name).read_text(encoding="utf-8")
            for name in ("results.json", "report.json", "feedback.md", "feedback.html")}


def png_bytes(title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 2], [1, 0.5, 0.25], label="residual")
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_graded_results_json(tmp_path):
    report = graded_report()
    files = write(report, tmp_path)
    data = json.loads(files["results.json"])
    validate_results(data)
    assert [t["number"] for t in data["tests"]] == ["1.1", "2.1"]
    assert [t["score"] for t in data["tests"]] == [e.score for e in report.exercises]
    assert data["tests"][1]["score"] == 2.0
    assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))
    assert data["score"] == report.score == 6.0
    assert [t["status"] for t in data["tests"]] == ["passed", "failed"]
    assert data["tests"][1]["output"].splitlines() == [
        "✓ orthogonality", "✗ tridiagonal: T is not symmetric"]
    assert data["stdout_visibility"] == "hidden"
    assert data["execution_time"] == 12.5
    lines = data["output"].splitlines()
    assert lines[0] == "Score 6 / 10"
    assert not any("seccomp" in line or "Sandbox" in line for line in lines)  # staff's view
    assert any("cell 9 took 40 s" in line for line in lines)
    assert SECRET not in files["results.json"]


def test_the_sandbox_is_reported_to_staff_only(tmp_path):
    """Which layers the host refused is for staff to act on; a student would read
    it as alarm or as a map of the sandbox."""
    report = graded_report()
    report.sandbox_missing = ["landlock unavailable: kernel too old"]
    files = write(report, tmp_path)
    for student_facing in ("results.json", "feedback.md", "feedback.html"):
        assert "landlock" not in files[student_facing], student_facing
        assert "no-network" not in files[student_facing], student_facing
    staff = json.loads(files["report.json"])
    assert staff["sandbox_missing"] == ["landlock unavailable: kernel too old"]
    assert staff["sandbox_layers"] == ["seccomp", "no-network"]


def test_report_json_round_trips_checks_and_cells(tmp_path):
    report = graded_report()
    data = json.loads(write(report, tmp_path)["report.json"])
    assert data["status"] == "graded"
    assert data["score"] == report.score and data["max_score"] == report.max_score
    assert data["sandbox_layers"] == report.sandbox_layers
    assert data["grader_version"] == "0.1.0"
    for saved, exercise in zip(data["exercises"], report.exercises, strict=True):
        assert saved["id"] == exercise.id and saved["score"] == exercise.score
        checks = [CheckOutcome(exercise=saved["id"], **c) for c in saved["checks"]]
        assert checks == exercise.checks
    cells = [CellRun(**c) for c in data["cells"]]
    assert cells == report.cells


def test_feedback_markdown_lists_exercises_and_errors(tmp_path):
    md = write(graded_report(), tmp_path)["feedback.md"]
    assert md.startswith("# Krylov methods: 6 / 10")
    assert "| 1\\.1 |" not in md  # ids are not over-escaped
    assert "| 1.1 | Matvec | 4 / 4 |" in md
    assert "| 2.1 | Lanczos | 2 / 6 |" in md
    assert "- ✗ tridiagonal: T is not symmetric" in md
    assert "- ✓ values: matches the reference" in md
    assert "## Cells that raised errors" in md
    assert "Cell 5 (error): ValueError: bad shape" in md
    assert "more detail" not in md
    assert SECRET not in md
    assert "seccomp" not in md


def test_no_error_section_without_errors(tmp_path):
    report = graded_report()
    report.cells = [CellRun(1, "ok")]
    files = write(report, tmp_path)
    assert "Cells that raised errors" not in files["feedback.md"]
    assert "Cells that raised errors" not in files["feedback.html"]


def test_rejected_submission(tmp_path):
    report = GradeReport(
        submission="bob.ipynb", assignment="Krylov methods", status="rejected",
        reason="the file is not a valid notebook",
        exercises=[ExerciseResult("1.1", "Matvec", 4.0, "visible"),
                   ExerciseResult("2.1", "Lanczos", 6.0, "after_due_date")],
    )
    files = write(report, tmp_path)
    data = json.loads(files["results.json"])
    validate_results(data)
    assert data["score"] == 0.0
    assert [t["number"] for t in data["tests"]] == ["1.1", "2.1"]
    assert all(t["score"] == 0.0 and t["status"] == "failed" for t in data["tests"])
    assert all("the file is not a valid notebook" in t["output"] for t in data["tests"])
    assert "Submission rejected: the file is not a valid notebook" in data["output"]
    staff = json.loads(files["report.json"])
    assert staff["status"] == "rejected" and staff["reason"] == report.reason
    assert "could not be graded: the file is not a valid notebook" in files["feedback.md"]
    assert "could not be graded: the file is not a valid notebook" in files["feedback.html"]


def test_hidden_exercise(tmp_path):
    report = graded_report()
    report.exercises.append(ExerciseResult("3.1", "Secret part", 5.0, "hidden", [
        check("3.1", "hidden check", 1.0, True, "hidden message")]))
    files = write(report, tmp_path)
    data = json.loads(files["results.json"])
    validate_results(data)
    hidden = data["tests"][2]
    assert hidden["visibility"] == "hidden" and hidden["score"] == 5.0
    assert data["score"] == 11.0
    # The visible summary must not reveal the hidden exercise's points.
    assert data["output"].splitlines()[0].startswith("Score 6 / 10 on the exercises shown now")
    for name in ("feedback.md", "feedback.html"):
        assert "Secret part" not in files[name]
        assert "hidden message" not in files[name]
        assert "Krylov methods: 6 / 10" in files[name]
        assert "1 more exercise is graded but not shown here." in files[name]
    assert "Secret part" in files["report.json"]


def test_invalid_visibility_is_refused(tmp_path):
    report = graded_report()
    report.exercises[0].visibility = "public"
    with pytest.raises(ValueError, match="visibility"):
        write_outputs(report, tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()


def test_figures_written_linked_and_embedded(tmp_path):
    report = graded_report()
    first, second = png_bytes("Convergence"), png_bytes("Spectrum")
    report.figures = [
        Figure(7, first, [{"title": "Convergence", "xscale": "linear", "yscale": "log",
                           "lines": [{"label": "residual", "x": [0, 1, 2],
                                      "y": [1.0, 0.5, float("nan")]}]}]),
        Figure(7, second, [{"title": "Spectrum"}, {"title": ""}]),
        Figure(12, first, []),
    ]
    out = tmp_path / "out"
    files = write(report, out)
    names = ["figures/cell07_1.png", "figures/cell07_2.png", "figures/cell12_1.png"]
    for name in names:
        assert (out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (out / names[1]).read_bytes() == second
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", files["feedback.md"])
    assert [target for _, target in links] == names
    assert all((out / target).is_file() for _, target in links)
    assert links[0][0] == "Cell 7: Convergence"
    assert links[1][0] == "Cell 7: Spectrum"
    assert links[2][0] == "Cell 12"
    page = files["feedback.html"]
    assert "data:image/png;base64," + base64.b64encode(first).decode() in page
    assert "data:image/png;base64," + base64.b64encode(second).decode() in page
    assert 'src="figures/' not in page  # self-contained
    staff = json.loads(files["report.json"])
    assert [f["file"] for f in staff["figures"]] == names
    assert staff["figures"][0]["axes"][0]["lines"][0]["y"] == [1.0, 0.5, None]
    assert "base64" not in files["report.json"]


def test_hostile_text_is_escaped(tmp_path):
    report = graded_report()
    report.assignment = f"Krylov {HOSTILE}"
    report.exercises[1].name = f"Lanczos {HOSTILE}"
    report.exercises[1].checks[1].message = f"got {HOSTILE} | ![x](http://evil/)"
    report.cells = [CellRun(4, "error", error=f"NameError: {HOSTILE}", stdout=HOSTILE)]
    report.warnings = [f"printed {HOSTILE}"]
    report.figures = [Figure(2, png_bytes("t"), [{"title": f'"><img src=x onerror=alert(1)>'
                                                           f"{HOSTILE}"}])]
    files = write(report, tmp_path)
    page = files["feedback.html"]
    assert "<script" not in page.lower()
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page
    md = files["feedback.md"]
    assert "<script" not in md.lower()
    assert "&lt;script&gt;" in md
    assert "![x](http://evil/)" not in md
    # Table rows keep their three cells despite the "|" in student text.
    row = next(line for line in md.splitlines() if line.startswith("| 2.1 "))
    assert len(re.findall(r"(?<!\\)\|", row)) == 4
    # Gradescope shows these strings as plain text, and the JSON keeps them intact.
    data = json.loads(files["results.json"])
    validate_results(data)
    assert data["output_format"] == "text" and data["test_output_format"] == "text"
    assert all(t["output_format"] == "text" and t["name_format"] == "text"
               for t in data["tests"])
    assert json.loads(files["report.json"])["cells"][0]["stdout"] == HOSTILE


def test_writes_atomically_and_replaces_old_files(tmp_path, monkeypatch):
    out = tmp_path / "new" / "dir"
    (out.parent).mkdir()
    write_outputs(graded_report(), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "feedback.html", "feedback.md", "report.json", "results.json"]
    report = graded_report()
    report.exercises[1].checks[1].passed = True
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        assert Path(src).parent == out and Path(src).name.startswith(".")
        replaced.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_outputs(report, out)
    assert replaced[0] == "results.json"
    assert set(replaced) == {"results.json", "report.json", "feedback.md", "feedback.html"}
    assert json.loads((out / "results.json").read_text())["score"] == 10.0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_failed_write_leaves_previous_results(tmp_path, monkeypatch):
    write_outputs(graded_report(), tmp_path)
    before = (tmp_path / "results.json").read_text()

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    report = graded_report()
    report.exercises[1].checks[1].passed = True
    with pytest.raises(OSError):
        write_outputs(report, tmp_path)
    assert (tmp_path / "results.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# Student text is data for the templates: never markup, Markdown or template source

# Each of these, if it ran, would set window.__pwned or open a dialog.
INJECTIONS = ("<script>alert(1)</script>",
              "<script>window.__pwned = 1</script>",
              '"><img src=x onerror=alert(1)>',
              "'><img src=x onerror='window.__pwned = 2'>",
              "</span></li></ul><svg onload=alert(3)>",
              "{{ 7*7 }}", "{% raw %}", "{# comment #}", "{{ self.__init__ }}",
              "[x](javascript:alert(1))", "![x](http://evil/)", "<https://evil/>",
              "a | b", "*em* _u_ `code` ~~del~~ # h")
PAYLOAD = " ".join(INJECTIONS)
FEEDBACK_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table",
                 "tr", "th", "td", "ul", "li", "span", "figure", "img", "figcaption"}


def hostile_report(status: Status = Status.GRADED) -> GradeReport:
    """The graded report with the payloads in every student-controlled string the feedback
    shows: names, check names and messages, cell errors, warnings, the reason, axis titles."""
    report = graded_report()
    report.status = status
    report.reason = f"not a notebook: {PAYLOAD}" if status == Status.REJECTED else ""
    report.assignment = f"Krylov {PAYLOAD}"
    lanczos = report.exercises[1]
    lanczos.name = f"Lanczos {PAYLOAD}"
    lanczos.checks[0].name = f"orthogonality {PAYLOAD}"
    lanczos.checks[1].message = f"T is not symmetric {PAYLOAD}\n  {PAYLOAD}"
    report.cells = [CellRun(4, CellStatus.ERROR, error=f"NameError: {PAYLOAD}\nmore"),
                    CellRun(8, CellStatus.TIMEOUT, error=f"{PAYLOAD}")]
    report.warnings = [f"cell 4 printed {PAYLOAD}"]
    report.figures = [Figure(2, png_bytes("t"), [{"title": PAYLOAD}, {"title": "{{ 6*7 }}"}])]
    return report


class Tags(HTMLParser):
    """Every tag with its attributes, and the text outside <style>."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._style = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._style = tag == "style"

    def handle_endtag(self, tag):
        self._style = False

    def handle_data(self, data):
        if not self._style:
            self.text.append(data)


def assert_only_engine_markup(page: str, allowed: set[str], images: list[str]) -> Tags:
    """No tag or event handler came from student text, and the only images are `images`."""
    parsed = Tags(page)
    assert {tag for tag, _ in parsed.tags} <= allowed
    assert not [attrs for _, attrs in parsed.tags if any(k.startswith("on") for k in attrs)]
    assert [attrs["src"] for tag, attrs in parsed.tags if tag == "img"] == images
    assert "<script" not in page.lower() and "<img src=x" not in page and "<svg" not in page
    return parsed


@pytest.mark.parametrize("status", [Status.GRADED, Status.REJECTED])
def test_student_text_never_becomes_markup_or_template_code(tmp_path, status):
    report = hostile_report(status)
    files = write(report, tmp_path)
    png = "data:image/png;base64," + base64.b64encode(report.figures[0].png).decode()
    page = assert_only_engine_markup(files["feedback.html"], FEEDBACK_TAGS, [png])
    text = "".join(page.text)
    # Shown exactly as the student wrote it, and never evaluated as a template.
    assert text.count(PAYLOAD) >= (7 if status == Status.GRADED else 6)
    assert "49" not in text and "42" not in text
    assert "{{ 6*7 }}" in text and "Template" not in text
    (alt,) = [attrs["alt"] for tag, attrs in page.tags if tag == "img"]
    assert alt == f"Cell 2: {PAYLOAD}; {{{{ 6*7 }}}}"
    (csp,) = [attrs["content"] for tag, attrs in page.tags
              if attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp == CSP

    md = files["feedback.md"]
    assert "<script" not in md.lower() and "<img" not in md and "<svg" not in md
    assert "<https:" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "{{ 7\\*7 }}" in md and "{% raw %}" in md and "49" not in md and "42" not in md
    assert "[x](javascript:" not in md and "\\[x\\](javascript:alert(1))" in md
    assert "![x](" not in md and "\\!\\[x\\](http://evil/)" in md
    assert "\\*em\\* \\_u\\_ \\`code\\` \\~\\~del\\~\\~ \\# h" in md
    # An unescaped "[", then escaped characters or anything but "]", then "](target)".
    links = re.findall(r"(?<!\\)\[(?:\\.|[^\\\]])*\]\(([^)]*)\)", md)
    assert links == ["figures/cell02_1.png"]  # the figure's, and no other link or image
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 4 and all(len(re.findall(r"(?<!\\)\|", r)) == 4 for r in rows)
    # Every line the student's text reached stays one line: a newline would end a list item.
    assert not [line for line in md.splitlines() if line.startswith("  ")]


def test_feedback_markdown_renders_inert(tmp_path):
    """Rendered by a Markdown engine that lets raw HTML through, the feedback still holds
    only the figure's image, no link, and tables of three columns."""
    mistune = pytest.importorskip("mistune", reason="mistune (from nbconvert) is not installed")
    md = write(hostile_report(), tmp_path)["feedback.md"]
    page = mistune.create_markdown(escape=False, plugins=["table"])(md)
    allowed = {"h1", "h2", "p", "br", "table", "thead", "tbody", "tr", "th", "td", "ul", "li",
               "img", "em"}
    parsed = assert_only_engine_markup(page, allowed, ["figures/cell02_1.png"])
    assert [attrs for tag, attrs in parsed.tags if tag == "em"] == [{}]  # the caption's own
    text = "".join(parsed.text)
    assert text.count(PAYLOAD) >= 6 and "49" not in text
    cells = re.findall(r"<tr>(.*?)</tr>", page, flags=re.DOTALL)
    assert len(cells) == 3 and all(row.count("<td>") + row.count("<th>") == 3 for row in cells)


def test_environments_escape_by_default():
    assert HTML.autoescape is True and MARKDOWN.autoescape is False
    html_page = HTML.from_string("<p>{{ s }}</p>").render(s=INJECTIONS[2])
    assert html_page == "<p>&#34;&gt;&lt;img src=x onerror=alert(1)&gt;</p>"
    md = MARKDOWN.from_string("- {{ s }} [{{ t }}]({{ f }})").render(
        s="a | *b*\n{{ 7*7 }}", t="![x](y)", f=Verbatim("figures/cell01_1.png"))
    assert md == "- a \\| \\*b\\* {{ 7\\*7 }} [\\!\\[x\\](y)](figures/cell01_1.png)"
    assert md_escape("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
    # A str operation drops the mark, so that nothing built from student text slips through.
    assert MARKDOWN.from_string("{{ f ~ s }}").render(f=Verbatim("_"), s="*") == "\\_\\*"


def open_feedback(browser, path: Path):
    """A page showing `path`, with every dialog, console error, page error and request for
    anything but the page itself that it caused."""
    page = browser.new_page()
    events = []
    page.on("dialog", lambda d: (events.append(f"dialog {d.message}"), d.dismiss()))
    page.on("console", lambda m: events.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: events.append(str(exc)))
    page.on("request", lambda r: events.append(r.url) if r.url != path.as_uri() else None)
    page.goto(path.as_uri())
    return page, events


@pytest.mark.parametrize("csp", [True, False], ids=["as-written", "without-csp"])
def test_hostile_feedback_runs_nothing_in_chromium(browser, tmp_path, csp):
    """The page as written, and again without its Content-Security-Policy, so that the
    escaping alone is shown to keep every payload inert."""
    path = tmp_path / "out" / "feedback.html"
    text = write(hostile_report(), path.parent)["feedback.html"]
    if not csp:
        stripped = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
        assert stripped != text
        path.write_text(stripped, encoding="utf-8")
    page, events = open_feedback(browser, path)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('script, svg, iframe').length") == 0
    assert page.evaluate("document.images.length") == 1
    assert page.evaluate("document.images[0].naturalWidth") > 0  # the figure, inline
    assert PAYLOAD in page.inner_text("h1") and "{{ 7*7 }}" in page.title()
    assert any(PAYLOAD in m for m in page.eval_on_selector_all(".msg", "ms => ms.map(m => m.innerText)"))
    assert events == []  # no dialog, no CSP violation, no request but the page
    page.close()


def test_a_failed_exercise_links_to_its_heading_in_the_notebook(tmp_path):
    """The student goes straight from a failed check to the exercise in Jupyter,
    whose anchors are the heading's text with dashes for spaces."""
    from autograder.grader import heading_link

    report = graded_report()
    lanczos = report.exercises[1]
    lanczos.heading = "Exercise 2.1: Lanczos <b>now</b> (🔴🔴⚪, 20 min)"
    lanczos.anchor = heading_link("01_krylov.ipynb", lanczos.heading)
    assert lanczos.anchor.startswith("01_krylov.ipynb#Exercise-2.1:-Lanczos-%3Cb%3Enow")
    files = write(report, tmp_path)
    assert "In the notebook: [Exercise 2.1: Lanczos &lt;b&gt;now&lt;/b&gt; " in files["feedback.md"]
    assert f"]({lanczos.anchor})" in files["feedback.md"]
    assert f'<a href="{lanczos.anchor}">Exercise 2.1: Lanczos &lt;b&gt;now' in files["feedback.html"]
    assert files["feedback.md"].count("In the notebook:") == 1  # 1.1 passed: no link


def test_every_exercise_of_the_krylov_master_knows_its_heading():
    from autograder.assignment import Assignment
    from tests.notebooks import ASSIGNMENT

    for exercise in Assignment.load(ASSIGNMENT).exercises:  # 6.0 sits under section 6 itself
        section = exercise.id.split(".")[0] + ". "
        assert exercise.id in exercise.heading or exercise.heading.startswith(section), \
            (exercise.id, exercise.heading)
