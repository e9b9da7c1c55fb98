"""Where a cohort's results live between runs: one row per student.

SQLite by default, any SQLAlchemy URL (PostgreSQL for a shared server). A
row is written in one transaction after its submission is graded, so a run
killed at any moment (kill -9 included) loses at most the submissions in
flight; the next run regrades exactly those, plus any whose file or grader
version changed. A row in error remembers how many runs in a row failed on
the same file (`attempts`), so that a rerun retries it once, not forever.
"""

import json
from dataclasses import asdict
from typing import NamedTuple

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine

from ..outcome import CohortEntry, Status
from ..render import valid_text

_metadata = MetaData()
results = Table(
    "results", _metadata,
    Column("student", String(400), primary_key=True),
    Column("source", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("score", Float, nullable=False),
    Column("max_score", Float, nullable=False),
    Column("exercises", Text, nullable=False),  # JSON
    Column("failures", Text, nullable=False),  # JSON
    Column("runtime_s", Float, nullable=False),
    Column("flags", Text, nullable=False),  # JSON
    Column("digest", String(64), nullable=False),  # sha256 of the notebook file
    Column("code_digest", String(64), nullable=False),  # of its code, for twins
    Column("grader_version", String(64), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="1"),
)
_JSON = ("exercises", "failures", "flags")


class Stored(NamedTuple):
    """What decides whether a student needs grading again."""

    digest: str
    grader_version: str
    status: Status
    attempts: int


class ResultStore:
    """Graded results keyed by student, with what they were graded from."""

    def __init__(self, url: str):
        self.engine: Engine = create_engine(url)
        _metadata.create_all(self.engine)
        columns = {c["name"] for c in inspect(self.engine).get_columns("results")}
        if "attempts" not in columns:  # a store written before attempts were counted
            with self.engine.begin() as connection:
                connection.execute(text("ALTER TABLE results ADD COLUMN attempts "
                                        "INTEGER NOT NULL DEFAULT 1"))

    def graded_from(self) -> dict[str, Stored]:
        """student -> what their stored row was graded from and how it ended."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(results.c.student, results.c.digest, results.c.grader_version,
                       results.c.status, results.c.attempts)).all()
        return {student: Stored(digest, version, Status(status), attempts)
                for student, digest, version, status, attempts in rows}

    def save(self, entry: CohortEntry, code_digest: str, grader_version: str,
             attempts: int = 1) -> None:
        """Replace the student's row, atomically. Its text is the student's, and a lone
        surrogate in it (a file name that is not UTF-8) is stored as an escape: the
        database cannot encode one, and one submission must not stop the run."""
        row = asdict(entry)
        for key in ("student", "source", "reason"):
            row[key] = valid_text(row[key])
        row["failures"] = [[valid_text(exercise), valid_text(message)]
                           for exercise, message in entry.failures]
        row["flags"] = [valid_text(flag) for flag in entry.flags]
        for key in _JSON:
            row[key] = json.dumps(row[key])
        row.update(code_digest=code_digest, grader_version=grader_version, attempts=attempts)
        with self.engine.begin() as connection:
            connection.execute(results.delete().where(results.c.student == row["student"]))
            connection.execute(results.insert().values(**row))

    def forget(self, student: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(results.delete().where(results.c.student == valid_text(student)))

    def load(self) -> dict[str, tuple[CohortEntry, str]]:
        """student -> (entry, code digest), for every stored row."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(results)).mappings().all()
        loaded = {}
        for row in rows:
            values = dict(row)
            code_digest = values.pop("code_digest")
            values.pop("grader_version")
            values.pop("attempts")
            for key in _JSON:
                values[key] = json.loads(values[key])
            values["failures"] = [tuple(f) for f in values["failures"]]
            values["status"] = Status(values["status"])
            loaded[values["student"]] = (CohortEntry(**values), code_digest)
        return loaded
