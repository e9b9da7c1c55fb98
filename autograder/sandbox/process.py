"""Start the untrusted runner in a confined process, and end it completely.

Layers applied here: a new session and process group (so the whole tree
can be killed at once), resource limits (CPU time, address space, file
size, open files, no core dumps; the process count is limited by the
runner itself, see `confine`), another uid when the grader is root, a
scrubbed environment, stdout discarded and stderr to a size-capped log,
and a private scratch directory laid out like the student release, whose
total size and file count are watched. Which layers were active is reported
with every result; none is silently assumed.
"""

import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .. import ENGINE
from ..files import copy_release_files

IO_TIMEOUT_S = 5.0  # longest wait for the rest of a message once it has begun
# The runner is this very engine, wherever it lives (site-packages, a checkout, a
# student release). -P keeps the working folder, the student's, off sys.path while
# the runner imports, before its confinement; -s leaves out user site-packages.
# Its arguments: the socket's descriptor, the folder that holds the engine, the
# process budget.
RUNNER_BOOT = ("import sys; sys.path.insert(0, sys.argv[2]); "
               "from autograder.sandbox.runner import main; main()")
ZYGOTE_BOOT = RUNNER_BOOT.replace("main", "zygote")
ZYGOTE_REPLY_S = 60.0  # the zygote answers at once, after its own imports the first time


@dataclass(frozen=True)
class Limits:
    """Resource limits for the runner process tree.

    The assignment's budgets (`assignment.Budgets`, the one place their
    defaults live) set the first four; the rest are the engine's own.
    """

    cpu_seconds: int
    memory_mb: int  # address space: torch alone maps ~2 GB of it
    disk_mb: int  # the whole scratch folder, polled: RLIMIT_FSIZE bounds single files
    disk_files: int
    file_mb: int = 64
    open_files: int = 256
    processes: int = 256  # enforced by a pids cgroup where one can be made


@dataclass(frozen=True)
class ExecutionPolicy:
    """Time budgets of a notebook run and of the calls the checks make, and the
    runner's resource limits.

    A cell gets `cell_budgets[key]` (else `cell_timeout_s`), cut short when
    the notebook's `total_timeout_s` runs out during it; once that is spent,
    each later cell gets `late_cell_timeout_s`, so that definitions further on
    still run. A call gets `call_budgets[name]` (else `call_timeout_s`), and a
    fifth of it once a call of that function has timed out. Nothing runs past
    the session's deadline; execution ends `checks_reserve_s` before it.
    """

    cell_timeout_s: float
    total_timeout_s: float
    call_timeout_s: float
    late_cell_timeout_s: float
    checks_reserve_s: float
    limits: Limits
    cell_budgets: Mapping[str, float] = field(default_factory=dict)
    call_budgets: Mapping[str, float] = field(default_factory=dict)

    def cell_budget(self, key: str) -> float:
        return self.cell_budgets.get(key, self.cell_timeout_s)

    def call_budget(self, name: str) -> float:
        return self.call_budgets.get(name, self.call_timeout_s)


def _restrict(limits: Limits, uid: int | None) -> None:
    """Runs in the child between fork and exec (Linux: its modules load only here)."""
    from .confine import restrict

    restrict(limits.cpu_seconds, limits.memory_mb, limits.file_mb, limits.open_files, uid)


def _readable_by_others(path: str) -> bool:
    """Whether a uid with no special rights can reach and read `path`."""
    path = os.path.realpath(path)
    parts = Path(path).parents
    if any(not os.stat(p).st_mode & stat.S_IXOTH for p in parts):
        return False
    mode = os.stat(path).st_mode
    wanted = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & wanted == wanted


RUNNERS_PER_GRADER = 16  # uids a grader cycles through: far more than run at once
_runners_started = itertools.count()


def sandbox_uid() -> tuple[int | None, str]:
    """The uid to run student code as, or None and why not.

    Only root can switch, and only to a uid that can still read Python. Each
    runner gets its own uid (from its grader's pid and a count of the runners
    that grader started), so that RLIMIT_NPROC, which counts per uid, cannot
    let one submission starve another graded beside it, and two runners are
    different users, neither of which can enter the other's scratch folder even
    where Landlock is missing.
    """
    if os.getuid() != 0:
        return None, "the grader is not root, so it cannot switch to another uid"
    needed = [sys.executable, sys.prefix, sys.base_prefix, str(ENGINE),
              *(p for p in sys.path if "site-packages" in p)]
    unreadable = [p for p in needed if os.path.exists(p) and not _readable_by_others(p)]
    if unreadable:
        return None, f"another uid could not read {unreadable[0]}"
    return runner_uids(os.getpid())[next(_runners_started) % RUNNERS_PER_GRADER], ""


def runner_uids(grader_pid: int) -> range:
    """The uids the runners of the grader process `grader_pid` run as."""
    first = 2_000_000 + (grader_pid % 4_194_304) * RUNNERS_PER_GRADER
    return range(first, first + RUNNERS_PER_GRADER)


def reap_runners_of(grader_pid: int) -> int:
    """Remove what a grader process that died left behind: its runners and their
    daemons (found by uid, wherever they moved), their cgroups and their scratch
    folders. Only root runs runners as other uids, so elsewhere there is nothing
    to find. Returns how many processes were killed."""
    uids = runner_uids(grader_pid)
    killed = 0
    for _ in range(10):
        victims = {pid for pid in _process_table() if _uid_of(pid) in uids}
        if not victims:
            break
        kill_processes(victims)
        killed += len(victims)
        time.sleep(0.05)
    for controller in ("pids", "memory"):
        for path in Path("/sys/fs/cgroup", controller).glob("autograder-*-*"):
            if _cgroup_uid(path) in uids:
                _remove_cgroup(path)
    for path in Path(tempfile.gettempdir()).glob("autograder-*"):
        try:
            owner = path.lstat().st_uid
        except OSError:
            continue
        if owner in uids and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    return killed


def _uid_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(status.split("\nUid:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


def _cgroup_uid(path: Path) -> int | None:
    """The runner uid in a cgroup's name, autograder-<uid>-<runner pid>."""
    try:
        return int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return None


class Workspace:
    """A private scratch folder holding the release files and the notebook folder."""

    def __init__(self, release_root: Path, include: tuple[str, ...], notebook_dir: str):
        self.root = Path(tempfile.mkdtemp(prefix="autograder-"))
        copy_release_files(release_root, include, self.root)
        self.cwd = self.root / notebook_dir
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log = self.root / ".runner.log"
        (self.root / "tmp").mkdir()

    def hand_over(self, uid: int) -> None:
        """Give the scratch folder to the runner's uid (the grader keeps root's access)."""
        for folder, dirs, files in os.walk(self.root):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.lchown(name, uid, uid)

    def usage(self, max_files: int) -> tuple[int, int]:
        """(bytes on disk, files): counting stops past max_files, so that a
        million-file attack cannot make the watcher itself slow."""
        used, count = 0, 0
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                count += 1
                try:
                    used += os.lstat(os.path.join(folder, name)).st_blocks * 512
                except OSError:
                    continue
                if count > max_files:
                    return used, count
        return used, count

    def files(self) -> set[str]:
        return {os.path.join(folder, name) for folder, dirs, files in os.walk(self.root)
                for name in dirs + files}

    def restore(self, keep: set[str]) -> None:
        """Delete everything written since `keep` was taken."""
        for path in sorted(self.files() - keep, reverse=True):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                continue

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Cgroup:
    """A cgroup (v1) of one controller holding the runner's whole process tree.

    The pids controller caps the number of processes, which RLIMIT_NPROC cannot
    do for root, and lists every member however it detached itself, for a
    complete kill. The memory controller caps the memory of the whole
    submission: RLIMIT_AS is per process, so forked children and memfd pages
    could each take a full budget. Needs a writable hierarchy: root outside a
    container.
    """

    def __init__(self, controller: str, name: str, settings: dict[str, int]):
        self.path = Path("/sys/fs/cgroup") / controller / name
        self.path.mkdir()
        try:
            for key, value in settings.items():
                (self.path / key).write_text(str(value))
        except OSError:
            self.remove()
            raise

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def members(self) -> set[int]:
        try:
            return {int(p) for p in (self.path / "cgroup.procs").read_text().split()}
        except OSError:
            return set()

    def remove(self) -> None:
        _remove_cgroup(self.path)


def _remove_cgroup(path: Path) -> None:
    """rmdir, retried while the killed members are still leaving."""
    for _ in range(50):
        if not path.exists():
            return
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.02)


def runner_environment(root: Path) -> dict[str, str]:
    """A runner's whole environment, its home at `root`: nothing of the grader's but PATH."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root),
            "IPYTHONDIR": str(root / ".ipython"),
            "MPLCONFIGDIR": str(root / ".matplotlib"),
            "TMPDIR": str(root / "tmp"),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}


class ForkedRunner:
    """A runner forked by a zygote: not this process's child, so watched through
    /proc (the zygote reaps it)."""

    def __init__(self, pid: int):
        self.pid = pid
        self._ticks = _start_ticks(pid)

    def poll(self) -> int | None:
        """None while it runs, as Popen.poll; its exit status is the zygote's to see."""
        ticks = _start_ticks(self.pid)
        return None if ticks is not None and ticks == self._ticks else -1

    def wait(self, timeout: float) -> int:
        ends = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > ends:
                raise subprocess.TimeoutExpired(f"runner {self.pid}", timeout)
            time.sleep(0.01)
        return -1


class RunnerZygote:
    """A process with torch, IPython and matplotlib imported (and torch._dynamo, which
    torch.func's first call imports) that forks runners on request.

    A cohort worker keeps one, so each submission's runner starts in
    milliseconds and no spare runner holds memory or a core. It runs as the
    grader's user, with the runners' scrubbed environment, in a folder of its
    own, and never runs student code; a runner it forks drops to its uid and
    confines itself exactly as one started on its own (`runner.zygote`). When
    it is gone (killed, or this process closed it), runners start on their own.
    """

    def __init__(self):
        self.home = Path(tempfile.mkdtemp(prefix="autograder-zygote-"))
        ours, theirs = socket.socketpair()
        ours.settimeout(ZYGOTE_REPLY_S)
        env = runner_environment(self.home)
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-s", "-c", ZYGOTE_BOOT, str(theirs.fileno()),
             str(ENGINE.parent)],
            pass_fds=[theirs.fileno()], cwd=self.home, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.sock = ours

    def spawn(self, runner_end: socket.socket, workspace: Workspace, env: dict[str, str],
              limits: Limits, uid: int | None) -> ForkedRunner | None:
        """A runner forked with `runner_end` as its socket, or None if the zygote is gone."""
        from . import protocol

        if self.process.poll() is not None:
            return None
        request = {"cwd": str(workspace.cwd), "env": env, "log": str(workspace.log),
                   "uid": uid, "limits": {"cpu_seconds": limits.cpu_seconds,
                                          "memory_mb": limits.memory_mb,
                                          "file_mb": limits.file_mb,
                                          "open_files": limits.open_files,
                                          "processes": limits.processes}}
        try:
            protocol.send_with_fd(self.sock, request, runner_end.fileno())
            reply = protocol.receive(self.sock)
        except (OSError, EOFError, protocol.ProtocolError):
            self.close()
            return None
        pid = reply.get("pid")
        if reply.get("op") != "spawned" or type(pid) is not int:
            self.close()
            return None
        return ForkedRunner(pid)

    def close(self) -> None:
        self.sock.close()
        kill_processes({self.process.pid})
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        shutil.rmtree(self.home, ignore_errors=True)


class RunnerProcess:
    """The runner: its process tree, and the grader's end of its socket."""

    live: ClassVar[set[int]] = set()  # runner pids of this grader process, never taken for orphans

    LAYERS = ("separate process session",
              "resource limits (cpu, memory, file size, open files)",
              "scrubbed environment", "private scratch directory")

    def __init__(self, workspace: Workspace, limits: Limits,
                 zygote: "RunnerZygote | None" = None):
        """Start the runner: forked by `zygote` if one is given and alive, else a
        fresh interpreter."""
        self.workspace = workspace
        self.limits = limits
        self.refused: list[str] = []
        uid, why = sandbox_uid()
        if uid is None:
            self.refused.append(f"another uid unavailable: {why}")
        else:
            workspace.hand_over(uid)
        ours, theirs = socket.socketpair()
        ours.settimeout(IO_TIMEOUT_S)  # a message that stops midway must not hang the grader
        env = runner_environment(workspace.root)
        workspace.log.touch()
        self.process: subprocess.Popen | ForkedRunner | None = None
        if zygote is not None:
            self.process = zygote.spawn(theirs, workspace, env, limits, uid)
        if self.process is None:
            with open(workspace.log, "wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-P", "-s", "-c", RUNNER_BOOT, str(theirs.fileno()),
                     str(ENGINE.parent), str(limits.processes)],
                    pass_fds=[theirs.fileno()], cwd=workspace.cwd, env=env,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    # The grader starts runners from its main thread only.
                    start_new_session=True,
                    preexec_fn=lambda: _restrict(limits, uid))  # noqa: PLW1509
        theirs.close()
        self.sock = ours
        self.pid = self.process.pid
        RunnerProcess.live.add(self.pid)
        self.start_ticks = _process_table().get(self.pid, (0, 0, 0))[2]
        self.layers = list(self.LAYERS)
        if uid is not None:
            self.layers.append(f"unprivileged uid {uid}")
        if _become_subreaper():
            self.layers.append("orphaned processes adopted and killed (child subreaper)")
        self.cgroups: list[Cgroup] = []
        for controller, settings, layer in (
                ("pids", {"pids.max": limits.processes},
                 f"pids cgroup: at most {limits.processes} processes"),
                ("memory", {"memory.limit_in_bytes": limits.memory_mb * 2**20},
                 f"memory cgroup: at most {limits.memory_mb} MB for the whole submission")):
            try:
                cgroup = Cgroup(controller, f"autograder-{uid}-{self.pid}", settings)
            except OSError as exc:
                self.refused.append(f"{controller} cgroup unavailable: {exc.strerror or exc}")
                continue
            self.cgroups.append(cgroup)
            try:
                cgroup.add(self.pid)  # before any student code: the runner is still importing
            except OSError as exc:
                self.refused.append(f"{controller} cgroup unavailable: {exc.strerror or exc}")
                continue
            self.layers.append(layer)
        self._baseline = workspace.files()
        self.layers.append(f"scratch folder watched: at most {limits.disk_mb} MB "
                           f"and {limits.disk_files} files")

    def over_quota(self) -> str | None:
        """Why the scratch folder is over its quota, if it is.

        The session asks while it waits for the runner and after each cell or
        call, so the blame lands on the code that was running.
        """
        used, count = self.workspace.usage(self.limits.disk_files)
        if used <= self.limits.disk_mb * 2**20 and count <= self.limits.disk_files:
            return None
        return (f"the notebook wrote more than {self.limits.disk_mb} MB or "
                f"{self.limits.disk_files} files to disk; it was stopped and its files deleted")

    def undo_writes(self) -> None:
        """Delete what was written since the runner started or, once the notebook
        has executed, since then (the checks' starting point)."""
        self.workspace.restore(self._baseline)

    def executed(self) -> None:
        self._baseline = self.workspace.files()

    def _members(self, table: dict[int, tuple[int, int, int]]) -> set[int]:
        """The runner's session, its descendants, and orphans of it that the
        grader adopted as child subreaper (daemons that called setsid)."""
        members = {pid for pid, (_, sid, _) in table.items() if sid == self.pid}
        members.add(self.pid)
        for cgroup in self.cgroups:
            members |= cgroup.members()
        me = os.getpid()
        for pid, (ppid, _, start) in table.items():
            if ppid == me and start >= self.start_ticks and pid not in RunnerProcess.live:
                members.add(pid)
        grew = True
        while grew:
            more = {pid for pid, (ppid, _, _) in table.items() if ppid in members} - members
            members |= more
            grew = bool(more)
        return {pid for pid in members if pid in table}

    def is_child(self, pid: int, parent: int | None = None) -> bool:
        """Whether `pid` is a child of `parent` (default: the runner), from one /proc entry."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return False
        return pid != self.pid and stat[1] == str(parent or self.pid)

    def kill_child(self, pid: int, parent: int | None = None) -> None:
        """Kill one fork of the runner (or of `parent`, one of its snapshots): called
        after every check, so it reads one /proc entry instead of the whole table."""
        if self.is_child(pid, parent):
            os.kill(pid, signal.SIGKILL)

    def kill_strays(self) -> None:
        """Kill everything the notebook left running except the runner itself,
        so background processes cannot eat the process budget of the checks."""
        strays = self._members(_process_table()) - {self.pid}
        kill_processes(strays)
        _reap(strays)

    def interrupt(self) -> None:
        """KeyboardInterrupt in the running cell, as Jupyter's interrupt does."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGINT)

    def stop(self) -> None:
        """Kill every process of the runner, wherever it moved, and reap them."""
        self.sock.close()
        self._kill_tree()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        RunnerProcess.live.discard(self.pid)
        for cgroup in self.cgroups:
            cgroup.remove()

    def _kill_tree(self) -> None:
        for _ in range(10):
            victims = self._members(_process_table())
            if not victims:
                break
            kill_processes(victims)
            time.sleep(0.02)
            _reap(victims - {self.pid})  # the runner itself is Popen.wait's to reap


def kill_processes(pids: set[int]) -> None:
    """SIGKILL each of `pids` that still exists."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


def _reap(pids: set[int]) -> None:
    """Collect the exit of those that are our children (adopted orphans included)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue


def _process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, session id, start time in clock ticks), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[3]), int(fields[19]))
    return table


def _start_ticks(pid: int) -> int | None:
    """When a live (not zombie) process started, in clock ticks; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _become_subreaper() -> bool:
    """Orphaned descendants get reparented to us instead of init, so we can find them."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
