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
    cost_factor: float | None = None  # overrides Budgets.cost_factor for this exercise
    heading: str = ""  # the master's last Markdown heading above the grade cell


@dataclass(frozen=True)
class Budgets:
    """Time and resource budgets: the one place their defaults live.

    A cell or call whose cost was measured on the master (`costs.json`) gets
    `cost_factor` times that cost, at least the floor; one with no measured
    cost (a cell the student added) gets the flat timeout.
    """

    cell_timeout_s: float = 120.0  # a cell with no measured cost
    total_timeout_s: float = 600.0  # the notebook's execution, all cells together
    call_timeout_s: float = 60.0  # a call with no measured cost
    late_cell_timeout_s: float = 5.0  # each cell that starts after total_timeout_s is spent
    grade_timeout_s: float = 900.0  # everything: execution, then checks
    checks_reserve_s: float = 120.0  # execution ends at the latest this long before that
    cost_factor: float = 20.0
    cell_floor_s: float = 10.0
    call_floor_s: float = 5.0
    memory_mb: int = 6144
    disk_mb: int = 512
    disk_files: int = 10_000
    max_notebook_mb: float = 100.0  # a submitted file past this is not parsed (outputs count)
    max_source_kb: float = 4096.0  # code and markdown past this are not run (outputs do not)


@dataclass(frozen=True)
class Costs:
    """The master's measured costs (`costs.json`, written by `autograder costs`):
    seconds per cell (by `submission.cell_key`) and per student function called
    by the checks, with the exercises whose checks called it."""

    cells: dict[str, float]
    calls: dict[str, tuple[float, tuple[str, ...]]]

    @classmethod
    def load(cls, path: Path) -> "Costs":
        if not path.is_file():
            return cls({}, {})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls({str(k): float(v) for k, v in data["cells"].items()},
                       {str(k): (float(v["seconds"]), tuple(map(str, v["exercises"])))
                        for k, v in data["calls"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AssignmentError(f"{path} is malformed ({exc}); rewrite it with "
                                  "`autograder costs`") from exc


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
    costs: Costs

    @property
    def costs_path(self) -> Path:
        return self.root / "costs.json"

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
                costs=Costs.load(root / "costs.json"),
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
        budgets = assignment.budgets
        if budgets.total_timeout_s + budgets.checks_reserve_s > budgets.grade_timeout_s:
            raise AssignmentError(
                f"{config_path}: total_timeout_s ({budgets.total_timeout_s:g}) plus "
                f"checks_reserve_s ({budgets.checks_reserve_s:g}) exceeds grade_timeout_s "
                f"({budgets.grade_timeout_s:g}): the checks would have no time left")
        for suite in (assignment.hidden, assignment.visible):
            if suite is not None and not suite.is_dir():
                raise AssignmentError(f"{config_path}: suite folder {suite} not found")
        return assignment


def _exercises(entries: list[dict], master: Path, config_path: Path) -> tuple[Exercise, ...]:
    """Exercises in config order, with points read from the master's grade cells."""
    points, headings, heading = {}, {}, ""
    for cell in json.loads(master.read_text(encoding="utf-8")).get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", ""))
            titles = [line.lstrip("#").strip() for line in source.splitlines()
                      if line.startswith("#")]
            heading = titles[-1] if titles else heading
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            points[meta["grade_id"]] = float(meta["points"])
            headings[meta["grade_id"]] = heading
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
        factor = entry.get("cost_factor")
        exercises.append(Exercise(str(entry["id"]), grade_id, entry.get("name", entry["id"]),
                                  points[grade_id], visibility,
                                  float(factor) if factor is not None else None,
                                  headings[grade_id]))
    ids = [e.id for e in exercises]
    if len(ids) != len(set(ids)):
        raise AssignmentError(f"{config_path}: exercise ids are not unique")
    return tuple(exercises)
