"""Read a submitted notebook file into the code cells the runner executes.

A submission is hostile input. Anything that cannot be graded (not JSON,
not a notebook, an old nbformat, no code, too large) raises
`SubmissionError` with a reason a student can act on; the grader turns that
into a zero score, never a crash. Stored outputs are dropped: the grader
always executes the code itself.
"""

import json
from dataclasses import dataclass
from pathlib import Path

# Folders and files that upload tools and editors add beside a notebook.
NOT_SUBMITTED = {"__MACOSX", ".ipynb_checkpoints", ".DS_Store", "__pycache__"}
MAX_FILE_BYTES = 20 * 2**20
MAX_CELL_CHARS = 200_000
MAX_CELLS = 2_000


class SubmissionError(ValueError):
    """The file cannot be graded; the message says why."""


@dataclass(frozen=True)
class CodeCell:
    index: int  # position among all cells of the notebook
    source: str


@dataclass(frozen=True)
class Submission:
    path: Path
    cells: tuple[CodeCell, ...]


def _source(cell: dict, index: int) -> str:
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        source = "".join(source)
    if not isinstance(source, str):
        raise SubmissionError(f"cell {index} has a malformed source field")
    if len(source) > MAX_CELL_CHARS:
        raise SubmissionError(f"cell {index} holds {len(source):,} characters; "
                              f"the limit is {MAX_CELL_CHARS:,}")
    return source


def notebooks_in(folder: Path) -> list[Path]:
    """Every .ipynb file under `folder`, except in editor and archive debris."""
    return sorted(p for p in folder.rglob("*.ipynb")
                  if p.is_file() and not NOT_SUBMITTED & set(p.relative_to(folder).parts))


def pick_notebook(candidates: list[Path], expected_name: str,
                  folder: Path | None = None) -> tuple[Path | None, str]:
    """The one notebook to grade among a student's files, or None and what the
    student should do instead: the only notebook, else the one named like the
    release's. `folder` makes the listed names relative to it."""
    named = [p for p in candidates if p.name == expected_name]
    if len(candidates) == 1 or len(named) == 1:
        return (named or candidates)[0], ""
    if not candidates:
        return None, (f"no notebook (.ipynb) submitted; submit your notebook ({expected_name}) "
                      "itself, not a PDF or a zip of it")
    listed = ", ".join((p.relative_to(folder) if folder else p).as_posix()
                       for p in candidates[:10])
    return None, (f"{len(candidates)} notebooks submitted ({listed}) and none is uniquely "
                  f"named {expected_name}; submit only that notebook")


def load(path: str | Path) -> Submission:
    """Validate the file and return its code cells in order."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path.name} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise SubmissionError(f"{path.name} is empty")
    if size > MAX_FILE_BYTES:
        raise SubmissionError(f"{path.name} is {size / 2**20:.1f} MB; the limit is "
                              f"{MAX_FILE_BYTES // 2**20} MB (clear large outputs before submitting)")
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SubmissionError(f"{path.name} is not a Jupyter notebook: it is not valid JSON "
                              f"({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise SubmissionError(f"{path.name} is not a Jupyter notebook: it has no list of cells")
    major = data.get("nbformat")
    if major != 4:
        raise SubmissionError(f"{path.name} uses notebook format {major!r}; save it with "
                              "Jupyter 4 or later (nbformat 4)")
    if len(data["cells"]) > MAX_CELLS:
        raise SubmissionError(f"{path.name} has {len(data['cells'])} cells; the limit is "
                              f"{MAX_CELLS}")
    cells = []
    for index, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict):
            raise SubmissionError(f"cell {index} of {path.name} is malformed")
        if cell.get("cell_type") == "code":
            cells.append(CodeCell(index, _source(cell, index)))
    if not any(c.source.strip() for c in cells):
        raise SubmissionError(f"{path.name} has no code to run")
    return Submission(path, tuple(cells))
