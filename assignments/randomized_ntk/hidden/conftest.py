"""Makes the suite's helper module importable in importlib import mode, and the
project's `reference` and `fixtures` packages (grading.depends) wherever the
engine itself is installed."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE.parents[2], HERE):
    sys.path.insert(0, str(path))
# The hidden suite runs only inside the grader, which supplies the
# `student` and `notebook` fixtures and the `check` marker.
