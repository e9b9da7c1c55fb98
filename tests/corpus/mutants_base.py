"""The reference solution itself, and the unfilled release."""

from tests.corpus import build
from tests.corpus.mutants import ALL_EXERCISES, register

register("master_solution", "correct", build.master)
register("unfilled_release", "unfilled", build.unfilled, loses=ALL_EXERCISES, max_total=0)
