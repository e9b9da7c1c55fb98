"""Grade a whole cohort: warm parallel workers, resumable, every input once.

Each worker process imports the grader's libraries and runs the suite's
warm-up once, then grades one submission after another (each still in its
own sandboxed runner). Results go to the `ResultStore` as they complete, so
a rerun after any interruption grades only what is missing or changed.
The outputs are rebuilt from the store at the end: `grades.csv` (every
input exactly once), `feedback/<student>/`, `report.html`.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing import active_children, get_context
from multiprocessing.util import Finalize
from pathlib import Path

from ..assignment import Assignment, AssignmentError
from ..grader import RunnerSupply, grade, grader_version, usable_cpus, warm_up
from ..outcome import CohortEntry, GradeReport, Status
from ..render import valid_text
from ..sandbox import CellStatus, kill_processes, reap_runners_of
from ..submission import SubmissionError, load
from .inputs import Input, find_inputs
from .store import ResultStore


@dataclass(frozen=True)
class Task:
    student: str
    source: str
    notebook: str
    digest: str
    feedback: str  # this student's feedback folder


def feedback_folder(student: str) -> str:
    """A safe, unique folder name for a student id that may hold anything (a lone
    surrogate too: it is named as its escape, as the store keeps it)."""
    student = valid_text(student)
    safe = re.sub(r"[^\w.@+-]", "_", student)[:80].strip("._") or "student"
    if safe != student:
        safe += "-" + hashlib.sha256(student.encode()).hexdigest()[:8]
    return safe


def code_digest(notebook: Path) -> str:
    """Of the code alone, so copies that differ in outputs or metadata still match."""
    try:
        cells = load(notebook).cells
    except SubmissionError:
        return ""
    code = "\n".join(re.sub(r"\s+", " ", c.source).strip() for c in cells)
    return hashlib.sha256(code.encode()).hexdigest()


def _flags(report: GradeReport) -> list[str]:
    """What a TA should look at: timeouts and attempts the sandbox stopped."""
    flags = []
    if any(cell.status == CellStatus.TIMEOUT for cell in report.cells):
        flags.append("timeout")
    stopped = [cell.error for cell in report.cells
               if "PermissionError" in cell.error or "to disk" in cell.error]
    if stopped:
        flags.append(f"sandbox violation: {stopped[0].splitlines()[0][:120]}")
    if report.staff_notes:
        flags.append("grader problem (see report.json)")
    return flags


def entry_from(report: GradeReport, task: Task) -> CohortEntry:
    return CohortEntry(
        student=task.student, source=task.source,
        status=report.status, reason=report.reason,
        score=report.score, max_score=report.max_score,
        exercises={e.id: e.score for e in report.exercises},
        failures=[(e.id, c.message) for e in report.exercises for c in e.checks
                  if not c.passed],
        runtime_s=report.execution_time, flags=_flags(report), digest=task.digest)


_assignment: Assignment | None = None
_runners: RunnerSupply | None = None


def _warm_worker(assignment_root: str) -> None:
    """Runs once per worker: everything a first submission would pay for, and
    the zygote its runners are forked from."""
    global _assignment, _runners
    _assignment = Assignment.load(assignment_root)
    _runners = RunnerSupply(_assignment, zygote=True, spare_cpu=False)
    Finalize(_runners, _runners.close, exitpriority=10)  # the zygote dies with the worker
    from .. import plugin  # noqa: F401 - the import is the point (it loads the session too)

    if _assignment.hidden is not None:
        warm_up(_assignment.hidden, GradeReport("", "", ""))


def grade_task(task: Task) -> tuple[CohortEntry, str]:
    """In a worker: grade one submission into its feedback folder."""
    try:
        report = grade(task.notebook, _assignment, task.feedback, runners=_runners)
        entry = entry_from(report, task)
    except Exception:  # noqa: BLE001 - one grader fault must not end the cohort
        entry = CohortEntry(task.student, task.source, Status.ERROR,
                            reason="internal grader error: "
                            + traceback.format_exc(limit=3)[-600:],
                            max_score=_assignment.total_points if _assignment else 0.0,
                            digest=task.digest)
    return entry, code_digest(Path(task.notebook))


class Progress:
    """One status line on a terminal (a line per update elsewhere): done, failed, ETA."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.failed = total, 0, 0
        self.stream, self.started = stream, time.monotonic()
        self.tty = getattr(stream, "isatty", lambda: False)()

    def update(self, entry: CohortEntry) -> None:
        self.done += 1
        self.failed += entry.status != Status.GRADED
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        line = (f"graded {self.done}/{self.total}, {self.failed} not gradable or failed, "
                f"ETA {int(eta) // 60}m{int(eta) % 60:02d}s")
        self.stream.write(("\r" + line.ljust(70)) if self.tty else line + "\n")
        if self.tty and self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


TASK_MARGIN_S = 120.0  # a worker's warm-up and writing out, beyond the grade's own deadline


def run_parallel(tasks: list[Task], assignment: Assignment, workers: int,
                 on_result: Callable[[CohortEntry, str], None],
                 work: Callable[[Task], tuple[CohortEntry, str]] = grade_task,
                 task_limit_s: float | None = None) -> None:
    """Grade tasks on warm worker processes, each task within `task_limit_s`
    (default: the assignment's grade deadline plus `TASK_MARGIN_S`), counted
    from its hand-over to the pool (a worker's first includes its warm-up).

    A worker's death breaks the whole pool, so every task in flight then
    fails alike; those are graded again one at a time, where a death can
    only be the submission's own and is reported as its error. A task past
    its limit is reported as such, and its pool is stopped the same way.
    """
    limit = task_limit_s or assignment.budgets.grade_timeout_s + TASK_MARGIN_S
    for task in _run_pool(tasks, assignment, workers, on_result, work, limit):
        if _run_pool([task], assignment, 1, on_result, work, limit):
            on_result(_error(task, assignment, "grading this submission killed its worker "
                             "process (out of memory?)"), code_digest(Path(task.notebook)))


def _error(task: Task, assignment: Assignment, reason: str) -> CohortEntry:
    return CohortEntry(task.student, task.source, Status.ERROR, reason=reason,
                       max_score=assignment.total_points, digest=task.digest)


def _run_pool(tasks: list[Task], assignment: Assignment, workers: int,
              on_result: Callable[[CohortEntry, str], None],
              work: Callable[[Task], tuple[CohortEntry, str]], limit_s: float) -> list[Task]:
    """At most `workers` tasks in flight; returns those in flight when a worker
    died (the rest go on in a fresh pool). Whatever the runners of a worker
    left (a worker killed mid-grade cannot clean up) is reaped when its pool ends."""
    queue, died = list(reversed(tasks)), []
    while queue:
        ours = {child.pid for child in active_children()}
        seen: set[int] = set()
        try:
            with ProcessPoolExecutor(max_workers=min(workers, len(queue)),
                                     mp_context=get_context("spawn"), initializer=_warm_worker,
                                     initargs=(str(assignment.root),)) as pool:
                running: dict[Future, tuple[Task, float]] = {}
                while queue or running:
                    while queue and len(running) < workers:
                        task = queue.pop()
                        running[pool.submit(work, task)] = (task, time.monotonic() + limit_s)
                    seen |= {child.pid for child in active_children()} - ours
                    first_due = min(due for _, due in running.values())
                    finished, _ = wait(running, timeout=max(first_due - time.monotonic(), 0),
                                       return_when=FIRST_COMPLETED)
                    broken = False
                    for future in finished:
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            broken = True
                            continue
                        on_result(*result)
                        del running[future]
                    overdue = [f for f, (_, due) in running.items() if due <= time.monotonic()
                               and f not in finished]
                    for future in overdue:
                        task, _ = running.pop(future)
                        on_result(_error(task, assignment, f"grading took longer than "
                                         f"{limit_s:.0f} s, the limit per submission; its "
                                         "worker was stopped"), code_digest(Path(task.notebook)))
                    if overdue:
                        kill_processes(seen)
                        broken = True
                    if broken:
                        died.extend(task for task, _ in running.values())
                        break
        finally:
            for pid in seen:
                reap_runners_of(pid)
    return died


def run_dask(tasks: list[Task], assignment: Assignment, address: str,
             on_result: Callable[[CohortEntry, str], None]) -> None:
    """Spread the tasks over a Dask cluster. Its workers must see the same paths
    (a shared file system); each task grades in a fresh `python -m
    autograder.cohort.pool` process, because a Dask worker's threads must not fork
    sandboxed runners themselves."""
    from distributed import Client, as_completed

    with Client(address) as client:
        limit = assignment.budgets.grade_timeout_s + TASK_MARGIN_S
        futures = {client.submit(grade_in_subprocess, task, str(assignment.root), limit,
                                 pure=False): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                on_result(*future.result())
            except Exception as exc:  # noqa: BLE001 - a lost worker costs one submission
                on_result(_error(task, assignment, f"the Dask task failed: {exc}"[:600]),
                          code_digest(Path(task.notebook)))


def grade_in_subprocess(task: Task, assignment_root: str,
                        limit: float) -> tuple[CohortEntry, str]:
    """Run on a Dask worker: one submission, graded by a child Python within
    `limit` seconds (the grade's deadline plus `TASK_MARGIN_S`); what a killed child
    left is reaped."""
    child = subprocess.Popen([sys.executable, "-m", "autograder.cohort.pool", assignment_root,
                              json.dumps(asdict(task))], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        stdout, stderr = child.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise RuntimeError(f"grading took longer than {limit:.0f} s, the limit per "
                           "submission; it was stopped") from None
    finally:
        reap_runners_of(child.pid)
    if child.returncode:
        raise RuntimeError(f"grading {task.source} failed: {stderr[-400:]}")
    entry, code = json.loads(stdout.splitlines()[-1])
    entry["failures"] = [tuple(f) for f in entry["failures"]]
    entry["status"] = Status(entry["status"])
    return CohortEntry(**entry), code


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _needs_grading(stored, digest: str, version: str, retry_errors: str) -> bool:
    """A new or changed file, or a new grader, always; a row in error as
    `retry_errors` says: "once" (after one failed run, not after two), "all", "none"."""
    if stored is None or (stored.digest, stored.grader_version) != (digest, version):
        return True
    if stored.status != Status.ERROR:
        return False
    return retry_errors == "all" or (retry_errors == "once" and stored.attempts < 2)


def grade_cohort(path: Path, assignment: Assignment, out_dir: Path,
                 workers: int | None = None, db_url: str | None = None,
                 regrade: tuple[str, ...] = (), dask: str | None = None,
                 progress_stream=sys.stderr, retry_errors: str = "once") -> list[CohortEntry]:
    """Grade what is missing (here, or on the Dask scheduler at `dask`), then
    write every output from the store. Rows in error are graded again as
    `retry_errors` says (see `_needs_grading`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = ResultStore(db_url or f"sqlite:///{out_dir / 'results.db'}")
    version = grader_version(assignment)
    for stale in out_dir.glob("unpacked-*"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    unpacked = Path(tempfile.mkdtemp(prefix="unpacked-", dir=out_dir))
    try:
        inputs = find_inputs(Path(path), assignment.name, assignment.master.name,
                             scratch=unpacked)
        students = {i.student for i in inputs}
        for student in regrade:
            if student not in students:
                raise AssignmentError(f"--regrade {student!r}: no such student in {path}")
            store.forget(student)
        graded_from = store.graded_from()
        tasks = []
        for item in inputs:
            if item.notebook is None:
                store.save(_not_gradable(item, assignment), "", version)
                continue
            digest = _digest(item.notebook)
            if _needs_grading(graded_from.get(item.student), digest, version, retry_errors):
                tasks.append(Task(item.student, item.source, str(item.notebook), digest,
                                  str(out_dir / "feedback" / feedback_folder(item.student))))
        progress = Progress(len(tasks), progress_stream)

        def record(entry: CohortEntry, code: str) -> None:
            before = graded_from.get(entry.student)
            again = (before is not None and before.status == Status.ERROR
                     and entry.status == Status.ERROR
                     and (before.digest, before.grader_version) == (entry.digest, version))
            store.save(entry, code, version, before.attempts + 1 if again else 1)
            progress.update(entry)

        if tasks and dask:
            run_dask(tasks, assignment, dask, record)
        elif tasks:
            run_parallel(tasks, assignment, workers or max(1, int(usable_cpus())), record)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    entries = _current(store, inputs, assignment)
    write_outputs(entries, assignment, out_dir)
    return entries


def _not_gradable(item: Input, assignment: Assignment) -> CohortEntry:
    return CohortEntry(item.student, item.source,
                       Status.DUPLICATE if item.duplicate_of else Status.REJECTED, reason=item.problem,
                       max_score=assignment.total_points)


def _current(store: ResultStore, inputs: list[Input],
             assignment: Assignment) -> list[CohortEntry]:
    """The stored entry of every current input, in input order, twins flagged."""
    stored = store.load()
    release_code = _release_code_digest(assignment)
    entries = [stored[item.student] for item in inputs]
    by_code: dict[str, list[str]] = defaultdict(list)
    for entry, code in entries:
        if entry.status == Status.GRADED and code and code != release_code:
            by_code[code].append(entry.student)
    for entry, code in entries:
        twins = [s for s in by_code.get(code, []) if s != entry.student]
        if entry.student in by_code.get(code, []) and twins:
            entry.flags.append(f"identical code to {', '.join(twins)[:200]}")
    return [entry for entry, _ in entries]


def _release_code_digest(assignment: Assignment) -> str:
    """Unfilled copies of the release are all alike; that is not copying."""
    import nbformat

    from ..release import release_notebook

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "release.ipynb"
        nbformat.write(release_notebook(assignment), path)
        return code_digest(path)


def write_outputs(entries: list[CohortEntry], assignment: Assignment, out_dir: Path) -> None:
    """The grade tables and report.html, from the entries alone (the store's view)."""
    from .exports import write_grade_tables
    from .report import write_cohort_report

    write_grade_tables(entries, assignment, out_dir)
    write_cohort_report(entries, assignment, out_dir / "report.html")


def main() -> None:
    """`python -m autograder.cohort.pool ASSIGNMENT TASK_JSON`: grade one task, print
    [entry, code digest] as one JSON line (the Dask path's unit of work)."""
    global _assignment
    _assignment = Assignment.load(sys.argv[1])
    entry, code = grade_task(Task(**json.loads(sys.argv[2])))
    print(json.dumps([asdict(entry), code]))


if __name__ == "__main__":
    main()
