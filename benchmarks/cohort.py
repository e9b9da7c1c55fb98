"""Cohort runs for the benchmarks: a mixed cohort from the mutant corpus, timed."""

import importlib
import io
import os
import pkgutil
import tempfile
import threading
import time
from pathlib import Path

import tests.corpus
from autograder.assignment import Assignment
from autograder.cohort import grade_cohort
from tests.corpus import build
from tests.corpus.mutants import MUTANTS
from tests.notebooks import ASSIGNMENT

os.environ["OMP_NUM_THREADS"] = "1"


def mixed(folder: Path, size: int) -> list[Path]:
    """`size` submissions spread over the corpus: correct, buggy, cheating, unfilled."""
    for module in pkgutil.iter_modules(tests.corpus.__path__):
        importlib.import_module(f"tests.corpus.{module.name}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(size):
        mutant = MUTANTS[i * len(MUTANTS) // size]
        paths.append(build.write(mutant.build(), folder / f"{i:02d}_{mutant.name}.ipynb"))
    return paths


def unfilled(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        build.write(build.unfilled(), folder / f"u{i}.ipynb")
    return folder


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


def timed(cohort: Path, workers: int | None = None) -> tuple[float, list[float]]:
    """Wall seconds of a fresh cohort run (default workers: the engine's), and the
    peak RSS (MB) of each worker process."""
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
    return elapsed, sorted(mb for mb in peaks.values() if mb > 100)
