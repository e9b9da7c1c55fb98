"""Load an assignment folder's configuration (`assignment.toml`).

Points live in one place, the master notebook's nbgrader grade cells; the
config names each exercise's grade cell, its title and its visibility.
"""

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .outcome import VISIBILITIES


class AssignmentError(ValueError):
    """The assignment folder or its configuration is unusable."""


@dataclass(frozen=True)
class Exercise:
    id: str
    grade_id: str
    name: str
    points: float
    visibility: str = "visible"


@dataclass(frozen=True)
class Budgets:
    cell_timeout_s: float = 120.0
    total_timeout_s: float = 600.0
    call_timeout_s: float = 60.0
    memory_mb: int = 6144
    disk_mb: int = 512
    disk_files: int = 10_000


@dataclass(frozen=True)
class Assignment:
    """An assignment folder: the master notebook, its release and its grading."""

    root: Path
    name: str
    title: str
    master: Path
    release_include: tuple[str, ...]
    release_notebook_dir: str
    code_stub: str
    hidden: Path | None
    visible: Path | None  # the checks students may run themselves (`autograder check`)
    depends: tuple[Path, ...]  # code outside the folder that the hidden suite imports
    budgets: Budgets
    exercises: tuple[Exercise, ...]

    @property
    def total_points(self) -> float:
        return sum(e.points for e in self.exercises)

    @classmethod
    def load(cls, root: str | Path) -> "Assignment":
        root = Path(root).resolve()
        config_path = root / "assignment.toml"
        if not config_path.is_file():
            raise AssignmentError(f"{root} has no assignment.toml; is it an assignment folder?")
        try:
            config = tomllib.loads(config_path.read_text(encoding="utf-8"))
            release = config["release"]
            grading = config.get("grading", {})
            master = root / config["master"]
            if not master.is_file():
                raise AssignmentError(f"{config_path}: master notebook {master} not found")
            assignment = cls(
                root=root,
                name=config["name"],
                title=config.get("title", config["name"]),
                master=master,
                release_include=tuple(release.get("include", [])),
                release_notebook_dir=release.get("notebook_dir", "notebooks"),
                code_stub=release.get("code_stub", "# YOUR CODE HERE\nraise NotImplementedError()"),
                hidden=root / grading["hidden"] if "hidden" in grading else None,
                visible=root / grading["visible"] if "visible" in grading else None,
                depends=tuple((root / d).resolve() for d in grading.get("depends", [])),
                budgets=Budgets(**{k: v for k, v in grading.items()
                                   if k not in {"hidden", "visible", "depends"}}),
                exercises=_exercises(config.get("exercises", []), master, config_path),
            )
        except tomllib.TOMLDecodeError as exc:
            raise AssignmentError(f"{config_path}: {exc}") from exc
        except KeyError as exc:
            raise AssignmentError(f"{config_path} lacks the required key {exc}") from exc
        except TypeError as exc:
            raise AssignmentError(f"{config_path}: unknown or malformed setting ({exc})") from exc
        for item in assignment.release_include:
            if not (root / item).exists():
                raise AssignmentError(f"{config_path}: release.include names missing {item!r}")
        for path in assignment.depends:
            if not path.exists():
                raise AssignmentError(f"{config_path}: grading.depends names missing {path}")
        for suite in (assignment.hidden, assignment.visible):
            if suite is not None and not suite.is_dir():
                raise AssignmentError(f"{config_path}: suite folder {suite} not found")
        return assignment


def _exercises(entries: list[dict], master: Path, config_path: Path) -> tuple[Exercise, ...]:
    """Exercises in config order, with points read from the master's grade cells."""
    points = {}
    for cell in json.loads(master.read_text(encoding="utf-8")).get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            points[meta["grade_id"]] = float(meta["points"])
    exercises = []
    for entry in entries:
        grade_id = entry["grade_id"]
        if grade_id not in points:
            raise AssignmentError(f"{config_path}: exercise {entry['id']} names grade cell "
                                  f"{grade_id!r}, which the master notebook does not have")
        visibility = entry.get("visibility", "visible")
        if visibility not in VISIBILITIES:
            raise AssignmentError(f"{config_path}: exercise {entry['id']} has visibility "
                                  f"{visibility!r}; use one of {', '.join(VISIBILITIES)}")
        exercises.append(Exercise(str(entry["id"]), grade_id, entry.get("name", entry["id"]),
                                  points[grade_id], visibility))
    ids = [e.id for e in exercises]
    if len(ids) != len(set(ids)):
        raise AssignmentError(f"{config_path}: exercise ids are not unique")
    return tuple(exercises)
