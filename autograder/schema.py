"""The declared schema of `assignment.toml`: every key, its type, default and meaning.

`validate` checks a parsed config against it before anything reads a value:
an unknown key or a value of the wrong type is an error that names the file,
the line and the key, with a "did you mean" for a near miss (a misspelled
`visiblity` is refused, never ignored). `key_reference` renders the key
reference of the docs from the same declarations, so the two cannot drift
(`tests/test_schema.py` compares it with `docs/assignment-toml.md`).
"""

import difflib
import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from .outcome import VISIBILITIES

REQUIRED = object()


class Described(str):
    """A default that depends on another key, described in words."""


@dataclass(frozen=True)
class Key:
    kind: str  # "string", "number", "integer", "list of strings"
    default: object
    doc: str
    choices: tuple[str, ...] = ()


def _budget_keys() -> dict[str, Key]:
    """The [grading] budgets: declared once, with their defaults, on `Budgets`."""
    from .assignment import Budgets

    keys = {}
    for f in fields(Budgets):
        kind = "integer" if f.type in (int, "int") else "number"
        keys[f.name] = Key(kind, f.default if f.default is not MISSING else REQUIRED,
                           f.metadata.get("doc", ""))
    return keys


TOP = {
    "name": Key("string", REQUIRED, "The assignment's short name (Gradescope and the "
                "release folder use it)."),
    "title": Key("string", Described("the name"), "The title students and staff read."),
    "master": Key("string", REQUIRED, "The instructor's notebook, relative to this folder, "
                  "with nbgrader markup: solution regions, grade cells and their points."),
}
RELEASE = {
    "include": Key("list of strings", [], "Paths, relative to this folder, copied beside "
                   "the notebook's folder in the release and in every runner's scratch "
                   "folder (the package students import)."),
    "notebook_dir": Key("string", "notebooks", "The release folder that holds the "
                        "stripped notebook."),
    "code_stub": Key("string", "# YOUR CODE HERE\nraise NotImplementedError()",
                     "What replaces each solution region in the release."),
}
GRADING_PATHS = {
    "hidden": Key("string", None, "The hidden pytest suite (never copied to the runner or "
                  "the release); it needs a pytest.ini."),
    "visible": Key("string", None, "Checks on visible inputs, shipped in the release for "
                   "`autograder check`; it needs a pytest.ini."),
    "depends": Key("list of strings", [], "Files or folders outside this folder that the "
                   "hidden suite imports (this assignment's reference and fixture modules): "
                   "packed into the Gradescope zip and digested into the grader version, "
                   "so editing another assignment's never regrades this one."),
}
EXERCISE = {
    "id": Key("string", REQUIRED, "The exercise's id, as checks name it (`2.1`)."),
    "grade_id": Key("string", REQUIRED, "The nbgrader grade cell that holds its points."),
    "name": Key("string", Described("the id"), "The exercise's title."),
    "visibility": Key("string", "visible", "When students see its score (Gradescope's "
                      "four values).", VISIBILITIES),
    "cost_factor": Key("number", None, "Overrides [grading] cost_factor for its cells and "
                       "calls."),
}


def sections() -> dict[str, dict[str, Key]]:
    """Every table of the file and its keys ("" is the top level)."""
    return {"": TOP, "release": RELEASE, "grading": {**GRADING_PATHS, **_budget_keys()},
            "exercises": EXERCISE}


class ConfigError(ValueError):
    """A problem in assignment.toml, located: file, line, key."""


def validate(config: dict, path: Path, text: str) -> None:
    """Raise ConfigError for the first unknown key, wrong type, bad choice or
    missing required key of `config` (parsed from `text`, read from `path`)."""
    where = _Lines(text)
    tables = sections()
    for key, value in config.items():
        if isinstance(value, dict) and key in tables and key not in ("", "exercises"):
            _check_table(value, tables[key], key, path, where, None)
        elif key == "exercises":
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ConfigError(f"{path}:{where.line('', None, key)}: exercises must be "
                                  "[[exercises]] tables")
            for index, entry in enumerate(value):
                _check_table(entry, EXERCISE, "exercises", path, where, index)
        else:
            _check_key(key, value, TOP, "", path, where, None)
    _require(config, TOP, "", path)


def _check_table(table: dict, keys: dict[str, Key], section: str, path: Path,
                 where: "_Lines", index: int | None) -> None:
    for key, value in table.items():
        _check_key(key, value, keys, section, path, where, index)
    label = f"[[exercises]] number {index + 1}" if index is not None else f"[{section}]"
    _require(table, keys, label, path)


def _require(table: dict, keys: dict[str, Key], label: str, path: Path) -> None:
    for key, declared in keys.items():
        if declared.default is REQUIRED and key not in table:
            raise ConfigError(f"{path}: {label or 'the top level'} lacks the required key "
                              f"{key!r} ({declared.doc})")


def _check_key(key: str, value, keys: dict[str, Key], section: str, path: Path,
               where: "_Lines", index: int | None) -> None:
    at = f"{path}:{where.line(section, index, key)}"
    table = f"[[{section}]]" if section == "exercises" else (f"[{section}]" if section
                                                               else "the top level")
    if key not in keys:
        if section == "" and isinstance(value, dict):
            near = difflib.get_close_matches(key, list(sections()), n=1)
            hint = f"; did you mean [{near[0]}]?" if near else ""
            raise ConfigError(f"{at}: unknown table [{key}]{hint}")
        near = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.7)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"{at}: unknown key {key!r} in {table}{hint} "
                          f"(known: {', '.join(keys)})")
    declared = keys[key]
    if not _fits(value, declared.kind):
        article = "an" if declared.kind[0] in "aeiou" else "a"
        raise ConfigError(f"{at}: {key} must be {article} {declared.kind}, got {value!r}")
    if declared.kind in ("number", "integer") and value < 0:
        raise ConfigError(f"{at}: {key} must not be negative, got {value!r}")
    if declared.choices and value not in declared.choices:
        near = difflib.get_close_matches(str(value), declared.choices, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"{at}: {key} is {value!r}, which is not one of "
                          f"{', '.join(declared.choices)}{hint}")


def _fits(value, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class _Lines:
    """Where each key is written: TOML's parser forgets it, so the text is scanned
    (tables, arrays of tables, `key =` lines)."""

    HEADER = re.compile(r"^\s*(\[\[?)\s*([\w.-]+)\s*\]\]?")
    KEY = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([\w-]+))\s*=""")

    def __init__(self, text: str):
        self.at: dict[tuple[str, int | None, str], int] = {}
        section, index, counts = "", None, {}
        for number, line in enumerate(text.splitlines(), 1):
            header = self.HEADER.match(line)
            if header:
                section = header.group(2)
                if header.group(1) == "[[":
                    index = counts[section] = counts.get(section, -1) + 1
                else:
                    index = None
                self.at.setdefault((section, index, ""), number)
                continue
            key = self.KEY.match(line)
            if key:
                name = next(g for g in key.groups() if g is not None)
                self.at.setdefault((section, index, name), number)

    def line(self, section: str, index: int | None, key: str) -> int | str:
        return self.at.get((section, index, key), self.at.get((key, None, ""), "?"))


GENERATED = ("<!-- Generated from autograder/schema.py by `autograder config-keys`; "
             "do not edit. -->")


def key_reference() -> str:
    """The key reference of `docs/assignment-toml.md`, from the declarations."""
    titles = {"": "Top level", "release": "[release]", "grading": "[grading]",
              "exercises": "[[exercises]] (one per exercise)"}
    out = [GENERATED, "", "# assignment.toml keys", ""]
    for section, keys in sections().items():
        out += [f"## {titles[section]}", "", "| key | type | default | meaning |",
                "| --- | --- | --- | --- |"]
        for name, key in keys.items():
            default = ("required" if key.default is REQUIRED else "none" if key.default is None
                       else str(key.default) if isinstance(key.default, Described)
                       else f"`{key.default!r}`")
            doc = key.doc + (f" One of: {', '.join(key.choices)}." if key.choices else "")
            out.append(f"| `{name}` | {key.kind} | {default} | {doc} |")
        out.append("")
    return "\n".join(out)
