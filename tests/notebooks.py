"""Execute notebooks in a real Jupyter kernel for the project's own tests.

This is test tooling (nbclient, as nbgrader and otter use it), not the
grader's sandboxed runner: it trusts the notebook.
"""

import os
import subprocess
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = ROOT / "assignments" / "krylov_hessian"
MASTER = ASSIGNMENT / "master" / "01_krylov.ipynb"


def _shared() -> Path:
    """The read-only course material: beside this checkout, or beside the
    checkout it was cloned from (CI grades a clean clone made elsewhere)."""
    candidates = [ROOT.parent / "shared"]
    origin = subprocess.run(["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
                            check=False, capture_output=True, text=True).stdout.strip()
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared")
    return next((p for p in candidates if p.is_dir()), candidates[0])


SHARED = _shared()


def execute(nb: nbformat.NotebookNode, workdir: Path, timeout: int = 300) -> nbformat.NotebookNode:
    """Run every cell (continuing past errors) with one torch thread, headless."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def errors(nb: nbformat.NotebookNode) -> dict[int, dict]:
    """Cell index -> the error output of that cell."""
    found = {}
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found[index] = output
    return found


def stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def grade_id(cell: nbformat.NotebookNode) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")
