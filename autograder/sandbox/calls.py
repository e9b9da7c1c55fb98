"""Calling into an executed notebook: one fork per check, through `StudentProxy`.

A proxy calls student functions with plain data and opaque `Operator`
handles, whose calls it serves, counts and budgets; whatever comes back is
decoded into plain values or raises a `StudentError` with a message written
for the student. `CallClock` decides how long each call may take.
"""

import re
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import protocol
from .process import ExecutionPolicy, RunnerProcess

DISK_POLL_S = 0.2  # how often the scratch folder's quota is checked while code runs
# A decimal or exponent number: how a hidden input's values print (a tensor's repr). Whole
# numbers (shapes, counts, indices) carry what a student needs to debug, and stay.
_VALUE = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][-+]?\d+)?")


def redact_values(text: str) -> str:
    """An exception message from the student's own code, without the values it may
    print from the arguments it was called with (the hidden inputs)."""
    return _VALUE.sub("…", text)


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
    """The notebook does not define `name` (when the check asked for it)."""

    def __init__(self, name: str):
        super().__init__(f"the notebook does not define {name}; run every cell and keep the "
                         "names the notebook uses")
        self.name = name


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


def charge_budgets(name: str, args: tuple, kwargs: dict, lent: list[Operator]) -> None:
    """Raise `OperatorBudgetExceeded` for the first lent operator past its budget."""
    for op in lent:
        if op.over_budget:
            hint = f"; {op.hint}" if op.hint else ""
            raise OperatorBudgetExceeded(f"{describe_call(name, args, kwargs)} called {op.name} "
                                         f"more than {op.budget} times{hint}")


def inputs_changed(message: dict) -> list[str]:
    """What a call reply says the call changed of its inputs, as plain short strings
    (the runner is untrusted; a forged list can only cost its own submission)."""
    changed = message.get("changed")
    if not isinstance(changed, list):
        return []
    return [item[:120] for item in changed[:10] if isinstance(item, str)]


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


class CallClock:
    """How long each call into the notebook may take, and how long calls took.

    A call gets its function's budget (or the one a check passes), a fifth of
    it once a call of that function has timed out (a hang costs its function's
    checks little time, not the grade), and never runs past the deadline.
    """

    def __init__(self, policy: ExecutionPolicy, deadline: float | None):
        self.policy, self.deadline = policy, deadline
        self.timed_out: set[str] = set()
        self.took: list[tuple[str, float]] = []  # (function, seconds) of calls that returned

    def budget(self, name: str, explicit: float | None = None) -> tuple[float, str]:
        """(seconds, why it is shorter than usual or "")."""
        seconds, why = explicit or self.policy.call_budget(name), ""
        if name in self.timed_out:
            seconds /= 5
            why = f"a shorter budget, since an earlier call of {name} did not finish"
        left = self.deadline - time.monotonic() if self.deadline is not None else seconds
        if left < seconds:
            seconds, why = max(left, 0.0), "the grading deadline was reached"
        return seconds, why


class Lender:
    """What every transport of a check's `student` shares: the operators it lends."""

    def __init__(self) -> None:
        self._operators: list[Operator] = []

    def operator(self, fn: Callable, *, dim: int | None = None, dtype: torch.dtype | None = None,
                 budget: int | None = None, name: str = "the operator",
                 hint: str = "") -> Operator:
        """Register a grader-side callable to pass into student functions."""
        op = Operator(fn, dim=dim, dtype=dtype, budget=budget, name=name, hint=hint)
        self._operators.append(op)
        return op


class StudentProxy(Lender):
    """Calls into one fork of the executed notebook (one check's worth)."""

    def __init__(self, sock: socket.socket, pid: int, runner: RunnerProcess, clock: CallClock,
                 parent: int | None = None, snapshot: int | None = None):
        """`parent`: the process that forked this one (default: the runner); `snapshot`:
        the sealed snapshot that did, whose children cannot write (nothing to undo)."""
        super().__init__()
        self.changed: list[str] = []  # what the last call changed of its inputs
        self.names: set[str] = set()  # every name this check asked the notebook for
        self.snapshot = snapshot
        self.lost = False  # whether a call ended its fork: a timeout, a crash, bad data
        self._sock = sock
        self._pid = pid
        self._parent = parent
        self._runner = runner
        self._clock = clock

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
        self.names.add(name)
        protocol.send(self._sock, {"op": "get", "name": name})
        return self._await(f"the variable {name}", name, None, timed=False)

    def call(self, name: str, *args, timeout_s: float | None = None, **kwargs):
        """Call a notebook function; operators in the arguments are served.

        Raises `OperatorBudgetExceeded` if the call spent an operator's budget,
        even when the function caught the refusal and returned.
        """
        lent: list[Operator] = []
        self.changed = []
        self.names.add(name)
        protocol.send(self._sock, {
            "op": "call", "name": name,
            "args": protocol.encode([self._encode(a, lent) for a in args]),
            "kwargs": protocol.encode({k: self._encode(v, lent) for k, v in kwargs.items()})})
        try:
            return self._await(f"{name}(...)", name, timeout_s, timed=True)
        finally:  # a spent budget is the failure to report, whatever else happened
            charge_budgets(name, args, kwargs, lent)

    def _await(self, what: str, name: str, timeout_s: float | None, timed: bool):
        """The reply to a request; `timed` calls have their duration recorded."""
        budget, why = self._clock.budget(name, timeout_s)
        started = time.monotonic()
        deadline = started + budget
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._sock], [], [], max(min(remaining, DISK_POLL_S), 0))
            if not ready:
                self._check_disk(what)
                if time.monotonic() < deadline:
                    continue
                self._lose()
                self._clock.timed_out.add(name)
                raise StudentTimeout(f"{what} did not finish within {budget:.3g} s"
                                     + (f" ({why})" if why else ""))
            try:
                message = protocol.receive(self._sock)
            except (EOFError, OSError) as exc:
                self._lose()
                raise StudentCrash(f"{what} crashed the Python process "
                                   "(os._exit, a segfault or running out of memory)") from exc
            except protocol.ProtocolError as exc:
                self._lose()
                raise UnsupportedReturn(f"{what} sent back data the grader cannot read") from exc
            op = message.get("op")
            if op == "invoke":
                self._serve(message)
                continue
            self._check_disk(what)
            if op == "value":
                if timed:
                    self._clock.took.append((name, time.monotonic() - started))
                    self.changed = inputs_changed(message)
                try:
                    return protocol.decode(message.get("value"))
                except protocol.ProtocolError as exc:
                    raise UnsupportedReturn(f"{what} returned data the grader cannot read: "
                                            f"{exc}") from exc
            if op == "missing":
                raise MissingName(name)
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
                raise StudentError(f"{what} raised {kind}: {redact_values(text)}")
            self._lose()
            raise UnsupportedReturn(f"{what} sent back a malformed message")

    def _check_disk(self, what: str) -> None:
        """Past the disk quota, end this fork, delete what it wrote, blame the call."""
        if self.snapshot is not None:
            return  # sealed: it cannot write, and the running notebook's files are its own
        violation = self._runner.over_quota()
        if violation is not None:
            self._lose()
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

    def _lose(self) -> None:
        self.lost = True
        self.close()

    def close(self) -> None:
        """End this fork, killing it if it is still busy, and undo what it wrote to the
        scratch folder, so that no check can read what an earlier check's fork left
        there (such as the hidden inputs it was called with)."""
        self._runner.kill_child(self._pid, self._parent)
        self._sock.close()
        if self.snapshot is None:
            self._runner.undo_writes()
