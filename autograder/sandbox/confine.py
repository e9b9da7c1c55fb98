"""Kernel confinement the runner applies to itself before any student code runs.

A private network namespace, where the kernel allows one (root, outside a
container), leaves the runner without any network interface. A private
mount namespace with its own /proc, mounted `hidepid=invisible` (the same
conditions, Linux >= 5.8), shows the runner only the processes of its own
uid: not the grader's command line, nor another submission's runner.

Landlock (Linux >= 5.13, unprivileged, and allowed inside Docker-style
containers) limits the process tree to: reading the Python installation and
system libraries, reading and writing its own scratch folder, no TCP bind or
connect (ABI >= 4), and no signals to processes outside the sandbox, such
as the grader (ABI >= 6). Everything else, including the hidden tests, the
reference code, the configuration and the results, is out of reach.

A seccomp filter (allowed inside Docker-style containers, where namespaces
are not) refuses every socket but Unix ones, so the network stays closed
where no private namespace can be made, plus ptrace, cross-process memory
access and io_uring (which could open sockets behind the filter's back).
Each layer that the kernel refuses is reported, never silently assumed.
"""

import ctypes
import os
import platform
import struct
import sys
from pathlib import Path

from .. import ENGINE

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNET, _CLONE_NEWNS = 0x40000000, 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
_PR_CAPBSET_DROP = 24
_SYS_CAPSET = 126
_CAPABILITY_VERSION_3 = 0x20080522
_RULE_PATH_BENEATH = 1
_CREATE_RULESET_VERSION = 1

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1


def _fs_rights(abi: int) -> int:
    """Every filesystem right this ABI knows (all denied unless a rule allows)."""
    rights = (1 << 13) - 1  # ABI 1: execute ... make_sym
    if abi >= 2:
        rights |= 1 << 13  # refer
    if abi >= 3:
        rights |= 1 << 14  # truncate
    if abi >= 5:
        rights |= 1 << 15  # ioctl_dev
    return rights


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def read_only_paths() -> list[str]:
    """What Python, torch and the runner need to read: no project data among them."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(ENGINE), "/usr", "/lib",
             "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/opt"}
    return sorted(p for p in paths if os.path.exists(p))


def landlock(writable: list[str], readable: list[str]) -> list[str]:
    """Restrict this process and its future children; return the layers applied."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    if abi < 1:
        raise OSError(ctypes.get_errno(), "Landlock is not available")
    fs = _fs_rights(abi)
    attr = _RulesetAttr(handled_access_fs=fs,
                        handled_access_net=(_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
                        scoped=(_SCOPE_SIGNAL | _SCOPE_ABSTRACT_UNIX_SOCKET) if abi >= 6 else 0)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, _READ) for p in readable] + [(p, fs) for p in writable]
        rules.append(("/dev", _READ | _WRITE_FILE))  # /dev/null, /dev/urandom
        for path, rights in rules:
            if not os.path.exists(path):
                continue
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                if not os.path.isdir(path):
                    rights &= _EXECUTE | _WRITE_FILE | _READ_FILE | (1 << 14)
                rule = _PathBeneathAttr(allowed_access=rights & fs, parent_fd=fd)
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH,
                                ctypes.byref(rule), 0) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    layers = [f"landlock filesystem (ABI {abi}): read-only system and Python, read-write scratch"]
    if abi >= 4:
        layers.append("landlock network: no TCP connect or bind")
    if abi >= 6:
        layers.append("landlock scope: no signals or abstract sockets outside the sandbox")
    return layers


def unshare_network() -> None:
    """Move into a new, empty network namespace: no interface, not even loopback, is up.

    Needs CAP_SYS_ADMIN, so it works when the grader runs as root outside a
    container and is refused inside a Docker-style one. The grader does it
    while starting the runner, before the runner drops root.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) refused")


def restrict(cpu_seconds: int, memory_mb: int, file_mb: int, open_files: int,
             uid: int | None) -> None:
    """What a runner gets while still root, before its own imports or confinement:
    resource limits, then (needing root) a private network and /proc, then the uid.

    Runs between fork and exec for a runner started on its own, and in the
    fork of a zygote (`runner.zygote`) for one forked from it.
    """
    import resource  # Unix only: this module must import anywhere (see sandbox.live)

    mb = 2**20
    for which, value in ((resource.RLIMIT_CPU, cpu_seconds),
                         (resource.RLIMIT_AS, memory_mb * mb),
                         (resource.RLIMIT_FSIZE, file_mb * mb),
                         (resource.RLIMIT_NOFILE, open_files),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))
    for needs_root in (unshare_network, hide_other_processes):
        try:  # before the uid switch; the runner reports which took effect
            needs_root()
        except OSError:
            pass
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def private_network() -> list[str]:
    """Report the private namespace, making it now if the grader could not."""
    interfaces = [line.split(":")[0].strip() for line in
                  Path("/proc/self/net/dev").read_text().splitlines()[2:]]
    if interfaces not in ([], ["lo"]):
        unshare_network()
    return ["private network namespace (no interfaces)"]


def hide_other_processes() -> None:
    """Mount a /proc of our own that lists only our uid's processes.

    Runs where `unshare_network` does (the grader, as root, starting the
    runner). The new mount namespace keeps the mount from the rest of the
    machine. The option's name exists from Linux 5.8, where each /proc mount
    has its own options; older kernels refuse it, and so never see their one
    shared /proc changed.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for what, result in (
            ("unshare(CLONE_NEWNS)", lambda: libc.unshare(_CLONE_NEWNS)),
            ("making / private", lambda: libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE,
                                                    None)),
            ("mounting /proc with hidepid", lambda: libc.mount(
                b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                b"hidepid=invisible"))):
        if result() != 0:
            raise OSError(ctypes.get_errno(), f"{what} refused")


def private_proc() -> list[str]:
    """Report the /proc that `hide_other_processes` mounted, if it did and it hides
    something (a runner that is still root would see every process anyway)."""
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    options = [line.rsplit(" ", 1)[-1] for line in mounts if line.split()[4] == "/proc"]
    if not options or "hidepid=invisible" not in options[-1].split(","):
        raise OSError("the grader could not mount it (needs root outside a container, "
                      "Linux >= 5.8)")
    if os.getuid() == 0:
        raise OSError("the runner is root, who sees every process")
    return ["private /proc: only the runner's own processes are visible"]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _user_tasks(uid: int) -> int:
    """Tasks (threads included, as RLIMIT_NPROC counts them) whose real uid is uid."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                          if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return count


def limit_processes(process_budget: int) -> list[str]:
    """Allow `process_budget` more tasks than this uid runs now: RLIMIT_NPROC
    counts every task of the uid, the grader's and the user's other ones too."""
    import resource  # Unix only: this module must import anywhere (see sandbox.live)

    limit = _user_tasks(os.getuid()) + process_budget
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
    except ValueError as exc:  # above a hard limit set by someone else
        raise OSError(str(exc)) from exc
    return [f"at most {process_budget} more processes"]


def drop_capabilities() -> list[str]:
    """Give up every capability, so that a runner started as root is bound by
    RLIMIT_NPROC (root is exempt while it holds CAP_SYS_RESOURCE/CAP_SYS_ADMIN),
    cannot override file permissions and cannot regain anything by exec."""
    if os.getuid() != 0:
        return []
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.syscall(_SYS_CAPSET, ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset refused")
    return ["all capabilities dropped"]


# seccomp: classic BPF over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}.
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_LD_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
_AF_UNIX, _EPERM, _EACCES = 1, 1, 13
# arch -> (AUDIT_ARCH value, socket, [ptrace, process_vm_readv, process_vm_writev,
# io_uring_setup, then System V IPC: shmget shmat shmctl shmdt semget semop semctl
# semtimedop msgget msgsnd msgrcv msgctl, then POSIX message queues: mq_open mq_unlink
# mq_timedsend mq_timedreceive mq_notify mq_getsetattr]). IPC objects outlive the runner
# and are not files, so neither the scratch folder's cleanup nor Landlock reaches them:
# one submission could leave data there for the next.
_SYSCALLS = {"x86_64": (0xC000003E, 41, [101, 310, 311, 425, 29, 30, 31, 67, 64, 65, 66, 220,
                                         68, 69, 70, 71, 240, 241, 242, 243, 244, 245]),
             "aarch64": (0xC00000B7, 198, [117, 270, 271, 425, 194, 196, 195, 197, 190, 193,
                                           191, 192, 186, 189, 188, 187, 180, 181, 182, 183,
                                           184, 185])}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    """One classic BPF instruction."""
    return struct.pack("=HBBI", code, jt, jf, k)


def _refusing(arch: int, calls: list[int], refusal: bytes) -> list[bytes]:
    """The start of both filters: `refusal` for another ABI (i386, x32) and for each of
    `calls`."""
    program = [_op(_LD_ABS, 4), _op(_JEQ, arch, 1, 0), refusal,
               _op(_LD_ABS, 0), _op(_JGE, 0x40000000, 0, 1), refusal]
    for nr in calls:
        program += [_op(_JEQ, nr, 0, 1), refusal]
    return program


def _seccomp_program(arch: int, socket_nr: int, denied: list[int]) -> bytes:
    """Deny other ABIs (i386, x32) and the listed calls; socket() only for AF_UNIX."""
    program = _refusing(arch, denied, _op(_RET, _RET_ERRNO | _EPERM))
    program += [_op(_JEQ, socket_nr, 0, 3), _op(_LD_ABS, 16),  # args[0], low half: the domain
                _op(_JEQ, _AF_UNIX, 1, 0), _op(_RET, _RET_ERRNO | _EACCES), _op(_RET, _RET_ALLOW)]
    return b"".join(program)


def _install(code: bytes) -> None:
    """Install a filter on this process and its future children."""
    buffer = ctypes.create_string_buffer(code, len(code))
    program = _SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) < 0:
        raise OSError(ctypes.get_errno(), "seccomp filter refused")


def seccomp_no_sockets() -> list[str]:
    """Install the runner's filter on this process and its future children."""
    machine = platform.machine()
    if machine not in _SYSCALLS:
        raise OSError(f"no seccomp filter written for {machine}")
    _install(_seccomp_program(*_SYSCALLS[machine]))
    return [("seccomp: Unix sockets only, no ptrace, cross-process memory, io_uring or "
             "System V / message-queue IPC")]


# What a sealed snapshot's Landlock domain refuses that the runner's allows, by arch:
# (open-style calls -> index of their flags argument, sendto, calls refused outright:
# openat2 (flags out of reach), creat, making, removing, renaming and linking paths,
# truncate, every signal-sending call, socket, connect, sendmsg, sendmmsg).
_SEALED = {"x86_64": ({2: 1, 257: 2}, 44,
                      [437, 85, 83, 258, 84, 87, 263, 82, 264, 316, 86, 265, 88, 266, 133, 259,
                       76, 62, 200, 234, 129, 297, 424, 41, 42, 46, 307]),
           "aarch64": ({56: 2}, 206,
                       [437, 34, 35, 38, 276, 37, 36, 33, 45, 129, 130, 131, 138, 240, 424, 198,
                        203, 211, 269])}
_RET_KILL_PROCESS, _JSET = 0x80000000, 0x45
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _sealed_program(arch: int, opens: dict[int, int], sendto: int, ended: list[int]) -> bytes:
    """End the process on every call the seal would refuse; allow the rest."""
    kill, allow = _op(_RET, _RET_KILL_PROCESS), _op(_RET, _RET_ALLOW)
    program = _refusing(arch, ended, kill)
    for nr, flags in opens.items():  # an open for writing (the low half of the flags)
        program += [_op(_JEQ, nr, 0, 4), _op(_LD_ABS, 16 + 8 * flags), _op(_JSET, _WRITING, 0, 1),
                    kill, allow]
    program += [_op(_JEQ, sendto, 0, 7),  # to an address (args[4]), not a plain send
                _op(_LD_ABS, 48), _op(_JEQ, 0, 1, 0), kill, _op(_LD_ABS, 52), _op(_JEQ, 0, 1, 0),
                kill, allow]
    return b"".join(program + [allow])


def seccomp_filtering() -> bool:
    """Whether this process runs under a seccomp filter (the runner's own): then so
    can a sealed snapshot's checks (`seccomp_end_on_sealed_calls`)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    return "\nSeccomp:\t2" in status


def seccomp_end_on_sealed_calls() -> None:
    """In a sealed snapshot's check: make every call the seal refuses end the process
    instead of failing, so that a seal that played any part is seen from outside (the
    check then runs again on the final state) and no student code can act on a refusal."""
    machine = platform.machine()
    if machine not in _SEALED:
        raise OSError(f"no seccomp filter written for {machine}")
    _install(_sealed_program(_SYSCALLS[machine][0], *_SEALED[machine]))


def confine(scratch: str, processes: int) -> tuple[list[str], list[str]]:
    """Apply every layer the kernel allows, with at most `processes` processes:
    (layers applied, layers refused with why)."""
    applied, refused = [], []
    for name, layer in (("network namespace", private_network),
                        ("private /proc", private_proc),
                        ("process limit", lambda: limit_processes(processes)),
                        ("capability drop", drop_capabilities),
                        ("landlock", lambda: landlock([scratch], read_only_paths())),
                        ("seccomp", seccomp_no_sockets)):
        try:
            applied.extend(layer())
        except OSError as exc:
            refused.append(f"{name} unavailable: {exc.strerror or exc}")
    return applied, refused
