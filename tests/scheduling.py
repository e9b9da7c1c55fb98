"""Run chosen test modules whole on one xdist worker, so that their costly module
fixtures (an executed master notebook, a built zip, an installed venv) are built once.

xdist's own `xdist_group` mark would do this, but with pytest 9.2 it silently stopped
grouping: it renames node ids through a field pytest no longer reads
(pytest-dev/pytest-xdist#1386). A scheduler sees node ids only, so the modules are named.
"""

from collections.abc import Iterable

import pytest
from xdist.scheduler import LoadScopeScheduling

# Each builds a module fixture that costs 20-60 s: the answer key's reference run,
# the master executed, a Gradescope image with its venv, the visible suite's grade.
ONE_WORKER_MODULES = frozenset({
    "tests/test_answer_key.py",
    "tests/test_gradescope.py",
    "tests/test_master_notebook.py",
    "tests/test_visible_suite.py",
})


class ModulesOnOneWorker(LoadScopeScheduling):
    """Tests go one by one to whichever worker is free, as with `--dist load`, except
    that each module in `modules` is one unit of work, sent whole to one worker."""

    def __init__(self, config: pytest.Config, log=None, *, modules: Iterable[str]):
        super().__init__(config, log)
        self.modules = frozenset(modules)

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if module in self.modules else nodeid
