"""Does grading fit Gradescope's default container? Measured under its limits.

    python benchmarks/gradescope_container.py        (or: make bench-gradescope)

Grades the reference solution inside cgroup v1 memory and cpu groups set
like Gradescope's default autograder container: 768 MB of memory (no swap,
page cache included, as Docker counts it) and half a CPU, against its
10-minute limit. Prints the wall time, the cgroup's peak usage and whether
the kernel had to reclaim or kill, next to each limit. Needs root and a
writable cgroup v1 hierarchy (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu`).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.corpus import build

MEMORY_MB, CPUS, TIME_LIMIT_S = 768, 0.5, 600
CGROUPS = Path("/sys/fs/cgroup")


class Container:
    """A memory and a cpu cgroup, with Gradescope's default limits."""

    def __init__(self, name: str):
        self.memory = CGROUPS / "memory" / name
        self.cpu = CGROUPS / "cpu" / name
        self.memory.mkdir()
        self.cpu.mkdir()
        limit = str(MEMORY_MB * 2**20)
        (self.memory / "memory.limit_in_bytes").write_text(limit)
        swap = self.memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(limit)
        period = int((self.cpu / "cpu.cfs_period_us").read_text())
        (self.cpu / "cpu.cfs_quota_us").write_text(str(int(period * CPUS)))

    def enter(self) -> None:
        """Runs in the child before exec: it and all its descendants are inside."""
        for group in (self.memory, self.cpu):
            (group / "cgroup.procs").write_text(str(os.getpid()))

    def stat(self, name: str) -> int:
        return int((self.memory / name).read_text())

    def anonymous(self) -> int:
        """Bytes of anonymous memory (process heaps and stacks) in the group now."""
        for line in (self.memory / "memory.stat").read_text().splitlines():
            if line.startswith(("total_rss ",)):
                return int(line.split()[1])
        return 0

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


def main() -> None:
    if os.getuid() != 0 or not (CGROUPS / "memory").is_dir():
        raise SystemExit("needs root and cgroup v1 memory/cpu hierarchies")
    container = Container(f"autograder-bench-{os.getpid()}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            solution = build.write(build.master(), Path(tmp) / "solution.ipynb")
            start = time.perf_counter()
            run = subprocess.Popen(
                [sys.executable, "-m", "autograder", "grade", str(solution),
                 "--assignment", str(ROOT / "assignments" / "krylov_hessian"),
                 "--out", str(Path(tmp) / "out")],
                cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                preexec_fn=container.enter)  # noqa: PLW1509
            peak_anonymous = 0
            while run.poll() is None:
                peak_anonymous = max(peak_anonymous, container.anonymous())
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
            stderr = run.stderr.read()
            results = Path(tmp) / "out" / "results.json"
            score = json.loads(results.read_text())["score"] if results.exists() else None
        peak = container.stat("memory.max_usage_in_bytes") / 2**20
        print(f"limits: {MEMORY_MB} MB memory (page cache included), {CPUS:g} CPU, "
              f"{TIME_LIMIT_S} s")
        print(f"grade reference solution: exit {run.returncode}, score {score}")
        print(f"wall time: {elapsed:.1f} s   ({elapsed / TIME_LIMIT_S:.0%} of {TIME_LIMIT_S} s)")
        anonymous = peak_anonymous / 2**20
        print(f"peak anonymous memory (what cannot be reclaimed): {anonymous:.0f} MB   "
              f"({anonymous / MEMORY_MB:.0%} of {MEMORY_MB} MB)")
        print(f"peak cgroup usage, page cache included: {peak:.0f} MB")
        print(f"times the limit was hit (reclaim): {container.stat('memory.failcnt')}, "
              f"OOM kills: {container.oom_kills()}")
        if run.returncode:
            print(stderr[-2000:])
    finally:
        container.remove()


if __name__ == "__main__":
    main()
