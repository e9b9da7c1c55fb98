"""Grade one submission: execute it in the sandbox, run the hidden suite here.

The trusted grader process owns everything that decides a score: the
hidden tests, the reference code, the expected values and the output
files. The submission's code only ever runs in the runner.
"""

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import platform
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from . import ENGINE
from .assignment import Assignment, AssignmentError, Costs
from .outcome import CheckOutcome, ExerciseResult, GradeReport, Status
from .report import write_outputs, write_results
from .sandbox.process import ExecutionPolicy, Limits, RunnerProcess, RunnerZygote, Workspace
from .submission import Submission, SubmissionError, load

if TYPE_CHECKING:
    from .answers import AnswerKey
    from .plugin import GradingPlugin


def grader_version(assignment: Assignment) -> str:
    """A digest of every file that can change a verdict: engine, hidden suite and
    what it depends on (this assignment's reference and fixture modules, and no
    other's), the master and the package students import."""
    digest = hashlib.sha256()
    roots = [ENGINE, assignment.master, *assignment.depends,
             *(assignment.root / item for item in assignment.release_include)]
    if assignment.costs_path.is_file():  # the budgets scale from it
        roots.append(assignment.costs_path)
    if assignment.hidden is not None:
        roots.append(assignment.hidden)
    for root in roots:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


KEY_FILE = "answer_key.pt"  # beside assignment.toml


def answer_key(assignment: Assignment) -> "AnswerKey | None":
    """The assignment's answer key, if one was written for this grader version."""
    path = assignment.root / KEY_FILE
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    return _read_key(path, stamp, grader_version(assignment))


def key_state(assignment: Assignment) -> str:
    """Whether the answer key is current, for staff: grading without one is correct,
    only slower (every reference result is computed)."""
    from .answers import stored_version

    path = assignment.root / KEY_FILE
    if not path.is_file():
        return f"absent ({KEY_FILE}: `autograder costs` writes it)"
    if stored_version(path) != grader_version(assignment):
        return f"stale ({KEY_FILE} is another grader version's: `autograder costs` rewrites it)"
    return "current"


@functools.lru_cache(maxsize=4)
def _read_key(path: Path, stamp: int, version: str) -> "AnswerKey | None":
    """Read once per file version and grader version: a cohort worker grades many."""
    from .answers import AnswerKey

    return AnswerKey.read(path, version)


def policy_for(assignment: Assignment) -> ExecutionPolicy:
    """The assignment's budgets, with cells and calls scaled from the master's costs."""
    budgets, costs = assignment.budgets, assignment.costs
    factors = {e.id: e.cost_factor or budgets.cost_factor for e in assignment.exercises}
    by_grade_id = {e.grade_id: factors[e.id] for e in assignment.exercises}

    def cell_factor(key: str) -> float:
        return by_grade_id.get(key, by_grade_id.get(key.rsplit("_", 1)[0], budgets.cost_factor))

    cell_budgets = {key: max(budgets.cell_floor_s, cell_factor(key) * seconds)
                    for key, seconds in costs.cells.items()}
    call_budgets = {name: max(budgets.call_floor_s, seconds * max(
        (factors.get(e, budgets.cost_factor) for e in exercises), default=budgets.cost_factor))
        for name, (seconds, exercises) in costs.calls.items()}
    cpu = int(budgets.grade_timeout_s + 60)
    return ExecutionPolicy(cell_timeout_s=budgets.cell_timeout_s,
                           total_timeout_s=budgets.total_timeout_s,
                           call_timeout_s=budgets.call_timeout_s,
                           late_cell_timeout_s=budgets.late_cell_timeout_s,
                           checks_reserve_s=budgets.checks_reserve_s,
                           limits=Limits(cpu_seconds=cpu, memory_mb=budgets.memory_mb,
                                         disk_mb=budgets.disk_mb,
                                         disk_files=budgets.disk_files),
                           cell_budgets=cell_budgets, call_budgets=call_budgets)


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
    """Runners, each in a fresh scratch folder.

    With `zygote`, runners are forked from a process that imported torch and
    IPython once (`sandbox.RunnerZygote`): a cohort worker's runners then start
    in milliseconds instead of seconds, each still confined on its own. A
    runner knows nothing of its submission until the session sends the cells.
    """

    def __init__(self, assignment: Assignment, zygote: bool = False,
                 spare_cpu: bool | None = None):
        """`spare_cpu`: whether a grade may use a CPU beside the notebook's (checks on
        snapshots, a warm-up); default: whether this process may use two. A cohort
        worker's CPUs are its siblings'."""
        self.assignment = assignment
        self.limits = policy_for(assignment).limits
        self.zygote = RunnerZygote() if zygote else None
        self.spare_cpu = usable_cpus() >= 2 if spare_cpu is None else spare_cpu

    def take(self) -> tuple[Workspace, RunnerProcess]:
        workspace = Workspace(self.assignment.root, self.assignment.release_include,
                              self.assignment.release_notebook_dir)
        return workspace, RunnerProcess(workspace, self.limits, self.zygote)

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None


def grade(submission_path: str | Path, assignment: Assignment,
          out_dir: str | Path | None = None, suite: Path | None = None,
          runners: RunnerSupply | None = None, deadline_s: float | None = None,
          on_cell: Callable[[int, int], None] | None = None,
          answers: "AnswerKey | None" = None, pictures: bool = True) -> GradeReport:
    """Grade one notebook file with `suite` (default: the hidden one); write the
    outputs into out_dir if given. `runners` may hold a runner started early;
    `on_cell(n, N)` hears each code cell start. The checks look their reference
    results up in `answers` (default: the assignment's answer key, if current).
    Without `pictures`, figures are not drawn (their line data, which the plot
    checks read, is kept): for a grade whose feedback nobody sees.

    Everything, execution and checks, ends within `deadline_s` (default: the
    assignment's grade_timeout_s). With `out_dir`, results.json is written
    before execution and after every check, each time whole and valid, so a
    kill at any moment leaves the scores earned so far.

    Never raises for a bad submission: an ungradable file becomes a
    "rejected" report with score 0 and the reason.
    """
    started = time.monotonic()
    deadline = started + (deadline_s or assignment.budgets.grade_timeout_s)
    out = Path(out_dir) if out_dir is not None else None
    path = Path(submission_path)
    report = blank_report(path.name, assignment)
    try:
        submission = load(path, int(assignment.budgets.max_notebook_mb * 2**20),
                          int(assignment.budgets.max_source_kb * 2**10))
    except SubmissionError as exc:
        report.status, report.reason = Status.REJECTED, str(exc)
    else:
        suite = suite or assignment.hidden
        if suite is None:
            raise AssignmentError(f"assignment {assignment.name} has no suite to grade with")
        report.complete = False
        if out is not None:
            write_results(report, out)
        _grade_submission(submission, assignment, suite, report,
                          runners or RunnerSupply(assignment), deadline, out, on_cell, answers,
                          pictures)
        report.complete = True
    report.execution_time = round(time.monotonic() - started, 3)
    if out is not None:
        write_outputs(report, out)
    return report


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
LEAN_HEAP_BYTES = 128 * 1024


def lean_heap() -> None:
    """For a process that grades one submission: have glibc give its freed memory
    back, buffers of 128 KiB or more (the tensors and messages of each check) mapped
    on their own and unmapped when freed, and the heap's top trimmed. By default the
    first large free raises that threshold, and every check's transient buffers then
    stay in the heap: about 30 MB of a grade's peak memory. Not for a cohort worker,
    which reuses that heap grade after grade (mapping anew costs it ~5 % of its time).
    A no-op without glibc."""
    with contextlib.suppress(AttributeError, OSError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, LEAN_HEAP_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, LEAN_HEAP_BYTES)


def grade_master(assignment: Assignment, suite: Path | None = None,
                 answers: "AnswerKey | None" = None) -> GradeReport:
    """The master graded with flat budgets (not those scaled from its own costs)."""
    return grade(assignment.master, dataclasses.replace(assignment, costs=Costs({}, {})),
                 suite=suite, answers=answers)


def lost_points(report: GradeReport) -> list[str]:
    """Why a report is short of full marks: failed checks, staff notes, a rejection."""
    lost = [f"{e.id}: {c.name}: {c.message}" for e in report.exercises for c in e.checks
            if not c.passed]
    return lost + report.staff_notes + ([report.reason] if report.reason else [])


def recording_key() -> "AnswerKey":
    """An empty answer key that keeps every reference result computed while in use."""
    from .answers import AnswerKey

    key = AnswerKey(version="")
    key.recording = True
    return key


def write_answer_key(assignment: Assignment, key: "AnswerKey") -> Path:
    """Store a key recorded on the master's hidden grade under the grader version as it
    is now (after costs.json is written: the results depend on code and inputs only)."""
    key.version = grader_version(assignment)
    path = assignment.root / KEY_FILE
    key.write(path)
    return path


def build_answer_key(assignment: Assignment) -> "AnswerKey":
    """Grade the master with the hidden suite, recording, and write the answer key."""
    key = recording_key()
    lost = lost_points(grade_master(assignment, answers=key))
    if lost:
        raise AssignmentError("the master notebook does not score full marks, so the answer "
                              "key would miss its results: " + "; ".join(lost[:5]))
    write_answer_key(assignment, key)
    return key


def measure_costs(assignment: Assignment) -> dict:
    """Grade the master with flat budgets, write `costs.json` and the answer key, and
    return the costs."""
    key = recording_key()
    costs = costs_from(grade_master(assignment, answers=key), assignment)
    write_costs(assignment, costs)
    write_answer_key(assignment, key)
    return costs


def costs_from(report: GradeReport, assignment: Assignment) -> dict:
    """What `costs.json` holds, from the master's hidden grade: the seconds of each
    cell (by `cell_key`) and of the longest call of each student function the
    hidden checks make. Refuses a master that loses points."""
    lost = lost_points(report)
    if report.status != Status.GRADED or lost:
        raise AssignmentError("the master notebook does not score full marks, so its costs "
                              "would not be a solution's: " + "; ".join(lost[:5]))
    keys = {c.index: c.key for c in load(assignment.master).cells}
    cells: dict[str, float] = {}
    for run in report.cells:
        key = keys[run.index]
        cells[key] = round(max(cells.get(key, 0.0), run.duration_s), 4)
    return {"measured_with": f"Python {platform.python_version()} on {platform.machine()}, "
                             f"{os.cpu_count()} CPUs",
            "cells": cells,
            "calls": {name: {"seconds": round(seconds, 4), "exercises": exercises}
                      for name, (seconds, exercises) in sorted(report.call_costs.items())}}


def write_costs(assignment: Assignment, costs: dict) -> None:
    assignment.costs_path.write_text(json.dumps(costs, indent=2) + "\n", encoding="utf-8")


def reject(name: str, reason: str, assignment: Assignment,
           out_dir: str | Path | None = None) -> GradeReport:
    """The report, score 0, for a submission that has nothing gradable (no
    notebook, several candidates): the student still gets results and why."""
    report = blank_report(name, assignment)
    report.status, report.reason = Status.REJECTED, reason
    if out_dir is not None:
        write_outputs(report, Path(out_dir))
    return report


def heading_link(notebook: str, heading: str) -> str:
    """A link to a heading of a notebook, as Jupyter names its anchors (spaces become
    dashes), percent-encoded; empty without a heading."""
    if not heading:
        return ""
    return f"{quote(notebook)}#{quote(heading.replace(' ', '-'), safe='-._~:()')}"


def blank_report(name: str, assignment: Assignment) -> GradeReport:
    report = GradeReport(submission=name, assignment=assignment.name, status=Status.GRADED,
                         grader_version=grader_version(assignment))
    report.exercises = [ExerciseResult(e.id, e.name, e.points, e.visibility,
                                       heading=e.heading,
                                       anchor=heading_link(assignment.master.name, e.heading))
                        for e in assignment.exercises]
    return report


def _grade_submission(submission: Submission, assignment: Assignment, suite: Path,
                      report: GradeReport, runners: RunnerSupply, deadline: float,
                      out: Path | None, on_cell: Callable[[int, int], None] | None,
                      answers: "AnswerKey | None", pictures: bool) -> "GradingPlugin":
    workspace, runner = runners.take()
    policy = policy_for(assignment)
    # Imported only now: torch and pytest load here while the runner loads its own.
    from .answers import using
    from .plugin import run_suite

    if answers is None:
        answers = answer_key(assignment)
    from .sandbox.session import NotebookSession

    # Without a spare CPU, checks or drawing beside the notebook, or a warm-up, would only
    # compete with it.
    session = NotebookSession(submission, workspace, policy, runner, deadline,
                              checkpoints(submission, assignment) if runners.spare_cpu else None,
                              draw_aside=runners.spare_cpu, pictures=pictures)
    session.on_cell = on_cell
    warming = threading.Thread(target=warm_up, args=(suite, report), daemon=True)
    if runners.spare_cpu and not session.checkpoints:  # checks on snapshots warm up as they go
        warming.start()

    def progress(outcomes: list[CheckOutcome]) -> None:
        file_checks(report, outcomes, [])
        if out is not None:
            write_results(report, out)

    try:
        session.start()
        if warming.is_alive():
            warming.join()
        with using(answers):
            plugin = run_suite(suite, session, progress)
        session.settle()
        report.sandbox_layers = list(session.layers)
        report.sandbox_missing = list(session.missing_layers)
        report.cells = [session.cells[i] for i in sorted(session.cells)]
        report.figures = list(session.figures)
        report.warnings.extend(session.warnings)
    finally:
        session.close()
        workspace.remove()
    file_checks(report, plugin.outcomes, plugin.problems)
    report.call_costs = {name: (seconds, sorted(exercises))
                         for name, (seconds, exercises) in plugin.call_costs.items()}
    for exercise in report.exercises:
        if not exercise.checks:
            plugin.problems.append(f"no checks ran for exercise {exercise.id}")
    report.staff_notes.extend(plugin.problems)
    if plugin.problems:
        report.warnings.append("the grader hit internal problems; course staff have "
                               "the details")
    return plugin


SNAPSHOT_WORTH_S = 0.5  # of the master's measured cells ahead, for a snapshot to pay off


def checkpoints(submission: Submission, assignment: Assignment) -> dict[int, frozenset[str]]:
    """By cell index, the exercises whose cells (found by grade id: the exercise's own,
    or one that extends it, such as `ex1_1_code`) have all run once that cell has:
    where a snapshot lets their checks start, kept only where the cells up to the next
    one are expected (by costs.json) to take SNAPSHOT_WORTH_S or more (a snapshot costs
    the runner a fork and copies of the pages it then writes). An exercise none of
    whose cells keeps its grade id is never covered: its checks wait for the end."""
    last: dict[str, int] = {}
    for cell in submission.cells:
        for exercise in assignment.exercises:
            if cell.key == exercise.grade_id or cell.key.startswith(exercise.grade_id + "_"):
                last[exercise.id] = max(last.get(exercise.id, -1), cell.index)
    seconds = {cell.index: assignment.costs.cells.get(cell.key, 0.0) for cell in submission.cells}
    kept, ahead = [], 0.0
    for index in sorted(seconds, reverse=True):
        if index in last.values() and ahead >= SNAPSHOT_WORTH_S:
            kept.append(index)
            ahead = 0.0
        ahead += seconds[index]
    return {index: frozenset(e for e, at in last.items() if at <= index) for index in kept}


def file_checks(report: GradeReport, outcomes: list[CheckOutcome],
                 problems: list[str]) -> None:
    """Put each check under its exercise; one naming no exercise is a problem for staff."""
    by_id = {e.id: e for e in report.exercises}
    for exercise in report.exercises:
        exercise.checks = []
    for check in outcomes:
        if check.exercise in by_id:
            by_id[check.exercise].checks.append(check)
        else:
            problems.append(f"check {check.name!r} names unknown exercise {check.exercise!r}")
