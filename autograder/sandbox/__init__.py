"""The untrusted side and its one door.

The runner (`runner`, confined by `confine`) executes a submission's cells
in another process; `process` starts, limits, watches and kills it; the wire
format (`protocol`) carries plain data only; and `session` (execution) with
`calls` (a check's calls into a fork) are the only trusted readers of what
the runner sends. Nothing outside this package
imports the runner or the protocol, and this package knows nothing of
scores or outputs (tests/test_architecture.py holds it to that).

The door, imported lazily so that the runner itself loads none of it:
`NotebookSession` (execute, then `student()` proxies), `StudentProxy`,
`Operator`, the `StudentError` family, `ExecutionPolicy` and `Limits`.
"""

_EXPORTS = {
    "NotebookSession": "session", "StudentProxy": "calls", "Operator": "calls",
    "StudentError": "calls", "StudentTimeout": "calls", "StudentCrash": "calls",
    "UnsupportedReturn": "calls", "MissingName": "calls",
    "OperatorBudgetExceeded": "calls",
    "ExecutionPolicy": "process", "Limits": "process", "RunnerProcess": "process",
    "Workspace": "process", "reap_runners_of": "process", "kill_processes": "process",
    "CellRun": "records", "CellStatus": "records", "Figure": "records",
}

__all__ = ["CellRun", "CellStatus", "ExecutionPolicy", "Figure", "Limits", "MissingName",
           "NotebookSession", "Operator", "OperatorBudgetExceeded", "RunnerProcess",
           "StudentCrash", "StudentError", "StudentProxy", "StudentTimeout",
           "UnsupportedReturn", "Workspace", "kill_processes", "reap_runners_of"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
