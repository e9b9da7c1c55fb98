"""Grade every mutant of the corpus and assert its verdict, exercise by exercise."""

import importlib
import pkgutil

import pytest

import tests.corpus
from autograder.assignment import Assignment
from autograder.grader import grade
from tests.corpus import build
from tests.corpus.mutants import MUTANTS
from tests.notebooks import ASSIGNMENT

for module in pkgutil.iter_modules(tests.corpus.__path__):
    if module.name.startswith("mutants_"):
        importlib.import_module(f"tests.corpus.{module.name}")


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_verdict(mutant, tmp_path):
    path = build.write(mutant.build(), tmp_path / f"{mutant.name}.ipynb")
    report = grade(path, Assignment.load(ASSIGNMENT))
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


def test_corpus_is_broad():
    kinds = [m.kind for m in MUTANTS]
    assert len(MUTANTS) >= 30
    assert kinds.count("correct") >= 4 and kinds.count("bug") >= 15
    assert kinds.count("cheat") >= 3 and kinds.count("unfilled") == 1
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
