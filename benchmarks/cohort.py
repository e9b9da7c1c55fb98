"""Cohort grading throughput, measured side by side in one run.

    python benchmarks/cohort.py            (or: make bench-cohort)

On 24 mixed submissions of the Krylov notebook (correct, buggy, cheating and
unfilled ones from the mutant corpus), prints:
- the wall time with 1 and with 2 workers, and their ratio (target >= 1.8);
- the warm per-submission overhead: extra wall time per additional unfilled
  release once a worker is warm (target <= 1 s);
- the peak RSS of each worker process (the graders; their runners apart).
"""

import importlib
import io
import os
import pkgutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["OMP_NUM_THREADS"] = "1"

import tests.corpus
from autograder.assignment import Assignment
from autograder.cohort import grade_cohort
from tests.corpus import build
from tests.corpus.mutants import MUTANTS
from tests.notebooks import ASSIGNMENT

COHORT_SIZE = 24


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def timed(cohort: Path, workers: int) -> tuple[float, dict[int, float]]:
    """Wall seconds of a fresh cohort run, and the peak RSS of each worker."""
    peaks: dict[int, float] = {}
    running = True

    def sample() -> None:
        while running:
            for pid in _children(os.getpid()):
                peaks[pid] = max(peaks.get(pid, 0.0), _rss_mb(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        grade_cohort(cohort, Assignment.load(ASSIGNMENT), Path(out), workers=workers,
                     progress_stream=io.StringIO())
        elapsed = time.perf_counter() - start
    running = False
    sampler.join()
    return elapsed, {pid: mb for pid, mb in peaks.items() if mb > 100}


def main() -> None:
    for module in pkgutil.iter_modules(tests.corpus.__path__):
        importlib.import_module(f"tests.corpus.{module.name}")
    with tempfile.TemporaryDirectory() as tmp:
        mixed = Path(tmp) / "mixed"
        mixed.mkdir()
        for i in range(COHORT_SIZE):
            mutant = MUTANTS[i * len(MUTANTS) // COHORT_SIZE]
            build.write(mutant.build(), mixed / f"{i:02d}_{mutant.name}.ipynb")
        one, one_rss = timed(mixed, 1)
        two, two_rss = timed(mixed, 2)
        overhead = {}
        for count in (1, 9):
            unfilled = Path(tmp) / f"unfilled{count}"
            unfilled.mkdir()
            for i in range(count):
                build.write(build.unfilled(), unfilled / f"u{i}.ipynb")
            overhead[count], _ = timed(unfilled, 1)
    warm = (overhead[9] - overhead[1]) / 8
    print(f"{COHORT_SIZE} mixed submissions, 1 worker : {one:7.1f} s "
          f"({one / COHORT_SIZE:.1f} s each)")
    print(f"{COHORT_SIZE} mixed submissions, 2 workers: {two:7.1f} s")
    print(f"throughput ratio 2 workers / 1 worker: {one / two:.2f}   (target >= 1.8)")
    print(f"warm per-submission overhead (unfilled release): {warm:.2f} s   (target <= 1 s)")
    for label, peaks in (("1 worker", one_rss), ("2 workers", two_rss)):
        print(f"peak RSS per worker, {label}: "
              + ", ".join(f"{mb:.0f} MB" for mb in sorted(peaks.values())))


if __name__ == "__main__":
    main()
