"""Write a GradeReport into an output folder: for Gradescope, for staff, for the student.

Files written into `out_dir`:

- `results.json`: what Gradescope reads. Format followed: "Autograder Specifications",
  https://gradescope-autograders.readthedocs.io/en/latest/specs/ ("Output format",
  "Controlling Test Case Visibility", "Controlling standard output visibility",
  "Test case status", "Output String Formatting"). From it:
  * top level `score` (overrides the sum of the tests), `execution_time` (seconds),
    `output`, `output_format`, `test_output_format`, `test_name_format`, `visibility`,
    `stdout_visibility`, `tests`;
  * per test `score`, `max_score`, `status` ("passed" or "failed"), `name`, `name_format`,
    `number` (a string such as "1.1"), `output`, `output_format`, `visibility`;
  * visibility is one of "hidden", "after_due_date", "after_published", "visible", both
    for tests and for stdout; while any test is hidden Gradescope hides the total score;
  * formats are "text", "simple_format", "html", "md" or "ansi". The top-level default,
    simple_format, renders HTML, and our text carries student-controlled strings (error
    messages, warnings, the rejection reason), so every output and name is sent as "text".
  stdout is "hidden": it is the grader's log, for staff.
- `report.json`: everything, for staff and tools (staff_detail, stdout, line data).
- `feedback.md` and `feedback.html`: for the student; hidden exercises and staff_detail
  left out, figures as `figures/cellNN_k.png` (linked from the Markdown, inlined as data
  URIs in the HTML), every student-controlled string escaped.

Each file goes to a temporary name in `out_dir` and is then renamed over the real one, so a
reader never sees half a file. results.json is written first, so that Gradescope still gets
a score if rendering the feedback fails.
"""

import base64
import html
import json
import math
import os
import tempfile
from pathlib import Path

from .outcome import VISIBILITIES, ExerciseResult, Figure, GradeReport

GRADESCOPE_FORMAT = "text"
CHECK_MARK = "✓"
CROSS_MARK = "✗"


def write_outputs(report: GradeReport, out_dir: Path) -> None:
    """Write results.json, report.json, feedback.md, feedback.html and figures/ into out_dir."""
    for exercise in report.exercises:
        if exercise.visibility not in VISIBILITIES:
            raise ValueError(f"exercise {exercise.id}: visibility {exercise.visibility!r} "
                             f"is not one of {', '.join(VISIBILITIES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "results.json", gradescope_results(report))
    figures = _figure_files(report.figures)
    _write_json(out_dir / "report.json", staff_report(report, figures))
    if figures:
        (out_dir / "figures").mkdir(exist_ok=True)
    for name, figure in figures:
        _write_atomic(out_dir / name, figure.png)
    _write_atomic(out_dir / "feedback.md", feedback_markdown(report, figures).encode())
    _write_atomic(out_dir / "feedback.html", feedback_html(report, figures).encode())


# results.json


def gradescope_results(report: GradeReport) -> dict:
    """The results.json object Gradescope expects (see the module docstring)."""
    rejected = report.status == "rejected"
    tests = []
    for exercise in report.exercises:
        score = 0.0 if rejected else _number(exercise.score)
        max_score = _number(exercise.max_score)
        if rejected:
            output = f"Not graded: {_reason(report)}"
        else:
            output = "\n".join(_check_line(c) for c in exercise.checks) or "No checks ran."
        tests.append({
            "number": str(exercise.id),
            "name": exercise.name,
            "name_format": GRADESCOPE_FORMAT,
            "score": score,
            "max_score": max_score,
            "status": "passed" if _full_marks(score, max_score) else "failed",
            "output": output,
            "output_format": GRADESCOPE_FORMAT,
            "visibility": exercise.visibility,
        })
    return {
        "score": 0.0 if rejected else _number(report.score),
        "execution_time": _number(report.execution_time),
        "output": "\n".join(_summary_lines(report)),
        "output_format": GRADESCOPE_FORMAT,
        "test_output_format": GRADESCOPE_FORMAT,
        "test_name_format": GRADESCOPE_FORMAT,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def _summary_lines(report: GradeReport) -> list[str]:
    """Top-level output; the score line counts only always-visible exercises when some are
    not, because this text is visible while Gradescope itself hides the total."""
    lines = []
    if report.status == "rejected":
        lines.append(f"Submission rejected: {_reason(report)}")
    shown = [e for e in report.exercises if e.visibility == "visible"]
    if len(shown) == len(report.exercises):
        lines.append(f"Score {_fmt(_total(report, shown))} / {_fmt(report.max_score)}")
    else:
        held = len(report.exercises) - len(shown)
        lines.append(f"Score {_fmt(_total(report, shown))} / "
                     f"{_fmt(sum(e.max_score for e in shown))} on the exercises shown now; "
                     f"{held} more {_plural(held, 'exercise')} graded but not shown yet")
    lines.append("Sandbox layers active: " + (", ".join(report.sandbox_layers) or "none"))
    lines.extend(f"Warning: {w}" for w in report.warnings)
    return lines


def _check_line(check) -> str:
    mark = CHECK_MARK if check.passed else CROSS_MARK
    message = check.message.strip().replace("\n", "\n    ")
    return f"{mark} {check.name}: {message}" if message else f"{mark} {check.name}"


# report.json


def staff_report(report: GradeReport, figures: list[tuple[str, Figure]] | None = None) -> dict:
    """Everything in the report as plain JSON data; figures by file name, not inlined."""
    if figures is None:
        figures = _figure_files(report.figures)
    return {
        "submission": report.submission,
        "assignment": report.assignment,
        "status": report.status,
        "reason": report.reason,
        "score": _number(report.score),
        "max_score": _number(report.max_score),
        "execution_time": _number(report.execution_time),
        "grader_version": report.grader_version,
        "sandbox_layers": list(report.sandbox_layers),
        "warnings": list(report.warnings),
        "staff_notes": list(report.staff_notes),
        "exercises": [{
            "id": e.id,
            "name": e.name,
            "score": _number(e.score),
            "max_score": _number(e.max_score),
            "visibility": e.visibility,
            "checks": [{
                "name": c.name,
                "weight": _number(c.weight),
                "passed": bool(c.passed),
                "message": c.message,
                "staff_detail": c.staff_detail,
                "duration_s": _number(c.duration_s),
            } for c in e.checks],
        } for e in report.exercises],
        "cells": [{
            "index": c.index,
            "status": c.status,
            "duration_s": _number(c.duration_s),
            "error": c.error,
            "stdout": c.stdout,
        } for c in report.cells],
        "figures": [{"file": name, "cell": f.cell, "axes": _plain(f.axes)}
                    for name, f in figures],
    }


# feedback.md


def feedback_markdown(report: GradeReport, figures: list[tuple[str, Figure]]) -> str:
    """Student feedback as Markdown; every student-controlled string escaped."""
    shown = _shown(report)
    out = [f"# {_md(_headline(report))}", ""]
    out += [_md(line) + "  " for line in _preamble(report)] + [""]
    out += ["| Exercise | Name | Score |", "| --- | --- | --- |"]
    for e in shown:
        out.append(f"| {_md(e.id)} | {_md(e.name)} | {_score_text(report, e)} |")
    out.append("")
    for e in shown:
        out += [f"## {_md(e.id)} {_md(e.name)}: {_score_text(report, e)}", ""]
        if report.status == "rejected":
            out.append(f"Not graded: {_md(_reason(report))}")
        elif not e.checks:
            out.append("No checks ran.")
        for c in e.checks if report.status != "rejected" else []:
            mark = CHECK_MARK if c.passed else CROSS_MARK
            message = f": {_md(c.message)}" if c.message.strip() else ""
            out.append(f"- {mark} {_md(c.name)}{message}")
        out.append("")
    errors = _error_cells(report)
    if errors:
        out += ["## Cells that raised errors", ""]
        out += [f"- Cell {c.index} ({_md(c.status)}): {_md(_first_line(c.error))}"
                for c in errors]
        out.append("")
    if figures:
        out += ["## Figures", ""]
        for name, figure in figures:
            caption = _md(_caption(figure))
            out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return "\n".join(out)


# feedback.html

CSS = """
body { font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }
th { background: #f3f3f3; }
ul.checks { list-style: none; padding-left: 0.5em; }
.pass { color: #1a7f37; }
.fail { color: #cf222e; }
.msg, .err { white-space: pre-wrap; }
.note { color: #555; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; color: #555; }
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def feedback_html(report: GradeReport, figures: list[tuple[str, Figure]]) -> str:
    """The Markdown feedback's content as one self-contained, script-free HTML page."""
    esc = html.escape
    shown = _shown(report)
    title = _headline(report)
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
           f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           f"<h1>{esc(title)}</h1>"]
    out += [f'<p class="note">{esc(line)}</p>' for line in _preamble(report)]
    out += ["<table>", "<tr><th>Exercise</th><th>Name</th><th>Score</th></tr>"]
    for e in shown:
        out.append(f"<tr><td>{esc(e.id)}</td><td>{esc(e.name)}</td>"
                   f"<td>{_score_text(report, e)}</td></tr>")
    out.append("</table>")
    for e in shown:
        out.append(f"<h2>{esc(e.id)} {esc(e.name)}: {_score_text(report, e)}</h2>")
        if report.status == "rejected":
            out.append(f"<p>Not graded: {esc(_reason(report))}</p>")
            continue
        if not e.checks:
            out.append("<p>No checks ran.</p>")
            continue
        out.append('<ul class="checks">')
        for c in e.checks:
            mark = (f'<span class="pass">{CHECK_MARK}</span>' if c.passed
                    else f'<span class="fail">{CROSS_MARK}</span>')
            message = f': <span class="msg">{esc(c.message)}</span>' if c.message.strip() else ""
            out.append(f"<li>{mark} {esc(c.name)}{message}</li>")
        out.append("</ul>")
    errors = _error_cells(report)
    if errors:
        out += ["<h2>Cells that raised errors</h2>", "<ul>"]
        out += [f'<li>Cell {c.index} ({esc(c.status)}): '
                f'<span class="err">{esc(_first_line(c.error))}</span></li>' for c in errors]
        out.append("</ul>")
    if figures:
        out.append("<h2>Figures</h2>")
        for _, figure in figures:
            data = base64.b64encode(figure.png).decode("ascii")
            caption = esc(_caption(figure))
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                       f"<figcaption>{caption}</figcaption></figure>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


# shared helpers


def _headline(report: GradeReport) -> str:
    """Assignment and score over the exercises the feedback shows."""
    shown = _shown(report)
    return (f"{report.assignment}: {_fmt(_total(report, shown))} / "
            f"{_fmt(sum(e.max_score for e in shown))}")


def _preamble(report: GradeReport) -> list[str]:
    """Lines under the feedback title: rejection, held-back exercises, sandbox, warnings."""
    lines = []
    if report.status == "rejected":
        lines.append(f"Your submission could not be graded: {_reason(report)}")
    hidden = len(report.exercises) - len(_shown(report))
    if hidden:
        lines.append(f"{hidden} more {_plural(hidden, 'exercise')} graded but not shown here.")
    lines.append("Sandbox layers active: " + (", ".join(report.sandbox_layers) or "none"))
    lines.extend(f"Warning: {w}" for w in report.warnings)
    return lines


def _shown(report: GradeReport) -> list[ExerciseResult]:
    return [e for e in report.exercises if e.visibility != "hidden"]


def _total(report: GradeReport, exercises: list[ExerciseResult]) -> float:
    if report.status == "rejected":
        return 0.0
    return round(sum(e.score for e in exercises), 4)


def _score_text(report: GradeReport, exercise: ExerciseResult) -> str:
    score = 0.0 if report.status == "rejected" else exercise.score
    return f"{_fmt(score)} / {_fmt(exercise.max_score)}"


def _reason(report: GradeReport) -> str:
    return report.reason.strip() or "no reason recorded"


def _error_cells(report: GradeReport) -> list:
    return [c for c in report.cells if c.status in ("error", "timeout") or c.error]


def _figure_files(figures: list[Figure]) -> list[tuple[str, Figure]]:
    """Name each figure with a PNG `figures/cellNN_k.png`, k counting from 1 within a cell."""
    named, seen = [], {}
    for figure in figures:
        if not figure.png:
            continue
        k = seen[figure.cell] = seen.get(figure.cell, 0) + 1
        named.append((f"figures/cell{int(figure.cell):02d}_{k}.png", figure))
    return named


def _caption(figure: Figure) -> str:
    titles = [str(ax.get("title", "")).strip() for ax in figure.axes if isinstance(ax, dict)]
    titles = [t for t in titles if t]
    return f"Cell {figure.cell}" + (": " + "; ".join(titles) if titles else "")


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def _full_marks(score: float, max_score: float) -> bool:
    return math.isclose(score, max_score, rel_tol=1e-9, abs_tol=1e-6)


def _number(value) -> float:
    """A finite float: JSON has no NaN or infinity, and Gradescope wants numbers."""
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _fmt(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _plural(n: int, word: str) -> str:
    return f"{word} is" if n == 1 else f"{word}s are"


MD_SPECIAL = "\\`*_[]|~#!"


def _md(text) -> str:
    """Text that Markdown shows literally: no HTML, links, emphasis or table breaks."""
    text = html.escape(" ".join(str(text).split()), quote=False)
    return "".join("\\" + ch if ch in MD_SPECIAL else ch for ch in text)


def _plain(value):
    """Staff data as strict JSON: str keys, lists, finite floats (else None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return str(value)


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    _write_atomic(path, (text + "\n").encode())


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
