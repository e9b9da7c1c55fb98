"""The grader's side of the boundary: execute a notebook, then hand out forks of it.

`NotebookSession` sends the submission's code cells to a sandboxed runner
one at a time, and reads exactly one start and one completion per cell, in
order; anything else is a fault of the cell that was running. Every cell
has a time budget (see `ExecutionPolicy`): a cell past it is interrupted,
and killed if that does not stop it, after which a fresh runner replays
the cells that had completed and goes on without it. When the notebook's
total budget runs out, the cells after the one it ran out in still run,
each under a short budget, so that a hang early in a notebook does not
erase the definitions further on. Execution ends before the deadline, with
time left for the checks, each of which gets a fresh fork through
`student()` (see `calls`).

With `checkpoints`, execution runs in a thread and the checks of an exercise
start while the notebook goes on: after an exercise's last cell the runner
forks a sealed snapshot, and a check of that exercise forks from it. Such a
verdict is provisional: `stale` tells which of them the final state could
change (a name rebound, a value mutated, a library patched later, see
`fingerprint`), and those checks run again on the final state, as do those
cut short on their snapshot (a check's fork there ends on anything the seal
refuses).

Flags such as timeouts come from what the session observed, never from
what the runner says.
"""

import base64
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ..submission import CodeCell, Submission
from . import protocol
from .calls import CallClock, StudentCrash, StudentProxy
from .fingerprint import UNKNOWN
from .process import IO_TIMEOUT_S, ExecutionPolicy, RunnerProcess, Workspace
from .records import CellRun, CellStatus, Figure

MAX_RESTARTS = 5
INTERRUPT_GRACE_S = 3.0
STARTUP_S = 120.0  # a fresh runner's imports (torch, IPython), before any cell
POLL_S = 0.2  # how often the scratch folder's quota is checked while a cell runs
MAX_FIGURES_PER_CELL = 50
MAX_FIGURE_BYTES = 64 * 2**20  # of PNG, all cells together
MAX_STDOUT_CHARS = 50_000
MAX_SNAPSHOTS = 3  # alive at once: each keeps the pages the notebook has since rewritten
FINGERPRINT_S = 30.0  # for a serving process to digest what a check's names reach
FORK_REPLY_S = 10.0  # for a serving process to hand over a new child
CLOSE_S = 30.0  # for execution to notice its session closed (it waits on a stopped runner)


@dataclass(eq=False)
class Snapshot:
    """A sealed fork of the runner between cells (`runner.serve_forks`): the checks of
    the exercises it `covers` (all of whose cells had run) start on it."""

    pid: int
    sock: socket.socket
    covers: frozenset[str]
    alive: bool = True


class Fingerprint(NamedTuple):
    """From a serving process: the digest of what each name reaches, and of the
    ambient state (`fingerprint`)."""

    digests: dict[str, str]
    ambient: str


@dataclass
class Vouch:
    """What a check run on a snapshot read there: the names it asked for, and their
    fingerprint there (None: not known, which never matches)."""

    names: frozenset[str]
    seen: Fingerprint | None = None


class _Fault(Exception):
    """The runner died, broke the protocol or was stopped: it cannot go on."""


class _NoRunner(Exception):
    """A fresh runner did not come up: nothing more can run."""


class _Lost(Exception):
    """The runner's stream ended or cannot be read; the message says how, for the cell."""


def _well_formed(message: dict, op: str, index: int | None = None) -> bool:
    """Whether a runner message is the one expected next (for a cell's messages, of
    cell `index`), in the shape the session reads: a cell can write to the runner's
    socket, so no field is trusted."""
    if message.get("op") != op:
        return False
    if op == "confined":
        return all(isinstance(message.get(key, []), list) for key in ("layers", "refused"))
    if message.get("index") != index or type(message.get("index")) is not int:
        return False
    if op == "cell_done":
        figures = message.get("figures", [])
        return (isinstance(message.get("duration_s", 0.0), int | float)
                and isinstance(message.get("drawn", {}), dict)
                and isinstance(figures, list) and all(isinstance(f, dict) for f in figures))
    return True


class NotebookSession:
    """One executed submission, kept alive while its checks run."""

    def __init__(self, submission: Submission, workspace: Workspace, policy: ExecutionPolicy,
                 runner: RunnerProcess | None = None, deadline: float | None = None,
                 checkpoints: dict[int, frozenset[str]] | None = None,
                 draw_aside: bool = False, pictures: bool = True):
        """`runner` may be one started early, so that its imports overlap ours;
        `deadline` (time.monotonic) bounds execution and every call; `checkpoints`
        names, by cell index, the exercises whose cells have all run after it;
        `draw_aside`: forks of the runner draw the figures while the notebook goes on
        (`runner.FigureCollector`: worth it with a CPU to spare, a cost without);
        without `pictures`, figures keep their line data and are not drawn."""
        self.submission = submission
        self.drawing = (protocol.NO_PICTURES if not pictures
                        else protocol.DRAWN_ASIDE if draw_aside else protocol.DRAWN_HERE)
        self.workspace = workspace
        self.policy = policy
        self.deadline = deadline
        self.cells: dict[int, CellRun] = {}
        self.figures: list[Figure] = []
        self.runner = runner
        self.warnings: list[str] = []
        self.layers: list[str] = []  # the sandbox layers of the first runner, as reported
        self.missing_layers: list[str] = []  # and those the host refused, with why
        self.clock = CallClock(policy, deadline)
        self.on_cell: Callable[[int, int], None] | None = None  # (cell n, of N) as each starts
        self._figure_bytes = 0
        self._undrawn: dict[str, int] = {}  # the runner's figure id -> position in figures
        self._ready = False  # the runner has reported its confinement
        self.checkpoints = dict(checkpoints or {})
        self._snapshots: list[Snapshot] = []
        self._changed = threading.Condition()  # a snapshot was taken, or execution ended
        self._done = False  # every cell has run (or will not)
        self._closed = threading.Event()  # execution must start nothing more
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None  # of the execution thread
        self._settled = False  # the runner serves the final state

    # --- execution -----------------------------------------------------------

    def execute(self) -> None:
        """Run every code cell once, in order, continuing past failures; then serve."""
        self.start()
        self.settle()

    def start(self) -> None:
        """Start executing: in a thread when checks may start on snapshots."""
        if not self.checkpoints:
            self._execute()
            return
        self._thread = threading.Thread(target=self._execute, name="execution", daemon=True)
        self._thread.start()

    def settle(self) -> None:
        """Wait for execution to end, retire the snapshots, and let the runner serve the
        final state (once)."""
        if self._thread is not None:
            self._thread.join()
        if self._failure is not None:  # a fault of the grader's own: as if execute() raised
            raise self._failure
        if self._settled:
            return
        self._settled = True
        with self._changed:
            for snapshot in list(self._snapshots):
                self._retire(snapshot)
        if self.runner is not None:
            self._serve()

    def _execute(self) -> None:
        try:
            self._execute_cells()
        except BaseException as exc:  # noqa: BLE001 - re-raised by settle, in the caller
            self._failure = exc
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()

    def _execute_cells(self) -> None:
        notebook_ends = None  # the total budget counts from the first cell, not the imports
        stop = (self.deadline - self.policy.checks_reserve_s if self.deadline is not None
                else float("inf"))
        completed: set[int] = set()  # ran to the end once: replayed after a restart
        cut: set[int] = set()  # timed out or killed the runner: never run again
        restarts, position = 0, 0
        cells = self.submission.cells
        while position < len(cells):
            cell = cells[position]
            position += 1
            if cell.index in cut:
                continue
            if self._closed.is_set():
                break
            if time.monotonic() >= stop:
                self._skip_rest(cells[position - 1:], cut, "not run: grading time ran out "
                                "before this cell")
                break
            try:
                if not self._ready:
                    self._start_runner(stop)
            except _NoRunner:
                self._drop_runner()
                self._skip_rest(cells[position - 1:], cut,
                                "not run: the grade ended before this cell" if self._closed.is_set()
                                else "not run: the runner failed to start")
                break
            if notebook_ends is None:
                notebook_ends = time.monotonic() + self.policy.total_timeout_s
            if self.on_cell is not None:
                self.on_cell(position, len(cells))
            try:
                self._run(cell, self._budget(cell, cell.index in completed, notebook_ends,
                                             stop), cut)
                if cell.index not in cut:
                    completed.add(cell.index)
                if cell.index in self.checkpoints and position < len(cells):
                    self._snapshot(self.checkpoints[cell.index])
            except _Fault:
                cut.add(cell.index)
                self._drop_runner()
                restarts += 1
                if restarts > MAX_RESTARTS:
                    self.warnings.append("the notebook stopped the runner too many times; "
                                         "later cells were not run")
                    self._skip_rest(cells[position:], cut, "not run: the notebook stopped "
                                    "the runner too many times")
                    break
                position = 0  # replay what completed, in a fresh runner, then go on
                self.figures = [f for f in self.figures if f.cell in cut]
                self._figure_bytes = sum(len(f.png) for f in self.figures)
                self._undrawn = {}  # the lost runner's ids: a fresh one counts anew

    def _snapshot(self, covers: frozenset[str]) -> None:
        """Have the runner fork a sealed snapshot of the state now. Raises _Fault when
        the runner does not answer as it should."""
        with self._changed:
            if sum(s.alive for s in self._snapshots) >= MAX_SNAPSHOTS:
                return  # the checks are behind: theirs will use a later one
        try:
            pid, sock = _served(self.runner.sock, "snapshot", IO_TIMEOUT_S)
        except _Unserved as exc:
            raise _Fault from exc
        if not self.runner.is_child(pid):
            sock.close()
            raise _Fault
        with self._changed:
            self._snapshots.append(Snapshot(pid, sock, covers))
            self._changed.notify_all()

    def _budget(self, cell: CodeCell, replay: bool, notebook_ends: float,
                stop: float) -> tuple[float, str]:
        """(seconds, why) this cell may run: its own budget; cut where the notebook's
        total runs out; a short one once it has; never past the stop."""
        now, own = time.monotonic(), self.policy.cell_budget(cell.key)
        seconds = own
        why = f"its budget of {own:.3g} s"
        if not replay and now >= notebook_ends:
            seconds = self.policy.late_cell_timeout_s
            why = (f"the notebook's total budget of {self.policy.total_timeout_s:.0f} s was "
                   f"spent before this cell, so each later cell gets {seconds:.3g} s")
        elif not replay and notebook_ends - now < seconds:
            seconds = notebook_ends - now
            why = f"the notebook's total budget of {self.policy.total_timeout_s:.0f} s ran out"
        if stop - now < seconds:
            seconds, why = stop - now, "grading time ran out"
        return max(seconds, 0.0), why

    def _start_runner(self, stop: float) -> None:
        """A fresh runner, past its imports and confinement."""
        if self.runner is None:
            self.runner = RunnerProcess(self.workspace, self.policy.limits)
        if self._closed.is_set():  # closed meanwhile: the caller stops this one
            raise _NoRunner
        ready, _, _ = select.select([self.runner.sock], [], [],
                                    max(min(STARTUP_S, stop - time.monotonic()), 0))
        try:
            message = protocol.receive(self.runner.sock) if ready else None
        except (EOFError, OSError, protocol.ProtocolError):
            message = None
        if message is None or not _well_formed(message, "confined"):
            self.warnings.append("the runner failed to start")
            raise _NoRunner
        self._ready = True
        if not self.layers:
            self.layers = [*self.runner.layers,
                           *(str(x)[:200] for x in message.get("layers", [])[:10])]
            self.missing_layers = [str(refused)[:200] for refused in
                                   self.runner.refused + message.get("refused", [])[:10]]

    def _run(self, cell: CodeCell, budget: tuple[float, str], cut: set[int]) -> None:
        """Run one cell; record how it went. Raises _Fault when the runner is lost."""
        seconds, why = budget
        try:
            protocol.send(self.runner.sock, {"op": "run", "index": cell.index,
                                             "source": cell.source, "drawing": self.drawing})
            start = self._receive(time.monotonic() + IO_TIMEOUT_S, cell)
            if start is None or not _well_formed(start, "cell_start", cell.index):
                raise _Lost("the runner did not start this cell")
            done = self._receive(time.monotonic() + seconds, cell)
            timed_out = ""
            if done is None:  # past its budget: interrupt, as Jupyter does
                self.runner.interrupt()
                cut.add(cell.index)
                timed_out = f"ran past {seconds:.3g} s and was interrupted ({why})"
                done = self._receive(time.monotonic() + INTERRUPT_GRACE_S, cell)
                if done is None:
                    self._fault(cell, f"ran past {seconds:.3g} s ({why}) and did not stop when "
                                "interrupted; it was killed and the notebook replayed without "
                                "it", CellStatus.TIMEOUT)
                    raise _Fault
            if not _well_formed(done, "cell_done", cell.index):
                raise _Lost("the cell sent the grader data it cannot read")
        except _Lost as lost:
            if cell.index not in self.cells:
                self._fault(cell, str(lost))
            raise _Fault from lost
        self._record(cell, done, timed_out)

    def _receive(self, until: float, cell: CodeCell) -> dict | None:
        """The runner's next message, or None at `until`. Raises _Lost at the end of
        its stream, on an unreadable message, or when the cell overfills the disk."""
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.runner.sock], [], [], min(left, POLL_S))
            violation = self.runner.over_quota()
            if violation is not None:
                self.runner.stop()
                self.runner.undo_writes()
                raise _Lost(violation)
            if not ready:
                continue
            try:
                return protocol.receive(self.runner.sock)
            except (EOFError, OSError) as exc:
                raise _Lost("the cell ended the Python process") from exc
            except protocol.ProtocolError as exc:
                raise _Lost("the cell sent the grader data it cannot read") from exc

    def _record(self, cell: CodeCell, message: dict, timed_out: str = "") -> None:
        # The runner says ok or error; anything else it says is read as an error.
        status = (CellStatus.TIMEOUT if timed_out
                  else CellStatus.OK if message.get("status") == "ok" else CellStatus.ERROR)
        error = timed_out or str(message.get("error", ""))[:2000]
        self.cells[cell.index] = CellRun(cell.index, status,
                                         float(message.get("duration_s", 0.0)), error,
                                         str(message.get("stdout", ""))[:MAX_STDOUT_CHARS])
        for figure in message.get("figures", [])[:MAX_FIGURES_PER_CELL]:
            png = self._png(figure.get("png", ""))
            if png is None:
                break
            axes = figure.get("axes", [])
            if (not png and self.drawing == protocol.DRAWN_ASIDE
                    and type(figure.get("id")) is int):  # the PNG comes later
                self._undrawn[str(figure["id"])] = len(self.figures)
            self.figures.append(Figure(cell.index, png, axes if isinstance(axes, list) else []))
        self._attach(message.get("drawn", {}))

    def _png(self, text) -> bytes | None:
        """A figure's PNG from the runner's base64 (b"" if unreadable); None once the
        notebook's figures would exceed the size kept."""
        try:
            png = base64.b64decode(text, validate=True)
        except (ValueError, TypeError):
            png = b""
        if self._figure_bytes + len(png) > MAX_FIGURE_BYTES:
            note = "the notebook's figures exceed the size kept; later ones are left out"
            if note not in self.warnings:
                self.warnings.append(note)
            return None
        self._figure_bytes += len(png)
        return png

    def _attach(self, drawn: dict) -> None:
        """Give the figures drawn aside (`runner.FigureCollector`) their PNGs."""
        for key, text in drawn.items():
            position = self._undrawn.pop(key, None)
            if position is None:
                continue
            png = self._png(text)
            if png is None:  # past the size kept: said so, and so are all still to come
                self._undrawn.clear()
                return
            self.figures[position].png = png

    def _fault(self, cell: CodeCell, error: str, status: CellStatus = CellStatus.ERROR) -> None:
        self.cells[cell.index] = CellRun(cell.index, status, 0.0, error)

    def _skip_rest(self, cells: tuple[CodeCell, ...], cut: set[int], why: str) -> None:
        for cell in cells:
            if cell.index not in self.cells and cell.index not in cut:
                self.cells[cell.index] = CellRun(cell.index, CellStatus.SKIPPED, 0.0, why)

    def _drop_runner(self) -> None:
        with self._changed:  # they die with the runner
            for snapshot in self._snapshots:
                snapshot.alive = False
        if self.runner is not None:
            self.runner.stop()
            # What the last run wrote goes, lest the next runner trip over it.
            self.runner.undo_writes()
            self.runner = None
            self._ready = False

    def _serve(self) -> None:
        """The runner becomes the zygote the checks fork from, once it has sent the
        figures still being drawn aside. It sends them within DRAWING_S unless held off
        the CPU; however late, they are waited for (until the deadline): read later,
        they would be taken for the answer to a check's fork."""
        wait = (self.deadline - time.monotonic() if self.deadline is not None
                else protocol.DRAWING_S + IO_TIMEOUT_S)
        try:
            protocol.send(self.runner.sock, {"op": "serve"})
            ready, _, _ = select.select([self.runner.sock], [], [], max(wait, 0))
            if not ready:
                raise TimeoutError
            drawn = protocol.receive(self.runner.sock)
        except (EOFError, OSError, protocol.ProtocolError):
            self.warnings.append("the notebook's process did not answer after its last "
                                 "cell: no check could run on its final state")
            self._drop_runner()
            return
        if drawn.get("op") == "drawn" and isinstance(drawn.get("drawn"), dict):
            self._attach(drawn["drawn"])
        if self._undrawn:
            cells = sorted({self.figures[p].cell for p in self._undrawn.values()})
            self.warnings.append(
                f"{len(self._undrawn)} figure(s) of cell(s) {', '.join(map(str, cells))} "
                f"could not be drawn (drawing raised an error or took more than "
                f"{protocol.DRAWING_S:.0f} s): their pictures are left out (the plot checks "
                "still read their lines)")
            self._undrawn = {}
        self.runner.kill_strays()
        self.runner.executed()

    # --- checks --------------------------------------------------------------

    def student(self, exercise: str | None = None) -> StudentProxy:
        """A proxy to a fresh fork of the notebook: of the latest snapshot that covers
        `exercise` while execution goes on, else of the final state."""
        while True:
            snapshot = self._snapshot_for(exercise)
            if snapshot is None:
                break
            try:
                return self._fork(snapshot.sock, snapshot.pid, snapshot=snapshot.pid)
            except StudentCrash:  # no sealed fork here (see runner.serve_forks): stop taking them
                self.checkpoints = {}
                with self._changed:
                    self._retire(snapshot)
        self.settle()
        if self.runner is None or self.runner.process.poll() is not None:
            raise StudentCrash("the notebook's process is not running")
        return self._fork(self.runner.sock, self.runner.pid)

    def _snapshot_for(self, exercise: str | None) -> Snapshot | None:
        """The latest live snapshot covering `exercise`, waiting for one while execution
        goes on; older ones are retired. None once execution has ended."""
        if exercise is None or self._settled or self._thread is None:
            return None
        with self._changed:
            while True:
                # Each snapshot covers what older ones do: only the newest is of use.
                for older in self._snapshots[:-1]:
                    self._retire(older)
                newest = self._snapshots[-1] if self._snapshots else None
                if newest is not None and newest.alive and exercise in newest.covers:
                    return newest
                if newest is not None:
                    self._retire(newest)  # this check needs a later one
                if self._done:
                    return None
                self._changed.wait()

    def _retire(self, snapshot: Snapshot) -> None:
        """End a snapshot (checks' thread only: the socket may be in use there)."""
        if snapshot.alive and self.runner is not None:
            self.runner.kill_child(snapshot.pid)
        snapshot.alive = False
        snapshot.sock.close()
        self._snapshots.remove(snapshot)

    def _fork(self, sock: socket.socket, parent: int, snapshot: int | None = None) -> StudentProxy:
        """A proxy to a new child of the serving process on `sock`."""
        try:
            pid, child = _served(sock, "fork", FORK_REPLY_S)
        except _Unserved as exc:
            raise StudentCrash(f"the notebook's process {exc}") from exc
        return StudentProxy(child, pid, self.runner, self.clock, parent, snapshot)

    # --- provisional verdicts -------------------------------------------------

    def vouch(self, proxy: StudentProxy) -> Vouch | None:
        """For a check that ran on a snapshot: what its names reach there. None for a
        check on the final state, whose verdict is final."""
        if proxy.snapshot is None:
            return None
        names = frozenset(proxy.names)
        with self._changed:
            source = next((s for s in self._snapshots if s.pid == proxy.snapshot and s.alive),
                          None)
        return Vouch(names, _fingerprints(source.sock, sorted(names)) if source else None)

    def stale(self, vouches: dict[str, Vouch]) -> set[str]:
        """The keys of the provisional verdicts that the final state could change: run
        those checks again. Settles execution first."""
        self.settle()
        names = sorted(set().union(*(v.names for v in vouches.values())))
        final = (_fingerprints(self.runner.sock, names)
                 if vouches and self.runner is not None else None)

        def same(vouch: Vouch) -> bool:
            seen = vouch.seen
            if seen is None or final is None or UNKNOWN in (seen.ambient, final.ambient):
                return False
            return seen.ambient == final.ambient and all(
                seen.digests.get(n, UNKNOWN) == final.digests.get(n, UNKNOWN) != UNKNOWN
                for n in vouch.names)

        return {key for key, vouch in vouches.items() if not same(vouch)}

    def close(self) -> None:
        """Stop the runner, and execution with it: a thread still executing (when the
        grade ends early, on a fault of the grader's own) runs nothing more, and is
        waited for (up to CLOSE_S) before the caller removes the scratch folder."""
        self._closed.set()
        runner = self.runner
        if runner is not None:
            runner.stop()
        if self._thread is not None:
            self._thread.join(CLOSE_S)


class _Unserved(Exception):
    """A serving process did not hand over a socket as asked."""


def _served(sock: socket.socket, op: str, timeout_s: float) -> tuple[int, socket.socket]:
    """Ask the process serving on `sock` for a new child (`fork`, `snapshot`): the pid
    it claims, and the socket it handed over. Raises _Unserved."""
    replies = {"fork": "forked", "snapshot": "snapshot"}
    try:
        protocol.send(sock, {"op": op})
        ready, _, _ = select.select([sock], [], [], timeout_s)
        if not ready:
            raise _Unserved("did not respond")
        message, fd = protocol.receive_with_fd(sock)
    except (EOFError, OSError, protocol.ProtocolError) as exc:
        raise _Unserved("did not respond") from exc
    child = socket.socket(fileno=fd)
    pid = message.get("pid")
    if message.get("op") != replies[op] or type(pid) is not int:
        child.close()
        raise _Unserved("sent a malformed reply")
    child.settimeout(IO_TIMEOUT_S)
    return pid, child


def _fingerprints(sock: socket.socket, names: list[str]) -> Fingerprint | None:
    """The fingerprint of `names` from a serving process; None if it does not answer
    as it should."""
    try:
        protocol.send(sock, {"op": "fingerprint", "names": names})
        ready, _, _ = select.select([sock], [], [], FINGERPRINT_S)
        reply = protocol.receive(sock) if ready else {}
    except (EOFError, OSError, protocol.ProtocolError):
        return None
    digests, ambient = reply.get("digests"), reply.get("ambient")
    if reply.get("op") != "fingerprint" or not isinstance(digests, dict) \
            or not isinstance(ambient, str) \
            or not all(isinstance(v, str) for v in digests.values()):
        return None
    return Fingerprint(digests, ambient)
