"""The suite's xdist scheduler: a named module runs whole on one worker, so its costly
module fixture is built once (xdist's `xdist_group` mark no longer does this)."""

import os
import subprocess
import sys
import textwrap

from tests.notebooks import ROOT

CONFTEST = """
from tests.scheduling import ModulesOnOneWorker

def pytest_xdist_make_scheduler(config, log):
    return ModulesOnOneWorker(config, log, modules={"test_costly.py"})
"""

MODULE = """
import os, time, pytest

@pytest.fixture(scope="module")
def costly():
    with open("{name}.setups", "a") as log:
        log.write("built\\n")

@pytest.mark.parametrize("i", range(6))
def test_one(costly, i):
    time.sleep(0.1)
    with open("{name}.workers", "a") as log:
        log.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


def test_a_named_module_runs_on_one_worker_and_builds_its_module_fixture_once(tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    for name in ("costly", "cheap"):
        (tmp_path / f"test_{name}.py").write_text(MODULE.format(name=name))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider",
                          "-q"], check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    workers = (tmp_path / "costly.workers").read_text().split()
    assert len(workers) == 6 and len(set(workers)) == 1, workers
    assert (tmp_path / "costly.setups").read_text().split() == ["built"]
    assert len((tmp_path / "cheap.workers").read_text().split()) == 6
