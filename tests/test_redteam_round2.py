"""Red team, round two, as an attacker writes it: the trusted side's exposure.

Shared state between checks (a fork writing down its hidden inputs for the
next check to read), hidden values echoed back through the student's own
exception messages, forged and oversized runner messages, and the TA's
credentials on a command line every sandboxed process can read.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path

import nbformat
import pytest

from autograder.assignment import Assignment
from autograder.grader import grade
from autograder.sandbox import CellStatus, protocol
from tests.corpus.build import variant, write

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "tests" / "engine_assignment"
FULL = {"A": 3.0, "B": 1.0, "C": 2.0}


@pytest.fixture(scope="module")
def assignment():
    return Assignment.load(ENGINE)


def demo():
    return nbformat.read(ENGINE / "master" / "demo.ipynb", as_version=4)


def square(body: str) -> dict:
    return {"exA_code": "def square(x):\n" + "".join(f"    {line}\n"
                                                     for line in body.splitlines())}


def graded(nb, assignment, tmp_path):
    return grade(write(nb, tmp_path / "attack.ipynb"), assignment, tmp_path / "out")


def messages(report, exercise: str) -> list[str]:
    return [c.message for e in report.exercises if e.id == exercise for c in e.checks]


# --- class 7: checks do not share state ---------------------------------------------


def test_a_check_cannot_read_what_an_earlier_checks_fork_wrote(assignment, tmp_path):
    """The tensor check's fork writes down its (hidden) input; the number check's fork
    looks for it and fails loudly if it is there. Each fork starts from the scratch
    folder as the notebook left it, so the note is gone."""
    spy = ("import os, torch\n"
           "if isinstance(x, torch.Tensor):\n"
           "    with open('loot.txt', 'w') as f:\n"
           "        f.write(repr(x.tolist()))\n"
           "elif os.path.exists('loot.txt'):\n"
           "    raise ValueError('saw ' + open('loot.txt').read())\n"
           "return x * x")
    report = graded(variant(square(spy), demo()), assignment, tmp_path)
    assert {e.id: e.score for e in report.exercises} == FULL, messages(report, "A")


def test_hidden_inputs_do_not_come_back_through_the_students_own_exception(assignment,
                                                                           tmp_path):
    leak = "import torch\nif isinstance(x, torch.Tensor):\n    raise ValueError(f'got {x}')\n" \
           "return x * x"
    report = graded(variant(square(leak), demo()), assignment, tmp_path)
    tensor_check = messages(report, "A")[0]
    assert "raised ValueError: got tensor(" in tensor_check  # the student still sees why
    assert "-3." not in tensor_check and "1." not in tensor_check  # not the input's values
    assert "…" in tensor_check


# --- class 2: sizes are bounded before they cost the trusted side ---------------------


def test_a_message_of_millions_of_empty_objects_is_refused_before_parsing():
    payload = b"[" + b"{}," * 10_000_000 + b"{}]"  # 30 MB that json would make 3 GB of
    tracemalloc.start()
    try:
        with pytest.raises(protocol.ProtocolError, match="parts"):
            protocol._parse(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_a_forged_flood_from_a_cell_costs_that_cell_only(assignment, tmp_path):
    """A cell finds the runner's socket and writes a flood of forged cell_done
    messages for other cells: the session reads exactly one start and one end per
    cell, in order, so the forger's cell is the one charged, and the runner is
    replayed without it."""
    forge = ("import json, os, socket, struct\n"
             "for fd in range(3, 64):\n"
             "    try:\n"
             "        s = socket.socket(fileno=os.dup(fd))\n"
             "    except OSError:\n"
             "        continue\n"
             "    if s.family != socket.AF_UNIX:\n"
             "        continue\n"
             "    for index in range(200):\n"
             "        body = json.dumps({'op': 'cell_done', 'index': index % 8, 'status': 'ok',\n"
             "                           'duration_s': 0, 'stdout': 'x' * 10000,\n"
             "                           'figures': []}).encode()\n"
             "        try:\n"
             "            s.sendall(struct.pack('>I', len(body)) + body)\n"
             "        except OSError:\n"
             "            break\n")
    nb = demo()
    nb.cells.insert(2, nbformat.v4.new_code_cell(forge))
    report = graded(nb, assignment, tmp_path)
    assert {e.id: e.score for e in report.exercises} == FULL
    forger = next(c for c in report.cells if c.index == 2)
    assert forger.status == CellStatus.ERROR and "cannot read" in forger.error
    others = [c for c in report.cells if c.index != 2]
    assert all(c.status == CellStatus.OK or "NameError" in c.error for c in others)
    assert all(len(c.stdout) < 10_000 for c in others)


def test_a_frame_with_more_data_than_it_announces_is_not_trusted():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        body = json.dumps({"op": "cell_start", "index": 0}).encode()
        theirs.sendall(len(body).to_bytes(4, "big") + body + b"\x00\x00\x00\x05junk!")
        assert protocol.receive(ours) == {"op": "cell_start", "index": 0}
        with pytest.raises(protocol.ProtocolError):
            protocol.receive(ours)


# --- class 5: nothing about the staff is visible inside the sandbox ------------------


def test_credentials_on_the_command_line_are_refused(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for option in ("--db", "--gradebook"):
        run = subprocess.run(
            [sys.executable, "-m", "autograder", "cohort", str(cohort), "--out",
             str(tmp_path / "out"), "--assignment", str(ENGINE),
             option, "postgresql://ta:hunter2@db.example/grades"],
            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
        assert run.returncode == 2
        assert "password" in run.stderr and "AUTOGRADER_" in run.stderr
        assert "hunter2" not in run.stderr + run.stdout


def test_the_database_address_comes_from_the_environment(tmp_path, assignment):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    write(demo(), cohort / "alice.ipynb")
    database = tmp_path / "elsewhere.db"
    env = {**os.environ, "AUTOGRADER_DB_URL": f"sqlite:///{database}", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "autograder", "cohort", str(cohort), "--out",
                          str(tmp_path / "out"), "--assignment", str(ENGINE), "--workers", "1"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert database.is_file() and not (tmp_path / "out" / "results.db").exists()


PROC_SPY = ("import os\n"
            "seen = []\n"
            "for pid in os.listdir('/proc'):\n"
            "    try:\n"
            "        seen.append(open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ')"
            ".decode())\n"
            "    except OSError:\n"
            "        pass\n"
            "raise RuntimeError(' | '.join(seen))")


@pytest.mark.skipif(os.getuid() != 0, reason="the private /proc needs root to mount")
def test_a_notebook_cannot_read_the_staffs_command_lines(assignment, tmp_path):
    """A cell walks /proc for every command line it can read (a TA's process holding
    a database password in its argv stands beside it) and raises them into its own
    error, which the student sees. It finds its own runner and nothing else."""
    secret = "postgresql://ta:hunter2@db.example/grades"
    staff = subprocess.Popen(["sleep", "120", secret])
    try:
        nb = demo()
        nb.cells.insert(2, nbformat.v4.new_code_cell(PROC_SPY))
        report = graded(nb, assignment, tmp_path)
    finally:
        staff.kill()
        staff.wait()
    if not any("private /proc" in layer for layer in report.sandbox_layers):
        assert any("private /proc unavailable" in w for w in report.sandbox_missing)  # said
        pytest.skip("no private /proc can be mounted here")
    spy = next(c for c in report.cells if c.index == 2)
    assert "autograder.sandbox.runner" in spy.error  # it did read /proc
    assert "hunter2" not in spy.error and "pytest" not in spy.error
    feedback = "".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*")
                       if p.is_file())
    assert "hunter2" not in feedback
    assert {e.id: e.score for e in report.exercises} == FULL


# --- class 4: resources are accounted per submission, not per process ---------------


def test_memory_outside_any_process_address_space_is_still_counted(tmp_path):
    """memfd pages count against no process's RLIMIT_AS: 5 GB of them in a 4 GB
    budget. A memory cgroup per runner bounds the whole submission; the writer is
    killed and its cell skipped on the replay, the rest graded as usual."""
    root = tmp_path / "engine_assignment"
    shutil.copytree(ENGINE, root, ignore=shutil.ignore_patterns("__pycache__"))
    config = root / "assignment.toml"
    config.write_text(config.read_text().replace("memory_mb = 6144", "memory_mb = 4096")
                      .replace("cell_timeout_s = 4", "cell_timeout_s = 40"))
    assignment = Assignment.load(root)
    # 80 memfds of 64 MB each: RLIMIT_FSIZE caps each one, not their sum.
    hog = ("import os\n"
           "chunk = b'x' * 2**25\n"
           "fds = [os.memfd_create(f'hog{i}') for i in range(80)]\n"
           "for fd in fds:\n"
           "    os.write(fd, chunk)\n"
           "    os.write(fd, chunk)\n"
           "print('wrote 5 GB')")
    nb = demo()
    nb.cells.insert(2, nbformat.v4.new_code_cell(hog))
    report = graded(nb, assignment, tmp_path)
    if "memory cgroup" not in " ".join(report.sandbox_layers):
        pytest.skip("no memory cgroup can be made here")
    hogging = next(c for c in report.cells if c.index == 2)
    assert "wrote 5 GB" not in hogging.stdout.splitlines(), hogging.stdout[-300:]
    assert hogging.status == CellStatus.ERROR, hogging
    assert {e.id: e.score for e in report.exercises} == FULL


def _sockets_of(pid: int) -> set[str]:
    """The sockets a process holds, as /proc names them (socket:[inode])."""
    links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    return {link for link in links if link.startswith("socket:")}


@pytest.mark.skipif(os.getuid() != 0, reason="only root can run runners as other users")
def test_runners_forked_from_one_zygote_are_other_users_confined_as_fresh_ones(assignment):
    """A cohort worker forks each submission's runner from one zygote: two runners never
    share a uid, a scratch folder or the zygote's socket, and each reports every
    confinement layer that a runner started on its own reports."""
    from autograder.grader import RunnerSupply, policy_for
    from autograder.sandbox.session import NotebookSession
    from autograder.submission import load

    alone = grade(ENGINE / "master" / "demo.ipynb", assignment)
    alone_uid = next(int(layer.split()[-1]) for layer in alone.sandbox_layers
                     if layer.startswith("unprivileged uid"))
    supply = RunnerSupply(assignment, zygote=True)
    taken = [supply.take(), supply.take()]
    try:
        owners = {workspace.root.stat().st_uid for workspace, _ in taken}
        assert len(owners) == 2 and 0 not in owners
        assert all(w.root.stat().st_mode & 0o077 == 0 for w, _ in taken)
        for workspace, runner in taken:
            status = Path(f"/proc/{runner.pid}/status").read_text()
            assert int(status.split("Uid:")[1].split()[0]) in owners
            assert os.getsid(runner.pid) == runner.pid  # its own session, killed as one
            assert not _sockets_of(supply.zygote.process.pid) & _sockets_of(runner.pid)
            session = NotebookSession(load(ENGINE / "master" / "demo.ipynb"), workspace,
                                      policy_for(assignment), runner)
            session.execute()
            uid = workspace.root.stat().st_uid
            assert session.layers == [layer.replace(f"uid {alone_uid}", f"uid {uid}")
                                      for layer in alone.sandbox_layers]
            assert session.missing_layers == alone.sandbox_missing
            session.close()
    finally:
        for workspace, runner in taken:
            runner.stop()
            workspace.remove()
        supply.close()


# --- class 2: sizes from the student side are bounded before they cost the grader ---


def test_a_notebook_that_rebinds_the_toy_problem_to_a_big_one_is_refused_by_size(tmp_path):
    """The last cell rebinds model, X and y to a 4,204-parameter model and 4,000 rows:
    the checks of 2.3 and 3.2, which compute the toy problem's exact Hessian in the
    grader, refuse it by size (they would take minutes and gigabytes), and say what
    they found; the other exercises keep full marks."""
    from tests.corpus.build import appended
    from tests.notebooks import ASSIGNMENT

    bigger = ("import torch\nfrom torch import nn\n"
              "model = nn.Sequential(nn.Linear(20, 100), nn.Tanh(), nn.Linear(100, 20), "
              "nn.Tanh(), nn.Linear(20, 4))\n"
              "X = torch.randn(4000, 20)\ny = torch.randint(0, 4, (4000,))\n"
              "print(sum(p.numel() for p in model.parameters()))")
    report = grade(write(appended(bigger), tmp_path / "big.ipynb"), Assignment.load(ASSIGNMENT))
    last = report.cells[-1]
    assert last.status == CellStatus.OK and "4204" in last.stdout
    refused = [c for e in report.exercises if e.id in ("2.3", "3.2") for c in e.checks
               if "model has 4204 parameters and X has shape (4000, 20)" in c.message]
    assert len(refused) >= 2, [c.message for e in report.exercises for c in e.checks]
    assert all(c.duration_s < 30 for c in refused)
    untouched = {e.id: e.score == e.max_score for e in report.exercises
                 if e.id not in ("1.3", "2.3", "3.2")}
    assert all(untouched.values()), untouched
