"""The visible suite (assignments/krylov_hessian/visible), which ships with the
student release and which students run themselves (`autograder check`).

It must give the solution full marks and the unfilled release none, still
catch plain bugs on their own exercise without costing independent ones,
cover every exercise, and stand on its own: the release has neither the
reference solution, the fixtures nor the hidden suite.

Grading one notebook takes ~15 s, so each report is graded once per module.
"""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autograder.assignment import Assignment
from autograder.grader import grade
from autograder.outcome import GradeReport
from autograder.plugin import collect_checks
from tests.corpus import build, mutants_hvp, mutants_lanczos, mutants_power  # noqa: F401 (registers)
from tests.corpus.mutants import MUTANTS
from tests.notebooks import ASSIGNMENT

VISIBLE = ASSIGNMENT / "visible"
HIDDEN = ASSIGNMENT / "hidden"

# Real corpus mutants: plain student bugs in different sections. Each must lose
# points on its exercise in the visible suite too, and (as in test_corpus) keep
# full marks on every exercise it cannot affect.
CAUGHT = ("hvp_bug_normalizes_v",             # 1.1: H v for v scaled to unit length
          "power_bug_unnormalized",           # 2.1: v never normalized, fp32 overflows
          "bug_lanczos_forgets_beta_q_prev",  # 4.1: no beta_j q_(j-1) term
          "bug_ritz_trained_on_last_minibatch")  # 6.1: Hessian of the last batch of 64

# Exercises whose function is a stub in the release: their checks call it.
FUNCTION_EXERCISES = ("1.1", "1.2", "1.3", "2.1", "2.2", "3.1", "4.1", "4.2", "5.1", "5.2",
                      "5.3")


@pytest.fixture(scope="module")
def assignment() -> Assignment:
    return Assignment.load(ASSIGNMENT)


def _grade(nb, name: str, assignment: Assignment, tmp_path_factory) -> GradeReport:
    path = build.write(nb, tmp_path_factory.mktemp("visible") / f"{name}.ipynb")
    report = grade(path, assignment, suite=assignment.visible)
    assert report.status == "graded", report.reason
    return report


@pytest.fixture(scope="module")
def master_report(assignment, tmp_path_factory) -> GradeReport:
    return _grade(build.master(), "master", assignment, tmp_path_factory)


@pytest.fixture(scope="module")
def unfilled_report(assignment, tmp_path_factory) -> GradeReport:
    return _grade(build.unfilled(), "unfilled", assignment, tmp_path_factory)


def _failures(report: GradeReport) -> dict[str, list[str]]:
    return {e.id: [f"{c.name}: {c.message} {c.staff_detail[-500:]}" for c in e.checks
                   if not c.passed] for e in report.exercises}


# --- (1) the solution ------------------------------------------------------------------


def test_master_passes_every_visible_check(master_report):
    assert not master_report.staff_notes, master_report.staff_notes
    assert all(e.checks for e in master_report.exercises)
    failures = {k: v for k, v in _failures(master_report).items() if v}
    assert not failures, failures
    assert master_report.score == master_report.max_score


# --- (2) the unfilled release ----------------------------------------------------------


def test_unfilled_release_scores_zero(unfilled_report):
    assert not unfilled_report.staff_notes, unfilled_report.staff_notes
    assert unfilled_report.score == 0, \
        {e.id: [c.name for c in e.checks if c.passed] for e in unfilled_report.exercises}
    for exercise in unfilled_report.exercises:
        assert exercise.checks, exercise.id
        for check in exercise.checks:
            assert not check.passed and check.message and not check.staff_detail, \
                (exercise.id, check.name, check.message, check.staff_detail[-500:])


def test_unfilled_release_says_not_implemented(unfilled_report):
    by_id = {e.id: e for e in unfilled_report.exercises}
    for exercise_id in FUNCTION_EXERCISES:
        messages = [c.message for c in by_id[exercise_id].checks]
        assert all("not implemented yet" in m and "NotImplementedError" in m
                   for m in messages), (exercise_id, messages)


# --- (3) real bugs from the corpus -----------------------------------------------------


@pytest.mark.parametrize("name", CAUGHT)
def test_corpus_bug_loses_points_on_its_exercise(name, assignment, tmp_path_factory):
    mutant = next(m for m in MUTANTS if m.name == name)
    assert mutant.kind == "bug" and mutant.loses
    report = _grade(mutant.build(), name, assignment, tmp_path_factory)
    failures = _failures(report)
    for exercise in report.exercises:
        if exercise.id in mutant.loses:
            assert exercise.score < exercise.max_score, f"{exercise.id} kept full marks"
            # The student is told what is wrong: a sentence, not an internal error.
            assert all(c.message and not c.staff_detail for c in exercise.checks
                       if not c.passed), failures[exercise.id]
        elif exercise.id not in mutant.may_lose:
            assert exercise.score == exercise.max_score, (exercise.id, failures[exercise.id])
    assert not report.staff_notes, report.staff_notes


# --- (4) the suite stands on its own ---------------------------------------------------

# What the release has besides the standard library: the engine, the assignment's
# own `src` package, and the engine's dependencies.
ALLOWED_ROOTS = {"autograder", "src", "torch", "numpy", "pytest"}


def _visible_files() -> list[Path]:
    files = sorted(VISIBLE.glob("*.py"))
    assert files and any(f.name.startswith("test_") for f in files)
    return files


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            roots.add(node.module.split(".")[0])
    return roots


def test_visible_files_import_nothing_hidden():
    hidden_modules = {p.stem for p in HIDDEN.glob("*.py")} - {p.stem for p in _visible_files()}
    forbidden = {"reference", "fixtures", "hidden", "krylov_checks", *hidden_modules}
    for path in _visible_files():
        roots = _imported_roots(path)
        assert not roots & forbidden, (path.name, sorted(roots & forbidden))
        own = {p.stem for p in _visible_files()}  # the suite's helper module
        unknown = {r for r in roots if r not in sys.stdlib_module_names} - ALLOWED_ROOTS - own
        assert not unknown, (path.name, sorted(unknown))
        source = path.read_text(encoding="utf-8")
        for dynamic in ("__import__", "import_module", "spec_from_file_location"):
            assert dynamic not in source, (path.name, dynamic)


def test_hidden_and_visible_suites_share_file_names_and_never_mix():
    """One file per notebook section, the same names in both suites (one hop to an
    exercise's checks). pytest's importlib mode names a test module by its file name
    and would reuse one already loaded, so the engine forgets a suite's modules after
    each run: collecting hidden, visible, hidden again in one process gives each its own."""
    visible = {p.name for p in VISIBLE.glob("test_*.py")}
    assert visible and visible == {p.name for p in HIDDEN.glob("test_*.py")}
    first, _ = collect_checks(HIDDEN)
    shown, _ = collect_checks(VISIBLE)
    again, _ = collect_checks(HIDDEN)
    key = [(c.exercise, c.name, c.weight, c.location) for c in first]
    assert key == [(c.exercise, c.name, c.weight, c.location) for c in again]
    # Mixed, the second hidden collection would return the visible checks (42, not 66).
    assert [(c.exercise, c.name, c.weight) for c in shown] != \
        [(c.exercise, c.name, c.weight) for c in first]
    assert all(c.location.startswith(f"test_s{c.exercise[0]}_") for c in first + shown)


def test_visible_files_load_without_the_grading_secrets(tmp_path):
    """Each visible module imports in a Python that sees the assignment folder (as the
    release does) but not the project root, where reference/ and fixtures/ live."""
    script = "\n".join([
        "import importlib.util, sys",
        "for name in ('reference', 'fixtures'):",
        "    assert importlib.util.find_spec(name) is None, name",
        f"for path in {[str(p) for p in _visible_files()]!r}:",
        "    name = 'visible_' + path.rsplit('/', 1)[1][:-3]",
        "    spec = importlib.util.spec_from_file_location(name, path)",
        "    module = importlib.util.module_from_spec(spec)",
        "    spec.loader.exec_module(module)",
        "print('ok')"])
    # -P: no script or working directory on sys.path; the cwd is not the project root.
    result = subprocess.run([sys.executable, "-P", "-c", script], check=False, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                 "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


# --- (5) coverage ----------------------------------------------------------------------


class _Collector:
    """Records each collected item's check marker, without running anything."""

    def __init__(self):
        self.exercises: dict[str, list[str]] = {}
        self.problems: list[str] = []

    def pytest_configure(self, config):
        config.addinivalue_line("markers", "check(exercise, weight=1): a graded check")

    def pytest_collection_modifyitems(self, items):
        for item in items:
            marker = item.get_closest_marker("check")
            if marker is None or float(marker.kwargs.get("weight", 1)) <= 0:
                self.problems.append(f"{item.nodeid} is not a weighted check")
                continue
            if not (item.function.__doc__ or "").strip():
                self.problems.append(f"{item.nodeid} has no docstring (its name for students)")
            self.exercises.setdefault(str(marker.kwargs["exercise"]), []).append(item.nodeid)

    def pytest_collectreport(self, report):
        if report.failed:
            self.problems.append(f"{report.nodeid}: {str(report.longrepr)[-1000:]}")


def test_every_exercise_has_a_visible_check(assignment, master_report):
    collector = _Collector()
    code = pytest.main([str(VISIBLE), "--collect-only", "-q", "-p", "no:cacheprovider",
                        "--import-mode=importlib", "--rootdir", str(VISIBLE),
                        "-c", str(VISIBLE / "pytest.ini")], plugins=[collector])
    for name, module in list(sys.modules.items()):  # as the engine does after a suite runs
        if str(getattr(module, "__file__", "") or "").startswith(str(VISIBLE)):
            del sys.modules[name]
    assert code == pytest.ExitCode.OK and not collector.problems, collector.problems
    ids = [e.id for e in assignment.exercises]
    assert set(collector.exercises) == set(ids), \
        (sorted(set(ids) - set(collector.exercises)), sorted(set(collector.exercises) - set(ids)))
    # And in a real run every exercise got its checks.
    assert all(e.checks for e in master_report.exercises)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # the check marker
def test_closed_form_hessian_matches_autograd(monkeypatch):
    """The 6.x checks' closed-form Hessian equals torch.func.hessian, entry by entry."""
    monkeypatch.syspath_prepend(str(VISIBLE))  # as the suite's conftest does
    spec = importlib.util.spec_from_file_location(
        "visible_hessians", VISIBLE / "test_s6_hessian_topk.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from src.tiny_models import tiny_mlp, toy_mlp
    from visible_checks import dense_hessian

    g = torch.Generator().manual_seed(3)
    for model, X, classes in ((toy_mlp(seed=2), torch.randn(9, 20, generator=g), 4),
                              (tiny_mlp(seed=1), torch.randn(6, 49, generator=g), 10)):
        y = torch.randint(0, classes, (len(X),), generator=g)
        closed = module.mlp_hessian(model, X, y)
        autograd = dense_hessian(model, X, y)
        assert (closed - autograd).abs().max().item() <= 1e-12 * autograd.abs().max().item()
