"""Grade every mutant of Notebook 2's corpus and assert its verdict, exercise by exercise."""

import pytest

from tests.corpus.mutants import assert_verdict
from tests.corpus_ntk.build import ASSIGNMENT
from tests.corpus_ntk.mutants import CORPUS

MUTANTS = CORPUS.mutants


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_verdict(mutant, tmp_path, runners):
    assert_verdict(mutant, ASSIGNMENT, tmp_path, runners)


def test_corpus_is_broad():
    kinds = [m.kind for m in MUTANTS]
    assert len(MUTANTS) >= 50
    assert kinds.count("correct") >= 4 and kinds.count("bug") >= 35
    assert kinds.count("cheat") >= 8 and kinds.count("unfilled") == 1
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
