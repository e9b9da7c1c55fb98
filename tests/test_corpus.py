"""Grade every mutant of the corpus and assert its verdict, exercise by exercise."""

import importlib
import pkgutil

import pytest

import tests.corpus
from tests.corpus.mutants import MUTANTS, assert_verdict
from tests.notebooks import ASSIGNMENT

for module in pkgutil.iter_modules(tests.corpus.__path__):
    if module.name.startswith("mutants_"):
        importlib.import_module(f"tests.corpus.{module.name}")


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_verdict(mutant, tmp_path, runners):
    assert_verdict(mutant, ASSIGNMENT, tmp_path, runners)


def test_corpus_is_broad():
    kinds = [m.kind for m in MUTANTS]
    assert len(MUTANTS) >= 30
    assert kinds.count("correct") >= 4 and kinds.count("bug") >= 15
    assert kinds.count("cheat") >= 3 and kinds.count("unfilled") == 1
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
