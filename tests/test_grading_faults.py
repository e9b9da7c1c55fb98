"""Grading one submission end to end on the tiny engine assignment: IPython
semantics, faults that stay inside their exercise, bad input, outputs."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.__main__ import _assignment
from autograder.assignment import Assignment, AssignmentError
from autograder.grader import grade
from tests.corpus.build import appended, variant, write

ENGINE = Path(__file__).resolve().parent / "engine_assignment"
FULL = {"A": 3.0, "B": 1.0, "C": 2.0}


@pytest.fixture(scope="module")
def assignment():
    return Assignment.load(ENGINE)


def demo():
    return nbformat.read(ENGINE / "master" / "demo.ipynb", as_version=4)


def scores(report):
    return {e.id: e.score for e in report.exercises}


def messages(report, exercise_id):
    return " | ".join(c.message for e in report.exercises if e.id == exercise_id
                      for c in e.checks if not c.passed)


def run(nb, assignment, tmp_path, out=None):
    return grade(write(nb, tmp_path / "submission.ipynb"), assignment, out)


def square(body: str) -> dict:
    return {"exA_code": "def square(x):\n" + "".join(f"    {line}\n" for line in body.splitlines())}


def test_solution_gets_full_marks_and_all_outputs(assignment, tmp_path):
    report = run(demo(), assignment, tmp_path, tmp_path / "out")
    assert scores(report) == FULL
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["score"] == 6.0
    assert [t["number"] for t in results["tests"]] == ["A", "B", "C"]
    assert results["tests"][1]["visibility"] == "after_due_date"
    assert "process session" not in results["output"]  # the layers are for staff
    staff = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any("process session" in layer for layer in staff["sandbox_layers"])
    for name in ("report.json", "feedback.md", "feedback.html"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    figure = report.figures[0]
    assert figure.axes[0]["title"] == "demo plot"
    assert figure.axes[0]["lines"][0]["y"] == [0.0, 1.0, 4.0]
    assert figure.png.startswith(b"\x89PNG")
    assert list((tmp_path / "out" / "figures").glob("*.png"))


@pytest.mark.parametrize(("body", "message"), [
    ("raise ValueError('oops')", "raised ValueError: oops"),
    ("while True:\n    pass", "did not finish within 3 s"),
    ("import os\nos._exit(1)", "crashed"),
    ("class Box: pass\nreturn Box()", "returned a Box object"),
    ("return [0] * (10 ** 10)", "MemoryError"),
    ("raise SystemExit(0)", "raised SystemExit"),
    ("raise KeyboardInterrupt", "raised KeyboardInterrupt"),
    ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)",
     "did not finish"),
])
def test_a_fault_inside_one_exercise_costs_only_that_exercise(assignment, tmp_path, body,
                                                              message):
    start = time.monotonic()
    report = run(variant(square(body), demo()), assignment, tmp_path)
    got = scores(report)
    assert got["A"] == 0 and got["B"] == FULL["B"] and got["C"] == FULL["C"]
    assert message in messages(report, "A")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("body", [
    "for _ in range(5):\n    v = op(v)\nreturn v",
    "for _ in range(5):\n    try:\n        v = op(v)\n    except RuntimeError:\n        pass\nreturn v",
], ids=["refusal-raised", "refusal-swallowed"])
def test_a_spent_operator_budget_fails_the_call_in_the_engines_words(assignment, tmp_path,
                                                                     body):
    code = "def apply_twice(op, v):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    report = run(variant({"exC_code": code}, demo()), assignment, tmp_path)
    assert scores(report)["C"] < FULL["C"]
    assert ("apply_twice(operator, <tensor of shape (2,)>) called the operator more than 2 "
            "times; apply it exactly twice") in messages(report, "C")


@pytest.mark.parametrize("cell", [
    "while True:\n    pass",
    "import os\nos._exit(3)",
    "import sys\nsys.exit(1)",
    "raise KeyboardInterrupt",
    "this is not python",
    "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
    "print('x' * 50_000_000)",
])
def test_a_broken_top_level_cell_does_not_stop_the_cells_after_it(assignment, tmp_path, cell):
    nb = demo()
    nb.cells.insert(2, nbformat.v4.new_code_cell(cell))
    report = run(nb, assignment, tmp_path)
    assert scores(report) == FULL
    broken = next(c for c in report.cells if c.index == 2)
    assert broken.status in ("error", "timeout") or len(broken.stdout) < 100_000


def test_ipython_syntax_warnings_and_stderr_keep_full_marks(assignment, tmp_path):
    nb = demo()
    nb.cells.insert(2, nbformat.v4.new_code_cell(
        "%matplotlib inline\n%load_ext autoreload\n!pip install nothing\n%pip install x\n"
        "import warnings, sys\nwarnings.warn('careful')\nprint('to stderr', file=sys.stderr)\n"
        "%time z = sum(range(10))"))
    nb.cells.insert(3, nbformat.v4.new_code_cell("%%time\nw = 1\nw"))
    report = run(nb, assignment, tmp_path)
    assert scores(report) == FULL
    assert all(c.status == "ok" for c in report.cells), [(c.index, c.error) for c in report.cells]


def test_stored_outputs_are_ignored(assignment, tmp_path):
    nb = variant(square("return x + x"), demo())
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="all tests passed ✓")]
    assert scores(run(nb, assignment, tmp_path))["A"] == 0


def test_missing_function_is_named(assignment, tmp_path):
    report = run(variant({"exA_code": "def squared(x):\n    return x * x"}, demo()),
                 assignment, tmp_path)
    assert "does not define square" in messages(report, "A")
    assert scores(report)["C"] == FULL["C"]


def test_grading_is_deterministic(assignment, tmp_path):
    nb = variant(square("import random\nreturn x * x + (random.random() > 2)"), demo())
    first, second = run(nb, assignment, tmp_path), run(nb, assignment, tmp_path)
    assert [(c.name, c.passed, c.message) for e in first.exercises for c in e.checks] == \
           [(c.name, c.passed, c.message) for e in second.exercises for c in e.checks]


def test_no_process_of_the_submission_survives(assignment, tmp_path):
    nb = appended("import subprocess, os\n"
                  "p = subprocess.Popen(['sleep', '300'])\n"
                  "q = subprocess.Popen(['sleep', '300'], start_new_session=False)\n"
                  "pid = os.fork()\n"
                  "if pid == 0:\n    import time\n    time.sleep(300)\n    os._exit(0)\n"
                  "print(p.pid, q.pid, pid)", demo())
    report = run(nb, assignment, tmp_path)
    pids = [int(p) for p in report.cells[-1].stdout.split()]
    assert len(pids) == 3
    time.sleep(0.2)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.parametrize(("content", "reason"), [
    (b"not a notebook", "not valid JSON"),
    (b"", "empty"),
    (b'{"nbformat": 3, "cells": []}', "format 3"),
])
def test_bad_input_yields_zero_results_and_exit_code_zero(tmp_path, content, reason):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(path),
                             "--assignment", str(ENGINE), "--out", str(tmp_path / "out")],
                            check=False, capture_output=True, text=True, timeout=60,
                            env={**buffered, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    # The command ends without the interpreter's teardown: its table, printed to a
    # block-buffered pipe, still arrives whole.
    assert f"results written to {tmp_path / 'out'}" in result.stdout, result.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["score"] == 0 and reason in results["output"]
    assert len(results["tests"]) == 3 and all(t["score"] == 0 for t in results["tests"])


def test_misuse_is_a_nonzero_exit(tmp_path):
    no_out = subprocess.run([sys.executable, "-m", "autograder", "grade", "x.ipynb"],
                            check=False, capture_output=True, text=True, timeout=60)
    assert no_out.returncode == 2
    bad_assignment = subprocess.run([sys.executable, "-m", "autograder", "grade", "x.ipynb",
                                     "--out", str(tmp_path), "--assignment", str(tmp_path)],
                                    check=False, capture_output=True, text=True, timeout=60)
    assert bad_assignment.returncode == 2 and "assignment.toml" in bad_assignment.stderr


def test_without_assignment_the_notebooks_file_name_picks_one_of_several():
    """Two assignments live in `assignments/`: `autograder grade 02_randomized_ntk.ipynb`
    grades with Notebook 2's; a renamed notebook gets an error naming the choices,
    never a guess."""
    assert _assignment(None, "cohort/alice/02_randomized_ntk.ipynb").name == "randomized_ntk"
    assert _assignment(None, "01_krylov.ipynb").name == "krylov_hessian"
    with pytest.raises(AssignmentError) as refused:
        _assignment(None, "krylov (1).ipynb")
    assert "--assignment" in str(refused.value)
    assert "krylov_hessian" in str(refused.value) and "randomized_ntk" in str(refused.value)


def test_suites_with_the_same_module_names_do_not_mix_in_one_process(assignment, tmp_path):
    """A TA's process grades with the hidden suite and a student check with the
    visible one; pytest must not reuse one suite's test_demo module for the other."""
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "pytest.ini").write_text((ENGINE / "hidden" / "pytest.ini").read_text())
    (strict / "test_demo.py").write_text(
        "import pytest\n\n\n@pytest.mark.check(exercise='A')\ndef test_never(student):\n"
        "    assert False, 'this suite fails A'\n\n\n@pytest.mark.check(exercise='B')\n"
        "def test_b(student):\n    assert student.get('answer') == 42, 'no'\n\n\n"
        "@pytest.mark.check(exercise='C')\ndef test_c(student):\n    pass\n")
    path = write(demo(), tmp_path / "demo.ipynb")
    for suite, expected in ((ENGINE / "hidden", FULL), (strict, {**FULL, "A": 0.0}),
                            (ENGINE / "hidden", FULL)):
        assert scores(grade(path, assignment, suite=suite)) == expected, suite


def test_a_name_missing_because_its_cell_failed_says_which_cell_and_why(assignment, tmp_path):
    """The cell that defines square dies on an import before the def: the check says
    what stopped it, not only that the name is missing."""
    nb = variant({"exA_code": "import numpyy\n\ndef square(x):\n    return x * x"}, demo())
    report = run(nb, assignment, tmp_path)
    first = messages(report, "A").split(" | ")[0]
    assert first.startswith("cell 2, which defines square, stopped before it did: "
                            "ModuleNotFoundError: No module named 'numpyy'."), first
    assert "does not define square" in first
    assert scores(report) == {"A": 0.0, "B": 1.0, "C": 2.0}


def test_a_name_never_written_keeps_the_plain_message(assignment, tmp_path):
    nb = variant({"exA_code": "def squared(x):\n    return x * x"}, demo())
    first = messages(run(nb, assignment, tmp_path), "A").split(" | ")[0]
    assert first.startswith("the notebook does not define square;"), first
