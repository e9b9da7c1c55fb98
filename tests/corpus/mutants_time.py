"""Submissions whose cost in time is the point: a correct style ten times slower
than the reference (it must keep full marks: budgets scale with the master's
measured cost, generously), and a power iteration that never returns (its
exercises, and those built on it, lose; the rest keep full marks, in time:
tests/test_faults_in_time.py)."""

import nbformat

from tests.corpus import build
from tests.corpus.mutants import register

# The cell that defines each function the checks call, and the function.
DEFINED_IN = {"ex1_1_code": "hvp_double_backward", "ex1_2_code": "hvp_jvp_of_grad",
              "ex1_3_code": "hvp_finite_difference", "ex2_1_code": "power_iteration",
              "ex3_1_code": "power_iteration_deflated", "ex4_1_code": "lanczos_no_reorth",
              "ex5_code": "lanczos_track_orth"}

SLOWER = '''import functools, time

_depth = [0]

def ten_times_slower(f):
    """The same answers, after nine times the work's duration again (only the
    outermost call waits, so deflation over power iteration is not 100x)."""
    @functools.wraps(f)
    def slow(*args, **kwargs):
        _depth[0] += 1
        start = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            _depth[0] -= 1
            if not _depth[0]:
                time.sleep(9 * (time.perf_counter() - start))
    return slow
'''


def ten_times_slower() -> nbformat.NotebookNode:
    """Every graded function takes ten times as long, in the notebook and in the checks."""
    nb = build.master()
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in DEFINED_IN:
            name = DEFINED_IN[grade_id]
            cells.append(nbformat.v4.new_code_cell(f"{name} = ten_times_slower({name})"))
    cells.insert(1, nbformat.v4.new_code_cell(SLOWER))
    nb.cells = cells
    return nb


NEVER_RETURNS = '''def power_iteration(matvec, dim, num_iters=200, tol=1e-10, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=g)
    v = v / v.norm()
    eig, previous, history = 0.0, float("inf"), []
    change = float("inf")
    while change > tol:  # the slip: `previous` is never updated, so change stays inf
        w = matvec(v)
        eig = (v @ w).item()
        change = abs(eig - previous)
        history.append(change)
        v = w / w.norm()
    return eig, v, history
'''


def power_iteration_never_returns() -> nbformat.NotebookNode:
    return build.variant({"ex2_1_code": NEVER_RETURNS})


register("ten_times_slower", "correct", ten_times_slower)
