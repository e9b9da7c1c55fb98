"""Find a cohort's submissions, whatever layout the TA was handed.

Layouts: a folder of `<student>.ipynb`; nbgrader's
`submitted/<student>/<assignment>/*.ipynb`; a Gradescope "Export Submissions"
folder or zip (`submission_metadata.yml` beside `submission_<id>/` folders).
Every entry found becomes one `Input`, gradable or not: a file that is not a
notebook, a student with no notebook or several, a student seen twice, all
come back with the reason, so nothing is silently dropped.

Entries are hostile input read by root: a symbolic or hard link (in a folder
or a zip), a zip member that cannot be unpacked, a file name that is not
UTF-8, a metadata folder name that climbs out of the export, a submitter id
that is not text: each is its entry's row and reason, never followed, never a
crash that stops the cohort.
"""

import contextlib
import re
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..render import valid_text
from ..submission import LINK, NOT_SUBMITTED, notebooks_in, pick_notebook, refusal
from ..terminal import printable

MAX_ZIP_BYTES = 2 * 2**30  # uncompressed, a cohort of 1,000 notebooks with outputs fits
MAX_ID_CHARS = 200  # a submitter id longer than this is not an id
# What unpacking one damaged member raises: a bad CRC, truncated or undecodable data,
# encryption or a compression method zipfile lacks, a name the file system refuses.
_UNPACK_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError,
                  NotImplementedError, ValueError, OSError)


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
    refused: dict[Path, str] = {}
    if path.is_file():
        target = Path(tempfile.mkdtemp(prefix="cohort-", dir=scratch))
        refused = _unzip(path, target)
        path = target
    metadata = _find(path, "submission_metadata.yml")
    if metadata is not None:
        if metadata in refused:
            raise CohortInputError(f"submission_metadata.yml: {refused[metadata]}")
        found = _gradescope(metadata.parent, metadata)
    elif (path / "submitted").is_dir() or path.name == "submitted":
        found = _nbgrader(path if path.name == "submitted" else path / "submitted",
                          assignment_name)
    else:
        found = _flat(path)
    return _mark_duplicates([_one_notebook(entry, notebook_name, path, refused)
                             for entry in found])


def _unzip(archive: Path, target: Path) -> dict[Path, str]:
    """Unpack into `target`. The whole archive is refused when it cannot be opened,
    unpacks too big or holds a path that escapes. A member that is a symbolic link, or
    that cannot be unpacked (damaged, truncated, encrypted), is left out: an empty file
    stands in its place, and the returned reason marks the entry that holds it."""
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CohortInputError(f"{archive} is a file but not a readable zip file "
                               f"({printable(str(exc))})") from exc
    refused = {}
    with zipped:
        members = zipped.infolist()
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise CohortInputError(f"{archive} unpacks to more than "
                                   f"{MAX_ZIP_BYTES // 2**30} GB")
        root = target.resolve()
        for member in members:
            if (".." in member.filename.split("/")
                    or not (target / member.filename).resolve().is_relative_to(root)):
                raise CohortInputError(f"{archive} holds an unsafe path: {member.filename!r}")
        for member in members:
            if stat.S_ISLNK(member.external_attr >> 16):
                refused[target / member.filename] = f"{member.filename} in the zip {LINK}"
                continue
            try:
                zipped.extract(member, target)
            except _UNPACK_ERRORS as exc:
                refused[target / member.filename] = (
                    f"{member.filename} cannot be unpacked from the zip ({type(exc).__name__}: "
                    f"{exc}); upload it again")
    for stand_in in refused:
        with contextlib.suppress(OSError):  # inside another stand-in: refused all the same
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.touch()
    return refused


def _find(path: Path, name: str) -> Path | None:
    """`name` at the top of `path` or one folder down (zips often add one); never
    through a link."""
    for candidate in (path / name, *sorted(path.glob(f"*/{name}"))):
        linked = candidate.is_symlink() or (candidate.parent != path
                                            and candidate.parent.is_symlink())
        if candidate.is_file() and not linked:
            return candidate
    return None


@dataclass
class _Found:
    student: str
    source: str
    path: Path | None  # the entry's file or folder; None: it names none
    files: list[Path]
    problem: str = ""


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in NOT_SUBMITTED


def _flat(folder: Path) -> list[_Found]:
    found = []
    for entry in sorted(filter(_visible, folder.iterdir())):
        if entry.is_symlink():  # refused by _one_notebook, never entered
            found.append(_Found(entry.stem, entry.name, entry, []))
        elif entry.suffix == ".ipynb" and entry.is_file():
            found.append(_Found(entry.stem, entry.name, entry, [entry]))
        elif entry.is_dir():  # a student's folder holding the notebook
            found.append(_Found(entry.name, entry.name + "/", entry, notebooks_in(entry)))
        else:
            found.append(_Found(entry.stem, entry.name, entry, [],
                                f"{entry.name} is not a notebook (.ipynb) nor a folder"))
    return found


def _nbgrader(submitted: Path, assignment_name: str) -> list[_Found]:
    found = []
    for student in sorted(filter(_visible, submitted.iterdir())):
        source = f"submitted/{student.name}/"
        if student.is_symlink():  # refused by _one_notebook, never entered
            found.append(_Found(student.name, source, student, []))
            continue
        if not student.is_dir():
            found.append(_Found(student.stem, source, student, [], "not a student folder"))
            continue
        folders = [a for a in student.iterdir() if a.is_dir() and _visible(a)]
        chosen = [a for a in folders if a.name == assignment_name] or folders
        if len(chosen) != 1:
            names = ", ".join(sorted(a.name for a in folders)) or "none"
            found.append(_Found(student.name, source, student, [],
                                f"expected one assignment folder {assignment_name!r}, "
                                f"found: {names}"))
            continue
        found.append(_Found(student.name, source + chosen[0].name + "/", chosen[0],
                            notebooks_in(chosen[0])))
    return found


class _MetadataLoader(yaml.SafeLoader):
    """Numbers stay the text they are written as: an SID is an id (`0042` stays itself),
    and one of 5,000 digits must not raise while the file is read."""


for _tag in ("int", "float"):
    _MetadataLoader.add_constructor(f"tag:yaml.org,2002:{_tag}",
                                    yaml.SafeLoader.construct_scalar)


def _gradescope(folder: Path, metadata: Path) -> list[_Found]:
    """Students are named by their submitters' SIDs (else emails, else names). Keys must
    be plain folder names and ids text, so no YAML trick (`../`, a dict, an alias bomb)
    reaches further than its own row."""
    try:
        data = yaml.load(metadata.read_text(encoding="utf-8"), Loader=_MetadataLoader) or {}
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise CohortInputError(f"{metadata} is not readable YAML: "
                               f"{printable(str(exc))[:500]}") from exc
    found, listed = [], set()
    items = sorted(data.items(), key=lambda item: str(item[0])) if isinstance(data, dict) else []
    for key, info in items:
        name = str(key)
        listed.add(name)
        submission = folder / name
        student, problem = _submitters(info)
        student = student or name
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            found.append(_Found(student, name, None, [], f"{name!r} in "
                                "submission_metadata.yml is not a folder name of the export"))
        elif problem:
            found.append(_Found(student, name + "/", submission, [], problem))
        elif not submission.is_dir():
            found.append(_Found(student, name, submission, [], "listed in "
                                "submission_metadata.yml but its folder is missing"))
        else:
            found.append(_Found(student, name + "/", submission, notebooks_in(submission)))
    for extra in sorted(folder.iterdir()):
        if extra.is_dir() and _visible(extra) and extra.name not in listed:
            found.append(_Found(extra.name, extra.name + "/", extra, [],
                                "not listed in submission_metadata.yml"))
    return found


def _submitters(info) -> tuple[str, str]:
    """The submission's student: its submitters' ids joined by '+' (a group), or "" and
    why the metadata gives none that can be used."""
    submitters = _field(info, "submitters") or []
    if not isinstance(submitters, list):
        return "", "its :submitters: in submission_metadata.yml is not a list"
    ids = []
    for person in submitters:
        value = _field(person, "sid") or _field(person, "email") or _field(person, "name") or ""
        if not isinstance(value, str):
            return "", (f"a submitter's id in submission_metadata.yml is a "
                        f"{type(value).__name__}, not text")
        if len(value) > MAX_ID_CHARS:
            return "", (f"a submitter's id in submission_metadata.yml is {len(value):,} "
                        "characters long")
        ids.append(value.strip())
    return "+".join(i for i in ids if i), ""


def _field(mapping, name: str):
    """Gradescope writes Ruby symbols (`:sid: A1`), which YAML reads as key ':sid'."""
    if not isinstance(mapping, dict):
        return None
    return next((mapping[k] for k in (f":{name}", name, f":{name}:") if k in mapping), None)


def _one_notebook(entry: _Found, notebook_name: str, root: Path,
                  refused: dict[Path, str]) -> Input:
    """The entry's Input: refused if a zip member in it was, if it is or holds a link
    (`refusal`), if its name is not UTF-8; else its one notebook."""
    student, source = valid_text(entry.student), valid_text(entry.source)
    at = entry.path
    problem = (next((why for bad, why in refused.items() if at and bad.is_relative_to(at)), "")
               or entry.problem
               or (refusal(at, root) if at and at.is_relative_to(root) else "")
               or (f"the name {source} is not valid UTF-8; rename it" if source != entry.source
                   else ""))
    notebook = None
    if not problem:
        notebook, problem = pick_notebook(entry.files, notebook_name, root)
    return Input(student, source, notebook, valid_text(problem))


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
