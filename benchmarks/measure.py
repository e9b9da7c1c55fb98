"""What the benchmarks share: a notebook's floor, and a command's time and memory.

The floor of a submission is its own code cells run once by plain Python
with one torch thread, each cell to its end or its first error (as a
notebook runs), in the folder the notebook sits in.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
ASSIGNMENT = ROOT / "assignments" / "krylov_hessian"  # the one the benchmarks grade
NOTEBOOK_DIR = ASSIGNMENT / "master"  # where `..` holds src/
CGROUPS = Path("/sys/fs/cgroup")

FLOOR_SCRIPT = """\
import json, sys, traceback
import torch
torch.set_num_threads(1)
namespace = {"__name__": "__main__"}
for number, source in enumerate(json.load(open(sys.argv[1]))):
    try:
        exec(compile(source, f"<cell {number}>", "exec"), namespace)
    except BaseException:
        traceback.print_exc(limit=1)
"""


def code_cells(notebook: Path) -> list[str]:
    nb = nbformat.read(str(notebook), as_version=4)
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _pss_mb(pids: list[int]) -> float:
    """Summed PSS: pages the runner's forks share are counted once."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@dataclass
class Cost:
    wall_s: float
    pss_mb: float  # peak, all processes of the command summed
    cpu_s: float | None  # CPU time of every process it started (None without cgroups)


def median(costs: list[Cost]) -> Cost:
    """The median run of each figure (wall, CPU) and the highest peak memory: one run on
    a shared machine can be a third slower than the next."""
    def middle(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    cpu = [c.cpu_s for c in costs]
    return Cost(middle([c.wall_s for c in costs]), max(c.pss_mb for c in costs),
                None if None in cpu else middle(cpu))


class CpuAccount:
    """A cpuacct cgroup: the CPU time of a command and every process it starts, forks
    that are never waited for included (a shared machine's load does not inflate it)."""

    def __init__(self):
        self.path = CGROUPS / "cpuacct" / f"autograder-bench-cpu-{os.getpid()}-{time.time_ns()}"
        self.path.mkdir()

    @staticmethod
    def available() -> bool:
        return os.getuid() == 0 and (CGROUPS / "cpuacct").is_dir()

    def enter(self) -> None:
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def measure(cmd: list[str], cwd: Path = ROOT, container: "Container | None" = None,
            timeout_s: float = 1800, pss: bool = False) -> Cost:
    """Wall seconds, CPU seconds and (with `pss`: reading every process's smaps costs
    the machine a fifth of a core) peak summed PSS (MB) of a command's process tree,
    run inside `container` if given."""
    account = CpuAccount() if CpuAccount.available() else None

    def enter() -> None:
        if account is not None:
            account.enter()
        if container is not None:
            container.enter()

    start = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, preexec_fn=enter)  # noqa: PLW1509
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            if pss:
                peak[0] = max(peak[0], _pss_mb(_descendants(process.pid)))
            if container is not None:
                container.sample()
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate(timeout=timeout_s)
    elapsed = time.perf_counter() - start
    sampler.join()
    cpu = None
    if account is not None:
        time.sleep(0.2)  # the last forks leave
        cpu = account.seconds()
        account.remove()
    if process.returncode not in (0, 3):  # cohort: 3 is rows in error, still measured
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr.decode()[-2000:]}")
    return Cost(elapsed, peak[0], cpu)


def floor(notebook: Path, container: "Container | None" = None, pss: bool = False) -> Cost:
    """The notebook's floor."""
    with tempfile.TemporaryDirectory() as tmp:
        cells = Path(tmp) / "cells.json"
        cells.write_text(json.dumps(code_cells(notebook)))
        return measure([sys.executable, "-c", FLOOR_SCRIPT, str(cells)], NOTEBOOK_DIR,
                       container, pss=pss)


def grade(notebook: Path, out: Path, container: "Container | None" = None,
          pss: bool = False) -> tuple[Cost, float]:
    """A cold `autograder grade`, and the score."""
    cost = measure([sys.executable, "-m", "autograder", "grade", str(notebook),
                    "--assignment", str(ASSIGNMENT), "--out", str(out)],
                   container=container, pss=pss)
    return cost, json.loads((out / "results.json").read_text())["score"]


def self_check(notebook: Path) -> Cost:
    """A cold `autograder check`: the visible checks a student runs on their own notebook."""
    return measure([sys.executable, "-m", "autograder", "check", str(notebook),
                    "--assignment", str(ASSIGNMENT)])


def gradescope_run(notebook: Path, root: Path, container: "Container | None" = None
                   ) -> tuple[Cost, float]:
    """What Gradescope's run_autograder does for one upload (`autograder gradescope
    run` on a fresh /autograder-like `root`), and the score."""
    (root / "submission").mkdir(parents=True)
    (root / "results").mkdir()
    master = next(NOTEBOOK_DIR.glob("*.ipynb"))  # the name students submit under
    (root / "submission" / master.name).write_bytes(notebook.read_bytes())
    cost = measure([sys.executable, "-m", "autograder", "gradescope", "run", "--root", str(root),
                    "--assignment", str(ASSIGNMENT)], container=container)
    return cost, json.loads((root / "results" / "results.json").read_text())["score"]


def cohort(folder: Path, out: Path, workers: int | None = None) -> Cost:
    """`autograder cohort` of a folder, with the engine's default workers unless given."""
    return measure([sys.executable, "-m", "autograder", "cohort", str(folder), "--assignment",
                    str(ASSIGNMENT), "--out", str(out),
                    *(["--workers", str(workers)] if workers else [])])


class Container:
    """cgroup v1 memory and cpu groups set like Gradescope's default container:
    `memory_mb` (page cache included, no swap) and `cpus` of a CPU."""

    def __init__(self, name: str, memory_mb: int, cpus: float):
        self.memory_mb = memory_mb
        self.memory = CGROUPS / "memory" / name
        self.cpu = CGROUPS / "cpu" / name
        self.memory.mkdir()
        self.cpu.mkdir()
        limit = str(memory_mb * 2**20)
        (self.memory / "memory.limit_in_bytes").write_text(limit)
        swap = self.memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(limit)
        period = int((self.cpu / "cpu.cfs_period_us").read_text())
        (self.cpu / "cpu.cfs_quota_us").write_text(str(int(period * cpus)))
        self.peak_anonymous_mb = 0.0

    @staticmethod
    def available() -> bool:
        return os.getuid() == 0 and (CGROUPS / "memory").is_dir() and (CGROUPS / "cpu").is_dir()

    def enter(self) -> None:
        """Runs in the child before exec: it and all its descendants are inside."""
        for group in (self.memory, self.cpu):
            (group / "cgroup.procs").write_text(str(os.getpid()))

    def sample(self) -> None:
        """Anonymous memory (heaps, stacks: what cannot be reclaimed) in the group now."""
        for line in (self.memory / "memory.stat").read_text().splitlines():
            if line.startswith("total_rss "):
                mb = int(line.split()[1]) / 2**20
                self.peak_anonymous_mb = max(self.peak_anonymous_mb, mb)

    def reset(self) -> None:
        self.peak_anonymous_mb = 0.0
        (self.memory / "memory.max_usage_in_bytes").write_text("0")

    def stat(self, name: str) -> int:
        return int((self.memory / name).read_text())

    def oom_kills(self) -> int:
        for line in (self.memory / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self) -> None:
        for group in (self.memory, self.cpu):
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
