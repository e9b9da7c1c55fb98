"""Write the cohort report: one self-contained HTML page for the TAs after a cohort run.

It shows how the cohort did (totals, a score histogram, per-exercise means and pass rates),
where students got stuck (the most frequent failure messages per exercise), how long
grading took (runtime histogram and min / median / p90 / max) and which inputs need a
person (timeouts, sandbox violations, identical submissions, rejected, duplicate and error
entries).

The page has no scripts and loads nothing: charts are inline SVG, and it carries the same
Content-Security-Policy as feedback.html. Student ids, sources, reasons, flags and failure
messages are all student-controlled, so every one is escaped.
"""

import html
import math
import statistics
from collections import Counter
from pathlib import Path

from .assignment import Assignment
from .outcome import CohortEntry
from .report import CSP, CSS, _fmt, _full_marks, _number, _write_atomic

REPORT_NAME = "report.html"
TOP_FAILURES = 3
STATUSES = ("graded", "rejected", "duplicate", "error")
# Flagged table order: the entries most in need of a person first.
SEVERITY = {"error": 0, "rejected": 1, "duplicate": 2, "graded": 3}

COHORT_CSS = CSS + """
td.num, th.num { text-align: right; }
td { vertical-align: top; }
/* Free text may wrap anywhere, so that a long id or message cannot widen the page. */
td.msg { overflow-wrap: anywhere; }
table.wide { width: 100%; }
.note { font-size: 0.85em; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 0.5em 0; }
svg.chart .bar { fill: #4a6fa5; }
svg.chart .axis { stroke: #444; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #222; }
@media print {
  body { max-width: none; margin: 0; font-size: 10pt; }
  h2 { break-after: avoid; }
  tr, svg.chart { break-inside: avoid; }
  svg.chart .bar { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""


def write_cohort_report(entries: list[CohortEntry], assignment: Assignment, path: Path) -> Path:
    """Write the report to `path` if it names an .html file, else to `path`/report.html, and
    return the file written. Works for an empty cohort and for one with nothing graded."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, _cohort_html(entries, assignment).encode())
    return path


def _cohort_html(entries: list[CohortEntry], assignment: Assignment) -> str:
    """The report page as one string."""
    esc = html.escape
    title = f"{assignment.title}: cohort report"
    graded = [e for e in entries if e.status == "graded"]
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
           f"<title>{esc(title)}</title>", f"<style>{COHORT_CSS}</style>", "</head>", "<body>",
           f"<h1>{esc(title)}</h1>"]
    out += _summary(entries, graded, assignment)
    out += _scores(graded, assignment)
    out += _exercise_table(graded, assignment)
    out += _failure_table(graded, assignment)
    out += _runtimes(entries, assignment)
    out += _flagged_table(entries)
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def _summary(entries: list[CohortEntry], graded: list[CohortEntry],
             assignment: Assignment) -> list[str]:
    counts = Counter(e.status for e in entries)
    totals = [_number(e.score) for e in graded]
    max_total = _max_total(assignment)
    mean = f"{_fmt(statistics.fmean(totals))} / {_fmt(max_total)}" if totals else "–"
    median = f"{_fmt(statistics.median(totals))} / {_fmt(max_total)}" if totals else "–"
    heads = ["Inputs", "Graded", "Rejected", "Duplicates", "Errors", "Mean total",
             "Median total"]
    values = [len(entries), *(counts[s] for s in STATUSES), mean, median]
    return ['<table id="summary">', _head_row(*(f"#{h}" for h in heads)),
            "<tr>" + "".join(f'<td class="num">{v}</td>' for v in values) + "</tr>",
            "</table>"]


def _scores(graded: list[CohortEntry], assignment: Assignment) -> list[str]:
    out = ["<h2>Score distribution</h2>"]
    if not graded:
        return out + ["<p>No graded submissions.</p>"]
    hi = _max_total(assignment) or max(_number(e.score) for e in graded) or 1.0
    # One bin per point for small integer totals, so each bar is a score students can get.
    bins = int(hi) if hi == int(hi) and 1 <= hi <= 20 else 10
    out.append(_histogram_svg("score-histogram", [_number(e.score) for e in graded], hi, bins,
                              "total points", "submissions"))
    return out


def _exercise_table(graded: list[CohortEntry], assignment: Assignment) -> list[str]:
    """Mean points and pass rate (full points) per exercise, over the graded entries."""
    out = ["<h2>Exercises</h2>",
           (f"<p>Over the {len(graded)} graded submissions; "
            "pass rate is the share with full points on the exercise.</p>"),
           '<table id="exercises">',
           _head_row("Exercise", "Name", "#Points", "#Mean score", "#Pass rate"),
           "<tbody>"]
    for ex in assignment.exercises:
        points = [_number(e.exercises.get(ex.id, 0.0)) for e in graded]
        mean = _fmt(statistics.fmean(points)) if points else "–"
        full = sum(_full_marks(p, ex.points) for p in points)
        rate = f"{100 * full / len(points):.0f}%" if points else "–"
        out.append(f"<tr><td>{html.escape(ex.id)}</td><td>{html.escape(ex.name)}</td>"
                   f'<td class="num">{_fmt(ex.points)}</td><td class="num">{mean}</td>'
                   f'<td class="num">{rate}</td></tr>')
    out += ["</tbody>", "</table>"]
    return out


def _failure_table(graded: list[CohortEntry], assignment: Assignment) -> list[str]:
    """The most frequent messages per exercise, counting each student once per message:
    whitespace is collapsed so that the same failure groups however it was wrapped."""
    counts: dict[str, Counter] = {}
    for entry in graded:
        seen = {(str(ex), " ".join(str(msg).split()) or "(no message)")
                for ex, msg in entry.failures}
        for ex, msg in seen:
            counts.setdefault(ex, Counter())[msg] += 1
    out = ["<h2>Most frequent failures</h2>"]
    if not counts:
        return out + ["<p>No failures recorded.</p>"]
    known = [ex.id for ex in assignment.exercises]
    order = [ex for ex in known if ex in counts] + sorted(set(counts) - set(known))
    out += [(f"<p>Top {TOP_FAILURES} messages per exercise over the graded submissions; "
             "a student counts once per message.</p>"),
            '<table id="failures">', _head_row("Exercise", "Message", "#Students"), "<tbody>"]
    for ex in order:
        top = sorted(counts[ex].items(), key=lambda item: (-item[1], item[0]))[:TOP_FAILURES]
        out += [f'<tr><td>{html.escape(ex)}</td><td class="msg">{html.escape(msg)}</td>'
                f'<td class="num">{n}</td></tr>' for msg, n in top]
    out += ["</tbody>", "</table>"]
    return out


def _runtimes(entries: list[CohortEntry], assignment: Assignment) -> list[str]:
    """Grading time of the inputs that were run: duplicates are not, nor is a file rejected
    before it started (runtime 0)."""
    times = sorted(_number(e.runtime_s) for e in entries
                   if e.status != "duplicate" and _number(e.runtime_s) > 0)
    out = ["<h2>Runtime</h2>"]
    if not times:
        return out + ["<p>No runtimes recorded.</p>"]
    stats = [("min", times[0]), ("median", statistics.median(times)),
             ("p90", _percentile(times, 0.9)), ("max", times[-1])]
    out += ['<table id="runtime">', _head_row(*(f"#{name}" for name, _ in stats)),
            "<tr>" + "".join(f'<td class="num">{_fmt(v)} s</td>' for _, v in stats) + "</tr>",
            "</table>",
            (f'<p class="note">{len(times)} inputs run; the budget is '
             f"{_fmt(assignment.budgets.total_timeout_s)} s per notebook.</p>"),
            _histogram_svg("runtime-histogram", times, _nice_ceiling(times[-1]), 10,
                           "seconds", "inputs")]
    return out


def _flagged_table(entries: list[CohortEntry]) -> list[str]:
    """Every entry a person should look at: not graded, or graded with a flag."""
    flagged = [e for e in entries if e.status != "graded" or e.flags]
    flagged.sort(key=lambda e: (SEVERITY.get(e.status, -1), e.student, e.source))
    out = ["<h2>Flagged submissions</h2>"]
    if not flagged:
        return out + ["<p>None.</p>"]
    esc = html.escape
    out += ['<table id="flagged" class="wide">', _head_row("Student", "Status", "Flags", "Reason"),
            "<tbody>"]
    # The source goes under the student id: a file path wraps badly in a column of its own.
    out += [f'<tr><td class="msg">{esc(e.student)}<br><span class="note">{esc(e.source)}</span>'
            f'</td><td>{esc(e.status)}</td><td class="msg">{esc("; ".join(e.flags))}</td>'
            f'<td class="msg">{esc(e.reason)}</td></tr>' for e in flagged]
    out += ["</tbody>", "</table>"]
    return out


def _head_row(*heads: str) -> str:
    """A table head; a leading "#" marks a numeric, right-aligned column."""
    cells = "".join(f'<th class="num">{h[1:]}</th>' if h.startswith("#") else f"<th>{h}</th>"
                    for h in heads)
    return f"<thead><tr>{cells}</tr></thead>"


# charts and statistics

WIDTH, HEIGHT = 600, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 24, 20, 44


def _histogram_svg(element_id: str, values: list[float], hi: float, bins: int,
                   xlabel: str, ylabel: str) -> str:
    """Bars over [0, hi] in `bins` equal bins, the last one closed; each bar has its range
    and count as a tooltip."""
    counts = _bin_counts(values, hi, bins)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / bins
    tallest = max(counts) or 1
    base = TOP + plot_h
    head = (f'<svg id="{element_id}" class="chart" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{ylabel} per {xlabel}">')
    out = [head]
    for i, count in enumerate(counts):
        x = LEFT + i * bar_w
        h = plot_h * count / tallest
        lo_edge, hi_edge = _fmt(hi * i / bins), _fmt(hi * (i + 1) / bins)
        out.append(f'<rect class="bar" x="{x + 1:.1f}" y="{base - h:.1f}" '
                   f'width="{bar_w - 2:.1f}" height="{h:.1f}">'
                   f"<title>{lo_edge}–{hi_edge}: {count}</title></rect>")
        if count:
            out.append(f'<text x="{x + bar_w / 2:.1f}" y="{base - h - 4:.1f}" '
                       f'text-anchor="middle">{count}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"/>')
    for i in range(bins + 1):
        out.append(f'<text x="{LEFT + i * bar_w:.1f}" y="{base + 14}" text-anchor="middle">'
                   f"{_fmt(hi * i / bins)}</text>")
    out.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
               f"{xlabel}</text>")
    out.append(f'<text x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{ylabel}</text>')
    out.append("</svg>")
    return "".join(out)


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
