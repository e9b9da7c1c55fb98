"""An autograder for Jupyter notebook assignments that keeps scores away from student code."""
