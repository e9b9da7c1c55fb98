"""Start the untrusted runner in a confined process, and end it completely.

Layers applied here: a new session and process group (so the whole tree
can be killed at once), resource limits (CPU time, address space, file
size, open files, processes, no core dumps), a scrubbed environment, stdout
discarded and stderr to a size-capped log, and a private scratch directory
laid out like the student release. Which layers were active is reported
with every result; none is silently assumed.
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """Resource limits for the runner process tree."""

    cpu_seconds: int = 900
    memory_mb: int = 6144  # address space: torch alone maps ~2 GB of it
    file_mb: int = 64
    open_files: int = 256
    processes: int = 256


@dataclass(frozen=True)
class ExecutionPolicy:
    """Time budgets of a notebook run, and the runner's resource limits."""

    cell_timeout_s: float = 120.0
    total_timeout_s: float = 900.0
    call_timeout_s: float = 60.0
    limits: Limits = Limits()


def _apply_limits(limits: Limits) -> None:
    """Runs in the child between fork and exec."""
    mb = 2**20
    for which, value in ((resource.RLIMIT_CPU, limits.cpu_seconds),
                         (resource.RLIMIT_AS, limits.memory_mb * mb),
                         (resource.RLIMIT_FSIZE, limits.file_mb * mb),
                         (resource.RLIMIT_NOFILE, limits.open_files),
                         (resource.RLIMIT_NPROC, limits.processes),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))


class Workspace:
    """A private scratch folder holding the release files and the notebook folder."""

    def __init__(self, release_root: Path, include: tuple[str, ...], notebook_dir: str):
        self.root = Path(tempfile.mkdtemp(prefix="autograder-"))
        for item in include:
            source = release_root / item
            if source.is_dir():
                shutil.copytree(source, self.root / item,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(source, self.root / item)
        self.cwd = self.root / notebook_dir
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log = self.root / ".runner.log"
        (self.root / "tmp").mkdir()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class RunnerProcess:
    """The runner: its process tree, and the grader's end of its socket."""

    LAYERS = ("separate process session",
              "resource limits (cpu, memory, file size, open files, processes)",
              "scrubbed environment", "private scratch directory")

    def __init__(self, workspace: Workspace, limits: Limits):
        self.workspace = workspace
        ours, theirs = socket.socketpair()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workspace.root),
               "IPYTHONDIR": str(workspace.root / ".ipython"),
               "MPLCONFIGDIR": str(workspace.root / ".matplotlib"),
               "TMPDIR": str(workspace.root / "tmp"),
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        with open(workspace.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "autograder.runner", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], cwd=workspace.cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                # The grader starts runners from its main thread only.
                start_new_session=True, preexec_fn=lambda: _apply_limits(limits))  # noqa: PLW1509
        theirs.close()
        self.sock = ours
        self.pid = self.process.pid
        self.layers = list(self.LAYERS)

    def owns(self, pid: int) -> bool:
        """Whether pid is a process of the runner's session (never signal others)."""
        try:
            return pid > 0 and os.getsid(pid) == self.pid
        except OSError:
            return False

    def kill_child(self, pid: int) -> None:
        if self.owns(pid):
            os.kill(pid, signal.SIGKILL)

    def interrupt(self) -> None:
        """KeyboardInterrupt in the running cell, as Jupyter's interrupt does."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGINT)

    def stop(self) -> None:
        """Kill every process of the runner's session, including strays that
        left the process group, and wait for the runner itself."""
        self.sock.close()
        for _ in range(3):
            self._kill_session()
            time.sleep(0.01)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def _kill_session(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self.owns(int(entry.name)):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except OSError:
                    pass
