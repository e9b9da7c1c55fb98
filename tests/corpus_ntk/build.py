"""Notebook 2's notebooks (randomized_ntk): the master, the release, variants of them."""

from pathlib import Path

from tests.corpus.build import Builder

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = ROOT / "assignments" / "randomized_ntk"
MASTER = ASSIGNMENT / "master" / "02_randomized_ntk.ipynb"

NTK = Builder(ASSIGNMENT, MASTER)


def swapped(grade_id: str, *pairs: tuple[str, str]) -> str:
    """The master's cell `grade_id` with each (old, new) text replaced; old must occur."""
    source = NTK.cell(grade_id)
    for old, new in pairs:
        assert old in source, f"{old!r} not in {grade_id}"
        source = source.replace(old, new)
    return source
