"""Grading a whole cohort: inputs, the pool of warm workers, the result store,
the cohort report and the nbgrader gradebook export.

`inputs` turns a folder or zip (flat, nbgrader, Gradescope export) into one
`Input` per student or a reason; `pool` grades them in parallel workers and
rebuilds the outputs; `store` keeps each result exactly once across reruns;
`report` writes report.html; `gradebook` exports to nbgrader.
"""

from .pool import grade_cohort

__all__ = ["grade_cohort"]
