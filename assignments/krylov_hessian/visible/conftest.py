"""Makes the release's `src` package importable: this folder sits beside src/
both in the assignment (visible/) and in the student release (checks/)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
