"""The engine's shape, enforced: the sandbox's one door, the suites' one module.

Imports are read from the source (every `import` statement, nested ones
included) and, for the runner, observed in a fresh interpreter.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "autograder"
SUITES = [*ROOT.glob("assignments/*/hidden"), *ROOT.glob("assignments/*/visible"),
          ROOT / "tests" / "engine_assignment" / "hidden"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ENGINE.rglob("*.py")}


def _imports(path: Path, name: str) -> set[tuple[str, str]]:
    """(module, imported name or "") for every import in the file, made absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {(alias.name, "") for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add((submodule, "") if submodule in MODULES else (base, alias.name))
    return found


def _engine_imports(name: str) -> set[str]:
    return {module for module, _ in _imports(MODULES[name], name)
            if module == "autograder" or module.startswith("autograder.")}


UNTRUSTED_SIDE = {"autograder.sandbox.runner", "autograder.sandbox.protocol",
                  "autograder.sandbox.confine", "autograder.sandbox.fingerprint"}


def test_the_runner_imports_only_the_protocol_the_confinement_and_the_digests():
    allowed = {"autograder", "autograder.sandbox", *UNTRUSTED_SIDE}
    for name in sorted(UNTRUSTED_SIDE):
        assert _engine_imports(name) <= allowed, name


def test_the_runner_loads_no_other_engine_module_when_it_starts():
    code = ("import json, sys; import autograder.sandbox.runner; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'autograder')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == ["autograder", "autograder.sandbox", "autograder.sandbox.confine",
                               "autograder.sandbox.fingerprint", "autograder.sandbox.protocol",
                               "autograder.sandbox.runner"]


def test_the_students_side_imports_nothing_linux_only_up_front():
    """macOS and Windows have no `resource` or `fcntl`: the self-check, the suites'
    module and what they load import them only where the sandbox starts."""
    code = ("import sys; sys.modules['resource'] = sys.modules['fcntl'] = None\n"
            "import autograder.__main__, autograder.selfcheck, autograder.testing, "
            "autograder.sandbox.live, autograder.grader, autograder.plugin, "
            "autograder.release")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]


def test_nothing_outside_the_sandbox_imports_the_runner_or_the_protocol():
    private = {"autograder.sandbox.runner", "autograder.sandbox.protocol"}
    for name in MODULES:
        if not name.startswith("autograder.sandbox"):
            assert not _engine_imports(name) & private, name


def test_the_sandbox_knows_nothing_of_scores_or_outputs():
    allowed = {"autograder", "autograder.submission", "autograder.files"}
    for name in MODULES:
        if name.startswith("autograder.sandbox"):
            outside = {m for m in _engine_imports(name) if not m.startswith("autograder.sandbox")}
            assert outside <= allowed, (name, outside - allowed)


def test_no_engine_module_imports_another_ones_private_names():
    for name, path in MODULES.items():
        for module, imported in _imports(path, name):
            if module.startswith("autograder"):
                assert not imported.startswith("_"), f"{name} imports {imported} from {module}"


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: str(p.relative_to(ROOT)))
def test_suites_import_only_the_public_testing_module_of_the_engine(suite):
    assert list(suite.glob("*.py")), f"{suite} holds no checks"
    for path in suite.glob("*.py"):
        for module, _ in _imports(path, path.stem):
            if module.split(".")[0] == "autograder":
                assert module == "autograder.testing", f"{path.name} imports {module}"
