"""assignment.toml is validated against its declared schema: a misspelled or
unknown key, a value of the wrong type or an unknown visibility is an error
naming the file, the line and the key (with a "did you mean"), never silently
ignored; and the key reference in the docs is generated from the same schema."""

import re
import shutil
from pathlib import Path

import pytest

from autograder.assignment import Assignment, AssignmentError
from autograder.schema import key_reference

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "tests" / "engine_assignment"


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "engine_assignment"
    shutil.copytree(ENGINE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def broken(folder: Path, old: str, new: str) -> str:
    """Load the config with one edit; return the error message."""
    config = folder / "assignment.toml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))
    with pytest.raises(AssignmentError) as caught:
        Assignment.load(folder)
    return str(caught.value)


def line_of(folder: Path, needle: str) -> int:
    lines = (folder / "assignment.toml").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if needle in line)


def test_a_misspelled_visibility_key_is_refused_with_its_line_and_a_suggestion(folder):
    message = broken(folder, 'visibility = "after_due_date"', 'visiblity = "hidden"')
    assert f"assignment.toml:{line_of(folder, 'visiblity')}:" in message
    assert "unknown key 'visiblity' in [[exercises]]" in message
    assert "did you mean 'visibility'?" in message


def test_a_misspelled_budget_is_refused(folder):
    message = broken(folder, "cell_timeout_s = 4", "cell_timeout = 4")
    assert f":{line_of(folder, 'cell_timeout =')}:" in message
    assert "did you mean 'cell_timeout_s'?" in message and "[grading]" in message


def test_a_misspelled_table_is_refused(folder):
    message = broken(folder, "[grading]", "[gradng]")
    assert "unknown table [gradng]; did you mean [grading]?" in message


def test_a_budget_of_the_wrong_type_is_refused(folder):
    message = broken(folder, "memory_mb = 6144", 'memory_mb = "lots"')
    assert "memory_mb must be an integer, got 'lots'" in message
    assert f":{line_of(folder, 'memory_mb')}:" in message


def test_a_negative_budget_is_refused(folder):
    assert "must not be negative" in broken(folder, "call_timeout_s = 3", "call_timeout_s = -3")


def test_visibility_is_one_of_gradescopes_four(folder):
    message = broken(folder, 'visibility = "after_due_date"', 'visibility = "after_due"')
    assert "not one of visible, after_due_date, after_published, hidden" in message
    assert "did you mean 'after_due_date'?" in message


def test_a_missing_required_key_is_named(folder):
    message = broken(folder, 'grade_id = "exB"\n', "")
    assert "[[exercises]] number 2 lacks the required key 'grade_id'" in message


def test_a_suite_without_pytest_ini_is_refused(folder):
    (folder / "hidden" / "pytest.ini").unlink()
    with pytest.raises(AssignmentError, match="has no pytest.ini"):
        Assignment.load(folder)


def test_every_shipped_config_is_valid():
    for config in [*ROOT.glob("assignments/*/assignment.toml"), ENGINE / "assignment.toml"]:
        Assignment.load(config.parent)


def test_the_key_reference_in_the_docs_is_the_schemas():
    """docs/assignment-toml.md is `autograder config-keys`' output, byte for byte."""
    assert (ROOT / "docs" / "assignment-toml.md").read_text() == key_reference()


def test_the_reference_documents_every_key_a_shipped_config_uses():
    documented = set(re.findall(r"^\| `(\w+)` \|", key_reference(), re.MULTILINE))
    text = (ROOT / "assignments" / "krylov_hessian" / "assignment.toml").read_text()
    used = set(re.findall(r"^(\w+) =", text, re.MULTILINE))
    assert used <= documented, used - documented


def test_the_grader_version_digests_only_what_this_assignment_uses(tmp_path):
    """A second assignment's reference module, beside Notebook 1's, leaves Notebook 1's
    grader version (and so its cohort's stored results) alone; Notebook 1's own does not."""
    from autograder.grader import grader_version

    for part in ("assignments/krylov_hessian", "reference", "fixtures"):
        shutil.copytree(ROOT / part, tmp_path / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    assignment = Assignment.load(tmp_path / "assignments" / "krylov_hessian")
    before = grader_version(assignment)
    (tmp_path / "reference" / "randomized_ntk.py").write_text("TOP_K = 10\n")
    (tmp_path / "fixtures" / "ntk_models.py").write_text("WIDTH = 64\n")
    assert grader_version(assignment) == before
    own = tmp_path / "reference" / "krylov_hessian.py"
    own.write_text(own.read_text() + "\n# a changed tolerance\n")
    assert grader_version(assignment) != before
