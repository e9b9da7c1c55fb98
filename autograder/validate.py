"""`autograder validate ASSIGNMENT`: does this assignment work, before any student sees it?

It grades the master with the hidden and the visible suites (full marks, or
the checks that lose points), builds the release in a scratch folder and
grades it (0 points, and its first error at a stub), and checks the
assignment's shape: every exercise with hidden and visible checks, every
grade cell of the master named by an exercise, nothing hidden or reference in
the release, budgets that fit the Gradescope limit. It lists each
exercise's visibility and the slowest checks, and records the master's costs
(`costs.json`) when the master scores full marks. Any failure makes the exit
code non-zero.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .assignment import Assignment
from .outcome import GradeReport

SLOWEST = 5


@dataclass
class Finding:
    passed: bool | None  # None: for information only
    what: str
    details: tuple[str, ...] = ()


def validate(assignment: Assignment, timeout_s: int, progress=print) -> list[Finding]:
    """Every finding about the assignment, in the order they were made."""
    from .grader import (
        KEY_FILE,
        costs_from,
        grade,
        grade_master,
        lost_points,
        recording_key,
        write_answer_key,
        write_costs,
    )
    from .gradescope import budgets_misfit
    from .release import build_release

    misfit = budgets_misfit(assignment.budgets, timeout_s)
    findings = [_shape(assignment),
                Finding(misfit is None, f"the budgets fit Gradescope's {timeout_s} s limit",
                        (misfit,) if misfit else ())]
    progress("grading the master with the hidden suite ...")
    key = recording_key()
    hidden = grade_master(assignment, answers=key)
    lost = lost_points(hidden)
    master_full = not lost
    findings.append(Finding(master_full, "the master scores full marks on the hidden suite",
                            tuple(lost[:10])))
    findings.append(_checks_per_exercise(assignment, hidden, "hidden"))
    if assignment.visible is not None:
        progress("grading the master with the visible suite ...")
        visible = grade_master(assignment, assignment.visible)
        lost = lost_points(visible)
        findings.append(Finding(not lost, "the master scores full marks on the visible suite",
                                tuple(lost[:10])))
        findings.append(_checks_per_exercise(assignment, visible, "visible"))
    else:
        findings.append(Finding(False, "the assignment has a visible suite",
                                ("set [grading] visible: students self-check with it",)))
    with tempfile.TemporaryDirectory() as scratch:
        progress("building and grading the release ...")
        release = build_release(assignment, scratch)
        findings.append(_no_secrets(assignment, release))
        notebook = release / assignment.release_notebook_dir / assignment.master.name
        findings += _release_grade(grade(notebook, assignment), notebook)
    findings.append(Finding(None, "visibility", tuple(
        f"{e.id} {e.name}: {e.visibility}" for e in assignment.exercises)))
    findings.append(_slowest(hidden))
    if master_full:
        write_costs(assignment, costs_from(hidden, assignment))
        write_answer_key(assignment, key)
        costs = json.loads(assignment.costs_path.read_text())
        findings.append(Finding(None, f"costs recorded in {assignment.costs_path.name} and "
                                f"the answer key in {KEY_FILE}", (
            (f"{len(costs['cells'])} cells, {len(costs['calls'])} checked functions, "
             f"{len(key.entries)} reference results"),)))
    return findings


def _shape(assignment: Assignment) -> Finding:
    """Every grade cell with points is an exercise's, and the points add up."""
    cells = json.loads(assignment.master.read_text(encoding="utf-8")).get("cells", [])
    graded = {c["metadata"]["nbgrader"]["grade_id"]: float(c["metadata"]["nbgrader"]["points"])
              for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
    named = {e.grade_id for e in assignment.exercises}
    orphans = [f"grade cell {g} ({p:g} points) is no exercise's: add an [[exercises]] entry"
               for g, p in graded.items() if g not in named]
    total = sum(e.points for e in assignment.exercises)
    return Finding(not orphans and total > 0,
                   f"every grade cell is an exercise's; {len(assignment.exercises)} exercises, "
                   f"{total:g} points", tuple(orphans))


def _checks_per_exercise(assignment: Assignment, report: GradeReport, suite: str) -> Finding:
    counts = {e.id: len(e.checks) for e in report.exercises}
    missing = [f"exercise {i} has no {suite} check" for i, n in counts.items() if not n]
    return Finding(not missing, f"every exercise has {suite} checks", tuple(missing) or tuple(
        f"{i}: {n}" for i, n in counts.items()))


def _no_secrets(assignment: Assignment, release: Path) -> Finding:
    """No file of the hidden suite or of what it depends on is in the release."""
    secrets: dict[bytes, str] = {}
    roots = [p for p in (assignment.hidden, *assignment.depends) if p is not None]
    for root in roots:
        for path in (root.rglob("*") if root.is_dir() else [root]):
            if path.is_file() and "__pycache__" not in path.parts and path.stat().st_size:
                secrets[path.read_bytes()] = str(path)
    public = set()
    if assignment.visible is not None:  # a helper the visible suite shares on purpose
        public = {p.read_bytes() for p in assignment.visible.rglob("*") if p.is_file()}
    leaks = [f"{path.relative_to(release)} is a copy of {secrets[data]}"
             for path in sorted(release.rglob("*")) if path.is_file()
             and (data := path.read_bytes()) in secrets and data not in public]
    return Finding(not leaks, "no hidden or reference file reaches the release", tuple(leaks))


def _release_grade(report: GradeReport, notebook: Path) -> list[Finding]:
    """The unfilled release earns nothing, and its first error is in an exercise's
    cell (one with an nbgrader grade id: a stub, or the test after it)."""
    from .submission import load

    earned = [f"{e.id}: {e.score:g} of {e.max_score:g}" for e in report.exercises if e.score]
    findings = [Finding(not earned, "the release scores 0 on the hidden suite", tuple(earned))]
    stubs = {c.index for c in load(notebook).cells if not c.key.startswith("code:")}
    errors = [c for c in report.cells if c.error]
    first = errors[0] if errors else None
    at_stub = first is None or first.index in stubs or "NotImplementedError" in first.error
    why = () if at_stub else (
        f"cell {first.index} raised {first.error.splitlines()[0][:200]} before any stub",)
    findings.append(Finding(at_stub, "the release runs its given cells without error", why))
    return findings


def _slowest(report: GradeReport) -> Finding:
    checks = sorted((c for e in report.exercises for c in e.checks),
                    key=lambda c: c.duration_s, reverse=True)
    return Finding(None, f"slowest hidden checks (of {len(checks)})", tuple(
        f"{c.duration_s:6.2f} s  {c.exercise} {c.name}" for c in checks[:SLOWEST]))


def render(findings: list[Finding]) -> str:
    """The report a course's staff reads."""
    marks = {True: "✓", False: "✗", None: "·"}
    lines = []
    for finding in findings:
        lines.append(f"{marks[finding.passed]} {finding.what}")
        lines += [f"    {detail}" for detail in finding.details]
    failed = sum(f.passed is False for f in findings)
    lines.append(f"\n{failed} problems found" if failed else "\nthe assignment is ready")
    return "\n".join(lines)
