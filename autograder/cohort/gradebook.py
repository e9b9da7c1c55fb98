"""Export a graded cohort into an nbgrader gradebook, for review in formgrader.

The gradebook holds what `nbgrader generate_assignment` and `nbgrader
autograde` would have written: the assignment, its notebook and cells (as
nbgrader's own SaveCells step records them), the students, and one submission
per student whose grade cells carry our scores as `auto_score`. Staff can then
open formgrader, or run `nbgrader export`, on the same database; scores they
enter by hand (`manual_score`) take precedence there and survive a re-export.

Student ids come from file names and upload metadata, and formgrader writes an
id into its pages' scripts unescaped (`var student_id = "{{ student_id }}";`),
so an id outside `[A-Za-z0-9_.@+-]{1,64}` is exported as a safe one
(`gradebook_id`); a CSV beside the gradebook maps each back to the original.
"""

import csv
import hashlib
import re
import warnings
from pathlib import Path

import nbformat
import nbgrader
import sqlalchemy
from alembic.config import Config
from alembic.script import ScriptDirectory
from nbgrader.api import Gradebook
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
    SaveCells,
)

from ..assignment import Assignment
from ..outcome import CohortEntry, Status
from ..release import nbgrader_config
from ..render import utf8
from .exports import csv_text

EXPORTED = (Status.GRADED, Status.REJECTED)
SAFE_ID = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
MAPPED_ID = re.compile(r".*-[0-9a-f]{16}")


def gradebook_id(student: str) -> str:
    """The id nbgrader gets for `student`: the id itself when it is plain, else a
    readable slug of it and a hash. A plain id shaped like slug-and-hash is mapped too,
    so that no student can take another's mapped id by choosing it as a file name."""
    if SAFE_ID.fullmatch(student) and not MAPPED_ID.fullmatch(student):
        return student
    slug = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", student).strip("_.")[:40] or "student"
    return f"{slug}-{hashlib.sha256(utf8(student)).hexdigest()[:16]}"


def export_gradebook(entries: list[CohortEntry], assignment: Assignment, url: str,
                     ids_csv: Path | None = None) -> int:
    """Write the cohort's scores into the gradebook at `url` (a SQLAlchemy URL,
    e.g. ``sqlite:////course/gradebook.db``); returns the submissions written.
    `ids_csv` (default: `<database>_student_ids.csv` beside a SQLite file) receives
    each exported student's id and the gradebook id it got.

    Graded entries get their per-exercise points, rejected ones (no gradable
    notebook) 0 on every exercise. Duplicates (another input already stands for
    the student) and errors (a grader fault: regrade rather than record a 0)
    are not written, and a submission exported earlier is left as it was.
    Re-exporting updates rows in place. Raises RuntimeError, as nbgrader does,
    if cells were added to or removed from the master after submissions were
    recorded (nbgrader copies the cell layout into each submission once).
    """
    notebook = assignment.master.stem
    ids = _write_ids([e for e in entries if e.status in EXPORTED], ids_csv or _beside(url))
    _stamp_if_new(url)
    with Gradebook(url) as gb:
        gb.update_or_create_assignment(assignment.name)
    _save_cells(assignment, url)
    written = 0
    with Gradebook(url) as gb:
        for entry in entries:
            student = ids.get(entry.student) if entry.status in EXPORTED else None
            if student is None:
                continue
            gb.update_or_create_student(student)
            with warnings.catch_warnings():
                # nbgrader's add_submission builds rows before adding them to the
                # session; SQLAlchemy 2 warns, and the cascade adds them all the same
                warnings.filterwarnings("ignore", "Object of type", sqlalchemy.exc.SAWarning)
                gb.update_or_create_submission(assignment.name, student)
            grades = {grade.name: grade for grade in
                      gb.find_submission_notebook(notebook, assignment.name, student).grades}
            for exercise in assignment.exercises:
                grade = grades[exercise.grade_id]
                points = entry.exercises.get(exercise.id, 0.0) if entry.status == Status.GRADED else 0.0
                grade.auto_score = float(points)
                # as nbgrader's SaveAutoGrades: a hand-entered score keeps the cell under review
                grade.needs_manual_grade = grade.manual_score is not None
            gb.db.commit()
            written += 1
    return written


def _write_ids(entries: list[CohortEntry], path: Path | None) -> dict[str, str]:
    """Each entry's gradebook id, written to `path` for the TA to trace back."""
    ids = {entry.student: gradebook_id(entry.student) for entry in entries}
    if path is None:
        if any(safe != student for student, safe in ids.items()):
            raise ValueError("some student ids get safe gradebook ids: name a file for "
                             "the mapping (ids_csv)")
        return ids
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["student", "gradebook_id"],
                                      *([csv_text(s), safe] for s, safe in ids.items())])
    return ids


def _beside(url: str) -> Path | None:
    """`<database>_student_ids.csv` beside a SQLite gradebook file, else None."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = Path(parsed.database)
    return database.with_name(f"{database.stem}_student_ids.csv")


def _save_cells(assignment: Assignment, url: str) -> None:
    """Record the notebook's grade, solution and source cells with nbgrader's
    SaveCells, on the notebook as `generate_assignment` hands it that step, so
    formgrader (which looks up a comment per solution cell) and any later
    nbgrader command find the rows and checksums they expect."""
    nb = nbformat.read(assignment.master, as_version=nbformat.NO_CONVERT)
    config = nbgrader_config(assignment)
    resources: dict = {}
    for step in (LockCells, ClearSolutions, ClearOutput, CheckCellMetadata, ComputeChecksums):
        nb, resources = step(config=config).preprocess(nb, resources)
    resources["nbgrader"] = {"notebook": assignment.master.stem,
                             "assignment": assignment.name, "db_url": url}
    SaveCells(config=config).preprocess(nb, resources)


def _stamp_if_new(url: str) -> None:
    """Give a new database nbgrader's schema version, as Gradebook() would, but
    in-process: Gradebook() runs the `alembic` executable from PATH for it, which
    fails when the venv's python runs without the venv activated."""
    config = Config()
    config.set_main_option("script_location", str(Path(nbgrader.__file__).parent / "alembic"))
    head = ScriptDirectory.from_config(config).get_current_head()
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as db:
            if not sqlalchemy.inspect(db).get_table_names():
                db.execute(sqlalchemy.text(
                    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
                db.execute(sqlalchemy.text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})
    finally:
        engine.dispose()
