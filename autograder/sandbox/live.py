"""The live transport: a check's calls into a namespace in this very process.

The student's self-check needs no sandbox: on their own machine it runs
the visible checks against a live kernel's definitions (`check()` in a
notebook cell) or against a child Python that executed the notebook where
the sandboxed runner cannot start (macOS, Windows). `LiveStudent` offers
what `StudentProxy` offers a check (`get`, `call`, `operator`) and converts
values the same way (the runner's `to_plain`, then the wire format there
and back), so that one check file gives the same verdicts on both
transports. It isolates nothing and enforces no time budget: a student
interrupts their own kernel.
"""

import contextlib
import io
from collections.abc import Callable

from . import protocol
from .calls import (
    Lender,
    MissingName,
    Operator,
    StudentError,
    UnsupportedReturn,
    charge_budgets,
    redact_values,
)
from .records import CellRun, CellStatus
from .runner import to_plain, watch_inputs


def _plain(value, what: str):
    """A student value as the grader would receive it through the wire format."""
    try:
        return protocol.decode(protocol.encode(to_plain(value)))
    except protocol.UnsupportedValue:
        raise UnsupportedReturn(
            f"{what} returned a {type(value).__name__[:60]} object, which cannot be graded; "
            "return tensors, numbers, or lists/tuples/dicts of these") from None
    except protocol.ProtocolError as exc:
        raise UnsupportedReturn(f"{what} returned data the grader cannot read: {exc}") from None


class _LentOperator:
    """What the student's function holds for an operator: a callable that passes
    plain copies both ways and refuses, as the runner's does, past the budget."""

    def __init__(self, operator: Operator):
        self._operator = operator

    def __call__(self, *args):
        try:
            result = self._operator(*_plain(list(args), "the operator's caller"))
        except StudentError as exc:
            raise RuntimeError(str(exc)) from None
        return protocol.decode(protocol.encode(result))

    def __repr__(self) -> str:
        return "<matvec operator>"


class LiveStudent(Lender):
    """A check's `student`, reading and calling the definitions in `namespace`."""

    snapshot = None  # always the live state: no verdict here is provisional

    def __init__(self, namespace: dict):
        super().__init__()
        self._namespace = namespace
        self.changed: list[str] = []  # what the last call changed of its inputs

    def get(self, name: str):
        """The value of a notebook variable, as plain data (a copy)."""
        if name not in self._namespace:
            raise MissingName(name)
        return _plain(self._namespace[name], f"the variable {name}")

    def call(self, name: str, *args, timeout_s: float | None = None, **kwargs):
        """Call a notebook function with copies of the arguments, operators lent;
        `timeout_s` is accepted for the checks' sake and not enforced here."""
        target = self._namespace.get(name)
        if name not in self._namespace:
            raise MissingName(name)
        if not callable(target):
            raise StudentError(f"{name} is not a function")
        lent = [v for v in [*args, *kwargs.values()] if isinstance(v, Operator)]
        self.changed = []
        try:
            given, given_kwargs = self._lend(list(args)), self._lend(kwargs)
            changed = watch_inputs(target, given, given_kwargs)
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                value = target(*given, **given_kwargs)
            self.changed = changed()
        except NotImplementedError:
            raise StudentError(f"{name} is not implemented yet (it raises "
                               "NotImplementedError)") from None
        except Exception as exc:  # noqa: BLE001 - student code may raise anything
            raise StudentError(f"{name}(...) raised {type(exc).__name__[:60]}: "
                               f"{redact_values(str(exc)[:300])}") from None
        finally:  # a spent budget is the failure to report, whatever else happened
            charge_budgets(name, args, kwargs, lent)
        return _plain(value, f"{name}(...)")

    def _lend(self, value):
        """Arguments as a student function receives them from the runner: plain
        copies, with each `Operator` behind a callable of its own."""
        if isinstance(value, Operator):
            return _LentOperator(value)
        if isinstance(value, list):
            return [self._lend(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._lend(v) for v in value)
        if isinstance(value, dict):
            return {k: self._lend(v) for k, v in value.items()}
        return protocol.decode(protocol.encode(value))

    def close(self) -> None:
        """Nothing to end: the namespace is the caller's."""


class LiveClock:
    """The call durations a grading plugin reads (none are measured here)."""

    def __init__(self) -> None:
        self.took: list[tuple[str, float]] = []


class LiveSession:
    """What the grading plugin needs of a session, over a live namespace: a
    `student()` per check, no deadline, no cells to report."""

    def __init__(self, namespace: dict):
        self.namespace = namespace
        self.deadline: float | None = None
        self.clock = LiveClock()
        self.cells: dict = {}
        self.figures: list = []

    def student(self, exercise: str | None = None) -> LiveStudent:
        return LiveStudent(self.namespace)

    def settle(self) -> None:
        """Nothing runs in the background here."""


def execute_notebook(cells: tuple, on_cell: Callable[[int, int], None] | None = None
                     ) -> tuple[dict, list[CellRun]]:
    """Run code cells (`submission.CodeCell`s) in this process, as the runner
    would but without its confinement: the portable self-check's child Python.
    Returns the namespace and how each cell ran; `on_cell(n, N)` hears each start."""
    from .runner import FigureCollector, make_shell, run_cell

    collector = FigureCollector()
    shell = make_shell(collector)
    runs = []
    for position, cell in enumerate(cells, 1):
        if on_cell is not None:
            on_cell(position, len(cells))
        report = run_cell(shell, cell.source, collector)
        runs.append(CellRun(cell.index, CellStatus(report["status"]),
                            duration_s=report["duration_s"], error=report.get("error", "")))
    return shell.user_ns, runs
