"""Read a submitted notebook file into the code cells the runner executes.

A submission is hostile input. Anything that cannot be graded (not JSON,
not a notebook, an old nbformat, no code, too large) raises
`SubmissionError` with a reason a student can act on; the grader turns that
into a zero score, never a crash. Stored outputs are dropped: the grader
always executes the code itself. Nothing a student names is followed: the
grader runs as root (on Gradescope), so a symbolic or hard link submitted in
place of the notebook is refused, never read (see `refusal`).
"""

import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# Folders and files that upload tools and editors add beside a notebook.
NOT_SUBMITTED = {"__MACOSX", ".ipynb_checkpoints", ".DS_Store", "__pycache__"}
# Stored outputs (a big image, say) are not the submission: the grader drops them. A
# file is refused only past what is safe to parse; what runs is capped by its source.
MAX_FILE_BYTES = 100 * 2**20
MAX_SOURCE_CHARS = 4 * 2**20  # code and markdown, all cells together
MAX_CELL_CHARS = 200_000
MAX_CELLS = 2_000
LINK = "is a symbolic link, which the grader does not follow; submit the notebook file itself"


class SubmissionError(ValueError):
    """The file cannot be graded; the message says why."""


@dataclass(frozen=True)
class CodeCell:
    index: int  # position among all cells of the notebook
    source: str
    key: str = ""  # what finds its measured cost: see cell_key


def cell_key(cell: dict, source: str) -> str:
    """The cell's nbgrader grade id where it has one (a solution or grade cell keeps
    it in every copy of the notebook), else a digest of its code (a given cell)."""
    meta = cell.get("metadata")
    nbgrader = meta.get("nbgrader") if isinstance(meta, dict) else None
    grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
    if isinstance(grade_id, str) and grade_id:
        return grade_id[:100]
    code = " ".join(source.split())
    return "code:" + hashlib.sha256(code.encode("utf-8", "backslashreplace")).hexdigest()[:16]


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
    """Every .ipynb under `folder` (except in editor and archive debris) and every
    symbolic link, whatever its name. Nothing is followed and a linked folder is not
    entered: links are listed so that `pick_notebook` refuses them with a reason."""
    if folder.is_symlink():
        return [folder]
    found = []
    for top, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if name not in NOT_SUBMITTED]
        found += [Path(top, name) for name in folders if os.path.islink(os.path.join(top, name))]
        found += [Path(top, name) for name in files
                  if name.endswith(".ipynb") or os.path.islink(os.path.join(top, name))]
    return sorted(found)


def refusal(path: Path, folder: Path) -> str:
    """Why the grader must not read `path`, or "" if it may: a symbolic link at it or at
    any folder on its way down from `folder`, anything but a regular file or a folder, a
    file with other hard links, a path that leaves `folder`. Nothing is followed: the
    grader runs as root, and a name the student made must never open a file for them
    (the hidden tests, the reference solution)."""
    if not path.is_relative_to(folder) or ".." in path.relative_to(folder).parts:
        return f"{path.name} lies outside the submitted folder"
    parts = path.relative_to(folder).parts
    info = None
    for step in [folder.joinpath(*parts[:i + 1]) for i in range(len(parts))] or [path]:
        shown = step.relative_to(folder).as_posix() if step != folder else step.name
        try:
            info = step.lstat()
        except OSError as exc:
            return f"{shown} cannot be read ({exc.strerror})"
        if stat.S_ISLNK(info.st_mode):
            return f"{shown} {LINK}"
    if stat.S_ISDIR(info.st_mode):
        return ""
    if not stat.S_ISREG(info.st_mode):
        return f"{shown} is not a regular file"
    return _hard_link(shown, info.st_nlink) if info.st_nlink > 1 else ""


def _hard_link(name: str, links: int) -> str:
    return (f"{name} has {links} hard links (other names for the same file); submit a copy "
            "of the notebook itself")


def pick_notebook(candidates: list[Path], expected_name: str,
                  folder: Path | None = None) -> tuple[Path | None, str]:
    """The one notebook to grade among a student's files, or None and what the
    student should do instead: the only notebook, else the one named like the
    release's. A link among them, or a chosen file that `refusal` turns down, refuses
    the submission. `folder`, where the student's files start, makes the listed names
    relative to it."""
    link = next((p for p in candidates if p.is_symlink()), None)
    if link is not None:
        return None, refusal(link, folder or link.parent)
    named = [p for p in candidates if p.name == expected_name]
    if len(candidates) == 1 or len(named) == 1:
        chosen = (named or candidates)[0]
        problem = refusal(chosen, folder or chosen.parent)
        return (None, problem) if problem else (chosen, "")
    if not candidates:
        return None, (f"no notebook (.ipynb) submitted; submit your notebook ({expected_name}) "
                      "itself, not a PDF or a zip of it")
    listed = ", ".join((p.relative_to(folder) if folder else p).as_posix()
                       for p in candidates[:10])
    return None, (f"{len(candidates)} notebooks submitted ({listed}) and none is uniquely "
                  f"named {expected_name}; submit only that notebook")


def _read(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, opened without following a link (O_NOFOLLOW; O_NONBLOCK so a
    FIFO cannot hang the grader) and checked on the open descriptor: a regular file,
    its only name, within the size limit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SubmissionError(f"{path.name} {LINK}") from None
        raise SubmissionError(f"{path.name} is not a file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SubmissionError(f"{path.name} is not a file")
        if info.st_nlink > 1:
            raise SubmissionError(_hard_link(path.name, info.st_nlink))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1) if info.st_size <= max_bytes else b""
    finally:
        os.close(fd)
    size = max(info.st_size, len(data))
    if size == 0:
        raise SubmissionError(f"{path.name} is empty")
    if size > max_bytes:
        raise SubmissionError(f"{path.name} is {size / 2**20:.1f} MB, more than the "
                              f"{max_bytes / 2**20:.0f} MB the grader reads; clear the "
                              "notebook's outputs (Edit > Clear All Outputs) and submit again")
    return data


def load(path: str | Path, max_bytes: int = MAX_FILE_BYTES,
         max_source_chars: int = MAX_SOURCE_CHARS) -> Submission:
    """Validate the file and return its code cells in order: refused past `max_bytes`
    on disk, or past `max_source_chars` of code and markdown (outputs do not count)."""
    path = Path(path)
    raw = _read(path, max_bytes)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError: also a number of 5,000 digits
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
    cells, total = [], 0
    for index, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict):
            raise SubmissionError(f"cell {index} of {path.name} is malformed")
        if cell.get("cell_type") in ("code", "markdown"):
            source = _source(cell, index)
            total += len(source)
            if total > max_source_chars:
                raise SubmissionError(
                    f"{path.name} holds more than {max_source_chars:,} characters of code and "
                    f"text (cell {index} passes the limit); outputs do not count")
            if cell["cell_type"] == "code":
                cells.append(CodeCell(index, source, cell_key(cell, source)))
    if not any(c.source.strip() for c in cells):
        raise SubmissionError(f"{path.name} has no code to run")
    return Submission(path, tuple(cells))
