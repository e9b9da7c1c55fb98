"""Attacks from inside a submission that the sandbox must contain.

Each attack runs for real, in a notebook cell of the engine demo
assignment, and is bounded (loopback only, files under tmp_path) so that a
containment failure cannot harm the machine. The honest exercises of the
same notebook must still get full marks, and the attack must gain nothing.
"""

import errno
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from autograder.assignment import Assignment
from autograder.grader import grade
from tests.corpus.build import write
from tests.notebooks import SHARED

ROOT = Path(__file__).resolve().parent.parent
DOCKER_LIKE = SHARED / "tools" / "docker-like" / "docker-like"
INSIDE_DOCKER_LIKE = os.environ.get("AUTOGRADER_DOCKER_LIKE") == "1"
RED_TEAM = ["tests/test_sandbox_attacks.py", "tests/test_sandbox_tampering.py",
            "tests/test_grading_faults.py"]
ENGINE = ROOT / "tests" / "engine_assignment"
FULL = {"A": 3.0, "B": 1.0, "C": 2.0}


@pytest.fixture(scope="module")
def assignment():
    return Assignment.load(ENGINE)


def attacked(code: str) -> nbformat.NotebookNode:
    nb = nbformat.read(ENGINE / "master" / "demo.ipynb", as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell(code))
    return nb


def run(code, assignment, tmp_path):
    report = grade(write(attacked(code), tmp_path / "attack.ipynb"), assignment, tmp_path / "out")
    assert {e.id: e.score for e in report.exercises} == FULL
    return report, next(c for c in report.cells if c.index == 2)


def active(report) -> str:
    return " ".join(report.sandbox_layers)


@pytest.mark.parametrize("target", [
    ROOT / "reference" / "krylov_hessian.py",
    ROOT / "assignments" / "krylov_hessian" / "hidden" / "test_s0_norms_and_eps.py",
    ROOT / "assignments" / "krylov_hessian" / "assignment.toml",
    ENGINE / "hidden" / "test_demo.py",
])
def test_hidden_material_cannot_be_read(assignment, tmp_path, target):
    secret = target.read_text()[:40]
    report, cell = run(f"print(open({str(target)!r}).read())", assignment, tmp_path)
    if "landlock filesystem" not in active(report):
        pytest.skip("Landlock is not available on this kernel")
    assert "PermissionError" in cell.error
    outputs = "".join(p.read_text(errors="ignore") for p in (tmp_path / "out").glob("*.*"))
    assert secret not in outputs


def test_reference_cannot_be_imported(assignment, tmp_path):
    report, cell = run("import reference.krylov_hessian as r\nprint(r.__file__)",
                       assignment, tmp_path)
    if "landlock filesystem" not in active(report):
        pytest.skip("Landlock is not available on this kernel")
    assert cell.status == "error"


def test_files_outside_scratch_cannot_be_written(assignment, tmp_path):
    targets = [tmp_path / "out" / "results.json", tmp_path / "planted.txt",
               ROOT / "conftest_planted_by_attack.py", Path(sys.prefix) / "planted.pth"]
    code = "hits = []\n" + "".join(
        f"try:\n    open({str(t)!r}, 'w').write('{{\"score\": 100}}')\n    hits.append(1)\n"
        f"except OSError:\n    pass\n" for t in targets) + "print('written', len(hits))"
    report, cell = run(code, assignment, tmp_path)
    if "landlock filesystem" not in active(report):
        pytest.skip("Landlock is not available on this kernel")
    assert "written 0" in cell.stdout
    for target in targets[1:]:
        assert not target.exists()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["score"] == 6.0


def test_no_tcp_connection_leaves_the_sandbox(assignment, tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    code = (f"import socket\ns = socket.socket()\ns.settimeout(2)\n"
            f"s.connect(('127.0.0.1', {port}))\ns.sendall(b'leak')")
    report, cell = run(code, assignment, tmp_path)
    thread.join()
    server.close()
    if "landlock network" not in active(report):
        pytest.skip("Landlock network rules are not available on this kernel")
    assert not accepted and cell.status == "error"


def test_killing_the_grader_fails(tmp_path):
    nb = attacked("import os, signal\nfor pid in (os.getppid(), 1):\n"
                  "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError as e:\n"
                  "        print('refused', pid, e.errno)")
    path = write(nb, tmp_path / "attack.ipynb")
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(path),
                             "--assignment", str(ENGINE), "--out", str(tmp_path / "out")],
                            check=False, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["score"] == 6.0


def test_a_daemon_cannot_rewrite_results_later(assignment, tmp_path):
    results = tmp_path / "out" / "results.json"
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(2)\n"
            f"    try:\n        open({str(results)!r}, 'w').write('{{\"score\": 100}}')\n"
            "    finally:\n        os._exit(0)")
    run(code, assignment, tmp_path)
    time.sleep(3)
    assert json.loads(results.read_text())["score"] == 6.0


def test_no_ipc_object_is_left_for_the_next_submission(assignment, tmp_path):
    """System V shared memory and message queues outlive the process that made them
    and are not files: a submission could leave its data there for the next one."""
    code = ("import ctypes, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "shm = libc.shmget(0x5EC12E7, 4096, 0o1666)\n"
            "print('shmget', shm, ctypes.get_errno())\n"
            "msg = libc.msgget(0x5EC12E7, 0o1666)\n"
            "print('msgget', msg, ctypes.get_errno())")
    report, cell = run(code, assignment, tmp_path)
    if "seccomp" not in active(report):
        pytest.skip("no seccomp filter here")
    assert f"shmget -1 {errno.EPERM}" in cell.stdout, cell.stdout
    assert f"msgget -1 {errno.EPERM}" in cell.stdout, cell.stdout


def test_no_udp_datagram_leaves_the_sandbox(assignment, tmp_path):
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = (f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.sendto(b'leak', ('127.0.0.1', {port}))")
    report, cell = run(code, assignment, tmp_path)
    try:
        received = server.recv(100)
    except OSError:
        received = b""
    server.close()
    if "network namespace" not in active(report) and "seccomp" not in active(report):
        pytest.skip("neither a private network namespace nor seccomp here")
    assert received == b"" and cell.status == "error"


def test_a_fork_bomb_is_bounded_and_cleaned_up(assignment, tmp_path):
    # Bounded by itself to 600 children sleeping 60 s, so that even with no
    # containment it cannot take the machine down.
    code = ("import os, time\nn = 0\nfor _ in range(600):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(60)\n"
            "        os._exit(0)\n    n += 1\nprint(n)")
    report, cell = run(code, assignment, tmp_path)
    # the count is the last line; a slow machine may interrupt the loop before it prints
    counts = [word for word in cell.stdout.split() if word.isdigit()]
    forked = int(counts[-1]) if counts else 0
    if "pids cgroup" in active(report) or os.getuid() != 0:
        assert forked < 600
    time.sleep(0.3)
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and (p / "stat").exists() and (p / "stat").read_text().rsplit(")", 1)[1].split()[2]
                == str(os.getpid()) and (p / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not children


@pytest.mark.parametrize("code", [
    # 200 files of 1 MB each: every one is under RLIMIT_FSIZE, the sum is over the quota
    "for i in range(200):\n    with open(f'fill{i}.bin', 'wb') as f:\n        f.write(b'x' * 2**20)",
    # one file growing forever, in the temporary folder, until something stops it
    ("import os, tempfile\nwith open(os.path.join(tempfile.gettempdir(), 'grow'), 'wb') as f:\n"
    "    for _ in range(100_000):\n        f.write(b'x' * 2**16)\n        f.flush()"),
    # inodes rather than bytes: many empty files
    ("import os\nos.makedirs('many', exist_ok=True)\nfor i in range(20_000):\n"
    "    open(f'many/{i}', 'w').close()"),
], ids=["many-files", "one-growing-file", "inodes"])
def test_filling_the_disk_is_stopped_and_undone(assignment, tmp_path, code):
    _, cell = run(code, assignment, tmp_path)
    assert cell.status == "error" and "to disk" in cell.error


def test_filling_the_disk_inside_a_check_costs_only_that_check(assignment, tmp_path):
    nb = nbformat.read(ENGINE / "master" / "demo.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "def square(x):\n    for i in range(100):\n        with open(f'fill{i}', 'wb') as f:\n"
        "            f.write(b'x' * 2**20)\n    return x * x"))
    report = grade(write(nb, tmp_path / "attack.ipynb"), assignment, tmp_path / "out")
    scores = {e.id: e.score for e in report.exercises}
    assert scores == {"A": 0.0, "B": 1.0, "C": 2.0}
    messages = [c.message for e in report.exercises if e.id == "A" for c in e.checks]
    assert all("to disk" in m for m in messages), messages


def test_every_layer_is_reported_active_or_missing(assignment, tmp_path):
    report, _ = run("pass", assignment, tmp_path)
    for name in ("network namespace", "private /proc", "uid", "landlock", "seccomp",
                 "pids cgroup"):
        on = any(name in layer for layer in report.sandbox_layers)
        off = any(name in missing for missing in report.sandbox_missing)
        assert on != off, name
    if INSIDE_DOCKER_LIKE:  # no new namespaces there; the other layers must hold
        assert any("network namespace unavailable" in w for w in report.sandbox_missing)
        assert any("private /proc unavailable" in w for w in report.sandbox_missing)
        for name in ("unprivileged uid", "landlock filesystem", "landlock network", "seccomp"):
            assert name in active(report), name


@pytest.mark.skipif(INSIDE_DOCKER_LIKE, reason="this is the run inside the confinement")
def test_the_red_team_suite_holds_under_docker_like_confinement():
    """Run every attack again as a Gradescope-style container would confine the grader."""
    if not DOCKER_LIKE.exists():
        pytest.skip(f"{DOCKER_LIKE} is not here")
    if subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], check=False).returncode:
        pytest.skip("docker-like needs python3-seccomp (make setup installs it)")
    result = subprocess.run(
        [str(DOCKER_LIKE), sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         *(f for f in RED_TEAM if (ROOT / f).exists())],
        cwd=ROOT, check=False, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "AUTOGRADER_DOCKER_LIKE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]  # "88 passed, 1 skipped in ..."
    assert re.search(r"\d+ passed", summary) and not re.search(r"\d+ (failed|error)", summary), \
        summary
