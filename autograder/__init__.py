"""An autograder for Jupyter notebook assignments that keeps scores away from student code."""

from pathlib import Path

ENGINE = Path(__file__).resolve().parent  # this package's folder, wherever it is installed
