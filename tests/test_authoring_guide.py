"""Every code block of docs/authoring.md runs: the shell lines in a fresh project (in
order), the configuration through the schema, each Python block as a hidden check
module graded against the scaffold's master, where each of its checks must pass."""

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from autograder.assignment import Assignment
from autograder.grader import grade_master

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "authoring.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(GUIDE.read_text()) if lang == language]


def run_shell(block: str, project: Path) -> None:
    """Each `autograder ...` line, as `python -m autograder ...`; check exits 1 on the
    unfilled release, as the guide says, and everything else 0."""
    for line in block.strip().splitlines():
        words = shlex.split(line)
        assert words[0] == "autograder", line
        run = subprocess.run([sys.executable, "-m", "autograder", *words[1:]], cwd=project,
                             capture_output=True, text=True, timeout=600, check=False,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
        expected = 1 if words[1] == "check" else 0
        assert run.returncode == expected, (line, run.stdout[-2000:], run.stderr[-2000:])


def test_the_guides_samples_run(tmp_path):
    shell, toml, python = blocks("sh"), blocks("toml"), blocks("python")
    assert len(shell) == 2 and len(toml) == 1 and len(python) >= 4
    project = tmp_path / "project"
    project.mkdir()
    run_shell(shell[0], project)  # new, validate
    folder = project / "assignments" / "pendulum"
    (folder / "assignment.toml").write_text(toml[0])
    assignment = Assignment.load(folder)
    assert [e.visibility for e in assignment.exercises] == ["visible", "after_due_date"]
    names = []
    for number, code in enumerate(python):
        (folder / "hidden" / f"test_guide_{number}.py").write_text(code)
        names += [ast.get_docstring(node).splitlines()[0] for node in ast.parse(code).body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    report = grade_master(assignment)
    outcomes = {c.name: c for e in report.exercises for c in e.checks}
    for name in names:
        assert name in outcomes, name
        assert outcomes[name].passed, (name, outcomes[name].message)
    assert not report.staff_notes, report.staff_notes
    run_shell(shell[1], project)  # release, check
