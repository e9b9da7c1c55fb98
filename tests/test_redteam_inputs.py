"""Red team, round two, class 1: student input is never followed as a link or read
with root's rights.

Each test is an attack as a student (or a hostile upload) would mount it: a
submitted notebook that is a symbolic or hard link to the master in the
root-only source folder, a linked folder on the way to it, a link inside a
cohort folder or zip, a Gradescope export whose folder name climbs out of it.
Every one must end as a rejection with a reason, never as a grade of the file
the link points to.
"""

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.assignment import Assignment
from autograder.cohort.inputs import find_inputs
from autograder.cohort.pool import grade_cohort
from autograder.gradescope import grade_gradescope
from autograder.submission import SubmissionError, load, notebooks_in, pick_notebook
from tests.corpus.build import write

ENGINE = Path(__file__).resolve().parent / "engine_assignment"


def demo() -> nbformat.NotebookNode:
    return nbformat.read(ENGINE / "master" / "demo.ipynb", as_version=4)


@pytest.fixture
def image(tmp_path) -> tuple[Path, Assignment]:
    """A fake /autograder: the assignment (master included) under source/, as
    setup.sh leaves it, and an empty submission/ folder for the student's upload."""
    root = tmp_path / "autograder"
    shutil.copytree(ENGINE, root / "source" / "engine_assignment")
    (root / "submission").mkdir()
    return root, Assignment.load(root / "source" / "engine_assignment")


def _results(root: Path) -> dict:
    return json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))


def test_gradescope_a_symlink_to_the_master_is_refused(image):
    """The upload holds `demo.ipynb -> ../source/engine_assignment/master/demo.ipynb`
    (unzip and repository submissions keep links); root would follow it into the
    root-only source folder and grade the master: full marks."""
    root, assignment = image
    (root / "submission" / "demo.ipynb").symlink_to(
        Path("..") / "source" / "engine_assignment" / "master" / "demo.ipynb")
    report = grade_gradescope(root, assignment)
    results = _results(root)
    assert report.status == "rejected" and results["score"] == 0.0
    assert "demo.ipynb is a symbolic link" in results["output"]


def test_gradescope_a_linked_folder_on_the_way_is_refused(image):
    """The only notebook sits in a folder that is a link into the source folder."""
    root, assignment = image
    (root / "submission" / "work").symlink_to(Path("..") / "source" / "engine_assignment" /
                                              "master")
    os.symlink("work", root / "submission" / "mine")  # a second link: a link to a link
    report = grade_gradescope(root, assignment)
    assert report.status == "rejected" and _results(root)["score"] == 0.0
    assert "symbolic link" in report.reason


def test_gradescope_a_hard_link_to_the_master_is_refused(image):
    """A hard link is the file itself under a second name: no link to see, so the
    link count gives it away."""
    root, assignment = image
    os.link(root / "source" / "engine_assignment" / "master" / "demo.ipynb",
            root / "submission" / "demo.ipynb")
    report = grade_gradescope(root, assignment)
    assert report.status == "rejected" and _results(root)["score"] == 0.0
    assert "hard link" in report.reason


def test_load_never_follows_a_link_nor_reads_a_shared_inode(tmp_path):
    real = write(demo(), tmp_path / "real.ipynb")
    (tmp_path / "soft.ipynb").symlink_to(real)
    with pytest.raises(SubmissionError, match="soft.ipynb is a symbolic link"):
        load(tmp_path / "soft.ipynb")
    os.link(real, tmp_path / "hard.ipynb")
    with pytest.raises(SubmissionError, match="hard.ipynb has 2 hard links"):
        load(tmp_path / "hard.ipynb")
    os.mkfifo(tmp_path / "pipe.ipynb")  # opening a FIFO for reading would block forever
    with pytest.raises(SubmissionError, match="not a file"):
        load(tmp_path / "pipe.ipynb")


def test_the_picker_refuses_a_dangling_or_escaping_link_with_a_reason(tmp_path):
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "01_krylov.ipynb").symlink_to("/nonexistent/01_krylov.ipynb")
    notebook, problem = pick_notebook(notebooks_in(folder), "01_krylov.ipynb", folder)
    assert notebook is None and "01_krylov.ipynb is a symbolic link" in problem
    outside = write(demo(), tmp_path / "elsewhere.ipynb")
    notebook, problem = pick_notebook([outside], "01_krylov.ipynb", folder)
    assert notebook is None and "outside" in problem


def _secret(tmp_path: Path) -> Path:
    """Stands in for any file root can read and the student cannot."""
    secret = tmp_path / "root-only"
    secret.mkdir()
    return write(demo(), secret / "master.ipynb")


def test_cohort_folder_links_are_rows_with_reasons(tmp_path):
    secret = _secret(tmp_path)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    write(demo(), cohort / "bob.ipynb")
    (cohort / "alice.ipynb").symlink_to(secret)
    (cohort / "carol").symlink_to(secret.parent)  # a "student folder" that is a link
    (cohort / "dave").mkdir()
    (cohort / "dave" / "demo.ipynb").symlink_to(secret)
    os.link(secret, cohort / "erin.ipynb")
    (cohort / "fay").mkdir()
    (cohort / "fay" / "sub").symlink_to(secret.parent)
    inputs = {i.student: i for i in find_inputs(cohort, "engine_demo", "demo.ipynb")}
    assert inputs["bob"].notebook == cohort / "bob.ipynb" and not inputs["bob"].problem
    assert "alice.ipynb is a symbolic link" in inputs["alice"].problem
    assert "carol is a symbolic link" in inputs["carol"].problem
    assert "dave/demo.ipynb is a symbolic link" in inputs["dave"].problem
    assert "erin.ipynb has 2 hard links" in inputs["erin"].problem
    for student in ("alice", "carol", "dave", "erin"):
        assert inputs[student].notebook is None, student
    assert inputs["fay"].notebook is None  # the linked folder is never entered


def test_nbgrader_layout_links_are_rows_with_reasons(tmp_path):
    secret = _secret(tmp_path)
    submitted = tmp_path / "course" / "submitted"
    (submitted / "s1" / "engine_demo").mkdir(parents=True)
    write(demo(), submitted / "s1" / "engine_demo" / "demo.ipynb")
    (submitted / "s2").symlink_to(tmp_path / "course" / "submitted" / "s1")
    (submitted / "s3").mkdir()
    (submitted / "s3" / "engine_demo").symlink_to(secret.parent)
    inputs = {i.student: i for i in find_inputs(tmp_path / "course", "engine_demo",
                                                "demo.ipynb")}
    assert inputs["s1"].notebook is not None
    assert inputs["s2"].notebook is None and "symbolic link" in inputs["s2"].problem
    assert inputs["s3"].notebook is None and "symbolic link" in inputs["s3"].problem


def test_gradescope_export_links_and_climbing_folder_names_are_refused(tmp_path):
    secret = _secret(tmp_path)
    export = tmp_path / "export"
    (export / "submission_1").mkdir(parents=True)
    (export / "submission_1" / "demo.ipynb").symlink_to(secret)
    (export / "submission_2").mkdir()
    write(demo(), export / "submission_2" / "demo.ipynb")
    (export / "submission_metadata.yml").write_text(
        "submission_1:\n  :submitters:\n  - :sid: S1\n"
        "submission_2:\n  :submitters:\n  - :sid: S2\n"
        "../root-only:\n  :submitters:\n  - :sid: S3\n"
        f"{secret.parent}:\n  :submitters:\n  - :sid: S4\n")
    inputs = {i.student: i for i in find_inputs(export, "engine_demo", "demo.ipynb")}
    assert inputs["S2"].notebook is not None
    assert inputs["S1"].notebook is None and "symbolic link" in inputs["S1"].problem
    for student in ("S3", "S4"):  # the metadata names a folder outside the export
        assert inputs[student].notebook is None and "not a folder name" in \
            inputs[student].problem, student


def _link_member(zipped: zipfile.ZipFile, name: str, target: str) -> None:
    """A Unix symlink as zip and Info-ZIP store it: mode S_IFLNK, the target as data."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zipped.writestr(info, target)


def test_symlink_members_of_a_cohort_zip_are_rows_with_reasons(tmp_path):
    archive = tmp_path / "cohort.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("bob.ipynb", nbformat.writes(demo()))
        _link_member(zipped, "alice.ipynb", "/autograder/source/master/demo.ipynb")
        _link_member(zipped, "carol", "/autograder/source")
        zipped.writestr("dave/demo.ipynb", nbformat.writes(demo()))
        _link_member(zipped, "dave/notes.txt", "/etc/shadow")
    inputs = {i.student: i for i in find_inputs(archive, "engine_demo", "demo.ipynb",
                                                scratch=tmp_path)}
    assert inputs["bob"].notebook is not None
    for student in ("alice", "carol", "dave"):
        assert inputs[student].notebook is None, student
        assert "symbolic link" in inputs[student].problem, student
    unpacked = next(tmp_path.glob("cohort-*"))
    assert not [p for p in unpacked.rglob("*") if p.is_symlink()]


def test_a_cohort_run_records_the_link_and_reads_nothing_through_it(tmp_path):
    """End to end: the link is a rejected row of grades.csv, and nothing of the
    file it points to reaches any output."""
    secret_dir = tmp_path / "root-only"
    secret_dir.mkdir()
    nb = demo()
    nb.cells[0].source += "\n# SECRET-7f3a"
    secret = write(nb, secret_dir / "master.ipynb")
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "mallory.ipynb").symlink_to(secret)
    out = tmp_path / "out"
    entries = grade_cohort(cohort, Assignment.load(ENGINE), out, workers=1)
    assert [(e.student, e.status, e.score) for e in entries] == [("mallory", "rejected", 0.0)]
    assert "mallory.ipynb is a symbolic link" in entries[0].reason
    written = "".join(p.read_text(errors="replace") for p in out.rglob("*")
                      if p.is_file() and p.suffix != ".db")
    assert "SECRET-7f3a" not in written and "symbolic link" in written
