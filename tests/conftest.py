"""Shared test setup: one torch thread, the repo root and the student package importable,
and the system Chromium (driven by playwright) for the pages' browser tests."""

import sys
from pathlib import Path

import pytest
import torch

from tests.corpus.mutants import zygote_runners
from tests.notebooks import ASSIGNMENT, ROOT

torch.set_num_threads(1)
for path in (str(ROOT), str(ASSIGNMENT)):
    if path not in sys.path:
        sys.path.insert(0, path)

CHROMIUM = "/usr/bin/chromium"  # Debian's package (make setup installs it)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` sends each of `ONE_WORKER_MODULES` whole to one worker."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.scheduling import ONE_WORKER_MODULES, ModulesOnOneWorker
    return ModulesOnOneWorker(config, log, modules=ONE_WORKER_MODULES)


@pytest.fixture(scope="module")
def runners(request):
    """Zygote runners for the requesting module's `ASSIGNMENT`, one supply per module."""
    with zygote_runners(request.module.ASSIGNMENT) as supply:
        yield supply


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no system Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()
