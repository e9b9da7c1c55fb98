"""The benchmark cohorts: mixed submissions from the mutant corpus, unfilled releases."""

import importlib
import pkgutil
from pathlib import Path

import tests.corpus
from tests.corpus import build
from tests.corpus.mutants import MUTANTS


def mixed(folder: Path, size: int) -> list[Path]:
    """`size` submissions spread over the corpus: correct, buggy, cheating, unfilled."""
    for module in pkgutil.iter_modules(tests.corpus.__path__):
        importlib.import_module(f"tests.corpus.{module.name}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(size):
        mutant = MUTANTS[i * len(MUTANTS) // size]
        paths.append(build.write(mutant.build(), folder / f"{i:02d}_{mutant.name}.ipynb"))
    return paths


def unfilled(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        build.write(build.unfilled(), folder / f"u{i}.ipynb")
    return folder
