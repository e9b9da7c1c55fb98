"""The Gradescope autograder: the zip's layout, and full runs in a fake /autograder.

`setup.sh` runs for real (into a fresh virtual environment, with torch from
the local wheel instead of the CPU index), then `run_autograder` grades
submissions of the engine demo assignment as Gradescope would run it.
"""

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.assignment import Assignment, AssignmentError
from autograder.gradescope import build_zip
from autograder.submission import notebooks_in, pick_notebook
from tests.corpus.build import write
from tests.notebooks import ASSIGNMENT, ROOT
from tests.test_report import validate_results

ENGINE_DEMO = ROOT / "tests" / "engine_assignment"
DEMO = ENGINE_DEMO / "master" / "demo.ipynb"


@pytest.fixture(scope="module")
def krylov_zip(tmp_path_factory):
    path = build_zip(Assignment.load(ASSIGNMENT), tmp_path_factory.mktemp("zip") / "a.zip")
    return zipfile.ZipFile(path)


def test_the_zip_holds_the_scripts_engine_assignment_and_its_dependencies(krylov_zip):
    names = set(krylov_zip.namelist())
    for required in ("setup.sh", "run_autograder", "pyproject.toml", "autograder/sandbox/runner.py",
                     "assignments/krylov_hessian/assignment.toml",
                     "assignments/krylov_hessian/hidden/test_s2_power.py",
                     "assignments/krylov_hessian/src/mnist_7x7.npz",
                     "reference/krylov_hessian.py", "fixtures/spectra.py"):
        assert required in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("tests/", "build/", ".venv"))]
    for script in ("setup.sh", "run_autograder"):
        mode = krylov_zip.getinfo(script).external_attr >> 16
        assert mode & stat.S_IXUSR, script
    # the data file is stored as its bytes, not as a symlink into fixtures/
    assert krylov_zip.read("assignments/krylov_hessian/src/mnist_7x7.npz")[:2] == b"PK"


def test_setup_installs_a_cpu_torch_with_pip_only(krylov_zip):
    setup = krylov_zip.read("setup.sh").decode()
    assert "download.pytorch.org/whl/cpu" in setup and "torch==2.13.0" in setup
    assert "conda" not in setup and "chromium" not in setup and "playwright" not in setup
    assert "chmod -R go-rwx" in setup


def test_the_zip_is_reproducible(tmp_path):
    demo = Assignment.load(ENGINE_DEMO)
    first = build_zip(demo, tmp_path / "one.zip").read_bytes()
    assert build_zip(demo, tmp_path / "two.zip").read_bytes() == first


def test_a_budget_that_cannot_fit_gradescopes_limit_is_refused(tmp_path):
    with pytest.raises(AssignmentError, match="do not fit"):
        build_zip(Assignment.load(ASSIGNMENT), tmp_path / "a.zip", timeout_s=300)


@pytest.mark.parametrize(("files", "picked"), [
    (["01_krylov.ipynb"], "01_krylov.ipynb"),
    (["mine.ipynb"], "mine.ipynb"),
    (["notes.ipynb", "sub/01_krylov.ipynb", ".ipynb_checkpoints/01_krylov-checkpoint.ipynb"],
     "sub/01_krylov.ipynb"),
    ([], None),
    (["a.ipynb", "b.ipynb"], None),
    (["report.pdf"], None),
])
def test_the_submitted_notebook_is_found_or_the_student_told_why(tmp_path, files, picked):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    notebook, problem = pick_notebook(notebooks_in(tmp_path), "01_krylov.ipynb", tmp_path)
    if picked is None:
        assert notebook is None and "01_krylov.ipynb" in problem
    else:
        assert notebook == tmp_path / picked and not problem


@pytest.fixture(scope="module")
def image():
    """A fake /autograder after Gradescope ran setup.sh: the zip unpacked into
    source/, its venv installed. Under /tmp with 755 parents, as /opt is, so
    that the runner's uid can reach the interpreter."""
    base = Path(tempfile.mkdtemp(prefix="gradescope-", dir="/tmp"))
    base.chmod(0o755)
    root, venv = base / "autograder", base / "venv"
    source = root / "source"
    source.mkdir(parents=True)
    zipped = build_zip(Assignment.load(ENGINE_DEMO), base / "autograder.zip")
    subprocess.run(["unzip", "-q", str(zipped), "-d", str(source)], check=True)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_VENV": str(venv),
           "TORCH_INDEX_URL": "", "AUTOGRADER_SKIP_APT": "1"}
    setup = subprocess.run(["bash", str(source / "setup.sh")], env=env, check=False,
                           capture_output=True, text=True, timeout=1200)
    assert setup.returncode == 0, setup.stderr[-3000:]
    shutil.copy(source / "run_autograder", root / "run_autograder")
    yield root, env
    shutil.rmtree(base, ignore_errors=True)


def submit(image, notebooks: dict[str, nbformat.NotebookNode]) -> dict:
    """Put the files in submission/, run run_autograder, return results.json."""
    root, env = image
    shutil.rmtree(root / "submission", ignore_errors=True)
    (root / "submission").mkdir()
    for name, nb in notebooks.items():
        write(nb, root / "submission" / name)
    run = subprocess.run([str(root / "run_autograder")], env=env, check=False,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    validate_results(results)
    return results


def demo() -> nbformat.NotebookNode:
    return nbformat.read(DEMO, as_version=4)


def test_setup_leaves_the_source_to_root_and_the_venv_to_everyone(image):
    root, env = image
    assert stat.S_IMODE((root / "source").stat().st_mode) & 0o077 == 0
    hidden = root / "source" / "tests" / "engine_assignment" / "hidden" / "test_demo.py"
    assert stat.S_IMODE(hidden.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE((Path(env["AUTOGRADER_VENV"]) / "bin").stat().st_mode) & 0o005 == 0o005


def test_a_correct_submission_gets_full_marks_from_an_unprivileged_runner(image):
    results = submit(image, {"demo.ipynb": demo()})
    assert results["score"] == 6.0
    assert [t["score"] for t in results["tests"]] == [3.0, 1.0, 2.0]
    report = json.loads((image[0] / "results" / "report.json").read_text())
    assert any(layer.startswith("unprivileged uid") for layer in report["sandbox_layers"])
    # The demo plots, but Gradescope shows results.json alone: nothing was drawn.
    assert not (image[0] / "results" / "figures").exists()


def test_a_hostile_submission_gains_nothing_and_leaks_nothing(image):
    root, _ = image
    hidden = root / "source" / "tests" / "engine_assignment" / "hidden" / "test_demo.py"
    secret = hidden.read_text().splitlines()[0]
    nb = demo()
    nb.cells.insert(2, nbformat.v4.new_code_cell(
        "import os, signal, glob\n"
        f"for path in [{str(hidden)!r}, *glob.glob({str(root / 'source')!r} + '/**', "
        "recursive=True)]:\n"
        "    try:\n        print(open(path).read())\n    except OSError as e:\n"
        "        print('refused', e.errno)\n"
        f"for target in [{str(root / 'results' / 'results.json')!r}, "
        f"{str(root / 'source' / 'run_autograder')!r}]:\n"
        "    try:\n        open(target, 'w').write('{\"score\": 1000}')\n"
        "    except OSError as e:\n        print('refused', e.errno)\n"
        "for pid in (os.getppid(), 1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as e:\n        print('refused', e.errno)\n"
        "if os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(3)\n"
        f"    open({str(root / 'results' / 'results.json')!r}, 'w').write('{{}}')\n"
        "    os._exit(0)"))
    results = submit(image, {"demo.ipynb": nb})
    assert results["score"] == 6.0
    outputs = "".join(p.read_text(errors="ignore") for p in (root / "results").rglob("*.*"))
    assert secret not in outputs
    time.sleep(4)  # the daemon, had it survived, would have struck by now
    assert json.loads((root / "results" / "results.json").read_text())["score"] == 6.0


def test_an_upload_without_a_notebook_gets_results_saying_so(image):
    results = submit(image, {})
    assert results["score"] == 0.0 and "no notebook (.ipynb)" in results["output"]


def test_results_are_written_even_when_the_grader_dies(image, tmp_path):
    """The grader killed outright (here: a stand-in that SIGKILLs itself)."""
    root, env = image
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(Path(env["AUTOGRADER_VENV"]) / "bin" / "python")
    (venv / "bin" / "autograder").write_text("#!/bin/sh\nkill -9 $$\n")
    (venv / "bin" / "autograder").chmod(0o755)
    results = submit((root, {**env, "AUTOGRADER_VENV": str(venv)}), {"demo.ipynb": demo()})
    assert results["score"] == 0.0 and "could not finish grading" in results["output"]


def test_a_function_that_never_returns_costs_only_its_exercise_on_gradescope(image):
    """Through run_autograder: the hang is cut, the other exercises keep full marks,
    and the results are those of a finished grade."""
    nb = demo()
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "exA_code":
            cell.source = "def square(x):\n    while True:\n        pass"
    started = time.monotonic()
    results = submit(image, {"demo.ipynb": nb})
    assert time.monotonic() - started < 120
    scores = {t["number"]: t["score"] for t in results["tests"]}
    assert scores == {"A": 0.0, "B": 1.0, "C": 2.0}
    assert "cut short" not in results["output"]
    assert "did not finish within" in next(t["output"] for t in results["tests"]
                                           if t["number"] == "A")


def test_a_kill_from_outside_leaves_the_scores_earned_so_far(image, tmp_path):
    """Gradescope's limit (here: a SIGKILL once some checks have run) leaves the
    partial results.json the grader wrote as it went, not the "not scored" fallback."""
    root, env = image
    nb = demo()
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "exC_code":
            cell.source = "def apply_twice(op, v):\n    import time\n    time.sleep(2)\n" \
                          "    return op(op(v))"
    shutil.rmtree(root / "submission", ignore_errors=True)
    (root / "submission").mkdir()
    write(nb, root / "submission" / "demo.ipynb")
    results = root / "results" / "results.json"
    results.unlink(missing_ok=True)
    process = subprocess.Popen([str(root / "run_autograder")], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if results.is_file() and "3 of 5 checks" in results.read_text():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the grader never reported 3 checks")
    finally:
        os.killpg(process.pid, 9)
        process.wait()
    data = json.loads(results.read_text())
    validate_results(data)
    assert "Grading was cut short" in data["output"]
    assert {t["number"]: t["score"] for t in data["tests"]}["A"] == 3.0
