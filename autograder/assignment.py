"""Load an assignment folder's configuration (`assignment.toml`).

Points live in one place, the master notebook's nbgrader grade cells; the
config names each exercise's grade cell, its title and its visibility.
"""

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import schema


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


def _budget(default: float, doc: str):
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Budgets:
    """Time and resource budgets: the one place their defaults live.

    A cell or call whose cost was measured on the master (`costs.json`) gets
    `cost_factor` times that cost, at least the floor; one with no measured
    cost (a cell the student added) gets the flat timeout.
    """

    cell_timeout_s: float = _budget(120.0, "Seconds for a cell with no measured cost (one "
                                    "the student added).")
    total_timeout_s: float = _budget(600.0, "Seconds for the notebook's execution, all "
                                     "cells together.")
    call_timeout_s: float = _budget(60.0, "Seconds for a call of a function with no "
                                    "measured cost.")
    late_cell_timeout_s: float = _budget(5.0, "Seconds for each cell that starts after "
                                         "total_timeout_s is spent, so that definitions "
                                         "further on still run.")
    grade_timeout_s: float = _budget(900.0, "Seconds for everything: execution, then "
                                     "checks.")
    checks_reserve_s: float = _budget(120.0, "Execution ends at the latest this many "
                                      "seconds before grade_timeout_s.")
    cost_factor: float = _budget(20.0, "A measured cell or call (costs.json) gets this "
                                 "many times its cost.")
    cell_floor_s: float = _budget(10.0, "The least a measured cell gets, in seconds.")
    call_floor_s: float = _budget(5.0, "The least a measured call gets, in seconds.")
    memory_mb: int = _budget(6144, "Memory of the whole submission (address space per "
                             "process; a memory cgroup where one can be made).")
    disk_mb: int = _budget(512, "Megabytes the submission may write to its scratch folder.")
    disk_files: int = _budget(10_000, "Files the submission may create there.")
    max_notebook_mb: float = _budget(100.0, "A submitted file past this many megabytes is "
                                     "not parsed (outputs count).")
    max_source_kb: float = _budget(4096.0, "Code and Markdown past this many kilobytes are "
                                   "not run (outputs do not count).")


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
        text = config_path.read_text(encoding="utf-8")
        try:
            config = tomllib.loads(text)
            schema.validate(config, config_path, text)
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
                release_notebook_dir=release.get("notebook_dir",
                                                 schema.RELEASE["notebook_dir"].default),
                code_stub=release.get("code_stub", schema.RELEASE["code_stub"].default),
                hidden=root / grading["hidden"] if "hidden" in grading else None,
                visible=root / grading["visible"] if "visible" in grading else None,
                depends=tuple((root / d).resolve() for d in grading.get("depends", [])),
                budgets=Budgets(**{k: v for k, v in grading.items()
                                   if k not in schema.GRADING_PATHS}),
                exercises=_exercises(config.get("exercises", []), master, config_path),
                costs=Costs.load(root / "costs.json"),
            )
        except tomllib.TOMLDecodeError as exc:
            raise AssignmentError(f"{config_path}: {exc}") from exc
        except schema.ConfigError as exc:
            raise AssignmentError(str(exc)) from exc
        except KeyError as exc:
            raise AssignmentError(f"{config_path} lacks the required key {exc}") from exc
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
            if suite is not None and not (suite / "pytest.ini").is_file():
                raise AssignmentError(f"{config_path}: suite folder {suite} has no pytest.ini "
                                      "(pytest would take its settings from elsewhere and "
                                      "collect nothing, scoring every student 0)")
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
        visibility = entry.get("visibility", schema.EXERCISE["visibility"].default)
        factor = entry.get("cost_factor")
        exercises.append(Exercise(str(entry["id"]), grade_id, entry.get("name", entry["id"]),
                                  points[grade_id], visibility,
                                  float(factor) if factor is not None else None,
                                  headings[grade_id]))
    ids = [e.id for e in exercises]
    if len(ids) != len(set(ids)):
        raise AssignmentError(f"{config_path}: exercise ids are not unique")
    return tuple(exercises)
