"""Find a cohort's submissions, whatever layout the TA was handed.

Layouts: a folder of `<student>.ipynb`; nbgrader's
`submitted/<student>/<assignment>/*.ipynb`; a Gradescope "Export Submissions"
folder or zip (`submission_metadata.yml` beside `submission_<id>/` folders).
Every entry found becomes one `Input`, gradable or not: a file that is not a
notebook, a student with no notebook or several, a student seen twice, all
come back with the reason, so nothing is silently dropped.
"""

import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..submission import NOT_SUBMITTED, notebooks_in, pick_notebook

MAX_ZIP_BYTES = 2 * 2**30  # uncompressed, a cohort of 1,000 notebooks with outputs fits


class CohortInputError(ValueError):
    """The cohort path itself is unusable (missing, an unsafe or huge zip)."""


@dataclass
class Input:
    student: str
    source: str  # relative to the cohort folder, for people
    notebook: Path | None  # None: nothing gradable, see problem
    problem: str = ""
    duplicate_of: str = ""  # the source of the same student's first entry


def find_inputs(path: Path, assignment_name: str, notebook_name: str,
                scratch: Path | None = None) -> list[Input]:
    """Every entry of the cohort at `path` (a folder, or a zip unpacked into scratch)."""
    path = Path(path)
    if not path.exists():
        raise CohortInputError(f"{path} does not exist")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise CohortInputError(f"{path} is neither a folder nor a zip file")
        target = Path(tempfile.mkdtemp(prefix="cohort-", dir=scratch))
        _unzip(path, target)
        path = target
    metadata = _find(path, "submission_metadata.yml")
    if metadata is not None:
        found = _gradescope(metadata.parent, metadata)
    elif (path / "submitted").is_dir() or path.name == "submitted":
        found = _nbgrader(path if path.name == "submitted" else path / "submitted",
                          assignment_name)
    else:
        found = _flat(path)
    return _mark_duplicates([_one_notebook(entry, notebook_name) for entry in found])


def _unzip(archive: Path, target: Path) -> None:
    """Refuse members that escape the target and archives that unpack too big."""
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise CohortInputError(f"{archive} unpacks to more than "
                                   f"{MAX_ZIP_BYTES // 2**30} GB")
        root = target.resolve()
        for member in members:
            if not (target / member.filename).resolve().is_relative_to(root):
                raise CohortInputError(f"{archive} holds an unsafe path: {member.filename!r}")
        zipped.extractall(target)


def _find(path: Path, name: str) -> Path | None:
    """`name` at the top of `path` or one folder down (zips often add one)."""
    for candidate in (path / name, *sorted(path.glob(f"*/{name}"))):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class _Found:
    student: str
    source: str
    files: list[Path]
    problem: str = ""


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in NOT_SUBMITTED


def _flat(folder: Path) -> list[_Found]:
    found = []
    for entry in sorted(filter(_visible, folder.iterdir())):
        if entry.suffix == ".ipynb" and entry.is_file():
            found.append(_Found(entry.stem, entry.name, [entry]))
        elif entry.is_dir():  # a student's folder holding the notebook
            found.append(_Found(entry.name, entry.name + "/", notebooks_in(entry)))
        else:
            found.append(_Found(entry.stem, entry.name, [],
                                f"{entry.name} is not a notebook (.ipynb) nor a folder"))
    return found


def _nbgrader(submitted: Path, assignment_name: str) -> list[_Found]:
    found = []
    for student in sorted(filter(_visible, submitted.iterdir())):
        source = f"submitted/{student.name}/"
        if not student.is_dir():
            found.append(_Found(student.stem, source, [], "not a student folder"))
            continue
        folders = [a for a in student.iterdir() if a.is_dir() and _visible(a)]
        chosen = [a for a in folders if a.name == assignment_name] or folders
        if len(chosen) != 1:
            names = ", ".join(sorted(a.name for a in folders)) or "none"
            found.append(_Found(student.name, source, [],
                                f"expected one assignment folder {assignment_name!r}, "
                                f"found: {names}"))
            continue
        found.append(_Found(student.name, source + chosen[0].name + "/",
                            notebooks_in(chosen[0])))
    return found


def _gradescope(folder: Path, metadata: Path) -> list[_Found]:
    """Students are named by their submitters' SIDs (else emails, else names)."""
    try:
        data = yaml.safe_load(metadata.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CohortInputError(f"{metadata} is not readable YAML: {exc}") from exc
    found, listed = [], set()
    for key, info in sorted(data.items()) if isinstance(data, dict) else []:
        listed.add(str(key))
        submission = folder / str(key)
        submitters = _field(info, "submitters") or []
        ids = [str(_field(s, "sid") or _field(s, "email") or _field(s, "name") or "").strip()
               for s in submitters if isinstance(s, dict)]
        student = "+".join(i for i in ids if i) or str(key)
        if not submission.is_dir():
            found.append(_Found(student, str(key), [], "listed in submission_metadata.yml "
                                "but its folder is missing"))
        else:
            found.append(_Found(student, str(key) + "/", notebooks_in(submission)))
    for extra in sorted(folder.iterdir()):
        if extra.is_dir() and _visible(extra) and extra.name not in listed:
            found.append(_Found(extra.name, extra.name + "/", [],
                                "not listed in submission_metadata.yml"))
    return found


def _field(mapping, name: str):
    """Gradescope writes Ruby symbols (`:sid: A1`), which YAML reads as key ':sid'."""
    if not isinstance(mapping, dict):
        return None
    return next((mapping[k] for k in (f":{name}", name, f":{name}:") if k in mapping), None)


def _one_notebook(entry: _Found, notebook_name: str) -> Input:
    if entry.problem:
        return Input(entry.student, entry.source, None, entry.problem)
    notebook, problem = pick_notebook(entry.files, notebook_name)
    return Input(entry.student, entry.source, notebook, problem)


def _mark_duplicates(inputs: list[Input]) -> list[Input]:
    """The first entry of a student is graded; later ones say whose twin they are."""
    seen: dict[str, Input] = {}
    for entry in inputs:
        key = re.sub(r"\s+", " ", entry.student).strip().casefold()
        if key in seen:
            entry.problem = f"duplicate of {seen[key].source} (same student)"
            entry.duplicate_of, entry.notebook = seen[key].source, None
            entry.student = f"{entry.student} [{entry.source}]"
        else:
            seen[key] = entry
    return inputs
