"""The answer key: what it stores is exactly what the reference computes, only the
grader version that wrote it reads it, and grading with it changes no verdict.

The corpus (`test_corpus.py`) grades with the key that `make test` records
first; here a key is recorded and then verified result by result.
"""

import importlib
import pkgutil

import pytest
import torch
from torch import nn

import tests.corpus
from autograder import answers
from autograder.answers import AnswerKey, answer, content_key
from autograder.assignment import Assignment
from autograder.grader import grade, grade_master, recording_key
from tests.corpus import build
from tests.corpus.mutants import MUTANTS
from tests.notebooks import ASSIGNMENT

for module in pkgutil.iter_modules(tests.corpus.__path__):
    if module.name.startswith("mutants_"):
        importlib.import_module(f"tests.corpus.{module.name}")

# A correct style, and bugs whose truths (trained model, toy problem) are not the master's.
NOTEBOOKS = ("correct_lanczos_global_seed_mgs_row_sum", "bug_ritz_trained_before_training",
             "deflation_bug_no_projection")


@pytest.fixture(scope="module")
def recorded():
    assignment = Assignment.load(ASSIGNMENT)
    key = recording_key()
    answers._memory.clear()
    report = grade_master(assignment, answers=key)
    return assignment, key, report


def _verdicts(report) -> dict:
    """Each check's verdict and message (its first line: graded in a pytest process, the
    suite's asserts are rewritten by the outer pytest, whose notes name object ids)."""
    return {(e.id, c.name): (c.passed, c.message.split("\n")[0])
            for e in report.exercises for c in e.checks}


def test_grading_the_master_records_the_truths_its_checks_computed(recorded):
    _, key, report = recorded
    assert report.score == report.max_score
    recorded_functions = {entry.split(":")[0].rsplit(".", 1)[-1] for entry in key.entries}
    assert {"_eigenvalues", "_dominant", "_top10"} <= recorded_functions


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_truths_are_the_reference_s_and_verdicts_do_not_move(recorded, name, tmp_path):
    assignment, recorded_key, _ = recorded
    mutant = next(m for m in MUTANTS if m.name == name)
    path = build.write(mutant.build(), tmp_path / f"{name}.ipynb")
    key = AnswerKey("test", dict(recorded_key.entries))
    key.verifying = True  # every hit is recomputed and compared, bit for bit
    answers._memory.clear()
    with_key = grade(path, assignment, answers=key)
    answers._memory.clear()
    without = grade(path, assignment, answers=AnswerKey("none"))
    assert key.hits >= 2
    assert key.mismatches == []
    assert _verdicts(with_key) == _verdicts(without)


def test_a_key_of_another_grader_version_or_a_broken_file_is_never_read(tmp_path):
    path = tmp_path / "answer_key.pt"
    AnswerKey("v1", {"f:abc": torch.ones(3)}).write(path)
    assert AnswerKey.read(path, "v1").entries["f:abc"].tolist() == [1.0, 1.0, 1.0]
    assert AnswerKey.read(path, "v2") is None
    path.write_bytes(path.read_bytes()[:40])
    assert AnswerKey.read(path, "v1") is None
    assert AnswerKey.read(tmp_path / "absent.pt", "v1") is None


def test_a_check_that_changes_a_truth_in_place_changes_no_later_lookup():
    calls = []

    @answer
    def truth(x: torch.Tensor) -> tuple[torch.Tensor, float]:
        calls.append(1)
        return x * 2, 1.5

    x = torch.arange(3.0)
    first, _ = truth(x)
    first.zero_()
    again, scalar = truth(x.clone())
    assert again.tolist() == [0.0, 2.0, 4.0] and scalar == 1.5
    assert len(calls) == 1  # the second call was a lookup
    key = AnswerKey("v")
    with answers.using(key):
        key.recording = True
        truth(torch.arange(4.0))
        key.recording = False
        stored, _ = truth(torch.arange(4.0))
        stored.add_(100)
        assert truth(torch.arange(4.0))[0].tolist() == [0.0, 2.0, 4.0, 6.0]


def test_content_keys_tell_apart_what_a_truth_depends_on():
    x = torch.arange(6.0)
    assert content_key(x) == content_key(x.clone())
    assert content_key(x) != content_key(x.double())
    assert content_key(x) != content_key(x.reshape(2, 3))
    assert content_key(x) != content_key(x + 1e-6)
    assert content_key([x, 1]) != content_key((x, 1))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    twin = nn.Sequential(nn.Linear(3, 2))
    twin.load_state_dict(model.state_dict())
    assert content_key(model) == content_key(twin)
    with torch.no_grad():
        twin[0].bias[0] += 1e-5
    assert content_key(model) != content_key(twin)
    assert content_key(model) != content_key(nn.Sequential(nn.Linear(3, 2), nn.Tanh()))
