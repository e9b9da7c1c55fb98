"""Write the cohort report: one self-contained HTML page for the TAs after a cohort run.

It shows how the cohort did (totals, a score histogram, per-exercise means and pass rates),
where students got stuck (the most frequent failure messages per exercise), how long
grading took (runtime histogram and min / median / p90 / max) and which inputs need a
person (timeouts, sandbox violations, identical submissions, rejected, duplicate and error
entries).

The page is `templates/cohort_report.html.j2`, rendered by `render.HTML`, which autoescapes
every value: student ids, sources, reasons, flags and failure messages are all
student-controlled and reach the template only as data. This module computes the numbers
and the charts' geometry; the template writes the markup, the SVG charts included. The page
has no scripts and loads nothing: charts are inline SVG, and it carries the same
Content-Security-Policy as feedback.html.
"""

import math
import statistics
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from ..assignment import Assignment
from ..outcome import CohortEntry, Status
from ..render import finite, fmt, full_marks, render_html, utf8, write_atomic
from .pool import feedback_folder

REPORT_NAME = "report.html"
TEMPLATE = "cohort_report.html.j2"
TOP_FAILURES = 3
# Flagged table order: the entries most in need of a person first.
SEVERITY = {Status.ERROR: 0, Status.REJECTED: 1, Status.DUPLICATE: 2, Status.GRADED: 3}
NO_VALUE = "–"


def write_cohort_report(entries: list[CohortEntry], assignment: Assignment, path: Path) -> Path:
    """Write the report to `path` if it names an .html file, else to `path`/report.html, and
    return the file written. Works for an empty cohort and for one with nothing graded."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, utf8(cohort_html(entries, assignment, path.parent)))
    return path


def cohort_html(entries: list[CohortEntry], assignment: Assignment,
                out_dir: Path | None = None) -> str:
    """The report page as one string; with `out_dir`, each student whose feedback
    page is there links to it."""
    graded = [e for e in entries if e.status == Status.GRADED]
    links = {e.student: _feedback_link(e, out_dir) for e in entries}
    return render_html(
        TEMPLATE,
        title=f"{assignment.title}: cohort report",
        summary=_summary(entries, graded, assignment),
        score_chart=_score_chart(graded, assignment),
        graded_count=len(graded),
        exercises=_exercise_rows(graded, assignment),
        failures=_failure_rows(graded, assignment),
        top_failures=TOP_FAILURES,
        runtime=_runtime(entries, assignment),
        flagged=_flagged(entries, links),
        students=[{"student": e.student, "status": e.status,
                   "score": fmt(finite(e.score)) if e.status == Status.GRADED else NO_VALUE,
                   "feedback": links[e.student]} for e in entries],
    )


def _feedback_link(entry: CohortEntry, out_dir: Path | None) -> str:
    """The student's feedback page, relative to the report, if it was written."""
    if out_dir is None:
        return ""
    relative = f"feedback/{feedback_folder(entry.student)}/feedback.html"
    return quote(relative) if (out_dir / relative).is_file() else ""


def _summary(entries: list[CohortEntry], graded: list[CohortEntry],
             assignment: Assignment) -> list[tuple[str, str]]:
    """(head, value) pairs of the summary table."""
    counts = Counter(e.status for e in entries)
    totals = [finite(e.score) for e in graded]
    max_total = _max_total(assignment)
    mean = f"{fmt(statistics.fmean(totals))} / {fmt(max_total)}" if totals else NO_VALUE
    median = f"{fmt(statistics.median(totals))} / {fmt(max_total)}" if totals else NO_VALUE
    heads = ["Inputs", "Graded", "Rejected", "Duplicates", "Errors", "Mean total",
             "Median total"]
    values = [len(entries), *(counts[s] for s in Status), mean, median]
    return list(zip(heads, (str(v) for v in values), strict=True))


def _score_chart(graded: list[CohortEntry], assignment: Assignment) -> dict | None:
    if not graded:
        return None
    hi = _max_total(assignment) or max(finite(e.score) for e in graded) or 1.0
    # One bin per point for small integer totals, so each bar is a score students can get.
    bins = int(hi) if hi == int(hi) and 1 <= hi <= 20 else 10
    return _histogram("score-histogram", [finite(e.score) for e in graded], hi, bins,
                      "total points", "submissions")


def _exercise_rows(graded: list[CohortEntry], assignment: Assignment) -> list[dict]:
    """Mean points and pass rate (full points) per exercise, over the graded entries."""
    rows = []
    for ex in assignment.exercises:
        points = [finite(e.exercises.get(ex.id, 0.0)) for e in graded]
        full = sum(full_marks(p, ex.points) for p in points)
        rows.append({"id": ex.id, "name": ex.name, "points": fmt(ex.points),
                     "mean": fmt(statistics.fmean(points)) if points else NO_VALUE,
                     "rate": f"{100 * full / len(points):.0f}%" if points else NO_VALUE})
    return rows


def _failure_rows(graded: list[CohortEntry], assignment: Assignment) -> list[dict]:
    """The most frequent messages per exercise, counting each student once per message:
    whitespace is collapsed so that the same failure groups however it was wrapped."""
    counts: dict[str, Counter] = {}
    for entry in graded:
        seen = {(str(ex), " ".join(str(msg).split()) or "(no message)")
                for ex, msg in entry.failures}
        for ex, msg in seen:
            counts.setdefault(ex, Counter())[msg] += 1
    known = [ex.id for ex in assignment.exercises]
    order = [ex for ex in known if ex in counts] + sorted(set(counts) - set(known))
    rows = []
    for ex in order:
        top = sorted(counts[ex].items(), key=lambda item: (-item[1], item[0]))[:TOP_FAILURES]
        rows += [{"exercise": ex, "message": msg, "students": n} for msg, n in top]
    return rows


def _runtime(entries: list[CohortEntry], assignment: Assignment) -> dict | None:
    """Grading time of the inputs that were run: duplicates are not, nor is a file rejected
    before it started (runtime 0)."""
    times = sorted(finite(e.runtime_s) for e in entries
                   if e.status != Status.DUPLICATE and finite(e.runtime_s) > 0)
    if not times:
        return None
    stats = [("min", times[0]), ("median", statistics.median(times)),
             ("p90", _percentile(times, 0.9)), ("max", times[-1])]
    return {"stats": [(name, f"{fmt(value)} s") for name, value in stats],
            "count": len(times),
            "budget": fmt(assignment.budgets.total_timeout_s),
            "chart": _histogram("runtime-histogram", times, _nice_ceiling(times[-1]), 10,
                                "seconds", "inputs")}


def _flagged(entries: list[CohortEntry], links: dict[str, str]) -> list[dict]:
    """Every entry a person should look at: not graded, or graded with a flag; worst first."""
    flagged = [e for e in entries if e.status != Status.GRADED or e.flags]
    flagged.sort(key=lambda e: (SEVERITY.get(e.status, -1), e.student, e.source))
    return [{"student": e.student, "source": e.source, "status": e.status,
             "flags": "; ".join(e.flags), "reason": e.reason, "feedback": links[e.student]}
            for e in flagged]


# charts and statistics

WIDTH, HEIGHT = 600, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 24, 20, 44


def _histogram(element_id: str, values: list[float], hi: float, bins: int,
               xlabel: str, ylabel: str) -> dict:
    """The geometry of a histogram over [0, hi] in `bins` equal bins, the last one closed,
    for the template's `histogram` macro; each bar has its range and count as a tooltip."""
    counts = _bin_counts(values, hi, bins)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / bins
    tallest = max(counts) or 1
    base = TOP + plot_h
    bars = []
    for i, count in enumerate(counts):
        x = LEFT + i * bar_w
        h = plot_h * count / tallest
        bars.append({"x": f"{x + 1:.1f}", "y": f"{base - h:.1f}", "width": f"{bar_w - 2:.1f}",
                     "height": f"{h:.1f}", "count": count,
                     "tip": f"{fmt(hi * i / bins)}–{fmt(hi * (i + 1) / bins)}: {count}",
                     "label_x": f"{x + bar_w / 2:.1f}", "label_y": f"{base - h - 4:.1f}"})
    mid_y = f"{TOP + plot_h / 2:.1f}"
    return {
        "id": element_id, "width": WIDTH, "height": HEIGHT, "label": f"{ylabel} per {xlabel}",
        "bars": bars,
        "axis": {"x1": LEFT, "y1": base, "x2": WIDTH - RIGHT, "y2": base},
        "ticks": [{"x": f"{LEFT + i * bar_w:.1f}", "y": base + 14, "text": fmt(hi * i / bins)}
                  for i in range(bins + 1)],
        "xlabel": {"x": f"{LEFT + plot_w / 2:.1f}", "y": HEIGHT - 6, "text": xlabel},
        "ylabel": {"x": 12, "y": mid_y, "text": ylabel,
                   "transform": f"rotate(-90 12 {mid_y})"},
    }


def _bin_counts(values: list[float], hi: float, bins: int) -> list[int]:
    """Counts per bin over [0, hi]; values outside fall into the first or last bin."""
    counts = [0] * bins
    for v in values:
        counts[min(max(int(v * bins / hi), 0), bins - 1)] += 1
    return counts


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of a sorted list."""
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _nice_ceiling(x: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at least x: round axis ends."""
    power = 10 ** math.floor(math.log10(x))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= x)


def _max_total(assignment: Assignment) -> float:
    return sum(ex.points for ex in assignment.exercises)
