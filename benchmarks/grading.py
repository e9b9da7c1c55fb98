"""Grading cost against the notebook's own cost, every row measured in one run.

    python benchmarks/grading.py            (or: make bench; about 20 minutes)

The floor of a submission is its code cells run once by plain Python with
one torch thread (`measure.floor`); every row sets a grade beside floors
measured in the same run:

- the solution: cold `autograder grade` / floor, and the peak PSS of all
  grading processes;
- the student's wait: a cold `autograder check` (the visible suite) of the
  solution / floor;
  (the solution's floor, grade and self-check run three times, alternated, and
  their medians are compared: single runs on a shared host differ by a third);
- the unfilled release: cold grade minus floor (the fixed cost per submission);
- a warm cohort worker: extra wall time per additional unfilled release, minus
  its floor;
- 24 mixed submissions with the default workers: wall / (sum of floors / CPUs);
- Gradescope's default container (768 MB, half a CPU): grade / floor of the
  solution inside the same limits, graded as run_autograder grades an upload
  (`autograder gradescope run`), and the grade's peak anonymous memory.

Each figure is given in wall seconds (the targets) and in CPU seconds of
every process involved (a cpuacct cgroup per command), which stays honest on
a shared, loaded machine: for the cohort, CPU / sum of floors' CPU. The
answer key is recorded first, as `autograder validate` leaves it and the
Gradescope zip carries it.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import cohort
import measure

from autograder.grader import usable_cpus
from tests.corpus import build
from tests.notebooks import ASSIGNMENT

COHORT_SIZE = 24
REPEATS = 3  # runs of the solution's floor, grade and self-check, whose medians are rows
GRADESCOPE_MB, GRADESCOPE_CPUS = 768, 0.5


def row(label: str, value: float, cpu_value: float | None, unit: str, target: float) -> None:
    """One target: the wall-clock figure, and the same figure in CPU seconds, which a
    shared machine's load does not inflate."""
    cpu = f"{cpu_value:8.2f}" if cpu_value is not None else "       -"
    verdict = "ok" if value <= target else "MISSED"
    print(f"{label:<54}{value:8.2f} {cpu} {unit:<3} <= {target:<6g} {verdict}", flush=True)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def difference(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def main() -> None:
    subprocess.run([sys.executable, "-m", "autograder", "key", "--assignment", str(ASSIGNMENT)],
                   cwd=ROOT, env=measure.ENV, check=True, stdout=subprocess.DEVNULL)
    cpus = usable_cpus()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        solution = build.write(build.master(), tmp / "solution.ipynb")
        unfilled = build.write(build.unfilled(), tmp / "unfilled.ipynb")
        print(f"{cpus:g} CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
        costs = []

        floors, grades, checks, scores = [], [], [], set()
        for i in range(REPEATS):  # alternated, so that a slow spell of the host hits all three
            floors.append(measure.floor(solution, pss=True))
            graded, score = measure.grade(solution, tmp / f"a{i}")
            grades.append(graded)
            scores.add(score)
            checks.append(measure.self_check(solution))
        floor, graded, checked = (measure.median(runs) for runs in (floors, grades, checks))
        memory, _ = measure.grade(solution, tmp / "m", pss=True)  # apart: sampling costs
        score = " or ".join(f"{s:g}" for s in sorted(scores))
        costs.append((f"solution: floor (median of {REPEATS})", floor))
        costs.append((f"solution: grade (median, score {score})", graded))
        costs.append(("solution: grade, memory sampled", memory))
        costs.append(("solution: self-check (median)", checked))
        empty_floor = measure.floor(unfilled)
        empty, _ = measure.grade(unfilled, tmp / "b")
        costs += [("unfilled release: floor", empty_floor), ("unfilled release: grade", empty)]
        one = measure.cohort(cohort.unfilled(tmp / "u1", 1), tmp / "c1", workers=1)
        nine = measure.cohort(cohort.unfilled(tmp / "u9", 9), tmp / "c9", workers=1)
        costs += [("cohort of 1 unfilled, 1 worker", one), ("cohort of 9 unfilled, 1 worker", nine)]
        mixed = cohort.mixed(tmp / "mixed", COHORT_SIZE)
        floors = [measure.floor(path) for path in mixed]
        wall = measure.cohort(tmp / "mixed", tmp / "cm")
        summed = measure.Cost(sum(f.wall_s for f in floors), max(f.pss_mb for f in floors),
                              None if None in (f.cpu_s for f in floors)
                              else sum(f.cpu_s for f in floors))
        costs += [(f"{COHORT_SIZE} mixed: sum of floors", summed),
                  (f"{COHORT_SIZE} mixed: cohort, default workers", wall)]

        limited = None
        if measure.Container.available():
            container = measure.Container(f"autograder-bench-{os.getpid()}", GRADESCOPE_MB,
                                          GRADESCOPE_CPUS)
            try:
                limited_floor = measure.floor(solution, container)
                container.reset()
                limited, _ = measure.gradescope_run(solution, tmp / "g", container)
                anonymous = container.peak_anonymous_mb
                costs += [("Gradescope limits: solution floor", limited_floor),
                          ("Gradescope limits: solution grade", limited)]
                print(f"Gradescope limits ({GRADESCOPE_MB} MB, {GRADESCOPE_CPUS:g} CPU): limit "
                      f"hit {container.stat('memory.failcnt')} times, OOM kills "
                      f"{container.oom_kills()}")
            finally:
                container.remove()

    print(f"\n{'measured':<44}{'wall s':>9}{'CPU s':>9}{'PSS MB':>9}")
    for label, cost in costs:
        cpu = f"{cost.cpu_s:9.2f}" if cost.cpu_s is not None else "        -"
        print(f"{label:<44}{cost.wall_s:9.2f}{cpu}{cost.pss_mb:9.0f}")
    print(f"\n{'target':<54}{'wall':>8} {'CPU':>8}")
    row("solution: grade / floor", graded.wall_s / floor.wall_s,
        ratio(graded.cpu_s, floor.cpu_s), "", 1.2)
    row("solution: self-check / floor", checked.wall_s / floor.wall_s,
        ratio(checked.cpu_s, floor.cpu_s), "", 1.2)
    row("unfilled release: grade - floor, cold", empty.wall_s - empty_floor.wall_s,
        difference(empty.cpu_s, empty_floor.cpu_s), "s", 1.5)
    warm = measure.Cost((nine.wall_s - one.wall_s) / 8, 0,
                        None if one.cpu_s is None else (nine.cpu_s - one.cpu_s) / 8)
    row("cohort warm overhead per submission (grade - floor)",
        warm.wall_s - empty_floor.wall_s, difference(warm.cpu_s, empty_floor.cpu_s), "s", 0.5)
    row(f"cohort of {COHORT_SIZE} mixed: wall / (sum of floors / CPUs)",
        wall.wall_s / (summed.wall_s / cpus), ratio(wall.cpu_s, summed.cpu_s), "", 1.3)
    row("peak PSS of all grading processes, solution (MB)", memory.pss_mb, None, "MB", 768)
    if limited is None:
        print("Gradescope limits: not measured (needs root and cgroup v1 memory and cpu)")
        return
    row("Gradescope limits: grade / floor", limited.wall_s / limited_floor.wall_s,
        ratio(limited.cpu_s, limited_floor.cpu_s), "", 1.5)
    row("Gradescope limits: peak anonymous memory of the grade (%)",
        100 * anonymous / GRADESCOPE_MB, None, "%", 70)


if __name__ == "__main__":
    main()
