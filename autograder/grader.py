"""Grade one submission: execute it in the sandbox, run the hidden suite here.

The trusted grader process owns everything that decides a score: the
hidden tests, the reference code, the expected values and the output
files. The submission's code only ever runs in the runner.
"""

import contextlib
import hashlib
import importlib.util
import os
import threading
import time
import traceback
from pathlib import Path

from . import ENGINE
from .assignment import Assignment, AssignmentError
from .outcome import ExerciseResult, GradeReport, Status
from .report import write_outputs
from .sandbox.process import ExecutionPolicy, Limits, RunnerProcess, Workspace
from .submission import Submission, SubmissionError, load


def grader_version(assignment: Assignment) -> str:
    """A digest of every file that can change a verdict: engine, hidden suite and
    what it depends on (the reference code), the master."""
    digest = hashlib.sha256()
    roots = [ENGINE, assignment.master, *assignment.depends]
    if assignment.hidden is not None:
        roots.append(assignment.hidden)
    for root in roots:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def policy_for(assignment: Assignment) -> ExecutionPolicy:
    budgets = assignment.budgets
    cpu = int(budgets.total_timeout_s + 60 * len(assignment.exercises) + 60)
    return ExecutionPolicy(cell_timeout_s=budgets.cell_timeout_s,
                           total_timeout_s=budgets.total_timeout_s,
                           call_timeout_s=budgets.call_timeout_s,
                           limits=Limits(cpu_seconds=cpu, memory_mb=budgets.memory_mb,
                                         disk_mb=budgets.disk_mb,
                                         disk_files=budgets.disk_files))


def usable_cpus() -> float:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota
    (a container's half CPU shows as all the host's cores to os.cpu_count)."""
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return cpus
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: "max 100000" or "50000 100000"
            quota_file = Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.max"
            with contextlib.suppress(OSError, ValueError):
                quota, period = quota_file.read_text().split()
                if quota != "max":
                    cpus = min(cpus, int(quota) / int(period))
        elif "cpu" in controllers.split(","):
            folder = Path("/sys/fs/cgroup") / controllers / path.lstrip("/")
            with contextlib.suppress(OSError, ValueError):
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                if quota > 0:
                    period = int((folder / "cpu.cfs_period_us").read_text())
                    cpus = min(cpus, quota / period)
    return cpus


def warm_up(suite: Path, report: GradeReport) -> None:
    """Run the suite's optional `warmup.py` while the notebook executes.

    The grader is idle until execution ends, so first-use costs of the
    libraries the checks need (imports, lazy initialization) are paid in
    parallel instead of inside the first check.
    """
    import torch

    torch.set_num_threads(1)  # the runner has the other core; no oversubscription
    path = suite / "warmup.py"
    if not path.is_file():
        return
    try:
        spec = importlib.util.spec_from_file_location("_hidden_warmup", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.warm_up()
    except Exception:  # noqa: BLE001 - a broken warm-up only costs time
        report.staff_notes.append("warmup.py failed: " + traceback.format_exc()[-1500:])


class RunnerSupply:
    """Started runners, each in a fresh scratch folder.

    With `spare`, one more runner starts as soon as one is taken: a cohort
    worker grades the next submission with a runner whose imports (torch,
    IPython: seconds) happened while it graded this one. A runner knows
    nothing of its submission until the session sends the cells.
    """

    def __init__(self, assignment: Assignment, spare: bool = False):
        self.assignment, self.spare = assignment, spare
        self.limits = policy_for(assignment).limits
        self._next: tuple[Workspace, RunnerProcess] | None = None

    def _start(self) -> tuple[Workspace, RunnerProcess]:
        workspace = Workspace(self.assignment.root, self.assignment.release_include,
                              self.assignment.release_notebook_dir)
        return workspace, RunnerProcess(workspace, self.limits)

    def take(self) -> tuple[Workspace, RunnerProcess]:
        ready, self._next = self._next or self._start(), None
        if self.spare:
            self._next = self._start()
        return ready

    def close(self) -> None:
        if self._next is not None:
            workspace, runner = self._next
            runner.stop()
            workspace.remove()
            self._next = None


def grade(submission_path: str | Path, assignment: Assignment,
          out_dir: str | Path | None = None, suite: Path | None = None,
          runners: RunnerSupply | None = None) -> GradeReport:
    """Grade one notebook file with `suite` (default: the hidden one); write the
    outputs into out_dir if given. `runners` may hold a runner started early.

    Never raises for a bad submission: an ungradable file becomes a
    "rejected" report with score 0 and the reason.
    """
    started = time.monotonic()
    path = Path(submission_path)
    report = _blank_report(path.name, assignment)
    try:
        submission = load(path)
    except SubmissionError as exc:
        report.status, report.reason = Status.REJECTED, str(exc)
    else:
        suite = suite or assignment.hidden
        if suite is None:
            raise AssignmentError(f"assignment {assignment.name} has no suite to grade with")
        _grade_submission(submission, assignment, suite, report,
                          runners or RunnerSupply(assignment))
    report.execution_time = round(time.monotonic() - started, 3)
    if out_dir is not None:
        write_outputs(report, Path(out_dir))
    return report


def reject(name: str, reason: str, assignment: Assignment,
           out_dir: str | Path | None = None) -> GradeReport:
    """The report, score 0, for a submission that has nothing gradable (no
    notebook, several candidates): the student still gets results and why."""
    report = _blank_report(name, assignment)
    report.status, report.reason = Status.REJECTED, reason
    if out_dir is not None:
        write_outputs(report, Path(out_dir))
    return report


def _blank_report(name: str, assignment: Assignment) -> GradeReport:
    report = GradeReport(submission=name, assignment=assignment.name, status=Status.GRADED,
                         grader_version=grader_version(assignment))
    report.exercises = [ExerciseResult(e.id, e.name, e.points, e.visibility)
                        for e in assignment.exercises]
    return report


def _grade_submission(submission: Submission, assignment: Assignment, suite: Path,
                      report: GradeReport, runners: RunnerSupply) -> None:
    workspace, runner = runners.take()
    policy = policy_for(assignment)
    # Imported only now: torch and pytest load here while the runner loads its own.
    from .plugin import run_suite
    from .sandbox.session import NotebookSession

    session = NotebookSession(submission, workspace, policy, runner)
    warming = threading.Thread(target=warm_up, args=(suite, report), daemon=True)
    if usable_cpus() >= 2:  # with one CPU it would only compete with the notebook, and cost memory
        warming.start()
    try:
        session.execute()
        if warming.is_alive():
            warming.join()
        report.sandbox_layers = list(session.runner.layers) if session.runner else []
        report.cells = [session.cells[i] for i in sorted(session.cells)]
        report.figures = list(session.figures)
        report.warnings.extend(session.warnings)
        plugin = run_suite(suite, session)
    finally:
        session.close()
        workspace.remove()
    by_id = {e.id: e for e in report.exercises}
    for check in plugin.outcomes:
        if check.exercise in by_id:
            by_id[check.exercise].checks.append(check)
        else:
            plugin.problems.append(f"check {check.name!r} names unknown exercise "
                                   f"{check.exercise!r}")
    for exercise in report.exercises:
        if not exercise.checks:
            plugin.problems.append(f"no checks ran for exercise {exercise.id}")
    report.staff_notes.extend(plugin.problems)
    if plugin.problems:
        report.warnings.append("the grader hit internal problems; course staff have "
                               "the details")
