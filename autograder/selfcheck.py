"""The student's self-check: the visible checks, on any laptop, from the command
line (`python -m autograder check NOTEBOOK`) or from a notebook cell
(`from autograder.selfcheck import check; check("2.1")`).

Where the sandboxed runner can start (Linux), the command line grades the
notebook as the real grader does, with the visible suite. Elsewhere (macOS,
Windows, a Python without Linux's modules) the notebook runs in a plain
child Python, which then checks its own definitions through the live
transport (`sandbox.live`), as `check()` does in a kernel. The student reads
the same words either way: progress, a table per exercise, then only the
failed checks; nothing about the sandbox or the staff.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from .assignment import Assignment, AssignmentError
from .outcome import GradeReport, Status
from .terminal import printable

NOT_SUFFICIENT = ("These are the visible checks only: the grader runs more checks, on inputs "
                  "you do not see,\nso passing here is necessary, not sufficient.")
MAX_CELL_ERRORS = 5
FAILED_PER_EXERCISE = 2  # shown when checking everything; one exercise's shows them all
CELL_ERRORS = "Cells that stopped with an error (what each defines after its error does not exist):"


@dataclass
class SelfCheck:
    """What a self-check tells the student, and the verdicts behind it."""

    text: str
    passed: bool  # every visible check ran and passed
    verdicts: list[tuple[str, str, bool]]  # (exercise, check, passed)

    @classmethod
    def of(cls, report: GradeReport, every_failure: bool = False) -> "SelfCheck":
        checks = [c for e in report.exercises for c in e.checks]
        passed = (report.status == Status.GRADED and bool(checks)
                  and all(c.passed for c in checks))
        return cls(summary(report, every_failure), passed,
                   [(c.exercise, c.name, c.passed) for c in checks])


def summary(report: GradeReport, every_failure: bool = False) -> str:
    """The per-exercise table, then the failed checks with their messages (the
    first few of each exercise, or all), then the cells that stopped with an
    error: student text, shown through `printable`."""
    if report.status != Status.GRADED:
        return f"Not checked: {printable(report.reason)}"
    width = max((len(printable(e.name)) for e in report.exercises), default=10)
    lines = []
    for e in report.exercises:
        mark = "✓" if e.checks and all(c.passed for c in e.checks) else "✗"
        lines.append(f"{mark} {printable(e.id):>4}  {printable(e.name):<{width}}  "
                     f"{e.score:5.1f} / {e.max_score:g}")
    checks = [c for e in report.exercises for c in e.checks]
    passed = sum(c.passed for c in checks)
    lines.append(f"{'':7}{'total':<{width}}  {report.score:5.1f} / {report.max_score:g}"
                 f"   ({passed} of {len(checks)} visible checks passed)")
    failing = [(e, [c for c in e.checks if not c.passed]) for e in report.exercises]
    failing = [(e, failed) for e, failed in failing if failed]
    if failing:
        lines += ["", "To fix:"]
        for exercise, failed in failing:
            shown = failed if every_failure else failed[:FAILED_PER_EXERCISE]
            for check in shown:
                lines.append(f"✗ {printable(exercise.id)} {printable(check.name)}: "
                             f"{printable(check.message, ' ' * 4)}")
            if len(failed) > len(shown):
                lines.append(f"    (and {len(failed) - len(shown)} more: "
                             f"check(\"{printable(exercise.id)}\") in the notebook lists them)")
    errors = [c for c in report.cells if c.error]
    if errors:
        lines += ["", CELL_ERRORS]
        lines += [f"  cell {c.index}: {printable(c.error.splitlines()[0][:200])}"
                  for c in errors[:MAX_CELL_ERRORS]]
        if len(errors) > MAX_CELL_ERRORS:
            lines.append(f"  ... and {len(errors) - MAX_CELL_ERRORS} more")
    return "\n".join(lines + ["", NOT_SUFFICIENT])


def find_release(start: Path) -> Assignment:
    """The assignment.toml in `start` or a folder above it (the release root)."""
    start = start.resolve()
    for folder in [start, *start.parents]:
        try:
            if (folder / "assignment.toml").is_file():
                return Assignment.load(folder)
        except OSError:  # a folder this user may not look into
            continue
    raise AssignmentError(f"no assignment.toml in {start} or above it: run this inside the "
                          "assignment's folder, or name it with --assignment")


def sandbox_available() -> bool:
    """Whether the sandboxed runner can start here: Linux, with its modules."""
    if sys.platform != "linux" or not hasattr(os, "fork"):
        return False
    try:
        import fcntl  # noqa: F401
        import resource  # noqa: F401
    except ImportError:
        return False
    return True


def check_namespace(namespace: dict, assignment: Assignment,
                    exercise: str | None = None) -> GradeReport:
    """Run the visible checks (of one exercise, or of a section: "2") against the
    definitions in `namespace`."""
    from .grader import blank_report, file_checks
    from .plugin import run_suite
    from .sandbox.live import LiveSession

    if assignment.visible is None:
        raise AssignmentError(f"assignment {assignment.name} ships no visible checks")
    report = blank_report("this notebook", assignment)
    plugin = run_suite(assignment.visible, LiveSession(namespace), exercise=exercise)
    file_checks(report, plugin.outcomes, report.staff_notes)
    report.staff_notes.extend(plugin.problems)
    if exercise is not None:
        report.exercises = [e for e in report.exercises if e.checks]
        if not report.exercises:
            known = ", ".join(e.id for e in assignment.exercises)
            raise AssignmentError(f"no visible checks for exercise {exercise!r}; the "
                                  f"exercises are {known}")
    return report


def check(exercise: str | float | None = None) -> None:
    """Run the visible checks against this kernel's definitions and print what
    passed and what to fix: `check()` for all, `check("2.1")` for one exercise,
    `check(2)` for a section. Run the cells that define the answers first."""
    namespace = _caller_namespace()
    try:
        assignment = find_release(Path.cwd())
        report = check_namespace(namespace, assignment,
                                 None if exercise is None else str(exercise))
    except AssignmentError as exc:
        print(f"check: {exc}")
        return
    print(SelfCheck.of(report, every_failure=exercise is not None).text)


def _caller_namespace() -> dict:
    """The kernel's user namespace, or the globals of whoever called `check`."""
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None
    shell = get_ipython() if get_ipython is not None else None
    if shell is not None:
        return shell.user_ns
    return sys._getframe(2).f_globals


class Progress:
    """`cell n of N` on one line of a terminal (a line per ten cells elsewhere)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = getattr(stream, "isatty", lambda: False)()

    def __call__(self, n: int, total: int) -> None:
        if self.tty:
            self.stream.write(f"\rrunning cell {n} of {total} ")
            if n == total:
                self.stream.write("\n")
        elif n == 1 or n % 10 == 0 or n == total:
            self.stream.write(f"running cell {n} of {total}\n")
        self.stream.flush()


def check_file(notebook: Path, assignment: Assignment, progress=None,
               sandboxed: bool | None = None) -> SelfCheck:
    """The command line's self-check of a notebook file: in the sandboxed runner
    where it can start (or as `sandboxed` says), else in a plain child Python."""
    if assignment.visible is None:
        raise AssignmentError(f"assignment {assignment.name} ships no visible checks")
    if sandbox_available() if sandboxed is None else sandboxed:
        from .grader import grade

        return SelfCheck.of(grade(notebook, assignment, suite=assignment.visible,
                                  on_cell=progress))
    return _check_in_child(notebook, assignment, progress)


def _check_in_child(notebook: Path, assignment: Assignment, progress) -> SelfCheck:
    """Run the notebook in a plain child Python (no sandbox on a student's own
    machine), which then checks itself; a crash or a hang costs the child only."""
    budgets = assignment.budgets
    limit = budgets.total_timeout_s + budgets.checks_reserve_s
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            [sys.executable, "-m", "autograder.selfcheck", str(Path(notebook).resolve()),
             str(assignment.root)], stdout=subprocess.PIPE, stderr=errors, text=True,
            encoding="utf-8", env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
        result = None
        try:
            for message in _lines_until(child, limit):
                if "cell" in message and progress is not None:
                    progress(message["cell"], message["of"])
                elif "result" in message:
                    result = message["result"]
        except TimeoutError:
            child.kill()
            return SelfCheck(f"Not checked: the notebook and its checks did not finish within "
                             f"{limit:.0f} s; look for a loop that never ends", False, [])
        finally:
            child.wait()
        if result is None:
            errors.seek(0)
            tail = errors.read()[-600:]
            return SelfCheck("Not checked: the notebook stopped the Python running it "
                             f"(exit code {child.returncode}):\n{printable(tail)}", False, [])
    return SelfCheck(result["text"], result["passed"],
                     [tuple(v) for v in result["verdicts"]])


def _lines_until(child: subprocess.Popen, limit_s: float):
    """The child's JSON messages, until it ends; TimeoutError once `limit_s` passed."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        child.kill()

    timer = threading.Timer(limit_s, expire)
    timer.start()
    try:
        for line in child.stdout:
            try:
                message = json.loads(line)
            except ValueError:  # the notebook wrote to the descriptor itself
                continue
            if isinstance(message, dict):
                yield message
    finally:
        timer.cancel()
    if expired.is_set():
        raise TimeoutError


def _child(notebook: str, assignment_root: str) -> None:
    """`python -m autograder.selfcheck NOTEBOOK ASSIGNMENT`: execute, check, report
    as JSON lines on stdout (the student's own prints are kept off it)."""
    from .sandbox.live import execute_notebook
    from .submission import SubmissionError, load

    out = sys.stdout
    sys.stdout = sys.stderr  # whatever the notebook prints outside a cell's capture

    def emit(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    assignment = Assignment.load(assignment_root)
    try:
        submission = load(Path(notebook))
    except SubmissionError as exc:
        emit({"result": asdict(SelfCheck(f"Not checked: {printable(str(exc))}", False, []))})
        return
    os.chdir(Path(notebook).parent)  # as Jupyter starts a kernel
    sys.path.insert(0, "")
    namespace, cells = execute_notebook(
        submission.cells, lambda n, total: emit({"cell": n, "of": total}))
    report = check_namespace(namespace, assignment)
    report.cells = cells
    emit({"result": asdict(SelfCheck.of(report))})


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
