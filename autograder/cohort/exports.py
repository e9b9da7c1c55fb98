"""The cohort's grade tables: `grades.csv` (every input, with status, reason and flags),
and the same scores in the import formats of Gradescope (`grades_gradescope.csv`) and
nbgrader (`grades_nbgrader.csv`, the columns of `nbgrader export`).

Every student-controlled cell goes through `csv_text`, so that no spreadsheet runs it
as a formula; numbers stay numbers. Each file is written whole, then renamed into place.
"""

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from ..assignment import Assignment
from ..outcome import CohortEntry, Status
from ..render import valid_text

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NBGRADER_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name",
                    "first_name", "email", "raw_score", "late_submission_penalty", "score",
                    "max_score")


def csv_text(text: str) -> str:
    """A student-controlled cell that a spreadsheet shows as text, never runs: one that
    starts like a formula (= + - @, tab, CR) gets a leading ', and lone surrogates become
    escapes (csv would fail to encode them)."""
    text = valid_text(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_grade_tables(entries: list[CohortEntry], assignment: Assignment,
                       out_dir: Path) -> None:
    ids = [e.id for e in assignment.exercises]
    _write(out_dir / "grades.csv",
           ["student", "source", "status", "reason", "score", "max_score", *ids, "runtime_s",
            "flags"],
           ([csv_text(e.student), csv_text(e.source), e.status, csv_text(e.reason),
             f"{e.score:g}", f"{e.max_score:g}",
             *(f"{e.exercises.get(i, 0.0):g}" if e.status == Status.GRADED else "" for i in ids),
             f"{e.runtime_s:.1f}", csv_text("; ".join(e.flags))] for e in entries))
    graded = [e for e in entries if e.status == Status.GRADED]
    names = [f"{e.id}: {e.name} ({e.points:g} pts)" for e in assignment.exercises]
    # Gradescope matches rows by email where the id is one, else by SID.
    _write(out_dir / "grades_gradescope.csv", ["SID", "Email", *names, "Total Score"],
           (["" if "@" in e.student else csv_text(e.student),
             csv_text(e.student) if "@" in e.student else "",
             *(f"{e.exercises.get(i, 0.0):g}" for i in ids), f"{e.score:g}"] for e in graded))
    _write(out_dir / "grades_nbgrader.csv", list(NBGRADER_COLUMNS),
           ([csv_text(assignment.name), "", "", csv_text(e.student), "", "", "",
             f"{e.score:g}", "0", f"{e.score:g}", f"{e.max_score:g}"] for e in graded))


def _write(path: Path, header: list[str], rows: Iterable[list[str]]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, path)
