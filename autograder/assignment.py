"""Load an assignment folder's configuration (`assignment.toml`)."""

import tomllib
from dataclasses import dataclass
from pathlib import Path


class AssignmentError(ValueError):
    """The assignment folder or its configuration is unusable."""


@dataclass(frozen=True)
class Assignment:
    """An assignment folder: the master notebook and how to release it."""

    root: Path
    name: str
    title: str
    master: Path
    release_include: tuple[str, ...]
    release_notebook_dir: str
    code_stub: str

    @classmethod
    def load(cls, root: str | Path) -> "Assignment":
        root = Path(root).resolve()
        config_path = root / "assignment.toml"
        if not config_path.is_file():
            raise AssignmentError(f"{root} has no assignment.toml; is it an assignment folder?")
        try:
            config = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise AssignmentError(f"{config_path}: {exc}") from exc
        try:
            release = config["release"]
            assignment = cls(
                root=root,
                name=config["name"],
                title=config.get("title", config["name"]),
                master=root / config["master"],
                release_include=tuple(release.get("include", [])),
                release_notebook_dir=release.get("notebook_dir", "notebooks"),
                code_stub=release.get("code_stub", "# YOUR CODE HERE\nraise NotImplementedError()"),
            )
        except KeyError as exc:
            raise AssignmentError(f"{config_path} lacks the required key {exc}") from exc
        if not assignment.master.is_file():
            raise AssignmentError(f"{config_path}: master notebook {assignment.master} not found")
        for item in assignment.release_include:
            if not (root / item).exists():
                raise AssignmentError(f"{config_path}: release.include names missing {item!r}")
        return assignment
