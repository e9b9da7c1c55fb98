"""What grading produces: plain records shared by the grader and the writers."""

from dataclasses import dataclass, field
from enum import StrEnum

from .sandbox.records import CellRun, Figure

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")
# What a cohort rerun grades again of the rows in error: those that failed in one run
# (not two), all of them, or none.
RETRY_ERRORS = ("once", "all", "none")


class Status(StrEnum):
    """Where a submission (or a cohort input) ended up."""

    GRADED = "graded"
    REJECTED = "rejected"  # the file could not be graded at all; score 0 and the reason
    DUPLICATE = "duplicate"  # cohort: another input of the same student was graded
    ERROR = "error"  # cohort: the grader itself failed on it


@dataclass
class CheckOutcome:
    """One weighted hidden check of one exercise."""

    exercise: str
    name: str
    weight: float
    passed: bool
    message: str = ""  # student-facing; never contains hidden values
    staff_detail: str = ""  # for course staff only (internal errors)
    duration_s: float = 0.0
    ran: bool = True  # False: not run (the deadline came first); it earns nothing


@dataclass
class ExerciseResult:
    id: str
    name: str
    max_score: float
    visibility: str
    checks: list[CheckOutcome] = field(default_factory=list)
    heading: str = ""  # where the exercise is in the notebook, for the student
    anchor: str = ""  # a link to that heading: notebook.ipynb#Heading-text

    @property
    def score(self) -> float:
        """Points in proportion to the weight of the checks passed."""
        total = sum(c.weight for c in self.checks)
        if not total:
            return 0.0
        earned = sum(c.weight for c in self.checks if c.passed)
        return round(self.max_score * earned / total, 4)


@dataclass
class GradeReport:
    """Everything known about one graded submission."""

    submission: str
    assignment: str
    status: Status  # GRADED, or REJECTED
    reason: str = ""  # why it was rejected
    exercises: list[ExerciseResult] = field(default_factory=list)
    cells: list[CellRun] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    sandbox_layers: list[str] = field(default_factory=list)  # for staff, as are the next two
    sandbox_missing: list[str] = field(default_factory=list)  # layers the host refused, and why
    warnings: list[str] = field(default_factory=list)  # shown to the student
    staff_notes: list[str] = field(default_factory=list)  # grader problems, for staff only
    execution_time: float = 0.0
    grader_version: str = ""
    # False while grading goes on: results written then say it was cut short, should
    # the grader be killed before it writes them again.
    complete: bool = True
    # For staff and `autograder costs`: the longest call of each student function
    # the checks made, in seconds, and the exercises whose checks made it.
    call_costs: dict[str, tuple[float, list[str]]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return round(sum(e.score for e in self.exercises), 4)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)


@dataclass
class CohortEntry:
    """One input of a cohort run, graded or not: what grades.csv, the cohort
    report and the gradebook export are written from."""

    student: str  # the id the input layout gives (file stem, nbgrader or Gradescope id)
    source: str  # where the input was found, relative to the cohort folder
    status: Status
    reason: str = ""  # why it is not GRADED
    score: float = 0.0
    max_score: float = 0.0
    exercises: dict[str, float] = field(default_factory=dict)  # exercise id -> points
    failures: list[tuple[str, str]] = field(default_factory=list)  # (exercise id, message)
    runtime_s: float = 0.0
    flags: list[str] = field(default_factory=list)  # timeouts, sandbox violations, twins
    digest: str = ""  # sha256 of the notebook file
