"""The pytest plugin through which hidden suites reach a submission.

Hidden tests are ordinary pytest functions marked with
`@pytest.mark.check(exercise="2.1", weight=2)`. They get two fixtures:
`student`, a proxy to a fresh fork of the executed notebook (call its
functions, read its variables, lend it grader-side operators), and
`notebook`, how the cells ran and what they drew. A test fails a check by
raising AssertionError with a sentence for the student; pytest runs with
plain asserts, so no introspected (hidden) values reach the message.
"""

import ast
import contextlib
import io
import os
import random
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from .outcome import CheckOutcome
from .sandbox.calls import MissingName, StudentError
from .sandbox.records import CellStatus

if TYPE_CHECKING:
    from .sandbox.live import LiveSession
    from .sandbox.session import NotebookSession, Vouch

INTERNAL_ERROR = ("The grader could not complete this check because of an internal error; "
                  "course staff can see the details.")


NOT_RUN = "not run: the grader stopped before this check"
PAST_DEADLINE = "not run: the grading deadline was reached before this check"
DEADLINE_MARGIN_S = 1.0  # a check needs at least this long to be worth starting
# The alarm comes this long after the deadline, so that a call cut at the deadline
# reports its own, more precise, reason first.
ALARM_GRACE_S = 2.0
OVERRAN = ("not finished: the grading deadline was reached during this check (the grader's "
           "own work on what the notebook defined, or the notebook's calls, took too long)")


class DeadlineReached(BaseException):
    """Raised into a check at the session's deadline. A BaseException, so that no
    `except Exception` in a check can absorb it."""


@contextlib.contextmanager
def _alarm_at(deadline: float | None):
    """Interrupt the body at `deadline` (monotonic): a check's own computation,
    grader-side on objects the notebook bound, gets no time past the grade's.
    Signals reach only the main thread (and Windows has no timer signal); elsewhere
    the deadline binds the calls alone."""
    if deadline is None or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return
    armed = True

    def expire(signum, frame):
        if armed:
            raise DeadlineReached

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL,
                     max(deadline + ALARM_GRACE_S - time.monotonic(), 0.001))
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class GradingPlugin:
    """Serves the fixtures and records one CheckOutcome per hidden test.

    Every check is known, as not run, from collection on, so that what has been
    reported (`on_check`, after each check) always accounts for all of them.
    Past the session's deadline the remaining checks are left not run. The
    calls each check made and how long they took add up in `call_costs`.
    """

    def __init__(self, session: "NotebookSession | LiveSession",
                 on_check: Callable[[list[CheckOutcome]], None] | None = None,
                 exercise: str | None = None):
        self.session = session
        self.on_check = on_check
        self.exercise = exercise  # only its checks run ("2" is every exercise of section 2)
        self._outcomes: dict[str, CheckOutcome] = {}
        self.problems: list[str] = []  # for staff: collection errors, unmarked tests
        self.call_costs: dict[str, tuple[float, set[str]]] = {}  # function -> (s, exercises)
        self._started: dict[str, float] = {}
        self._provisional: dict[str, Vouch | None] = {}  # checks run on a snapshot
        self._overran: set[str] = set()  # checks the grade's deadline interrupted
        self.provisional = 0  # how many checks ran on a snapshot
        self.rerun: list[str] = []  # and which of them ran again on the final state

    @property
    def outcomes(self) -> list[CheckOutcome]:
        return list(self._outcomes.values())

    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        if self.exercise is not None:
            chosen = [item for item in items if _of_exercise(item, self.exercise)]
            config.hook.pytest_deselected(items=[i for i in items if i not in chosen])
            items[:] = chosen
        for item in items:
            marker = item.get_closest_marker("check")
            if marker is not None:
                exercise, name, weight = _describe(item, marker)
                self._outcomes[item.nodeid] = CheckOutcome(exercise, name, weight, passed=False,
                                                           message=NOT_RUN, ran=False)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        deadline = self.session.deadline
        if deadline is not None and time.monotonic() > deadline - DEADLINE_MARGIN_S:
            pytest.skip(PAST_DEADLINE)

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", "check(exercise, weight=1): a graded check")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        with _alarm_at(self.session.deadline):
            yield

    @pytest.fixture
    def student(self, request: pytest.FixtureRequest):
        """A fork of the notebook for this check: of a snapshot taken after its exercise's
        cells if the notebook is still running, else of the final state. A verdict from
        a snapshot is provisional (see `pytest_runtestloop`)."""
        marker = request.node.get_closest_marker("check")
        exercise = (None if marker is None or "notebook" in request.fixturenames
                    else _describe(request.node, marker)[0])
        proxy = self.session.student(exercise)
        key = request.node.nodeid
        self._started[key] = time.monotonic()  # not the wait for a snapshot
        yield proxy
        proxy.close()
        if proxy.snapshot is not None:
            outcome = self._outcomes.get(key)
            # A verdict on what the answer gave, not on how long it ran beside the
            # notebook or on a fork that died (as one does on anything the seal refuses).
            judged = (outcome is not None and outcome.ran and not proxy.lost
                      and key not in self._overran)
            self._provisional[key] = self.session.vouch(proxy) if judged else None

    @pytest.fixture
    def notebook(self, request: pytest.FixtureRequest) -> "NotebookSession":
        """How the cells ran and what they drew: all of them, so execution must end."""
        self.session.settle()
        self._started[request.node.nodeid] = time.monotonic()  # not the wait for the end
        return self.session

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        """Once every check has run, run again on the final state each check that ran on
        a snapshot and was cut short there (a timeout, a fork that died: a sealed one
        dies on anything its seal refuses) or whose names reach anything the rest of
        the notebook changed: every verdict is then the one the final state gives."""
        yield
        vouched = {key: vouch for key, vouch in self._provisional.items() if vouch is not None}
        again = {key for key, vouch in self._provisional.items() if vouch is None}
        if vouched:
            again |= self.session.stale(vouched)
        self.provisional, self._provisional = len(self._provisional), {}
        items = [item for item in session.items if item.nodeid in again]
        self.rerun = [item.nodeid for item in items]
        for position, item in enumerate(items, 1):
            following = items[position] if position < len(items) else None
            item.ihook.pytest_runtest_protocol(item=item, nextitem=following)

    @pytest.fixture(autouse=True)
    def _deterministic(self):
        """Same submission, same score: every check starts from the same seeds (the
        CPU generator's own seed: torch.manual_seed also queues a CUDA seeding, and
        records the caller's whole stack, which costs milliseconds under pytest)."""
        torch.default_generator.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        yield

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.problems.append(f"hidden suite failed to collect {report.nodeid}: "
                                 f"{str(report.longrepr)[-1500:]}")

    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        self._started[nodeid] = time.monotonic()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        marker = item.get_closest_marker("check")
        if marker is None:
            if report.when == "call":
                self.problems.append(f"{item.nodeid} has no check marker; it was not scored")
            return
        if report.when == "setup" and report.skipped:
            self._outcomes[item.nodeid].message = PAST_DEADLINE
            self._report()
            return
        failed_setup = report.when == "setup" and report.failed
        if report.when != "call" and not failed_setup:
            return
        exercise, name, weight = _describe(item, marker)
        check = CheckOutcome(exercise=exercise, name=name, weight=weight, passed=report.passed,
                             duration_s=time.monotonic() - self._started.get(item.nodeid, 0))
        if report.failed and call.excinfo is not None:
            check.message, check.staff_detail = _explain(call.excinfo)
            if isinstance(call.excinfo.value, DeadlineReached):  # (timeouts: proxy.lost)
                self._overran.add(item.nodeid)
            if isinstance(call.excinfo.value, MissingName):
                check.message = self._why_missing(call.excinfo.value.name) + check.message
        self._outcomes[item.nodeid] = check
        for function, seconds in self.session.clock.took:
            known, exercises = self.call_costs.get(function, (0.0, set()))
            self.call_costs[function] = (max(known, seconds), exercises | {exercise})
        self.session.clock.took.clear()
        self._report()

    def _why_missing(self, name: str) -> str:
        """The observation behind a missing name: the cell that defines it stopped
        (an error, a timeout, or never ran) before it could; "" if none did."""
        cells = getattr(getattr(self.session, "submission", None), "cells", ())
        for cell in cells:
            run = self.session.cells.get(cell.index)
            if run is None or run.status == CellStatus.OK or not defines(cell.source, name):
                continue
            what = (run.error.splitlines()[0][:200] if run.error else
                    "it ran out of time" if run.status == CellStatus.TIMEOUT else "it never ran")
            return f"cell {cell.index}, which defines {name}, stopped before it did: {what}. "
        return ""

    def _report(self) -> None:
        if self.on_check is not None:
            self.on_check(self.outcomes)


def _of_exercise(item: pytest.Item, wanted: str) -> bool:
    """Whether a check grades exercise `wanted`, or an exercise of section `wanted`."""
    marker = item.get_closest_marker("check")
    if marker is None:
        return False
    exercise = _describe(item, marker)[0]
    return exercise == wanted or exercise.startswith(wanted + ".")


def defines(source: str, name: str) -> bool:
    """Whether a cell's code binds `name` at its top level or in a block (a def, a
    class, an assignment, a for target, an import); unparsable code, if it names it."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return re.search(rf"\b{re.escape(name)}\b", source) is not None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) \
                and node.name == name:
            return True
        if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store):
            return True
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
                (alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
            return True
    return False


def _describe(item: pytest.Item, marker: pytest.Mark) -> tuple[str, str, float]:
    """(exercise, the check's name for people, weight) of a marked test."""
    exercise = str(marker.kwargs.get("exercise", marker.args[0] if marker.args else ""))
    doc = (item.function.__doc__ or "").strip().splitlines()
    name = doc[0] if doc else item.name.removeprefix("test_").replace("_", " ")
    return exercise, name, float(marker.kwargs.get("weight", 1))


@dataclass(frozen=True)
class CheckInfo:
    """Where a check is and what it grades, as `autograder checks` lists it."""

    exercise: str
    name: str
    weight: float
    location: str  # path relative to the suite, and line


class _Collector:
    def __init__(self, suite: Path):
        self.suite, self.checks, self.problems = suite, [], []

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", "check(exercise, weight=1): a graded check")

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.problems.append(f"{report.nodeid}: {str(report.longrepr)[-500:]}")

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("check")
            path, line, _ = item.location
            where = f"{Path(path).name}:{(line or 0) + 1}"
            if marker is None:
                self.problems.append(f"{where} {item.name} has no check marker")
                continue
            self.checks.append(CheckInfo(*_describe(item, marker), where))


def collect_checks(suite: Path) -> tuple[list[CheckInfo], list[str]]:
    """The suite's checks, without running them, and any collection problems."""
    collector = _Collector(suite)
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([*_pytest_args(suite), "--collect-only"], plugins=[collector])
    _forget_modules_of(suite)
    return collector.checks, collector.problems


def _explain(excinfo: pytest.ExceptionInfo) -> tuple[str, str]:
    """Student-facing message and staff-only detail for a failed check."""
    error = excinfo.value
    if isinstance(error, StudentError):
        return str(error), ""
    if isinstance(error, AssertionError):
        return (str(error) or "This check failed."), ""
    if isinstance(error, DeadlineReached):
        return OVERRAN, ""
    detail = "".join(traceback.format_exception(error))[-4000:]
    return INTERNAL_ERROR, detail


def run_suite(suite: Path, session: "NotebookSession | LiveSession",
              on_check: Callable[[list[CheckOutcome]], None] | None = None,
              exercise: str | None = None) -> GradingPlugin:
    """Run a pytest suite (hidden or visible) against an executed notebook, quietly;
    `on_check` hears every outcome so far after each check; with `exercise`, only
    that exercise's (or section's) checks run."""
    plugin = GradingPlugin(session, on_check, exercise)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            exit_code = pytest.main(_pytest_args(suite), plugins=[plugin])
    finally:
        _forget_modules_of(suite)
    if exit_code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        plugin.problems.append(f"suite exited with {exit_code!r}: {log.getvalue()[-2000:]}")
    return plugin


def _pytest_args(suite: Path) -> list[str]:
    # no:unraisableexception: its end-of-session garbage collections cost 0.2 s a grade.
    return [str(suite), "-q", "--assert=plain", "--tb=no", "-p", "no:cacheprovider",
            "-p", "no:unraisableexception",
            "--import-mode=importlib", "--rootdir", str(suite), "-c", str(suite / "pytest.ini"),
            "-W", "ignore::DeprecationWarning"]


def _forget_modules_of(suite: Path) -> None:
    """Drop the suite's modules from sys.modules: in importlib mode pytest names a
    test module by its file name alone, and would reuse another suite's module
    of the same name (test_power, conftest) in the next run of this process.
    Paths are compared as strings, under the suite's path as given and as resolved
    (resolving every module's path, torch's thousands, costs 0.2 s a grade)."""
    roots = tuple({os.path.join(str(suite), ""), os.path.join(str(suite.resolve()), "")})
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(roots):
            del sys.modules[name]
