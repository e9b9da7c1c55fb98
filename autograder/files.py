"""Copying an assignment's release files, the one way every consumer does it.

The student release, the runner's scratch folder and the self-check all lay
out the same paths; links are copied as the files they point to (the shipped
data file lives in fixtures/), and caches are left out.
"""

import shutil
from collections.abc import Iterable
from pathlib import Path

CACHES = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")


def copy_tree(source: Path, target: Path) -> None:
    """Copy a file or folder to `target`, following links, without caches."""
    if source.is_dir():
        shutil.copytree(source, target, ignore=CACHES)
    else:
        shutil.copy(source, target)


def copy_release_files(root: Path, include: Iterable[str], target: Path) -> None:
    """Copy each path of `include`, relative to `root`, to the same place under `target`."""
    for item in include:
        copy_tree(root / item, target / item)
