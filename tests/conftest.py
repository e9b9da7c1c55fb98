"""Shared test setup: one torch thread, the repo root and the student package importable,
and the system Chromium (driven by playwright) for the pages' browser tests."""

import sys
from pathlib import Path

import pytest
import torch

from tests.notebooks import ASSIGNMENT, ROOT

torch.set_num_threads(1)
for path in (str(ROOT), str(ASSIGNMENT)):
    if path not in sys.path:
        sys.path.insert(0, path)

CHROMIUM = "/usr/bin/chromium"  # Debian's package (make setup installs it)


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
