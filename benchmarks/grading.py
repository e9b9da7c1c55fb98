"""Grading cost of one submission, measured side by side in one run.

    python benchmarks/grading.py            (or: make bench)

Prints, for the reference solution notebook:
- the floor: its code cells run once as a plain python script, one thread;
- a full `autograder grade` of it, and the ratio grade / floor (target <= 1.3);
- the fixed per-submission cost: a cold `autograder grade` of the unfilled
  release (target <= 4 s);
- the peak memory of all grading processes together, summed as PSS so that
  pages the runner's forks share are counted once (target <= 768 MB).
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.corpus import build

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


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
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def measure(cmd: list[str], cwd: Path = ROOT) -> tuple[float, float]:
    """Wall seconds and peak summed PSS (MB) of a command's process tree."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _pss_mb(_descendants(process.pid)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - start
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr.decode()[-2000:]}")
    return elapsed, peak[0]


def plain_script(nb: nbformat.NotebookNode) -> str:
    """The notebook's code cells as one script, one torch thread."""
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    return "import torch\ntorch.set_num_threads(1)\n" + "\n\n".join(cells) + "\n"


def main() -> None:
    master = build.master()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        notebook_dir = ROOT / "assignments" / "krylov_hessian" / "master"
        script = tmp / "solution.py"
        script.write_text(plain_script(master))
        floor, floor_mem = measure([sys.executable, str(script)], cwd=notebook_dir)
        solution = build.write(master, tmp / "solution.ipynb")
        unfilled = build.write(build.unfilled(), tmp / "unfilled.ipynb")
        grade_cmd = [sys.executable, "-m", "autograder", "grade", "--assignment",
                     str(ROOT / "assignments" / "krylov_hessian")]
        graded, graded_mem = measure([*grade_cmd, str(solution), "--out", str(tmp / "a")])
        score = json.loads((tmp / "a" / "results.json").read_text())["score"]
        fixed, fixed_mem = measure([*grade_cmd, str(unfilled), "--out", str(tmp / "b")])
    print(f"{'bare execution (python script, 1 thread)':<46}{floor:7.2f} s  {floor_mem:6.0f} MB")
    print(f"{'grade reference solution':<46}{graded:7.2f} s  {graded_mem:6.0f} MB"
          f"   score {score:g}")
    print(f"{'grade unfilled release (fixed cost, cold)':<46}{fixed:7.2f} s  {fixed_mem:6.0f} MB")
    print()
    print(f"grade / bare ratio: {graded / floor:.2f}   (target <= 1.3)")
    print(f"fixed per-submission cost: {fixed:.2f} s   (target <= 4 s)")
    print(f"peak memory, all grading processes (PSS): {graded_mem:.0f} MB   (target <= 768 MB)")


if __name__ == "__main__":
    main()
