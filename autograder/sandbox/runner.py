"""The untrusted side: runs a submission's code cells, then serves calls.

Started by the grader inside the sandbox (`process.RUNNER_BOOT`) with its
end of a socket pair and the engine's parent folder as arguments, or forked,
already past its imports, by a zygote (`zygote`) that a cohort worker keeps. It never
sees hidden tests, reference code or expected values: it only answers
requests made of plain data (see `protocol`). After executing the notebook it becomes a "zygote": each
`fork` request makes a child holding a copy of the notebook's state, which
serves one check's calls and dies. Between cells, a `snapshot` request forks
a sealed zygote of the state so far, for the checks of the exercises done. A hang, crash or corruption in one check
therefore cannot touch the next, and the grader can kill a child without
losing the notebook.
"""

import base64
import contextlib
import ctypes
import gc
import io
import math
import os
import select
import shutil
import signal
import socket
import stat
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import protocol
from .confine import confine
from .fingerprint import library_baseline

OUTPUT_LIMIT = 20_000  # characters of stdout kept per cell
MAX_FIGURE_POINTS = 5_000  # per line, for plot checks
MAX_CELL_POINTS = 200_000  # all lines of a cell's figures together
MAX_CELL_FIGURES = 50
MAX_DRAWING = 2  # forks drawing figures at once (each is a process of the budget)
# Niceness of the snapshots, and so of their checks' forks, which work beside the notebook:
# with two CPUs, a check fork, its fork's exit and the grader's next check can be runnable
# at once, and at equal priority they took about a sixth of the notebook's CPU from it.
# (Drawing forks keep the runner's: it waits for them when MAX_DRAWING are busy.)
BESIDE_NICENESS = 10


class CappedText(io.TextIOBase):
    """A text sink that keeps the first `limit` characters and drops the rest."""

    def __init__(self, limit: int = OUTPUT_LIMIT):
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def getvalue(self) -> str:
        suffix = f"\n[... {self.dropped:,} more characters not shown]" if self.dropped else ""
        return "".join(self.parts) + suffix


# --- figures ---------------------------------------------------------------


def _finite(values) -> list:
    out = []
    for v in list(values)[:MAX_FIGURE_POINTS]:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        out.append(f if math.isfinite(f) else None)
    return out


def _describe_axes(ax) -> dict:
    lines = [{"label": str(line.get_label()), "x": _finite(line.get_xdata()),
              "y": _finite(line.get_ydata())} for line in ax.get_lines()]
    return {"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
            "xscale": ax.get_xscale(), "yscale": ax.get_yscale(), "lines": lines}


def _png(figure) -> str:
    """The figure drawn as a PNG, base64 (the wire carries text)."""
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=72)
    return base64.b64encode(png.getvalue()).decode("ascii")


class FigureCollector:
    """Captures every open matplotlib figure as line data and a PNG, then closes it.

    Drawing is most of what a figure costs (tick and text layout: about a second and
    a half for the course notebook's plots), and plain Python, the notebook's floor,
    never draws. So while `aside` is set (to the runner's socket, which such forks
    close), a fork of this process draws each collection, exactly as it stands, while
    the notebook goes on on another core; its PNGs come back with a later cell
    (`take_drawn`) or at the end (`finish`). A fork past `protocol.DRAWING_S` is
    killed: its figures keep their line data and have no picture. Where no fork can
    be made (the process budget), figures are drawn here, as without `aside`. Where
    nobody will see a picture (`pictures` unset), none is drawn: the line data is
    all the plot checks read.
    """

    def __init__(self):
        self.figures: list[dict] = []  # this cell's: id, axes, png ("" while drawn aside)
        self.drawn: dict[str, str] = {}  # PNGs drawn aside since the last take, by id
        self.aside: socket.socket | None = None
        self.pictures = True
        self._drawing: list[tuple[int, socket.socket, float]] = []  # pid, socket, deadline
        self._count = 0

    def collect(self) -> None:
        if "matplotlib.pyplot" not in sys.modules:
            return
        plt = sys.modules["matplotlib.pyplot"]
        pending = []
        for number in plt.get_fignums()[:max(MAX_CELL_FIGURES - len(self.figures), 0)]:
            figure = plt.figure(number)
            entry = {"id": self._count, "png": "", "axes": []}
            self._count += 1
            try:
                entry["axes"] = [_describe_axes(ax) for ax in figure.get_axes()]
                pending.append((entry, figure))
            except Exception as exc:  # noqa: BLE001 - a broken figure must not break the report
                entry["error"] = repr(exc)[:200]
            self.figures.append(entry)
        if pending and self.pictures and not self._draw_aside(pending):
            for entry, figure in pending:
                try:
                    entry["png"] = _png(figure)
                except Exception as exc:  # noqa: BLE001 - as above
                    entry["error"] = repr(exc)[:200]
        plt.close("all")

    def _draw_aside(self, pending: list) -> bool:
        """Fork a child that draws `pending` and sends the PNGs on a socket of its own.
        False where there is no `aside` or no fork could be made."""
        if self.aside is None:
            return False
        if len(self._drawing) >= MAX_DRAWING:
            self._gather(wait=True)
        ours, theirs = socket.socketpair()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return False
        if pid == 0:
            try:
                gc.disable()  # a collection would touch, and so copy, every object's page
                for held in (self.aside, ours, *(s for _, s, _ in self._drawing)):
                    held.close()
                drawn = {}
                for entry, figure in pending:
                    with contextlib.suppress(Exception):
                        drawn[str(entry["id"])] = _png(figure)
                protocol.send(theirs, {"drawn": drawn})
            finally:
                os._exit(0)
        theirs.close()
        self._drawing.append((pid, ours, time.monotonic() + protocol.DRAWING_S))
        return True

    def _gather(self, wait: bool) -> None:
        """Take in the PNGs of the forks that are done, or (`wait`) of the oldest one,
        waiting up to its deadline; a fork past its deadline is killed."""
        still = []
        for position, (pid, ours, deadline) in enumerate(self._drawing):
            waited = max(deadline - time.monotonic(), 0) if wait and position == 0 else 0
            ready, _, _ = select.select([ours], [], [], waited)
            left = deadline - time.monotonic()
            if not ready and left > 0:
                still.append((pid, ours, deadline))
                continue
            if ready:
                ours.settimeout(max(left, 0.1))
                with contextlib.suppress(EOFError, OSError, protocol.ProtocolError):
                    drawn = protocol.receive(ours).get("drawn")
                    if isinstance(drawn, dict):
                        self.drawn.update(drawn)
            ours.close()
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self._drawing = still

    def take(self) -> list[dict]:
        """This cell's figures, their line data cut to MAX_CELL_POINTS in all (the grader
        bounds what it parses; no plot check needs more)."""
        figures, self.figures = self.figures, []
        budget = MAX_CELL_POINTS
        for figure in figures:
            for axes in figure["axes"]:
                for line in axes["lines"]:
                    keep = max(min(len(line["x"]), len(line["y"]), budget), 0)
                    line["x"], line["y"] = line["x"][:keep], line["y"][:keep]
                    budget -= keep
        return figures

    def take_drawn(self) -> dict[str, str]:
        """The PNGs drawn aside since the last take (of this or earlier cells), by id."""
        self._gather(wait=False)
        drawn, self.drawn = self.drawn, {}
        return drawn

    def finish(self) -> dict[str, str]:
        """Wait for every fork still drawing (each up to its deadline); their PNGs."""
        while self._drawing:
            self._gather(wait=True)
        return self.take_drawn()

    def forget(self) -> None:
        """In a fork of this process: let go of the drawing forks (they are not ours)."""
        for _, ours, _ in self._drawing:
            ours.close()
        self._drawing = []


# --- notebook execution ----------------------------------------------------


def _no_op_magic(line: str = "", cell: str = "") -> None:
    """Stands in for magics that would escape or reconfigure the sandbox."""
    print("(the grader does not run this command)")


def make_shell(collector: FigureCollector):
    """An IPython shell with the notebook's semantics but a fixed, headless setup."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    shell = InteractiveShell.instance(config=config)
    shell.system = _no_op_magic  # `!cmd` lines
    for name in ("matplotlib", "pip", "conda", "mamba", "sx", "system", "bash", "sh", "script"):
        shell.register_magic_function(_no_op_magic, "line_cell" if name in
                                      ("bash", "sh", "script") else "line", name)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.show = lambda *args, **kwargs: collector.collect()
    return shell


def run_cell(shell, source: str, collector: FigureCollector) -> dict:
    """Execute one cell; report status, output, error and figures."""
    out = CappedText()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        result = shell.run_cell(source, store_history=True, silent=False)
    collector.collect()
    error = result.error_before_exec or result.error_in_exec
    report = {"status": "ok" if error is None else "error",
              "duration_s": time.perf_counter() - start,
              "stdout": out.getvalue(), "figures": collector.take(),
              "drawn": collector.take_drawn()}
    if error is not None:
        report["error"] = f"{type(error).__name__}: {error}"[:2000]
    return report


# --- serving calls ---------------------------------------------------------


def to_plain(value, depth: int = 0):
    """Convert the student's values to what the protocol carries.

    This runs in the untrusted process on purpose: converting a numpy
    scalar or an odd sequence may call student code, and any lie it tells
    ends up as plain data that the grader checks like any other answer.
    """
    import numpy as np
    import torch

    if depth > protocol.MAX_DEPTH:
        return value
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter):
            return value  # subclasses are refused by encode
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):  # namedtuples, torch.Size and torch.return_types too
        items = [to_plain(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: to_plain(v, depth + 1) for k, v in value.items()}
    return value


class RemoteOperator:
    """A grader-side callable (a matvec): each call goes back to the grader."""

    def __init__(self, handle: protocol.Handle, sock: socket.socket):
        self._handle = handle.id
        self._sock = sock

    def __call__(self, *args):
        protocol.send(self._sock, {"op": "invoke", "handle": self._handle,
                                   "args": protocol.encode([to_plain(a) for a in args])})
        reply = protocol.receive(self._sock)
        if reply.get("op") == "invoke_error":
            raise RuntimeError(str(reply.get("message", "operator call refused")))
        return protocol.decode(reply.get("value"))

    def __repr__(self) -> str:
        return "<matvec operator>"


def _with_operators(value, sock: socket.socket):
    """Replace handles in decoded arguments by callables."""
    if isinstance(value, protocol.Handle):
        return RemoteOperator(value, sock)
    if isinstance(value, list):
        return [_with_operators(v, sock) for v in value]
    if isinstance(value, tuple):
        return tuple(_with_operators(v, sock) for v in value)
    if isinstance(value, dict):
        return {k: _with_operators(v, sock) for k, v in value.items()}
    return value


def _reply_value(sock: socket.socket, value, changed: list[str] | None = None) -> None:
    try:
        encoded = protocol.encode(to_plain(value))
    except protocol.UnsupportedValue as exc:
        protocol.send(sock, {"op": "unsupported", "type": type(value).__name__,
                             "message": str(exc)})
        return
    protocol.send(sock, {"op": "value", "value": encoded, "changed": changed or []})


MAX_CHANGED = 10  # inputs a call is said to have changed, at most
# The notebook may rebind builtins; what watches its calls keeps the originals.
_isinstance, _enumerate = isinstance, enumerate
ROUNDING_ULPS = 8  # a perturb-and-restore in place may leave this much, relative to the tensor


def _tensors(value, where: str, depth: int = 0):
    """(where, tensor) of every tensor in what a call receives: arguments, their
    items, a model's parameters and buffers."""
    import torch

    if depth > protocol.MAX_DEPTH:
        return
    if _isinstance(value, torch.Tensor):
        yield where, value
    elif _isinstance(value, torch.nn.Module):
        for name, tensor in value.state_dict(keep_vars=True).items():
            yield f"{where}'s {name}", tensor
    elif _isinstance(value, list | tuple):
        for i, item in _enumerate(value):
            yield from _tensors(item, f"{where}[{i}]", depth + 1)
    elif _isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{where}[{key!r}]", depth + 1)


def watch_inputs(target, args: list, kwargs: dict):
    """Copies of every tensor a call of `target` receives, named as its signature
    names them; returns a function listing those the call then changed beyond the
    rounding an in-place perturb-and-restore leaves. Best effort: what it cannot
    copy or compare (a notebook that broke torch or the builtins) it leaves out,
    and it never fails the call."""
    import inspect

    import torch

    try:
        named = dict(inspect.signature(target).bind(*args, **kwargs).arguments)
    except Exception:  # noqa: BLE001 - no signature, a call that does not fit it, a patch
        named = {**{f"argument {i + 1}": a for i, a in _enumerate(args)}, **kwargs}
    try:
        watched = [(where, tensor, tensor.detach().clone()) for name, value in named.items()
                   for where, tensor in _tensors(value, name)]
    except Exception:  # noqa: BLE001 - the notebook's patches may break anything here
        watched = []

    def changed() -> list[str]:
        try:
            return _compare()
        except Exception:  # noqa: BLE001 - as above
            return []

    def _compare() -> list[str]:
        found = []
        for where, tensor, before in watched:
            after = tensor.detach()
            if after.shape != before.shape or after.dtype != before.dtype:
                found.append(where)
            elif not before.is_floating_point() or not before.numel():
                if not torch.equal(after, before):
                    found.append(where)
            else:
                scale = before.abs().nan_to_num(0, 0, 0).max().item()
                slack = ROUNDING_ULPS * torch.finfo(before.dtype).eps * scale
                if not torch.allclose(after, before, rtol=0, atol=slack, equal_nan=True):
                    found.append(where)
        return found[:MAX_CHANGED]

    return changed


def serve_check(sock: socket.socket, namespace: dict) -> None:
    """Answer `call` and `get` requests for one check, in a forked child."""
    while True:
        try:
            request = protocol.receive(sock)
        except EOFError:
            return
        op, name = request.get("op"), request.get("name")
        if not isinstance(name, str) or name not in namespace:
            protocol.send(sock, {"op": "missing", "name": str(name)})
            continue
        if op == "get":
            _reply_value(sock, namespace[name])
            continue
        target = namespace[name]
        if op != "call" or not callable(target):
            protocol.send(sock, {"op": "not_callable", "name": name})
            continue
        args = _with_operators(protocol.decode(request.get("args", [])), sock)
        kwargs = _with_operators(protocol.decode(request.get("kwargs", {"__dict__": {}})), sock)
        sink = CappedText()
        try:
            changed = watch_inputs(target, args, kwargs)
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                value = target(*args, **kwargs)
            inputs_changed = changed()
        except BaseException as exc:  # noqa: BLE001 - student code may raise anything
            protocol.send(sock, {"op": "raised", "type": type(exc).__name__,
                                 "message": str(exc)[:500],
                                 "traceback": traceback.format_exc(limit=8)[-3000:]})
            continue
        _reply_value(sock, value, inputs_changed)


def _seeders() -> tuple:
    """Seeding functions of the global generators, taken before any cell can rebind
    them: every check's fork starts from the same seeds, whatever the notebook drew
    before (so a check on a snapshot and one on the final state draw alike)."""
    import random

    import numpy
    import torch

    return torch.default_generator.manual_seed, numpy.random.seed, random.seed


def _fork_serving(sock: socket.socket,
                  serve: Callable[[socket.socket], None]) -> tuple[int, socket.socket]:
    """Fork a child that runs `serve` on a socket of its own (and not on `sock`, where
    it was asked for); returns its pid and the other end of that socket."""
    child_end, grader_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            sock.close()
            grader_end.close()
            serve(child_end)
        finally:
            os._exit(0)
    child_end.close()
    return pid, grader_end


def _hand_over(sock: socket.socket, reply: dict, end: socket.socket) -> None:
    """Send the grader `reply` with `end`, and keep no copy of it."""
    fd = end.detach()
    protocol.send_with_fd(sock, reply, fd)
    os.close(fd)


def _fork_check(sock: socket.socket, namespace: dict, seeders: tuple,
                sealed: bool) -> tuple[int, socket.socket]:
    """A child holding a copy of the notebook's state, waiting on its own socket for
    one check's requests; returns its pid and the grader's end of that socket. A
    `sealed` snapshot's child ends itself on anything the seal refuses (or, if it
    cannot, at once): a failure there is then the answer's, not the seal's."""
    def serve(end: socket.socket) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for seed in seeders:
            seed(0)
        if sealed:
            from .confine import seccomp_end_on_sealed_calls

            seccomp_end_on_sealed_calls()
        serve_check(end, namespace)

    return _fork_serving(sock, serve)


def _fingerprint(sock: socket.socket, namespace: dict, request: dict, known: dict,
                 baseline: dict) -> None:
    """Reply with the digests of what the named values reach, and of the ambient state
    (computed once: a serving process runs no notebook code)."""
    from .fingerprint import ambient, digests

    names = request.get("names")
    names = [n for n in names if isinstance(n, str)][:200] if isinstance(names, list) else []
    if "ambient" not in known:
        known["ambient"] = ambient(namespace, baseline)
    protocol.send(sock, {"op": "fingerprint", "digests": digests(namespace, names),
                         "ambient": known["ambient"]})


def _share_nothing(serving: int) -> None:
    """In a sealed snapshot: leave its checks nothing they could write through to the
    running notebook. Landlock judges a file when it is opened, so a file the notebook
    opened before, the runner's log (which the notebook can read) or memory it mapped
    shared would carry a check's writes (or its moves of a shared offset) to later
    cells. Standard streams go to /dev/null; files and folders open for reading are
    reopened, at the same offset; anything else open (for writing, a pipe, a socket),
    or memory mapped shared and writable, raises: no snapshot. (The null device, which
    notebooks open to silence output, carries nothing: it stays.)"""
    null = os.open(os.devnull, os.O_RDWR)
    null_device = os.fstat(null).st_rdev
    for standard in (0, 1, 2):
        os.dup2(null, standard)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in (0, 1, 2, serving, null):
            continue
        try:
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
            flags, found = int(info.split("flags:")[1].split()[0], 8), os.fstat(fd)
        except (OSError, IndexError, ValueError):
            continue  # closed meanwhile (the listing's own descriptor)
        mode = found.st_mode
        if stat.S_ISCHR(mode) and found.st_rdev == null_device:
            continue
        if flags & os.O_ACCMODE != os.O_RDONLY or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise OSError(f"the notebook holds descriptor {fd} open for more than reading")
        private = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        os.lseek(private, os.lseek(fd, 0, os.SEEK_CUR), os.SEEK_SET)
        os.dup2(private, fd)
        os.close(private)
    os.close(null)
    for mapping in Path("/proc/self/maps").read_text().splitlines():
        permissions = mapping.split()[1]
        if permissions[1] == "w" and permissions[3] == "s":
            raise OSError("the notebook holds memory mapped shared and writable")


def serve_forks(sock: socket.socket, namespace: dict, seeders: tuple, baseline: dict,
                sealed: bool = False) -> None:
    """The zygote loop: hand one child to each check until the grader hangs up, and
    answer `fingerprint` requests.

    The child for the next check is forked as soon as one is handed out, while
    that check runs, so a check waits for a reply and never for a fork. (The
    first is forked on the first request: the grader clears the notebook's stray
    processes between its `serve` and that request.) A `sealed` zygote is a
    snapshot serving checks while the notebook still runs: it and its children
    can write no file, signal nothing outside themselves and share nothing
    writable with the notebook (`_share_nothing`), so no check can reach the
    running notebook (and a child that tries ends). `baseline`: the libraries as
    imported (see `fingerprint.ambient`).
    """
    if sealed:  # raises: no sealed zygote (the grade goes on without snapshots)
        from .confine import landlock, read_only_paths, seccomp_filtering

        if not seccomp_filtering():
            raise OSError("no seccomp filter: a check here could see the seal refuse it")
        _share_nothing(sock.fileno())
        landlock([], [*read_only_paths(), os.environ["HOME"]])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    # Memory: keep the children's garbage collector off the zygote's objects, so that
    # a fork copies only the pages its check really writes; and give the execution's
    # garbage back to the system (not worth a snapshot's time: it lives seconds).
    if not sealed:
        gc.collect()
        with contextlib.suppress(AttributeError, OSError):
            ctypes.CDLL(None).malloc_trim(0)  # glibc only
    gc.freeze()
    ready, known = None, {}
    while True:
        try:
            request = protocol.receive(sock)
        except EOFError:
            return
        if request.get("op") == "fingerprint":
            _fingerprint(sock, namespace, request, known, baseline)
            continue
        if request.get("op") != "fork":
            continue
        pid, grader_end = ready or _fork_check(sock, namespace, seeders, sealed)
        _hand_over(sock, {"op": "forked", "pid": pid}, grader_end)
        ready = _fork_check(sock, namespace, seeders, sealed)


def _snapshot(sock: socket.socket, namespace: dict, seeders: tuple, baseline: dict,
              taken: list[int], collector: FigureCollector) -> None:
    """Fork a sealed zygote holding the state after the cells run so far, and hand the
    grader its socket: that exercise's checks start while the notebook goes on."""
    for pid in list(taken):  # snapshots the grader is done with are reaped here
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                taken.remove(pid)

    def serve(end: socket.socket) -> None:
        os.nice(BESIDE_NICENESS)  # its checks' forks inherit it
        collector.forget()
        serve_forks(end, namespace, seeders, baseline, sealed=True)

    pid, grader_end = _fork_serving(sock, serve)
    taken.append(pid)
    _hand_over(sock, {"op": "snapshot", "pid": pid}, grader_end)


def main() -> None:
    """A runner started on its own (`process.RUNNER_BOOT`): its socket's descriptor, the
    folder holding the engine and the process budget are its arguments."""
    run_notebook(socket.socket(fileno=int(sys.argv[1])), sys.argv[2], int(sys.argv[3]))


def run_notebook(sock: socket.socket, engine_dir: str, processes: int) -> None:
    """Confine this process, run the cells the grader sends, then serve forks."""
    import torch

    torch.set_num_threads(1)
    collector = FigureCollector()
    shell = make_shell(collector)
    # The scratch root and the process budget; before any student code.
    layers, refused = confine(os.environ["HOME"], processes)
    protocol.send(sock, {"op": "confined", "layers": layers, "refused": refused})
    sys.path.remove(engine_dir)  # put there by the grader's boot line, for our imports only
    sys.path.insert(0, "")  # as in a Jupyter kernel: modules beside the notebook import
    # The grader's interrupt is meant for a running cell: between cells it is ignored,
    # so that one arriving just as a cell ends cannot kill the runner.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seeders, baseline, snapshots = _seeders(), library_baseline(), []
    while True:
        request = protocol.receive(sock)
        if request.get("op") == "serve":
            protocol.send(sock, {"op": "drawn", "drawn": collector.finish()})
            serve_forks(sock, shell.user_ns, seeders, baseline)
            return
        if request.get("op") == "snapshot":
            _snapshot(sock, shell.user_ns, seeders, baseline, snapshots, collector)
            continue
        index = request["index"]
        protocol.send(sock, {"op": "cell_start", "index": index})
        drawing = request.get("drawing")
        collector.pictures = drawing != protocol.NO_PICTURES
        collector.aside = sock if drawing == protocol.DRAWN_ASIDE else None
        signal.signal(signal.SIGINT, signal.default_int_handler)
        report = run_cell(shell, request["source"], collector)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        protocol.send(sock, {"op": "cell_done", "index": index, **report})


# --- the zygote --------------------------------------------------------------


def zygote() -> None:
    """Fork runners that start with torch and IPython already imported.

    Started by a cohort worker (`process.RunnerZygote`, same arguments as
    `main`), as root with the runners' scrubbed environment, it imports what
    every runner needs once, then forks one runner per request: seconds of
    imports become milliseconds. It runs no student code and holds nothing
    the runners may not see (no test, no reference). Each fork first closes
    the zygote's socket and every other descriptor, so no notebook can ask
    for a runner, then takes the limits, namespaces and uid (`confine.restrict`)
    and the confinement that a runner started on its own takes, before it reads
    a cell.
    """
    sock = socket.socket(fileno=int(sys.argv[1]))
    import IPython.core.interactiveshell  # noqa: F401 - the imports are the point
    import matplotlib.pyplot  # noqa: F401 - its font list is built here, once
    import numpy  # noqa: F401
    import torch
    import torch._dynamo  # torch.func's first call imports it: most notebooks'

    torch.set_num_threads(1)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # runners are reaped automatically
    while True:
        try:
            request, fd = protocol.receive_with_fd(sock)
        except (EOFError, OSError, protocol.ProtocolError):
            shutil.rmtree(os.environ["HOME"], ignore_errors=True)  # the folder made for us
            return  # the grader is gone: so are we
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                _become_runner(request, fd)
            except BaseException:  # noqa: BLE001 - the grader sees the socket close
                traceback.print_exc()
            finally:
                os._exit(0)
        os.close(fd)
        protocol.send(sock, {"op": "spawned", "pid": pid})


def _become_runner(request: dict, fd: int) -> None:
    """In a fork of the zygote: be what `process.RunnerProcess` starts on its own."""
    from .confine import restrict

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    for source, target in ((null, 0), (null, 1), (log, 2)):
        os.dup2(source, target)
    os.closerange(3, fd)
    os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    limits = request["limits"]
    restrict(limits["cpu_seconds"], limits["memory_mb"], limits["file_mb"],
             limits["open_files"], request["uid"])
    run_notebook(socket.socket(fileno=fd), sys.argv[2], limits["processes"])
