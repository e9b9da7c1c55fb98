"""The mutant corpus: submissions with known verdicts.

Each `Mutant` is a notebook built from the master (see `build`) and the
set of exercises it must lose points on (`loses`). Every exercise outside
`loses` and `may_lose` must keep full marks: a bug in one exercise must not
cost the independent ones. Correct-but-different solutions have empty
`loses`. The modules `mutants_*.py` register their mutants in `MUTANTS`
(Notebook 1's); another assignment's corpus keeps its own `Registry`
(tests/corpus_ntk) and asserts verdicts with the same `assert_verdict`.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.assignment import Assignment
from autograder.grader import RunnerSupply, grade

ALL_EXERCISES = ("0.1", "0.2", "0.3", "1.1", "1.2", "1.3", "1.4", "2.1", "2.2", "2.3", "3.1",
                 "3.2", "4.1", "4.2", "5.1", "5.2", "5.3", "6.0", "6.1")


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # "correct", "bug", "cheat" or "unfilled"
    build: Callable[[], nbformat.NotebookNode]
    loses: frozenset[str] = field(default_factory=frozenset)
    may_lose: frozenset[str] = field(default_factory=frozenset)  # dependents, either way
    max_total: float | None = None  # e.g. 0 for the unfilled release


class Registry:
    """One assignment's corpus: its exercise ids and its mutants."""

    def __init__(self, exercises: tuple[str, ...]):
        self.exercises = exercises
        self.mutants: list[Mutant] = []

    def register(self, name: str, kind: str, build: Callable[[], nbformat.NotebookNode],
                 loses=(), may_lose=(), max_total: float | None = None) -> None:
        unknown = (set(loses) | set(may_lose)) - set(self.exercises)
        if unknown:
            raise ValueError(f"mutant {name}: unknown exercises {sorted(unknown)}")
        self.mutants.append(Mutant(name, kind, build, frozenset(loses), frozenset(may_lose),
                                   max_total))


KRYLOV = Registry(ALL_EXERCISES)
MUTANTS: list[Mutant] = KRYLOV.mutants
register = KRYLOV.register


@contextmanager
def zygote_runners(assignment: Path) -> Iterator[RunnerSupply]:
    """Runners forked from one zygote, as a cohort worker grades: a corpus grades over a
    hundred notebooks, and each cold runner would import torch again. Measured: about
    2.5 s of a Krylov grade's 23 s of CPU, 9 % of both corpora's worker-seconds. The
    checks still run beside the notebook where a CPU is spare."""
    supply = RunnerSupply(Assignment.load(assignment), zygote=True)
    try:
        yield supply
    finally:
        supply.close()


def assert_verdict(mutant: Mutant, assignment: Path, tmp_path: Path,
                   runners: RunnerSupply | None = None) -> None:
    """Grade the mutant and assert its verdict, exercise by exercise."""
    path = tmp_path / f"{mutant.name}.ipynb"
    nbformat.write(mutant.build(), path)
    report = grade(path, Assignment.load(assignment), runners=runners)
    assert report.status == "graded", report.reason
    scores = {e.id: e for e in report.exercises}
    messages = {e.id: [f"{c.name}: {c.message} {c.staff_detail[-300:]}" for c in e.checks
                       if not c.passed] for e in report.exercises}
    for exercise_id, exercise in scores.items():
        if exercise_id in mutant.loses:
            assert exercise.score < exercise.max_score, f"{exercise_id} kept full marks"
        elif exercise_id not in mutant.may_lose:
            assert exercise.score == exercise.max_score, (exercise_id, messages[exercise_id])
    if mutant.max_total is not None:
        assert report.score <= mutant.max_total, messages
    for exercise in report.exercises:  # internal errors are grader bugs, never a verdict
        assert not any(c.staff_detail for c in exercise.checks), messages[exercise.id]
    assert not report.staff_notes, report.staff_notes
