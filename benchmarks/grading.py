"""Grading cost against the notebook's own cost, every row measured in one run.

    python benchmarks/grading.py            (or: make bench; about 15 minutes)

The floor of a submission is its code cells run once by plain Python with
one torch thread (`measure.floor`); every row sets a grade beside floors
measured in the same run:

- the solution: cold `autograder grade` / floor, and the peak PSS of all
  grading processes;
- the unfilled release: cold grade minus floor (the fixed cost per submission);
- a warm cohort worker: extra wall time per additional unfilled release, minus
  its floor;
- 24 mixed submissions with the default workers: wall / (sum of floors / CPUs);
- Gradescope's default container (768 MB, half a CPU): grade / floor of the
  solution inside the same limits, and the grade's peak anonymous memory.

The answer key is recorded first, as `autograder validate` leaves it and the
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
GRADESCOPE_MB, GRADESCOPE_CPUS = 768, 0.5


def row(label: str, value: float, unit: str, target: str, passed: bool) -> None:
    print(f"{label:<58}{value:9.2f} {unit:<3} target {target:<8} "
          f"{'ok' if passed else 'MISSED'}", flush=True)


def main() -> None:
    subprocess.run([sys.executable, "-m", "autograder", "key", "--assignment", str(ASSIGNMENT)],
                   cwd=ROOT, env=measure.ENV, check=True, stdout=subprocess.DEVNULL)
    cpus = usable_cpus()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        solution = build.write(build.master(), tmp / "solution.ipynb")
        unfilled = build.write(build.unfilled(), tmp / "unfilled.ipynb")
        print(f"{cpus:g} CPUs; floors and grades measured side by side\n", flush=True)

        floor, floor_mb = measure.floor(solution)
        graded, graded_mb, score = measure.grade(solution, tmp / "a")
        print(f"solution: floor {floor:.2f} s ({floor_mb:.0f} MB), grade {graded:.2f} s "
              f"(score {score:g})")
        row("solution: grade / floor", graded / floor, "", "<= 1.2", graded / floor <= 1.2)
        row("peak PSS of all grading processes, solution", graded_mb, "MB", "<= 768",
            graded_mb <= 768)

        empty_floor, _ = measure.floor(unfilled)
        empty, _, _ = measure.grade(unfilled, tmp / "b")
        print(f"unfilled release: floor {empty_floor:.2f} s, grade {empty:.2f} s")
        row("unfilled release: grade - floor, cold", empty - empty_floor, "s", "<= 1.5",
            empty - empty_floor <= 1.5)

        one, _ = cohort.timed(cohort.unfilled(tmp / "u1", 1), workers=1)
        nine, _ = cohort.timed(cohort.unfilled(tmp / "u9", 9), workers=1)
        warm = (nine - one) / 8
        print(f"warm worker: {warm:.2f} s per additional unfilled release")
        row("cohort warm overhead per submission (grade - floor)", warm - empty_floor, "s",
            "<= 0.5", warm - empty_floor <= 0.5)

        mixed = cohort.mixed(tmp / "mixed", COHORT_SIZE)
        floors = [measure.floor(path)[0] for path in mixed]
        wall, rss = cohort.timed(tmp / "mixed")
        ideal = sum(floors) / cpus
        print(f"{COHORT_SIZE} mixed: sum of floors {sum(floors):.1f} s, wall {wall:.1f} s with "
              f"the default workers (peak RSS per worker: "
              f"{', '.join(f'{mb:.0f} MB' for mb in rss)})")
        row(f"cohort of {COHORT_SIZE} mixed: wall / (sum of floors / CPUs)", wall / ideal, "",
            "<= 1.3", wall / ideal <= 1.3)

        if not measure.Container.available():
            print("Gradescope limits: not measured (needs root and cgroup v1 memory and cpu)")
            return
        container = measure.Container(f"autograder-bench-{os.getpid()}", GRADESCOPE_MB,
                                      GRADESCOPE_CPUS)
        try:
            limited_floor, _ = measure.floor(solution, container)
            container.reset()
            limited, _, score = measure.grade(solution, tmp / "c", container)
            print(f"Gradescope limits ({GRADESCOPE_MB} MB, {GRADESCOPE_CPUS:g} CPU): floor "
                  f"{limited_floor:.1f} s, grade {limited:.1f} s (score {score:g}); "
                  f"limit hit {container.stat('memory.failcnt')} times, "
                  f"OOM kills {container.oom_kills()}")
            row("Gradescope limits: grade / floor", limited / limited_floor, "", "<= 1.5",
                limited / limited_floor <= 1.5)
            share = 100 * container.peak_anonymous_mb / GRADESCOPE_MB
            row("Gradescope limits: peak anonymous memory of the grade", share, "%",
                "<= 70", share <= 70)
        finally:
            container.remove()


if __name__ == "__main__":
    main()
