"""The mutant corpus: submissions with known verdicts.

Each `Mutant` is a notebook built from the master (see `build`) and the
set of exercises it must lose points on (`loses`). Every exercise outside
`loses` and `may_lose` must keep full marks: a bug in one exercise must not
cost the independent ones. Correct-but-different solutions have empty
`loses`. The modules `mutants_*.py` register their mutants in `MUTANTS`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import nbformat

ALL_EXERCISES = ("0.1", "0.2", "0.3", "1.1", "1.2", "1.3", "1.4", "2.1", "2.2", "2.3", "3.1",
                 "3.2", "4.1", "4.2", "5.1", "5.2", "5.3", "6.0", "6.1")


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # "correct", "bug", "cheat" or "unfilled"
    build: Callable[[], nbformat.NotebookNode]
    loses: frozenset[str] = field(default_factory=frozenset)
    may_lose: frozenset[str] = field(default_factory=frozenset)  # dependents, either way
    max_total: float | None = None  # e.g. 0 for the unfilled release


MUTANTS: list[Mutant] = []


def register(name: str, kind: str, build: Callable[[], nbformat.NotebookNode],
             loses=(), may_lose=(), max_total: float | None = None) -> None:
    unknown = (set(loses) | set(may_lose)) - set(ALL_EXERCISES)
    if unknown:
        raise ValueError(f"mutant {name}: unknown exercises {sorted(unknown)}")
    MUTANTS.append(Mutant(name, kind, build, frozenset(loses), frozenset(may_lose), max_total))
