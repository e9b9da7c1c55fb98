"""Puts the project folder on sys.path, so that `reference` imports here (and in the
Gradescope image, which mirrors the project's layout)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
