"""Checks beside execution: a check that ran on a snapshot keeps its verdict only when
the final state would give the same one.

The notebooks here change, after an exercise's cells, what that exercise's checks
read: a variable rebound, a list its function reads mutated in place, a library
function patched. Graded with checks on snapshots, every verdict must equal the
verdict of grading the final state alone (no snapshots), and the checks concerned
must be the ones run again. The whole corpus (`test_corpus.py`) is graded with
snapshots too, wherever the machine has a CPU to spare.
"""

import functools
import os
import signal
import socket
import threading
import time

import nbformat
import pytest
import torch

from autograder import grader, plugin
from autograder.assignment import Assignment
from autograder.sandbox import CellStatus, fingerprint
from autograder.sandbox import runner as runner_module
from autograder.sandbox.calls import StudentCrash
from autograder.sandbox.process import RunnerProcess
from autograder.sandbox.session import NotebookSession
from autograder.submission import CodeCell, Submission
from tests.corpus import build
from tests.notebooks import ASSIGNMENT

ENGINE_ASSIGNMENT = ASSIGNMENT.parent.parent / "tests" / "engine_assignment"

WRAPPED_HVP = """
_hvp_scale = [1.0]
_hvp_exact = hvp_double_backward

def hvp_double_backward(model, X, y, v):
    return _hvp_exact(model, X, y, v) * _hvp_scale[0]
"""
LOGGED_POWER = """
_power_exact = power_iteration

def power_iteration(*args, **kwargs):
    with open("power_calls.log", "a") as log:  # on a snapshot, this ends the check's fork
        log.write("called\\n")
    return _power_exact(*args, **kwargs)
"""
# After every exercise: the fp32 epsilon rebound, the HVP's scale mutated in place.
LATE_CHANGES = "eps32 = 0.5\n_hvp_scale[0] = 2.0\n"


def _late_notebook() -> "nbformat.NotebookNode":
    base = build.variant({"ex1_1_code": build.KRYLOV.cell("ex1_1_code") + WRAPPED_HVP,
                          "ex2_1_code": build.KRYLOV.cell("ex2_1_code") + LOGGED_POWER})
    return build.appended(LATE_CHANGES, base)


def grade_watched(path, assignment: Assignment, spare_cpu: bool):
    """The report of a grade, and its plugin (which checks ran on a snapshot, which
    ran again)."""
    seen = {}
    original = plugin.run_suite

    def spy(*args, **kwargs):
        seen["plugin"] = original(*args, **kwargs)
        return seen["plugin"]

    plugin.run_suite = spy
    try:
        report = grader.grade(path, assignment,
                              runners=grader.RunnerSupply(assignment, spare_cpu=spare_cpu))
    finally:
        plugin.run_suite = original
    return report, seen["plugin"]


def _grade(path, spare_cpu: bool) -> tuple[dict, list[str], int]:
    """(verdict by check, checks run again, checks run on a snapshot)."""
    report, watched = grade_watched(path, Assignment.load(ASSIGNMENT), spare_cpu)
    verdicts = {(e.id, c.name): (c.passed, c.message) for e in report.exercises
                for c in e.checks}
    return verdicts, watched.rerun, watched.provisional


@pytest.fixture(scope="module")
def late_notebook(tmp_path_factory):
    return build.write(_late_notebook(), tmp_path_factory.mktemp("late") / "late.ipynb")


def test_changes_after_an_exercise_give_the_final_states_verdicts(late_notebook):
    beside, rerun, provisional = _grade(late_notebook, spare_cpu=True)
    alone, _, none = _grade(late_notebook, spare_cpu=False)
    assert none == 0 and provisional > 20, "the checks did not run beside execution"
    assert beside == alone
    failed = {exercise for (exercise, _), (passed, _) in alone.items() if not passed}
    # The rebound variable and the mutated list fail their exercises, as in the final state.
    assert {"0.3", "1.1"} <= failed and "2.1" not in failed
    names = " ".join(rerun)
    # Run again: what read eps32 or the HVP (their digests changed), and the power
    # iteration's checks (their forks tried to write on the snapshot, which ended them).
    assert "test_eps32" in names and "test_autodiff_hvp_fp32" in names
    assert "test_s2_power.py::test_top_eigenvalue_fp32_and_fp64" in names
    assert all(passed for (exercise, _), (passed, _) in beside.items() if exercise == "2.1")
    # Checks whose names nothing changed kept their snapshot verdicts.
    assert len(rerun) < provisional


def test_failed_checks_keep_their_snapshot_verdicts_when_nothing_changed_later(tmp_path):
    """The unfilled release fails every check on a snapshot: those are verdicts on what
    the answers gave (NotImplementedError), so none runs again."""
    path = build.write(build.unfilled(), tmp_path / "unfilled.ipynb")
    beside, rerun, provisional = _grade(path, spare_cpu=True)
    alone, _, _ = _grade(path, spare_cpu=False)
    assert provisional > 20 and rerun == []
    assert beside == alone and not any(passed for passed, _ in beside.values())


# Right only where it cannot write: a seal it could observe would pass it on a snapshot.
SEAL_PROBE = """
_power_exact = power_iteration

def power_iteration(*args, **kwargs):
    try:
        open("probe.txt", "w").close()
    except OSError:
        return _power_exact(*args, **kwargs)
    return 0.0
"""


def test_code_that_answers_differently_under_the_seal_gets_the_final_states_verdict(tmp_path):
    base = build.variant({"ex2_1_code": build.KRYLOV.cell("ex2_1_code") + SEAL_PROBE})
    path = build.write(base, tmp_path / "probe.ipynb")
    beside, rerun, provisional = _grade(path, spare_cpu=True)
    alone, _, _ = _grade(path, spare_cpu=False)
    assert provisional > 20 and beside == alone
    assert not all(passed for (exercise, _), (passed, _) in alone.items() if exercise == "2.1")
    assert "test_s2_power.py::test_top_eigenvalue_fp32_and_fp64" in " ".join(rerun)


def test_a_library_patched_later_sends_every_provisional_check_to_the_final_state(tmp_path):
    path = build.write(build.appended("torch.dot = lambda a, b: (a * b).sum() * 0\n"),
                       tmp_path / "patched.ipynb")
    _, rerun, provisional = _grade(path, spare_cpu=True)
    assert provisional > 20 and len(rerun) == provisional


# --- the digests themselves (the runner's side, here in-process) --------------------


def _namespace(code: str) -> dict:
    namespace: dict = {}
    exec(compile(code, "<cell>", "exec"), namespace)  # noqa: S102 - test notebook code
    return namespace


@pytest.fixture
def home(monkeypatch, tmp_path):
    """The notebook's scratch folder: code from files under it is the notebook's."""
    monkeypatch.setenv("HOME", str(tmp_path))


def test_digests_follow_globals_closures_and_contents_but_not_attribute_names(home):
    ns = _namespace("import torch\nW = torch.ones(3)\nscale = [2.0]\n"
                    "def f(x):\n    return x.grad * W * scale[0]\n"
                    "def g(x):\n    return f(x) + 1\n")
    before = fingerprint.digests(ns, ["g"])
    ns["grad"] = torch.zeros(1)  # a global named like an attribute g's code reads
    assert fingerprint.digests(ns, ["g"]) == before
    ns["W"].add_(1)  # in place, through f
    after_w = fingerprint.digests(ns, ["g"])
    assert after_w != before
    ns["scale"][0] = 3.0
    assert fingerprint.digests(ns, ["g"]) != after_w
    exec("def f(x):\n    return x\n", ns)  # noqa: S102 - rebound
    assert fingerprint.digests(ns, ["g"])["g"] not in (before["g"], after_w["g"])
    assert fingerprint.digests(ns, ["absent"]) == {"absent": "missing"}


def test_what_cannot_be_digested_never_matches(home):
    ns = _namespace("class Slotted:\n    __slots__ = ('x',)\n"
                    "s = Slotted()\ns.x = 1\n")
    assert fingerprint.digests(ns, ["s"]) == {"s": fingerprint.UNKNOWN}


def test_ambient_sees_a_notebook_patching_a_library_but_not_a_library_wrapping_itself(home):
    baseline = fingerprint.library_baseline()
    ns: dict = {}
    start = fingerprint.ambient(ns, baseline)
    original = torch.linalg.norm
    try:
        torch.linalg.norm = functools.wraps(original)(lambda *a, **k: original(*a, **k))
        # (as torch._dynamo, once imported, wraps torch.manual_seed)
        assert fingerprint.ambient(ns, baseline) == start
        torch.linalg.norm = torch.linalg.vector_norm  # a library function, rebound
        assert fingerprint.ambient(ns, baseline) != start
    finally:
        torch.linalg.norm = original
    assert fingerprint.ambient(ns, baseline) == start
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert fingerprint.ambient(ns, baseline) != start
    finally:
        torch.set_default_dtype(previous)


# --- a snapshot's checks cannot reach the notebook that is still running -----------

ATTACK = '''
import os, signal

def leave_a_file():
    """Called by a check on a snapshot: leave a file for the running notebook."""
    try:
        with open(os.path.join(os.environ["HOME"], "left_by_a_check.txt"), "w") as f:
            f.write("hidden inputs")
    except OSError as exc:
        return type(exc).__name__
    return "written"

def signal_the_runner():
    """Signal the runner (SIGUSR1 would end it)."""
    with open(f"/proc/{os.getppid()}/stat") as stat:  # the snapshot's parent: the runner
        runner = int(stat.read().rsplit(")", 1)[1].split()[1])
    try:
        os.kill(runner, signal.SIGUSR1)
    except OSError as exc:
        return type(exc).__name__
    return "sent"
'''


def test_a_check_on_a_snapshot_can_neither_write_nor_signal_the_running_notebook(tmp_path):
    """Either attempt ends the check's fork (the check then runs again on the final
    state), before the seal could even refuse it: no student code sees a refusal."""
    assignment = Assignment.load(ENGINE_ASSIGNMENT)
    workspace, runner = grader.RunnerSupply(assignment).take()
    notebook = Submission(tmp_path / "attack.ipynb",
                          (CodeCell(0, ATTACK, "ex_attack"),
                           CodeCell(1, "import time\ntime.sleep(2)\nstill_running = True",
                                    "ex_later")))
    session = NotebookSession(notebook, workspace, grader.policy_for(assignment), runner,
                              checkpoints={0: frozenset({"attack"})})
    try:
        session.start()
        for attack in ("leave_a_file", "signal_the_runner"):
            student = session.student("attack")
            assert student.snapshot is not None
            with pytest.raises(StudentCrash):
                student.call(attack)
            assert student.lost
            student.close()
        session.settle()
        assert session.cells[1].status == CellStatus.OK, session.cells[1].error
        assert session.runner.process.poll() is None
        assert not (workspace.root / "left_by_a_check.txt").exists()
    finally:
        session.close()
        workspace.remove()


NICENESS = """
import os

def niceness():
    return os.getpriority(os.PRIO_PROCESS, 0)
"""


def test_checks_beside_the_notebook_yield_the_cpu_to_it(tmp_path):
    """A snapshot, and so every check fork of it, runs BESIDE_NICENESS lower than the
    notebook: where the checks and the grader want both CPUs, the notebook keeps one.
    Checks on the final state run at the notebook's own priority."""
    assignment = Assignment.load(ENGINE_ASSIGNMENT)
    workspace, runner = grader.RunnerSupply(assignment).take()
    notebook = Submission(tmp_path / "nice.ipynb",
                          (CodeCell(0, NICENESS, "ex_nice"),
                           CodeCell(1, "import time\ntime.sleep(2)", "ex_later")))
    session = NotebookSession(notebook, workspace, grader.policy_for(assignment), runner,
                              checkpoints={0: frozenset({"nice"})})
    try:
        session.start()
        student = session.student("nice")
        assert student.snapshot is not None
        beside = student.call("niceness")
        student.close()
        session.settle()
        student = session.student("nice")
        assert student.snapshot is None
        final = student.call("niceness")
        student.close()
        assert beside == min(final + runner_module.BESIDE_NICENESS, 19), (beside, final)
    finally:
        session.close()
        workspace.remove()


HELD_OPEN = '''
import os
home = os.environ["HOME"]
with open(os.path.join(home, "data.txt"), "w") as f:
    f.write("0123456789")
reader = open(os.path.join(home, "data.txt"))
WRITER

def use():
    """Called by a check on a snapshot: move the shared offset, write for later cells."""
    reader.read(3)
    USE
    return reader.tell()
'''


def _held_open_session(tmp_path, writer: str, use: str, leak: str):
    """A notebook whose first cell holds `reader` (and what `writer` opens) and defines
    use(); its later cell reads back, as `seen`, what `leak` finds of a check's call."""
    assignment = Assignment.load(ENGINE_ASSIGNMENT)
    workspace, runner = grader.RunnerSupply(assignment).take()
    code = HELD_OPEN.replace("WRITER", writer).replace("USE", use)
    later = f"import time\ntime.sleep(2)\nposition = reader.tell()\nseen = {leak}"
    notebook = Submission(tmp_path / "held.ipynb", (CodeCell(0, code, "ex_use"),
                                                    CodeCell(1, later, "ex_later")))
    session = NotebookSession(notebook, workspace, grader.policy_for(assignment), runner,
                              checkpoints={0: frozenset({"use"})})
    return session, workspace


@pytest.mark.parametrize("writer, use", [
    ("", "pass"),
    # held open to silence output, a common idiom: it carries nothing to later cells
    ("sink = open(os.devnull, 'w')", "sink.write('hidden'); sink.flush()"),
], ids=["reading", "the null device"])
def test_a_snapshot_reopens_what_the_notebook_reads_so_no_offset_is_shared(tmp_path, writer,
                                                                             use):
    session, workspace = _held_open_session(tmp_path, writer, use, "''")
    try:
        session.start()
        student = session.student("use")
        assert student.snapshot is not None
        assert student.call("use") == 3
        student.close()
        session.settle()
        final = session.student()
        assert final.get("position") == 0  # the later cell's reader did not move
        final.close()
    finally:
        session.close()
        workspace.remove()


def test_a_session_closed_while_its_notebook_runs_leaves_nothing_running(tmp_path):
    """A grade that ends early (a fault of the grader's own) closes its session while
    execution goes on in its thread: the runner stops, and the thread neither replays
    the notebook in a fresh runner nor outlives the close (a cohort worker's next
    submission would share its CPU and its scratch folder would go under it)."""
    before = set(RunnerProcess.live)
    session, workspace = _held_open_session(tmp_path, "", "pass", "''")
    try:
        session.start()
        session.student("use").close()  # on the snapshot, while the later cell sleeps
    finally:
        session.close()
    try:
        time.sleep(1)  # where a replay would have started its runner
        assert not [t for t in threading.enumerate() if t.name == "execution"]
        assert RunnerProcess.live <= before
    finally:
        workspace.remove()


@pytest.mark.parametrize("writer, use, leak", [
    ("out = open(os.path.join(home, 'out.txt'), 'w')", "out.write('hidden'); out.flush()",
     "open(os.path.join(home, 'out.txt')).read()"),
    ("import mmap\nshared = mmap.mmap(-1, 64)", "shared[:6] = b'hidden'",
     "shared[:6].strip(bytes(1)).decode()"),
    ("import select, socket\nmine, theirs = socket.socketpair()", "theirs.send(b'hidden')",
     "mine.recv(64).decode() if select.select([mine], [], [], 0)[0] else ''"),
], ids=["file", "shared-memory", "socket"])
def test_no_snapshot_while_the_notebook_holds_what_a_check_could_write_through(
        tmp_path, writer, use, leak):
    """Landlock judges a file when it is opened: through a descriptor opened before the
    snapshot, or memory mapped shared, a check's call could write the hidden inputs
    for later cells to print."""
    session, workspace = _held_open_session(tmp_path, writer, use, leak)
    try:
        session.start()
        student = session.student("use")
        assert student.snapshot is None  # refused: the check waited for the final state
        student.close()
    finally:
        session.close()
        workspace.remove()


# --- the filter a sealed snapshot's checks run under ---------------------------------


def _in_filtered_child(action) -> int | None:
    """Run `action` in a fork under the sealed checks' filter: the signal that ended the
    child, or None if it went on (exit status 0) after the action."""
    from autograder.sandbox.confine import seccomp_end_on_sealed_calls

    pid = os.fork()
    if pid == 0:
        try:
            seccomp_end_on_sealed_calls()
            action()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "kept.txt"
    path.write_text("data")
    return path


@pytest.mark.parametrize("attempt", [
    lambda f: open(f.parent / "new.txt", "w").close(),
    lambda f: open(f, "a").close(),
    lambda f: open(f, "r+").close(),
    lambda f: os.open(f, os.O_RDONLY | os.O_TRUNC),
    lambda f: os.mkdir(f.parent / "folder"),
    lambda f: os.unlink(f),
    lambda f: os.rename(f, f.parent / "moved.txt"),
    lambda f: os.link(f, f.parent / "linked.txt"),
    lambda f: os.symlink(f, f.parent / "symlinked.txt"),
    lambda f: os.truncate(f, 0),
    lambda f: os.kill(os.getppid(), 0),
    lambda f: os.kill(os.getpid(), 0),
    lambda f: socket.socket(socket.AF_UNIX),
], ids=["create", "append", "read-write", "truncate-on-open", "mkdir", "unlink", "rename",
        "link", "symlink", "truncate", "signal-parent", "signal-self", "socket"])
def test_whatever_the_seal_refuses_ends_a_sealed_check_instead(a_file, attempt):
    assert _in_filtered_child(lambda: attempt(a_file)) == signal.SIGSYS
    assert a_file.read_text() == "data"


def test_a_sealed_check_still_reads_computes_and_answers(a_file):
    here, there = socket.socketpair()

    def work() -> None:
        assert a_file.read_text() == "data"
        os.listdir(a_file.parent)
        threading.Thread(target=lambda: None).start()
        there.sendall(str(float(torch.ones(3).sum())).encode())

    assert _in_filtered_child(work) is None
    assert here.recv(16) == b"3.0"


def test_a_sealed_snapshot_needs_the_runners_seccomp_filter():
    from autograder.sandbox.confine import seccomp_filtering, seccomp_no_sockets

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            before = seccomp_filtering()
            seccomp_no_sockets()
            os.write(write, bytes([before, seccomp_filtering()]))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 2) == bytes([seccomp_filtering(), True])
