"""Package an assignment as a Gradescope autograder, and grade inside one.

`build_zip` writes the zip an instructor uploads: `setup.sh` and
`run_autograder` at its root, beside the engine's source, the assignment
folder and what its hidden suite depends on, laid out as in this project.
Gradescope unpacks it into /autograder/source; `setup.sh` installs a
CPU-only torch and the engine into a world-readable virtual environment and
makes the source readable by root only, so that the runner, which drops to
another uid, can import the engine but never the hidden tests or the
reference. `run_autograder` calls `grade_gradescope`, and if that dies,
still writes a results.json that says so.

`AUTOGRADER_ROOT` relocates /autograder (tests use it), `AUTOGRADER_VENV` the
environment; `TORCH_INDEX_URL` (empty: the default index) and
`AUTOGRADER_SKIP_APT` let `setup.sh` run on a machine without those.
"""

import io
import stat
import zipfile
from pathlib import Path

from . import ENGINE
from .assignment import Assignment, AssignmentError, Budgets
from .grader import KEY_FILE, grade, key_state, lean_heap, reject
from .outcome import GradeReport
from .submission import notebooks_in, pick_notebook

PROJECT = ENGINE.parent
SKIPPED = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache"}
GRADESCOPE_TIMEOUT_S = 600  # the default limit of a Gradescope autograder run
# Of Gradescope's limit, what the grade itself may not use: the interpreter's start
# (imports), writing the outputs, and the outer `timeout` guard's 30 s before the limit.
GRADESCOPE_MARGIN_S = 60


def grade_deadline(timeout_s: int) -> int:
    """The whole grade's deadline inside a Gradescope run limited to `timeout_s`."""
    return timeout_s - GRADESCOPE_MARGIN_S


def budgets_misfit(budgets: Budgets, timeout_s: int) -> str | None:
    """Why the notebook's budget and the checks' reserve do not fit a Gradescope run
    limited to `timeout_s` (whose deadline replaces grade_timeout_s), or None."""
    deadline = grade_deadline(timeout_s)
    if budgets.total_timeout_s + budgets.checks_reserve_s <= deadline:
        return None
    return (f"the notebook's total budget ({budgets.total_timeout_s:.0f} s) and the checks' "
            f"reserve ({budgets.checks_reserve_s:.0f} s) do not fit Gradescope's {timeout_s} s "
            f"limit: the grade must end by {deadline} s, {GRADESCOPE_MARGIN_S} s before it; "
            "lower the budgets in assignment.toml or raise the limit (--timeout)")

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder image.
set -euo pipefail
SOURCE="$(cd "$(dirname "$0")" && pwd)"
VENV="${{AUTOGRADER_VENV:-/opt/autograder-venv}}"
PYTHON="${{AUTOGRADER_PYTHON:-/usr/bin/python3}}"
TORCH_INDEX_URL="${{TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}}"
if [ -z "${{AUTOGRADER_SKIP_APT:-}}" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else
    "the autograder needs Python 3.11 or later: choose the Ubuntu 24.04 base image")'
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
# CPU-only torch keeps the image small; the engine's own dependencies come from PyPI.
"$VENV/bin/python" -m pip install --quiet --no-cache-dir \\
    ${{TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}} "torch=={torch}"
"$VENV/bin/python" -m pip install --quiet --no-cache-dir "$SOURCE"
chmod -R a+rX "$VENV"
# Hidden tests, reference code and configuration: root only.
chmod -R go-rwx "$SOURCE"
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this as root for every submission. results.json is written
# whatever happens: by the grader, or below if the grader itself was killed.
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
VENV="${{AUTOGRADER_VENV:-/opt/autograder-venv}}"
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"
rm -f "$RESULTS"
cd "$ROOT"
OMP_NUM_THREADS=1 timeout -k 10 {timeout_s} "$VENV/bin/autograder" gradescope run \\
    --root "$ROOT" --assignment "$ROOT/source/{assignment}" --deadline-s {deadline_s}
if ! "$VENV/bin/python" -c 'import json, sys; json.load(open(sys.argv[1]))' "$RESULTS" \\
        2>/dev/null; then
    printf '%s\\n' '{{"score": 0.0, "execution_time": 0.0, "visibility": "visible", "stdout_visibility": "hidden", "tests": [], "output_format": "text", "output": "{failure}"}}' \\
        > "$RESULTS"
fi
exit 0
"""

FAILURE = ("The autograder could not finish grading this submission (it was stopped after "
           "{timeout_s} s or crashed). Your notebook was not scored; please tell course staff.")


def _sources(assignment: Assignment) -> list[Path]:
    """Every file the zip carries besides the two scripts (an answer key only if it is
    this grader version's)."""
    stale_key = None if key_state(assignment) == "current" else assignment.root / KEY_FILE
    roots = [PROJECT / "pyproject.toml", PROJECT / "README.md", ENGINE, assignment.root,
             *assignment.depends]
    files = []
    for root in roots:
        if not root.resolve().is_relative_to(PROJECT):
            raise AssignmentError(f"{root} is outside the project {PROJECT}; the zip mirrors "
                                  "the project's layout")
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if path.is_file() and not SKIPPED & set(path.parts) and path.suffix != ".pyc" \
                    and path != stale_key:
                files.append(path)
    return files


def _add(archive: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    """A fixed timestamp and mode, so the same inputs make the same zip."""
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def build_zip(assignment: Assignment, out: str | Path,
              timeout_s: int = GRADESCOPE_TIMEOUT_S) -> Path:
    """Write the autograder zip; `timeout_s` is the limit set in Gradescope.

    Symlinks are stored as the files they point to. The grading run is killed
    30 s before Gradescope's limit, so the fallback results still get written.
    """
    import torch  # the version this engine was tested with is the one installed there

    deadline = grade_deadline(timeout_s)
    misfit = budgets_misfit(assignment.budgets, timeout_s)
    if misfit is not None:
        raise AssignmentError(misfit)
    relative = assignment.root.relative_to(PROJECT).as_posix()
    run_limit = timeout_s - 30
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add(archive, "setup.sh", SETUP_SH.format(torch=torch.__version__.split("+")[0]).encode(),
             executable=True)
        _add(archive, "run_autograder", RUN_AUTOGRADER.format(
            timeout_s=run_limit, assignment=relative, deadline_s=deadline,
            failure=FAILURE.format(timeout_s=run_limit)).encode(), executable=True)
        for path in _sources(assignment):
            _add(archive, path.relative_to(PROJECT).as_posix(), path.read_bytes())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buffer.getvalue())
    return out


def grade_gradescope(root: Path, assignment: Assignment,
                     deadline_s: float | None = None) -> GradeReport:
    """Grade /autograder/submission into /autograder/results, as Gradescope expects,
    everything within `deadline_s` (the zip's derivation from Gradescope's limit)."""
    results = root / "results"
    folder = root / "submission"
    notebook, problem = pick_notebook(notebooks_in(folder), assignment.master.name, folder)
    if notebook is None:
        return reject("submission", problem, assignment, results)
    lean_heap()
    # Gradescope shows the student results.json alone, which holds no picture: drawing
    # the figures would cost CPU time and show nothing.
    return grade(notebook, assignment, results, deadline_s=deadline_s, pictures=False)
