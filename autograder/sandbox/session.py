"""The grader's side of the boundary: execute a notebook, then call into it.

`NotebookSession` runs the submission's cells in a sandboxed runner (with
per-cell and total time budgets, surviving cells that hang or kill the
process), then hands out `StudentProxy` objects, each talking to a fresh
fork of the executed notebook. A proxy calls student functions with plain
data and opaque `Operator` handles, whose calls it serves, counts and
budgets; whatever comes back is decoded into plain values or raises a
`StudentError` with a message written for the student.
"""

import base64
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..submission import Submission
from . import protocol
from .process import IO_TIMEOUT_S, ExecutionPolicy, RunnerProcess, Workspace
from .records import CellRun, CellStatus, Figure

MAX_RESTARTS = 5
INTERRUPT_GRACE_S = 3.0
DISK_POLL_S = 0.2  # how often the scratch folder's quota is checked while code runs


class StudentError(Exception):
    """A check could not get a usable answer from the student's code.

    The message is shown to the student: it says what was called and what
    went wrong, never what was expected.
    """


class StudentTimeout(StudentError):
    pass


class StudentCrash(StudentError):
    pass


class UnsupportedReturn(StudentError):
    pass


class MissingName(StudentError):
    pass


class OperatorBudgetExceeded(StudentError):
    """A student function called an operator more often than its budget allows;
    raised by `StudentProxy.call` whether the function then failed or returned."""


@dataclass(eq=False)
class Operator:
    """A grader-side function lent to student code as an opaque callable.

    Inputs are cast to `dtype` (if given) before `fn` runs, and the result is
    cast back to the caller's floating dtype, so any precision style works.
    `calls` counts invocations; past `budget` each call is refused, and the
    student call that spent it fails with `OperatorBudgetExceeded`, whose
    message names the operator (`name`) and adds `hint`, the method's cost.
    """

    fn: Callable[[torch.Tensor], torch.Tensor]
    dim: int | None = None
    dtype: torch.dtype | None = None
    budget: int | None = None
    name: str = "the operator"
    hint: str = ""
    calls: int = 0

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.calls > self.budget

    def __call__(self, *args):
        self.calls += 1
        if self.over_budget:
            raise StudentError(f"the operator was called more than {self.budget} times")
        if len(args) != 1 or not isinstance(args[0], torch.Tensor):
            raise StudentError("the operator takes exactly one tensor")
        v = args[0]
        if self.dim is not None and tuple(v.shape) != (self.dim,):
            raise StudentError(f"the operator takes a vector of shape ({self.dim},), "
                               f"got {tuple(v.shape)}")
        if not v.is_floating_point():
            v = v.double()
        out = self.fn(v.to(self.dtype) if self.dtype else v)
        return out.detach().to(v.dtype)


def _charge_budgets(name: str, args: tuple, kwargs: dict, lent: list[Operator]) -> None:
    for op in lent:
        if op.over_budget:
            hint = f"; {op.hint}" if op.hint else ""
            raise OperatorBudgetExceeded(f"{describe_call(name, args, kwargs)} called {op.name} "
                                         f"more than {op.budget} times{hint}")


def describe_call(name: str, args: tuple, kwargs: dict) -> str:
    """A call as a student would write it: operators by name, tensors by shape,
    numbers and short strings as they are (no hidden data is printed)."""
    def show(value) -> str:
        if isinstance(value, Operator):
            return value.name.removeprefix("the ")
        if isinstance(value, torch.Tensor):
            return f"<tensor of shape {tuple(value.shape)}>"
        if isinstance(value, (bool, int, float)) or value is None:
            return repr(value)
        if isinstance(value, str) and len(value) <= 40:
            return repr(value)
        return f"<{type(value).__name__}>"

    parts = [show(a) for a in args] + [f"{k}={show(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _well_formed(message: dict) -> bool:
    """Whether a runner message has the shape the session reads: a cell can
    write to the runner's socket, so no field is trusted to be what it claims."""
    op = message.get("op")
    if op in ("cell_start", "cell_done") and type(message.get("index")) is not int:
        return False
    if op == "cell_done":
        figures = message.get("figures", [])
        return (isinstance(message.get("duration_s", 0.0), int | float)
                and isinstance(figures, list) and all(isinstance(f, dict) for f in figures))
    if op == "confined":
        return all(isinstance(message.get(key, []), list) for key in ("layers", "refused"))
    return True


class StudentProxy:
    """Calls into one fork of the executed notebook (one check's worth)."""

    def __init__(self, sock: socket.socket, pid: int, runner: RunnerProcess, timeout_s: float):
        self._sock = sock
        self._pid = pid
        self._runner = runner
        self.timeout_s = timeout_s
        self._operators: list[Operator] = []

    def operator(self, fn: Callable, *, dim: int | None = None, dtype: torch.dtype | None = None,
                 budget: int | None = None, name: str = "the operator",
                 hint: str = "") -> Operator:
        """Register a grader-side callable to pass into student functions."""
        op = Operator(fn, dim=dim, dtype=dtype, budget=budget, name=name, hint=hint)
        self._operators.append(op)
        return op

    def _encode(self, value, lent: list[Operator]):
        """Handles in place of operators, which are collected into `lent`."""
        if isinstance(value, Operator):
            lent.append(value)
            return protocol.Handle(self._operators.index(value))
        if isinstance(value, list):
            return [self._encode(v, lent) for v in value]
        if isinstance(value, tuple):
            return tuple(self._encode(v, lent) for v in value)
        if isinstance(value, dict):
            return {k: self._encode(v, lent) for k, v in value.items()}
        return value

    def get(self, name: str):
        """The value of a notebook variable, as plain data."""
        protocol.send(self._sock, {"op": "get", "name": name})
        return self._await(f"the variable {name}", name)

    def call(self, name: str, *args, timeout_s: float | None = None, **kwargs):
        """Call a notebook function; operators in the arguments are served.

        Raises `OperatorBudgetExceeded` if the call spent an operator's budget,
        even when the function caught the refusal and returned.
        """
        lent: list[Operator] = []
        protocol.send(self._sock, {
            "op": "call", "name": name,
            "args": protocol.encode([self._encode(a, lent) for a in args]),
            "kwargs": protocol.encode({k: self._encode(v, lent) for k, v in kwargs.items()})})
        try:
            return self._await(f"{name}(...)", name, timeout_s)
        finally:  # a spent budget is the failure to report, whatever else happened
            _charge_budgets(name, args, kwargs, lent)

    def _await(self, what: str, name: str, timeout_s: float | None = None):
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._sock], [], [], max(min(remaining, DISK_POLL_S), 0))
            if not ready:
                self._check_disk(what)
                if time.monotonic() < deadline:
                    continue
                self.close()
                raise StudentTimeout(f"{what} did not finish within "
                                     f"{timeout_s or self.timeout_s:.0f} s")
            try:
                message = protocol.receive(self._sock)
            except (EOFError, OSError) as exc:
                self.close()
                raise StudentCrash(f"{what} crashed the Python process "
                                   "(os._exit, a segfault or running out of memory)") from exc
            except protocol.ProtocolError as exc:
                self.close()
                raise UnsupportedReturn(f"{what} sent back data the grader cannot read") from exc
            op = message.get("op")
            if op == "invoke":
                self._serve(message)
                continue
            self._check_disk(what)
            if op == "value":
                try:
                    return protocol.decode(message.get("value"))
                except protocol.ProtocolError as exc:
                    raise UnsupportedReturn(f"{what} returned data the grader cannot read: "
                                            f"{exc}") from exc
            if op == "missing":
                raise MissingName(f"the notebook does not define {name}; run every cell "
                                  "and keep the names the notebook uses")
            if op == "not_callable":
                raise StudentError(f"{name} is not a function")
            if op == "unsupported":
                raise UnsupportedReturn(
                    f"{what} returned a {str(message.get('type'))[:60]} object, which cannot "
                    "be graded; return tensors, numbers, or lists/tuples/dicts of these")
            if op == "raised":
                kind, text = str(message.get("type"))[:60], str(message.get("message"))[:300]
                if kind == "NotImplementedError":
                    raise StudentError(f"{name} is not implemented yet (it raises "
                                       "NotImplementedError)")
                raise StudentError(f"{what} raised {kind}: {text}")
            self.close()
            raise UnsupportedReturn(f"{what} sent back a malformed message")

    def _check_disk(self, what: str) -> None:
        """Past the disk quota, end this fork, delete what it wrote, blame the call."""
        violation = self._runner.over_quota()
        if violation is not None:
            self.close()
            self._runner.undo_writes()
            raise StudentCrash(f"{what}: {violation}")

    def _serve(self, message: dict) -> None:
        handle = message.get("handle")
        if not isinstance(handle, int) or not 0 <= handle < len(self._operators):
            protocol.send(self._sock, {"op": "invoke_error", "message": "unknown operator"})
            return
        try:
            args = protocol.decode(message.get("args"))
            if not isinstance(args, list):
                raise protocol.ProtocolError("malformed arguments")
            value = self._operators[handle](*args)
            protocol.send(self._sock, {"op": "invoke_result", "value": protocol.encode(value)})
        except (StudentError, protocol.ProtocolError) as exc:
            protocol.send(self._sock, {"op": "invoke_error", "message": str(exc)})

    def close(self) -> None:
        """End this fork; kill it if it is still busy."""
        self._runner.kill_child(self._pid)
        self._sock.close()


class NotebookSession:
    """One executed submission, kept alive while its checks run."""

    def __init__(self, submission: Submission, workspace: Workspace, policy: ExecutionPolicy,
                 runner: RunnerProcess | None = None):
        """`runner` may be one started early, so that its imports overlap ours."""
        self.submission = submission
        self.workspace = workspace
        self.policy = policy
        self.cells: dict[int, CellRun] = {}
        self.figures: list[Figure] = []
        self.runner = runner
        self._runner_is_fresh = runner is not None
        self.warnings: list[str] = []

    def execute(self) -> None:
        """Run every code cell once, in order, continuing past failures.

        A cell that exceeds its budget is interrupted; if that does not stop
        it, or a cell kills the runner, the runner is restarted and the
        notebook replayed without that cell.
        """
        skipped: set[int] = set()
        deadline = time.monotonic() + self.policy.total_timeout_s
        for _attempt in range(MAX_RESTARTS + 1):
            bad = self._run_once(skipped, deadline)
            if bad is None:
                if self.runner is not None:
                    self.runner.kill_strays()
                    self.runner.executed()
                return
            skipped.add(bad)
        self.warnings.append("the notebook crashed the runner too many times; "
                             "later cells were not run")

    def _run_once(self, skipped: set[int], deadline: float) -> int | None:
        """One pass over the cells; returns the cell index to skip next time, if any."""
        if not self._runner_is_fresh:
            if self.runner is not None:
                self.runner.stop()
                # What the last run wrote goes, lest the next runner trip over it.
                self.runner.undo_writes()
            self.runner = RunnerProcess(self.workspace, self.policy.limits)
        self._runner_is_fresh = False
        self.figures = [f for f in self.figures if f.cell in skipped]
        cells = [c for c in self.submission.cells if c.index not in skipped]
        try:
            protocol.send(self.runner.sock, {"op": "execute", "cells": [
                {"index": c.index, "source": c.source} for c in cells]})
        except OSError:
            self.warnings.append("the runner failed to start")
            return None
        current, interrupted_at, started = None, None, False
        cell_deadline = deadline
        while True:
            now = time.monotonic()
            wait = min(cell_deadline, deadline) - now
            ready, _, _ = select.select([self.runner.sock], [], [],
                                        max(min(wait, DISK_POLL_S), 0))
            if not ready:
                if time.monotonic() < min(cell_deadline, deadline):
                    if current is not None and self._over_quota(current):
                        return current
                    continue
                if current is None or time.monotonic() >= deadline:
                    self._mark_rest(current, cells, CellStatus.TIMEOUT, "the notebook ran past its "
                                    f"total budget of {self.policy.total_timeout_s:.0f} s")
                    return None
                if interrupted_at is None:
                    self.runner.interrupt()
                    interrupted_at = current
                    cell_deadline = time.monotonic() + INTERRUPT_GRACE_S
                    continue
                self.cells[current] = CellRun(current, CellStatus.TIMEOUT, self.policy.cell_timeout_s,
                                              "did not stop when interrupted")
                return current
            try:
                message = protocol.receive(self.runner.sock)
                if not _well_formed(message):
                    raise protocol.ProtocolError("malformed message")
            except (EOFError, OSError, protocol.ProtocolError) as exc:
                if current is None:
                    self.warnings.append("the runner failed to start")
                    return None
                if current not in self.cells or self.cells[current].status != CellStatus.TIMEOUT:
                    self.cells[current] = CellRun(
                        current, CellStatus.ERROR, 0.0,
                        "the cell sent the grader data it cannot read"
                        if isinstance(exc, protocol.ProtocolError)
                        else "the cell ended the Python process")
                return current
            op = message.get("op")
            if op == "confined" and not started:  # later ones are forgeries by a cell
                self.runner.layers.extend(str(x)[:200] for x in message.get("layers", [])[:10])
                for refused in self.runner.refused + message.get("refused", [])[:10]:
                    warning = f"sandbox layer not active: {str(refused)[:200]}"
                    if warning not in self.warnings:
                        self.warnings.append(warning)
            elif op == "cell_start":
                current, started = message["index"], True
                cell_deadline = time.monotonic() + self.policy.cell_timeout_s
                interrupted_at = None
            elif op == "cell_done":
                index = self._record(message, timed_out=interrupted_at == current)
                current = None
                cell_deadline = deadline
                if self._over_quota(index):
                    return index
            elif op == "executed":
                return None

    def _over_quota(self, index: int) -> bool:
        """Past the disk quota, stop the runner, delete its files and blame cell `index`."""
        violation = self.runner.over_quota()
        if violation is None:
            return False
        self.runner.stop()
        self.runner.undo_writes()
        self.cells[index] = CellRun(index, CellStatus.ERROR, 0.0, violation)
        return True

    def _record(self, message: dict, timed_out: bool) -> int:
        index = int(message.get("index", -1))
        # The runner says ok or error; anything else it says is read as an error.
        status = (CellStatus.TIMEOUT if timed_out
                  else CellStatus.OK if message.get("status") == "ok" else CellStatus.ERROR)
        error = str(message.get("error", ""))
        if timed_out:
            error = f"interrupted after {self.policy.cell_timeout_s:.0f} s"
        self.cells[index] = CellRun(index, status, float(message.get("duration_s", 0.0)),
                                    error, str(message.get("stdout", ""))[:50_000])
        for figure in message.get("figures", [])[:50]:
            try:
                png = base64.b64decode(figure.get("png", ""), validate=True)
            except (ValueError, TypeError):
                png = b""
            axes = figure.get("axes", [])
            self.figures.append(Figure(index, png, axes if isinstance(axes, list) else []))
        return index

    def _mark_rest(self, current, cells, status: CellStatus, error: str) -> None:
        for cell in cells:
            if cell.index not in self.cells:
                self.cells[cell.index] = CellRun(cell.index, status if cell.index == current
                                                 else CellStatus.SKIPPED, 0.0, error)

    def student(self) -> StudentProxy:
        """A proxy to a fresh fork of the executed notebook."""
        if self.runner is None or self.runner.process.poll() is not None:
            raise StudentCrash("the notebook's process is not running")
        protocol.send(self.runner.sock, {"op": "fork"})
        ready, _, _ = select.select([self.runner.sock], [], [], 10)
        if not ready:
            raise StudentCrash("the notebook's process did not respond")
        try:
            message, fd = protocol.receive_with_fd(self.runner.sock)
        except (EOFError, OSError, protocol.ProtocolError) as exc:
            raise StudentCrash("the notebook's process did not respond") from exc
        pid = message.get("pid")
        if message.get("op") != "forked" or not isinstance(pid, int):
            raise StudentCrash("the notebook's process sent a malformed reply")
        sock = socket.socket(fileno=fd)
        sock.settimeout(IO_TIMEOUT_S)
        return StudentProxy(sock, pid, self.runner, self.policy.call_timeout_s)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
