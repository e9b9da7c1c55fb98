"""Shared test setup: one torch thread, the repo root and the student package importable."""

import sys

import torch

from tests.notebooks import ASSIGNMENT, ROOT

torch.set_num_threads(1)
for path in (str(ROOT), str(ASSIGNMENT)):
    if path not in sys.path:
        sys.path.insert(0, path)
