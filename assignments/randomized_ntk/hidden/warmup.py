"""Paid while the notebook executes: the notebook's Hessian and Gauss-Newton matrix
(~1.5 s, cached for the checks of 1.2, 3.3, 4.3 and 5.2), and torch.func's first use."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE.parents[2], HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def warm_up() -> None:
    import ntk_checks

    ntk_checks.notebook_problem()
    ntk_checks.notebook_gauss_newton()
