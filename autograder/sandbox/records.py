"""What the session observed while a notebook ran: plain records, no behaviour.

They live with the sandbox because only the session writes them; the grader
copies them into its report unchanged.
"""

from dataclasses import dataclass
from enum import StrEnum


class CellStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"  # past its budget: interrupted, or killed and skipped on a replay
    SKIPPED = "skipped"  # never ran: the notebook's total budget was spent before it


@dataclass
class Figure:
    """A figure the notebook drew: a PNG for people, line data for checks."""

    cell: int
    png: bytes
    axes: list[dict]  # title, xlabel, ylabel, xscale, yscale, lines: [{label, x, y}]


@dataclass
class CellRun:
    """How one code cell of the submission ran."""

    index: int  # position among the notebook's cells
    status: CellStatus
    duration_s: float = 0.0
    error: str = ""  # "ExceptionName: message", for the student's own debugging
    stdout: str = ""
