"""Bad submission files are rejected with a specific reason, never a crash."""

import json

import nbformat
import pytest

from autograder.submission import MAX_FILE_BYTES, SubmissionError, load


def _write(tmp_path, content, name="s.ipynb"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_valid_notebook_keeps_code_cells_in_order(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"),
                                         nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell(["y = ", "2"])])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="fake output")]
    path = _write(tmp_path, json.dumps(nb))
    sub = load(path)
    assert [(c.index, c.source) for c in sub.cells] == [(1, "x = 1"), (2, "y = 2")]


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n", "not valid JSON"),
    ("{not json", "not valid JSON"),
    ("[1, 2, 3]", "no list of cells"),
    ('{"cells": "x", "nbformat": 4}', "no list of cells"),
    ('{"cells": [], "nbformat": 3}', "notebook format 3"),
    ('{"cells": [], "nbformat": 4}', "no code"),
    ('{"cells": [{"cell_type": "markdown", "source": "hi"}], "nbformat": 4}', "no code"),
    ('{"cells": [{"cell_type": "code", "source": 5}], "nbformat": 4}', "malformed source"),
    ('{"cells": [7], "nbformat": 4}', "malformed"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
])
def test_bad_files_are_rejected_with_a_reason(tmp_path, content, reason):
    with pytest.raises(SubmissionError, match=reason):
        load(_write(tmp_path, content))


def test_oversized_file_is_rejected_before_parsing(tmp_path):
    path = tmp_path / "big.ipynb"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(SubmissionError, match="more than the 100 MB the grader reads"):
        load(path)


def test_stored_outputs_are_not_the_submission(tmp_path):
    """A notebook large only because of a stored 30 MB image loads; what it runs is
    its code, and the outputs never count towards the source cap."""
    image = "A" * (30 * 2**20)
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# plots"},
        {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "x = 1",
         "outputs": [{"output_type": "display_data", "metadata": {},
                      "data": {"image/png": image}}]}]}
    path = tmp_path / "big_outputs.ipynb"
    path.write_text(json.dumps(nb))
    assert path.stat().st_size > 30 * 2**20
    assert [c.source for c in load(path).cells] == ["x = 1"]


def test_the_source_cap_counts_code_and_markdown_only(tmp_path):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "m" * 600},
             {"cell_type": "code", "metadata": {}, "outputs": [], "source": "x = 1\n" * 100}]
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                "cells": cells}))
    assert load(path, max_source_chars=1200).cells
    with pytest.raises(SubmissionError, match="more than 1,000 characters of code and text"):
        load(path, max_source_chars=1000)
    with pytest.raises(SubmissionError, match="more than the 0 MB"):
        load(path, max_bytes=100)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SubmissionError, match="not a file"):
        load(tmp_path / "nope.ipynb")
    with pytest.raises(SubmissionError, match="not a file"):
        load(tmp_path)
