"""Tampering from inside a submission, the way a hostile student would try it.

Where `test_sandbox_attacks` tries to break out of the sandbox, these
attacks try to raise their own score: values that lie about themselves,
patched comparison functions, hooks that rewrite the notebook as it runs,
files left for Python or pytest to pick up, forged protocol messages, and
reads of the grader's memory. Each attack runs for real and is bounded:
files only under tmp_path (or inert ones elsewhere, cleaned up and failed
on), no network, and a watchdog where the grader might hang.

The honest demo notebook scores FULL. An attacked exercise must score no
more than an honest submission with the same data would (usually 0), and
the other exercises of the same notebook keep their full marks.
"""

import json
import math
import os
import re
import resource
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import numpy
import pytest
import torch

from autograder.assignment import Assignment
from autograder.grader import grade
from autograder.plugin import INTERNAL_ERROR
from autograder.sandbox.process import RunnerProcess
from tests.corpus.build import variant, write
from tests.test_grading_faults import demo, square
from tests.test_sandbox_attacks import ENGINE, FULL, ROOT, active, attacked

HIDDEN = ENGINE / "hidden" / "test_demo.py"
# A line of the hidden suite that no honest feedback shows.
SECRET = next(line.strip() for line in HIDDEN.read_text().splitlines() if "A @ v" in line)
WRONG_SQUARE = square("return x + 1")  # an honest but wrong answer: scores 0 for A
TOKEN = "autograder-tampering-attack-7f3c"  # marks every file an attack writes


@pytest.fixture(scope="module")
def assignment():
    return Assignment.load(ENGINE)


def graded(nb, assignment, tmp_path):
    """Grade, and check that the outputs were written whatever the notebook did."""
    report = grade(write(nb, tmp_path / "attack.ipynb"), assignment, tmp_path / "out")
    for name in ("results.json", "report.json", "feedback.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    json.loads((tmp_path / "out" / "report.json").read_text())
    return report


def scores(report) -> dict:
    return {e.id: e.score for e in report.exercises}


def outputs(tmp_path) -> str:
    return "".join(p.read_text(errors="ignore") for p in (tmp_path / "out").rglob("*")
                   if p.is_file() and p.suffix != ".png")


def cell(report, index: int):
    return next(c for c in report.cells if c.index == index)


def after_honest_cells(code: str, base=None) -> nbformat.NotebookNode:
    nb = base if base is not None else demo()
    nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def indented(body: str, prefix: str = "    ") -> str:
    return "".join(prefix + line + "\n" for line in body.splitlines())


def require_landlock(report) -> None:
    if "landlock filesystem" not in active(report):
        pytest.skip("Landlock is not available on this kernel")


# --- 1. return values that lie -------------------------------------------

LIAR = """import torch
class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, '__name__', '') in ('equal', 'allclose', 'isclose', '__eq__', 'eq',
                                             '__bool__', 'all', 'any', 'item'):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})
"""

LYING_OBJECTS = """import numpy, torch
class Obj:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __hash__(self): return 0
    def __float__(self): return 49.0
    def __int__(self): return 49
    def __index__(self): return 49
    def __len__(self): return 2
    def __bool__(self): return True
    def __iter__(self): return iter([1.0, 9.0])
    def __getitem__(self, i): return [1.0, 9.0][i]
    def __array__(self, dtype=None, copy=None): return numpy.array([1.0, 9.0])
class LyingInt(int):
    def __eq__(self, other): return True
    def __hash__(self): return 0
    def __int__(self): return 0
    def __index__(self): return 0
"""


def lying_square(head: str, tensor_case: str, number_case: str) -> dict:
    """square(x) that answers `tensor_case` for tensors and `number_case` for numbers,
    neither of them the right data."""
    return {"exA_code": f"{head}\ndef square(x):\n    import torch\n"
                        f"    if isinstance(x, torch.Tensor):\n        return {tensor_case}\n"
                        f"    return {number_case}\n"}


@pytest.mark.parametrize("replacement", [
    pytest.param(lying_square(LIAR, "torch.zeros(2).as_subclass(Liar)",
                              "{'out': [torch.zeros(()).as_subclass(Liar)]}"),
                 id="torch_function-subclass-alone-and-in-a-container"),
    pytest.param(lying_square(LYING_OBJECTS, "Obj()", "LyingInt(0)"),
                 id="eq-float-len-array-index-all-lie"),
    pytest.param(lying_square("", "torch.full_like(x, float('nan'))", "float('inf')"),
                 id="nan-and-inf"),
    pytest.param(lying_square("", "(x * x + 0.5).half()", "torch.tensor(x * x + 1j)"),
                 id="float16-and-complex"),
    pytest.param(lying_square("", "(x * x).long() + 1", "torch.tensor(True)"),
                 id="int-and-bool"),
    pytest.param(lying_square("", "(x * x).reshape(2, 1)", "torch.full((3,), 49.0)"),
                 id="wrong-shape"),
    pytest.param(lying_square("", "(x * x).to('meta')", "torch.tensor([49.0]).to_sparse()"),
                 id="meta-and-sparse"),
])
def test_a_lying_return_value_earns_nothing_and_costs_only_its_exercise(assignment, tmp_path,
                                                                        replacement):
    report = graded(variant(replacement, demo()), assignment, tmp_path)
    assert scores(report) == {**FULL, "A": 0.0}


@pytest.mark.parametrize("tensor_case", [
    pytest.param("torch.zeros(1, dtype=torch.float64).expand(10 ** 9)", id="1e9-elements-expand"),
    pytest.param("torch.zeros(1, 1).expand(10 ** 6, 10 ** 6)", id="1e12-elements-expand"),
    pytest.param("torch.zeros(75 * 2 ** 20)", id="300-MB-for-real"),
])
def test_an_enormous_return_value_keeps_the_grader_within_budget(assignment, tmp_path,
                                                                 tensor_case):
    # The runner's address-space limit bounds what the notebook can build; the
    # grader itself has no such limit, so watch its peak memory.
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.monotonic()
    report = graded(variant(lying_square("", tensor_case, tensor_case), demo()), assignment,
                    tmp_path)
    assert time.monotonic() - start < 40
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak_after - peak_before < 2 * 2**30
    assert scores(report) == {**FULL, "A": 0.0}


@pytest.mark.parametrize("body", [
    pytest.param("return op(op(v)) + 1j", id="complex-with-a-garbage-imaginary-part"),
    pytest.param("return (op(op(v)) * 1.0004).half()", id="float16-rounding-hides-an-error"),
])
def test_a_wrong_dtype_does_not_turn_a_wrong_answer_into_a_right_one(assignment, tmp_path,
                                                                     body):
    # Honestly this answer is wrong: only "calls the operator exactly twice" passes.
    report = graded(variant({"exC_code": "def apply_twice(op, v):\n" + indented(body)}, demo()),
                    assignment, tmp_path)
    assert scores(report) == {**FULL, "C": 1.0}


# --- 2. monkeypatching the checking functions in the notebook ------------

PATCHES = {
    "torch": """import torch, torch.testing
torch.allclose = torch.equal = lambda *a, **k: True
torch.isclose = lambda *a, **k: torch.tensor(True)
torch.testing.assert_close = lambda *a, **k: None
torch.Tensor.__eq__ = lambda self, other: torch.tensor(True)
print('patched', torch.equal(torch.zeros(1), torch.ones(1)))""",
    "numpy-and-math": """import math, numpy, numpy.testing
numpy.allclose = numpy.array_equal = lambda *a, **k: True
numpy.isclose = lambda *a, **k: numpy.array(True)
numpy.testing.assert_allclose = numpy.testing.assert_array_equal = lambda *a, **k: None
math.isclose = lambda *a, **k: True
print('patched', math.isclose(0, 1) and numpy.allclose(0, 1))""",
    "builtins": """import builtins, torch
_isinstance = builtins.isinstance
class LyingFloat(float):
    def __eq__(self, other): return True
builtins.abs = lambda x: 0
builtins.float = LyingFloat
builtins.isinstance = lambda o, t: True if t is torch.Tensor else _isinstance(o, t)
builtins.AssertionError = type('AssertionError', (Warning,), {})
builtins.all = builtins.any = lambda iterable: True
print('patched', isinstance(1, torch.Tensor) and abs(-5) == 0)""",
    "pytest-and-sys.modules": """import sys, types, pytest
class Anything:
    def __eq__(self, other): return True
pytest.approx = lambda *a, **k: Anything()
pytest.fail = pytest.skip = pytest.xfail = lambda *a, **k: None
fake = types.ModuleType('fake')
fake.StudentProxy = fake.NotebookSession = fake.GradingPlugin = object
fake.INTERNAL_ERROR = ''
fake.run_suite = lambda *a, **k: None
for name in ('autograder.sandbox.session', 'autograder.plugin', 'autograder.grader',
             '_pytest.outcomes', 'test_demo', 'hidden.test_demo', 'torch.testing', 'numpy.testing'):
    sys.modules[name] = fake
print('patched', pytest.approx(1) == 2 and sys.modules['autograder.sandbox.session'] is fake)""",
}


@pytest.mark.parametrize("patch", list(PATCHES), ids=list(PATCHES))
def test_monkeypatching_in_the_notebook_gains_nothing(assignment, tmp_path, patch):
    originals = (torch.equal, torch.allclose, torch.Tensor.__eq__, numpy.allclose,
                 math.isclose, pytest.approx, abs, float, isinstance, AssertionError)
    session_module = sys.modules["autograder.sandbox.session"]
    report = graded(variant(WRONG_SQUARE, attacked(PATCHES[patch])), assignment, tmp_path)
    assert "patched True" in cell(report, 2).stdout  # the patches were live in the notebook
    assert scores(report) == {**FULL, "A": 0.0}
    # The checks ran in this process, which the patches never reached.
    assert originals == (torch.equal, torch.allclose, torch.Tensor.__eq__, numpy.allclose,
                         math.isclose, pytest.approx, abs, float, isinstance, AssertionError)
    assert sys.modules["autograder.sandbox.session"] is session_module
    assert not torch.equal(torch.zeros(1), torch.ones(1))


# --- 3. hooks that rewrite or skip later cells ---------------------------

HOOKS = {
    "input-transformer-skips-the-square-cell": """ip = get_ipython()
def skip(lines):
    return ['pass\\n'] if any(l.startswith('def square') for l in lines) else lines
ip.input_transformers_post.append(skip)
print('hooked')""",
    "input-transformer-swaps-in-a-cheat": """ip = get_ipython()
def cheat(lines):
    return [l.replace('return x * x', 'return x + 1') for l in lines]
ip.input_transformer_manager.cleanup_transforms.append(cheat)
print('hooked')""",
    "settrace-rebinds-square-to-a-cheat": """import sys
def cheat(x):
    return x + 1
def tracer(frame, event, arg):
    g = frame.f_globals
    if g.get('__name__') == '__main__' and callable(g.get('square')) and g['square'] is not cheat:
        g['square'] = cheat
    return None
sys.settrace(tracer)
print('hooked')""",
    "setprofile-rewrites-the-runners-replies": """import sys
def rewrite(frame, event, arg):
    if event != 'call' or frame.f_code.co_name != 'send':
        return
    message = frame.f_locals.get('message')
    caller = frame.f_back
    while caller is not None and caller.f_code.co_name != 'serve_check':
        caller = caller.f_back
    if isinstance(message, dict) and caller is not None \\
            and caller.f_locals.get('name') == 'square':
        message.clear()
        message.update({'op': 'value', 'value': True, 'passed': True, 'score': 3})
sys.setprofile(rewrite)
print('hooked')""",
}


@pytest.mark.parametrize("hook", list(HOOKS), ids=list(HOOKS))
def test_hooks_on_later_cells_gain_nothing_and_leave_honest_exercises_graded(assignment,
                                                                              tmp_path, hook):
    # The honest square is in the notebook: A drops to 0 only because the hook
    # really ran, and whatever it made the runner say earned nothing.
    report = graded(attacked(HOOKS[hook]), assignment, tmp_path)
    assert "hooked" in cell(report, 2).stdout
    assert scores(report) == {**FULL, "A": 0.0}


# --- 4. files left for Python or pytest to pick up -----------------------


def _payload(kind: str, marker_dir: Path) -> str:
    """Code that, wherever it runs, tries to leave a marker under tmp_path (out of the
    sandbox's reach) and, in the runner's working folder, to copy the hidden suite
    there for a later cell to print."""
    return (f"# {TOKEN}\nimport os as _os\n"
            f"try:\n    open({str(marker_dir / kind)!r}, 'w').write('ran')\nexcept OSError:\n"
            "    pass\n"
            "if _os.path.basename(_os.getcwd()) == 'notebooks':\n    try:\n"
            f"        open('leak-{kind}.txt', 'w').write(open({str(HIDDEN)!r}).read())\n"
            "    except OSError:\n        pass\n")


def _watched_folders() -> set[str]:
    """Where a planted file would be picked up by Python or pytest, outside any scratch."""
    folders = {str(p) for p in (Path(tempfile.gettempdir()), Path("/"), ROOT, ROOT / "tests",
                                ENGINE, ENGINE / "hidden", Path(sys.prefix))}
    return folders | {p for p in sys.path if p and os.path.isdir(p)}


def _remove_planted(folders: set[str], since: float) -> list[str]:
    """Files an attack wrote (they carry TOKEN) into these folders: deleted, and listed."""
    planted = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime < since:
                    continue
                with open(entry.path, errors="ignore") as f:
                    if TOKEN not in f.read(65536):
                        continue
                os.unlink(entry.path)
                planted.append(entry.path)
            except OSError:
                continue
    return planted


def test_config_files_dropped_in_scratch_are_not_picked_up_even_by_a_fresh_runner(
        assignment, tmp_path):
    """Startup and config files in every scratch folder Python, IPython, matplotlib
    or pytest might look in; then the runner is killed, so that the grader starts
    a fresh one in the same scratch folder."""
    markers = tmp_path / "markers"
    markers.mkdir()
    site = f"python{sys.version_info.major}.{sys.version_info.minor}"
    files = {}
    for folder in (".", ".."):
        for name in ("sitecustomize.py", "usercustomize.py", "conftest.py"):
            files[f"{folder}/{name}"] = _payload(name, markers)
        files[f"{folder}/zz_attack.pth"] = f"import os; exec({_payload('pth', markers)!r})\n"
        files[f"{folder}/pytest.ini"] = f"# {TOKEN}\n[pytest]\naddopts = -p conftest\n"
        files[f"{folder}/pyproject.toml"] = (f"# {TOKEN}\n[tool.pytest.ini_options]\n"
                                             "addopts = '-p conftest'\n")
        files[f"{folder}/matplotlibrc"] = f"# {TOKEN}\nbackend: module://evil_backend\n"
    files["./evil_backend.py"] = _payload("matplotlib-backend", markers)
    home = "../.local/lib/" + site + "/site-packages"
    files[home + "/usercustomize.py"] = _payload("user-site", markers)
    files[home + "/zz_attack.pth"] = f"# {TOKEN}\nimport usercustomize\n"
    files["../.ipython/profile_default/startup/00-attack.py"] = _payload("ipython", markers)
    files["../.ipython/profile_default/ipython_config.py"] = _payload("ipython-config", markers)
    files["../.matplotlib/matplotlibrc"] = f"# {TOKEN}\nbackend: module://evil_backend\n"
    # conftest.py also tries to pass every check, should pytest ever load it.
    hook = ("import pytest\n@pytest.hookimpl(hookwrapper=True)\n"
            "def pytest_runtest_makereport(item, call):\n    outcome = yield\n"
            "    outcome.get_result().outcome = 'passed'\n")
    files["./conftest.py"] += hook
    files["../conftest.py"] += hook
    code = ("import os\nfor path, text in " + repr(files) + ".items():\n"
            "    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)\n"
            "    open(path, 'w').write(text)\nprint('dropped', len(os.listdir('.')))\n"
            "os._exit(1)")
    nb = after_honest_cells("import glob\nfor p in sorted(glob.glob('leak-*.txt')):\n"
                            "    print(p, open(p).read())", variant(WRONG_SQUARE, attacked(code)))
    start = time.time()
    report = graded(nb, assignment, tmp_path)
    assert not _remove_planted(_watched_folders(), start)
    assert cell(report, 2).status == "error"  # it dropped its files and ended the runner
    assert scores(report) == {**FULL, "A": 0.0}  # no conftest.py passed the wrong square
    assert sorted(p.name for p in markers.iterdir()) == []
    assert SECRET not in outputs(tmp_path)


def test_files_dropped_outside_scratch_do_not_land(assignment, tmp_path):
    """conftest.py, sitecustomize.py, usercustomize.py, a .pth, pytest.ini and
    pyproject.toml in the working directory's parents, every sys.path entry, the
    repo root and sys.prefix. The files are inert (a comment), created exclusively
    (nothing is overwritten), and deleted again here if containment failed."""
    names = ("conftest.py", "sitecustomize.py", "usercustomize.py", "zz_tampering_attack.pth",
             "pytest.ini", "pyproject.toml")
    folders = _watched_folders()
    code = (f"import os, sys\nnames = {names!r}\nfolders = set({sorted(folders)!r})\n"
            "folders |= {os.path.abspath(p) for p in sys.path if p}\n"
            "scratch = here = os.path.abspath('..')\n"
            "while os.path.dirname(here) != here:\n"
            "    here = os.path.dirname(here)\n    folders.add(here)\n"
            "folders = {f for f in folders if not f.startswith(scratch)}\n"
            "landed = []\nfor folder in sorted(folders):\n    for name in names:\n"
            "        path = os.path.join(folder, name)\n        try:\n"
            f"            with open(path, 'x') as f:\n                f.write('# {TOKEN}\\n')\n"
            "            landed.append(path)\n        except OSError:\n            pass\n"
            "print('tried', len(folders) * len(names), 'landed', landed)")
    start = time.time()
    report = graded(attacked(code), assignment, tmp_path)
    planted = _remove_planted(folders, start)
    if planted:
        require_landlock(report)
    assert not planted, f"the notebook planted {planted} (now deleted)"
    assert "landed []" in cell(report, 2).stdout, cell(report, 2).stdout
    assert scores(report) == FULL


def _owner(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mode, st.st_uid, st.st_gid


def test_hidden_files_cannot_be_hard_linked_into_scratch_for_a_restart_to_chown(assignment,
                                                                                 tmp_path):
    """A restarted runner gets the scratch folder chown-ed to it again: a hard link
    there to a hidden file would hand that file to the sandbox uid."""
    targets = [HIDDEN, ENGINE / "hidden" / "pytest.ini", ENGINE / "assignment.toml"]
    owners = {t: _owner(t) for t in targets}
    code = (f"import os\nfor i, target in enumerate({[str(t) for t in targets]!r}):\n"
            "    try:\n        os.link(target, f'link{i}')\n    except OSError:\n"
            "        pass\nos._exit(1)")
    nb = after_honest_cells("import glob\nprint('links', sorted(glob.glob('link*')))",
                            attacked(code))
    try:
        report = graded(nb, assignment, tmp_path)
    finally:
        changed = [t for t in targets if _owner(t) != owners[t]]
        for t in changed:
            mode, uid, gid = owners[t]
            os.chown(t, uid, gid)
            os.chmod(t, mode)
    assert not changed, f"grading changed the owner or mode of {changed}"
    assert "links []" in report.cells[-1].stdout, report.cells[-1].stdout
    assert scores(report) == FULL


SHADOW = """import os, sys
try:
    open('leak.txt', 'w').write('uid %d read: ' % os.getuid() + open({hidden!r}).read())
except OSError as exc:
    open('leak.txt', 'w').write('refused: %r' % exc)
# then hand the runner the real module, so that nothing looks wrong
first = sys.path.pop(0)
del sys.modules['base64']
import base64
sys.path.insert(0, first)
"""


def test_a_module_dropped_in_the_working_directory_does_not_run_before_confinement(
        assignment, tmp_path):
    code = (f"import os\nopen('base64.py', 'w').write({SHADOW.format(hidden=str(HIDDEN))!r})\n"
            "os._exit(1)")
    nb = after_honest_cells("import os\nif os.path.exists('leak.txt'):\n"
                            "    print(open('leak.txt').read())", attacked(code))
    report = graded(nb, assignment, tmp_path)
    assert scores(report) == FULL
    assert SECRET not in outputs(tmp_path)


# --- 5. protocol abuse aimed at the grader -------------------------------

SOCKETS = """import os, socket, struct, pickle
_zygote = os.getpid()
def _sockets():
    found = []
    for fd in os.listdir('/proc/self/fd'):
        try:
            if os.readlink('/proc/self/fd/' + fd).startswith('socket:'):
                found.append(socket.socket(fileno=os.dup(int(fd))))
        except OSError:
            pass
    return found
def _send(payload, framed=True):
    for s in _sockets():
        s.sendall((struct.pack('>I', len(payload)) if framed else b'') + payload)
"""

# Each runs inside square(x) when a check calls it (not while the notebook runs).
FORGERIES = {
    "pickle": "class Evil:\n    def __reduce__(self):\n        return (os.mkdir, (MARKER,))\n"
              "_send(pickle.dumps(Evil()))\n_send(pickle.dumps(Evil()), framed=False)\n"
              "return 0",
    "forged-json-claiming-success": "_send(b'{\"op\": \"value\", \"value\": 49, \"passed\": true, "
                                    "\"score\": 3, \"weight\": 100}')\nreturn 0",
    "huge-length-header": "for s in _sockets():\n    s.sendall(b'\\xff\\xff\\xff\\xf0' + "
                          "os.urandom(4096))\nreturn 0",
    "garbage-bytes": "_send(os.urandom(4096))\nreturn 0",
    "deeply-nested-json": "_send(b'[' * 100000)\nreturn 0",
    "integer-of-5000-digits": "_send(b'{\"op\": \"value\", \"value\": 1' + b'0' * 5000 + b'}')\n"
                              "return 0",
}


def forged_square(kind: str, marker: Path) -> dict:
    body = FORGERIES[kind].replace("MARKER", repr(str(marker)))
    return square(f"if os.getpid() != _zygote:\n{indented(body)}return 0")


@pytest.mark.parametrize("kind", list(FORGERIES), ids=list(FORGERIES))
def test_protocol_abuse_from_a_check_gains_nothing_and_unpickles_nothing(assignment, tmp_path,
                                                                        kind):
    marker = tmp_path / "unpickled"
    report = graded(variant(forged_square(kind, marker), attacked(SOCKETS)), assignment, tmp_path)
    got = scores(report)
    # A forged 49 is no better than `return 49`, which passes "square(7) is 49" only.
    assert got["A"] <= (1.0 if kind == "forged-json-claiming-success" else 0.0)
    assert got["B"] == FULL["B"] and got["C"] == FULL["C"]
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["deeply-nested-json", "integer-of-5000-digits"])
def test_an_unreadable_message_from_a_check_is_blamed_on_the_submission(assignment, tmp_path,
                                                                        kind):
    report = graded(variant(forged_square(kind, tmp_path / "x"), attacked(SOCKETS)),
                    assignment, tmp_path)
    failed = [c for e in report.exercises for c in e.checks if not c.passed]
    assert failed and all(c.message != INTERNAL_ERROR for c in failed)
    assert not report.staff_notes


EXECUTION_FORGERIES = {
    "deeply-nested-json": "b'[' * 100000",
    "integer-of-5000-digits": "b'{\"op\": \"cell_start\", \"index\": 1' + b'0' * 5000 + b'}'",
    "cell-done-with-a-text-index": "b'{\"op\": \"cell_done\", \"index\": \"x\"}'",
    "figures-that-are-not-objects": "b'{\"op\": \"cell_done\", \"index\": 3, \"figures\": [1]}'",
}


@pytest.mark.parametrize("kind", list(EXECUTION_FORGERIES), ids=list(EXECUTION_FORGERIES))
def test_forged_messages_while_the_notebook_runs_do_not_crash_the_grader(assignment, tmp_path,
                                                                        kind):
    code = SOCKETS + f"_send({EXECUTION_FORGERIES[kind]})\nprint('sent')"
    report = graded(attacked(code), assignment, tmp_path)
    assert scores(report) == FULL


def test_forged_sandbox_layers_do_not_reach_the_report(assignment, tmp_path):
    code = SOCKETS + ("import json\n_send(json.dumps({'op': 'confined', 'layers': "
                      "['forged layer: everything is safe'], 'refused': []}).encode())")
    report = graded(attacked(code), assignment, tmp_path)
    assert scores(report) == FULL
    assert not any("forged" in layer for layer in report.sandbox_layers)


def _kill_runner_trees() -> None:
    """The watchdog's rescue: kill the runners this process started, and their forks."""
    runners = set(RunnerProcess.live)
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1]
                                           .split()[1])
        except (ValueError, OSError, IndexError):
            continue
    victims, grew = set(runners), True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in victims} - victims
        victims |= more
        grew = bool(more)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


TRUNCATED = {
    "while-the-notebook-runs": SOCKETS + "for s in _sockets():\n"
                               "    s.sendall(struct.pack('>I', 1000) + b'{}')\n"
                               "import time\ntime.sleep(600)",
    "from-a-check": None,
}


@pytest.mark.parametrize("phase", list(TRUNCATED), ids=list(TRUNCATED))
def test_a_truncated_message_does_not_hang_the_grader(assignment, tmp_path, phase):
    if TRUNCATED[phase] is None:
        nb = variant(square("if os.getpid() != _zygote:\n    for s in _sockets():\n"
                            "        s.sendall(struct.pack('>I', 1000) + b'{}')\nreturn x * x"),
                     attacked(SOCKETS))
    else:
        nb = attacked(TRUNCATED[phase])
    rescued = threading.Event()
    watchdog = threading.Timer(20, lambda: (rescued.set(), _kill_runner_trees()))
    watchdog.start()
    try:
        report = graded(nb, assignment, tmp_path)
    finally:
        watchdog.cancel()
    assert not rescued.is_set(), "the grader hung until the watchdog killed the runner"
    got = scores(report)
    assert got["B"] == FULL["B"] and got["C"] == FULL["C"] and got["A"] <= FULL["A"]


# --- 6. reading the grader's process ---------------------------------------

READ_GRADER = """import ctypes, os, socket, struct, sys
ppid = os.getppid()
try:
    s = socket.socket(fileno=os.dup(int(sys.argv[1])))
    peer = struct.unpack('3i', s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
except (OSError, ValueError, IndexError):
    peer = ppid
print('grader', ppid, peer)
def attempt(what, read):
    try:
        data = read()
    except (OSError, ValueError) as exc:
        print('refused', what, getattr(exc, 'errno', exc))
    else:
        print('LEAK', what, repr(data)[:4000])
def scan_memory(pid):
    regions = []
    for line in open(f'/proc/{pid}/maps'):
        span, perms = line.split()[:2]
        if perms.startswith('rw'):
            low, high = (int(x, 16) for x in span.split('-'))
            regions.append((low, min(high, low + 2 ** 24)))
    found, budget = [], 2 ** 28
    with open(f'/proc/{pid}/mem', 'rb', buffering=0) as mem:
        for low, high in regions:
            if budget <= 0:
                break
            try:
                mem.seek(low)
                chunk = mem.read(high - low)
            except OSError:
                continue
            budget -= len(chunk)
            at = chunk.find(b'student.operator(')
            if at >= 0:
                found.append(chunk[max(0, at - 200):at + 400])
    return found
def vm_readv(pid):
    class IoVec(ctypes.Structure):
        _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(4096)
    here = IoVec(ctypes.cast(buf, ctypes.c_void_p), 4096)
    target = ctypes.c_char_p(b'x' * 64)  # any address: the permission check comes first
    there = IoVec(ctypes.cast(target, ctypes.c_void_p), 4096)
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    n = libc.process_vm_readv(pid, ctypes.byref(here), 1, ctypes.byref(there), 1, 0)
    if n < 0:
        raise OSError(ctypes.get_errno(), 'process_vm_readv')
    return buf.raw[:n]
def pidfd_getfd(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(434, pid, 0)
    if pidfd < 0:
        raise OSError(ctypes.get_errno(), 'pidfd_open')
    stolen = []
    for fd in range(3, 64):
        got = libc.syscall(438, pidfd, fd, 0)
        if got >= 0:
            stolen.append(os.readlink(f'/proc/self/fd/{got}'))
    if not stolen:
        raise OSError(ctypes.get_errno(), 'pidfd_getfd')
    return stolen
def read_fds(pid):
    got, errors = [], set()
    for fd in range(64):
        try:
            with open(f'/proc/{pid}/fd/{fd}', 'rb') as f:
                got.append(f.read(4000))
        except OSError as exc:
            errors.add(exc.errno)
    if not got:
        raise OSError(min(errors), 'no descriptor of the grader could be opened')
    return got
for pid in sorted({ppid, peer}):
    attempt('environ', lambda: open(f'/proc/{pid}/environ', 'rb').read())
    attempt('maps', lambda: open(f'/proc/{pid}/maps').read())
    attempt('mem', lambda: scan_memory(pid))
    attempt('process_vm_readv', lambda: vm_readv(pid))
    attempt('pidfd_getfd', lambda: pidfd_getfd(pid))
    attempt('cwd', lambda: os.listdir(f'/proc/{pid}/cwd'))
    attempt('cwd/hidden', lambda: open(f'/proc/{pid}/cwd/{RELATIVE}').read())
    attempt('root/hidden', lambda: open(f'/proc/{pid}/root{HIDDEN}').read())
    attempt('fd list', lambda: os.listdir(f'/proc/{pid}/fd'))
    attempt('fds 0-63', lambda: read_fds(pid))
"""


def test_the_graders_memory_environment_and_files_cannot_be_read(assignment, tmp_path):
    environ = Path("/proc/self/environ").read_bytes().split(b"\0")
    # A variable of the grader's environment that the runner's scrubbed one lacks.
    canary = next((e.decode(errors="ignore") for e in environ
                   if e and not e.startswith((b"PATH=", b"HOME=", b"LANG=", b"OMP_", b"MKL_",
                                              b"MPL", b"TMPDIR=", b"PYTHON", b"IPYTHON"))), None)
    code = READ_GRADER.replace("{RELATIVE}", os.path.relpath(HIDDEN, os.getcwd())) \
                      .replace("{HIDDEN}", str(HIDDEN))
    report = graded(attacked(code), assignment, tmp_path)
    stdout = cell(report, 2).stdout
    assert " environ" in stdout, stdout  # the attack really ran
    assert scores(report) == FULL
    require_landlock(report)
    assert "LEAK" not in stdout, stdout
    assert re.search(r"refused process_vm_readv (1|13)\b", stdout), stdout  # EPERM, not EFAULT
    text = outputs(tmp_path)
    assert SECRET not in text
    if canary:
        assert canary not in text
