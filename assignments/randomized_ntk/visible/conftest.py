"""Makes the release's `src` package importable (this folder sits beside src/
both in the assignment, visible/, and in the student release, checks/), and
this folder's helper module."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE.parent, HERE):
    sys.path.insert(0, str(path))
