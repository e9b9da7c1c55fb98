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
  URIs in the HTML). Both are rendered from templates (`templates/feedback.md.j2`,
  `templates/feedback.html.j2`) by the environments of `render`, which escape every value
  printed: student-controlled strings are data given to a template, never template source.

Each file goes to a temporary name in `out_dir` and is then renamed over the real one, so a
reader never sees half a file. results.json is written first, so that Gradescope still gets
a score if rendering the feedback fails.
"""

import base64
import json
import math
from pathlib import Path

from .outcome import VISIBILITIES, ExerciseResult, Figure, GradeReport, Status
from .render import (
    Verbatim,
    finite,
    fmt,
    full_marks,
    json_utf8,
    render_html,
    render_markdown,
    utf8,
    write_atomic,
)
from .sandbox import CellStatus

GRADESCOPE_FORMAT = "text"
CHECK_MARK = "✓"
CROSS_MARK = "✗"
MAX_DEPTH = 20  # of the figures' line data in report.json: axes, lines, points


def write_results(report: GradeReport, out_dir: Path) -> None:
    """Write results.json alone, as grading progresses: each write is a whole, valid
    file (renamed into place), so a kill at any moment leaves what was earned."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "results.json", gradescope_results(report), durable=False)


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
    _write_json(out_dir / "report.json", staff_report(report))
    if figures:
        (out_dir / "figures").mkdir(exist_ok=True)
    for name, figure in figures:
        write_atomic(out_dir / name, figure.png)
    write_atomic(out_dir / "feedback.md", utf8(feedback_markdown(report, figures)))
    write_atomic(out_dir / "feedback.html", utf8(feedback_html(report, figures)))


# results.json


def gradescope_results(report: GradeReport) -> dict:
    """The results.json object Gradescope expects (see the module docstring)."""
    rejected = report.status == Status.REJECTED
    tests = []
    for exercise in report.exercises:
        score = 0.0 if rejected else finite(exercise.score)
        max_score = finite(exercise.max_score)
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
            "status": "passed" if full_marks(score, max_score) else "failed",
            "output": output,
            "output_format": GRADESCOPE_FORMAT,
            "visibility": exercise.visibility,
        })
    return {
        "score": 0.0 if rejected else finite(report.score),
        "execution_time": finite(report.execution_time),
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
    if report.status == Status.REJECTED:
        lines.append(f"Submission rejected: {_reason(report)}")
    if not report.complete:
        checks = [c for e in report.exercises for c in e.checks]
        ran = sum(c.ran for c in checks)
        lines.append(f"Grading was cut short: {ran} of {len(checks)} checks had run when the "
                     "grader stopped; the scores below count only those. Course staff can "
                     "regrade this submission.")
    shown = [e for e in report.exercises if e.visibility == "visible"]
    if len(shown) == len(report.exercises):
        lines.append(f"Score {fmt(_total(report, shown))} / {fmt(report.max_score)}")
    else:
        held = len(report.exercises) - len(shown)
        lines.append(f"Score {fmt(_total(report, shown))} / "
                     f"{fmt(sum(e.max_score for e in shown))} on the exercises shown now; "
                     f"{held} more {_plural(held, 'exercise')} graded but not shown yet")
    lines.extend(f"Warning: {w}" for w in report.warnings)
    return lines


def _check_line(check) -> str:
    mark = CHECK_MARK if check.passed else CROSS_MARK
    message = check.message.strip().replace("\n", "\n    ")
    return f"{mark} {check.name}: {message}" if message else f"{mark} {check.name}"


# report.json


def staff_report(report: GradeReport) -> dict:
    """Everything in the report as plain JSON data; figures by file name, not inlined,
    and with their line data even where no picture was drawn ("file": null)."""
    return {
        "submission": report.submission,
        "assignment": report.assignment,
        "status": report.status,
        "reason": report.reason,
        "score": finite(report.score),
        "max_score": finite(report.max_score),
        "execution_time": finite(report.execution_time),
        "grader_version": report.grader_version,
        "sandbox_layers": list(report.sandbox_layers),
        "sandbox_missing": list(report.sandbox_missing),
        "warnings": list(report.warnings),
        "staff_notes": list(report.staff_notes),
        "exercises": [{
            "id": e.id,
            "name": e.name,
            "score": finite(e.score),
            "max_score": finite(e.max_score),
            "visibility": e.visibility,
            "checks": [{
                "name": c.name,
                "weight": finite(c.weight),
                "passed": bool(c.passed),
                "ran": bool(c.ran),
                "message": c.message,
                "staff_detail": c.staff_detail,
                "duration_s": finite(c.duration_s),
            } for c in e.checks],
        } for e in report.exercises],
        "cells": [{
            "index": c.index,
            "status": c.status,
            "duration_s": finite(c.duration_s),
            "error": c.error,
            "stdout": c.stdout,
        } for c in report.cells],
        "figures": [{"file": name, "cell": f.cell, "axes": _plain(f.axes)}
                    for name, f in zip(_figure_names(report.figures), report.figures)],
    }


# feedback.md and feedback.html: templates/feedback.md.j2 and templates/feedback.html.j2


def feedback_markdown(report: GradeReport, figures: list[tuple[str, Figure]]) -> str:
    """Student feedback as Markdown; every student-controlled string escaped (the Markdown
    environment escapes every value it prints; only the engine's file names are Verbatim)."""
    context = _feedback_context(report)
    context["figures"] = [{"file": Verbatim(name), "caption": _caption(figure)}
                          for name, figure in figures]
    return render_markdown("feedback.md.j2", **context)


def feedback_html(report: GradeReport, figures: list[tuple[str, Figure]]) -> str:
    """The Markdown feedback's content as one self-contained, script-free HTML page; every
    value autoescaped."""
    context = _feedback_context(report)
    context["figures"] = [{"png_base64": base64.b64encode(figure.png).decode("ascii"),
                           "caption": _caption(figure)} for _, figure in figures]
    return render_html("feedback.html.j2", **context)


def _feedback_context(report: GradeReport) -> dict:
    """What both feedback templates show, as plain data; the figures are added by each."""
    return {
        "title": _headline(report),
        "notes": _preamble(report),
        "exercises": [{"id": e.id, "name": e.name, "score": _score_text(report, e),
                       "checks": e.checks, "heading": e.heading,
                       "link": Verbatim(e.anchor) if e.anchor else "",
                       "failed": any(not c.passed for c in e.checks)}
                      for e in _shown(report)],
        "rejected": report.status == Status.REJECTED,
        "reason": _reason(report),
        "errors": [{"index": c.index, "status": c.status, "message": _first_line(c.error)}
                   for c in _error_cells(report)],
        "check_mark": CHECK_MARK,
        "cross_mark": CROSS_MARK,
    }


# shared helpers


def _headline(report: GradeReport) -> str:
    """Assignment and score over the exercises the feedback shows."""
    shown = _shown(report)
    return (f"{report.assignment}: {fmt(_total(report, shown))} / "
            f"{fmt(sum(e.max_score for e in shown))}")


def _preamble(report: GradeReport) -> list[str]:
    """Lines under the feedback title: rejection, held-back exercises, warnings (the
    sandbox's layers are the staff's business: report.json)."""
    lines = []
    if report.status == Status.REJECTED:
        lines.append(f"Your submission could not be graded: {_reason(report)}")
    hidden = len(report.exercises) - len(_shown(report))
    if hidden:
        lines.append(f"{hidden} more {_plural(hidden, 'exercise')} graded but not shown here.")
    lines.extend(f"Warning: {w}" for w in report.warnings)
    return lines


def _shown(report: GradeReport) -> list[ExerciseResult]:
    return [e for e in report.exercises if e.visibility != "hidden"]


def _total(report: GradeReport, exercises: list[ExerciseResult]) -> float:
    if report.status == Status.REJECTED:
        return 0.0
    return round(sum(e.score for e in exercises), 4)


def _score_text(report: GradeReport, exercise: ExerciseResult) -> str:
    score = 0.0 if report.status == Status.REJECTED else exercise.score
    return f"{fmt(score)} / {fmt(exercise.max_score)}"


def _reason(report: GradeReport) -> str:
    return report.reason.strip() or "no reason recorded"


def _error_cells(report: GradeReport) -> list:
    return [c for c in report.cells if c.status in (CellStatus.ERROR, CellStatus.TIMEOUT) or c.error]


def _figure_names(figures: list[Figure]) -> list[str | None]:
    """Each figure's file `figures/cellNN_k.png`, k counting from 1 within a cell, or
    None where no picture was drawn."""
    names, seen = [], {}
    for figure in figures:
        if not figure.png:
            names.append(None)
            continue
        k = seen[figure.cell] = seen.get(figure.cell, 0) + 1
        names.append(f"figures/cell{int(figure.cell):02d}_{k}.png")
    return names


def _figure_files(figures: list[Figure]) -> list[tuple[str, Figure]]:
    """The figures with a PNG, each with its file name."""
    return [(name, figure) for name, figure in zip(_figure_names(figures), figures) if name]


def _caption(figure: Figure) -> str:
    titles = [ax["title"].strip() for ax in figure.axes
              if isinstance(ax, dict) and isinstance(ax.get("title"), str)]
    titles = [t for t in titles if t]
    return f"Cell {figure.cell}" + (": " + "; ".join(titles) if titles else "")


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def _plural(n: int, word: str) -> str:
    return f"{word} is" if n == 1 else f"{word}s are"


def _plain(value, depth: int = 0):
    """Staff data as strict JSON: str keys, lists, finite floats (else None). The runner
    sends this data, so what no writer can hold becomes None: nesting past MAX_DEPTH
    (json.dumps would recurse out of stack) and integers past 64 bits (Python will not
    turn one of 5,000 digits into text)."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**64 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):
        return _plain(value.tolist(), depth)
    return str(value)


def _write_json(path: Path, data: dict, durable: bool = True) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    write_atomic(path, json_utf8(text + "\n"), durable)
