"""The answer key: reference results stored by the content of their inputs.

A check's truth (the exact spectrum of a Hessian, say) is a deterministic
function of the inputs it is computed from, and most of those inputs are the
same for every submission: hidden fixtures, and the models every notebook
builds from the same seeds. A suite marks such a function with `answer`;
its results are then looked up by (function, digest of the arguments) in

- the answer key of the grader version (`answer_key.pt` beside
  `assignment.toml`, written by `autograder key`, `costs` and `validate`,
  carried in the Gradescope zip), filled by grading the master;
- this process's memory (a cohort worker grades many notebooks);

and computed only when neither holds them. A key written for another grader
version (an edited reference, fixture or check) is never read. Results are
the same either way: a lookup returns a copy of exactly what the function
returned, so a check cannot tell a stored result from a computed one (a
test holds the key to a fresh computation, result by result).
"""

import contextlib
import copy
import functools
import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

KEY_FILE = "answer_key.pt"
MEMORY_ENTRIES = 64  # results kept in this process beyond the key, least recent dropped


def content_key(*values: Any) -> str:
    """A digest of tensors, arrays, models (architecture and weights), containers,
    numbers and strings, by content: equal inputs give equal digests."""
    digest = hashlib.sha256()

    def add(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().contiguous().cpu()
            digest.update(f"tensor {tensor.dtype}{tuple(tensor.shape)}".encode())
            if tensor.numel():
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, np.ndarray):
            add(torch.from_numpy(np.ascontiguousarray(value)))
        elif isinstance(value, torch.nn.Module):
            digest.update(f"module {value!r}".encode())
            for name, tensor in value.state_dict().items():
                digest.update(name.encode())
                add(tensor)
        elif isinstance(value, (list, tuple)):
            digest.update(f"{type(value).__name__} {len(value)}".encode())
            for item in value:
                add(item)
        elif isinstance(value, dict):
            digest.update(f"dict {len(value)}".encode())
            for key in sorted(value, key=repr):
                add(key)
                add(value[key])
        else:
            digest.update(f"{type(value).__name__} {value!r}".encode())

    for value in values:
        add(value)
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """What a result is stored as: named tuples (torch.return_types) become tuples,
    so that a stored and a computed result are the same plain data."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.detach()
    return value


class AnswerKey:
    """Results by `function:digest`, for one grader version.

    `recording` adds every computed result (grading the master builds the key);
    `verifying` recomputes every stored result it is asked for and lists those
    that differ (the key's test).
    """

    def __init__(self, version: str, entries: dict[str, Any] | None = None):
        self.version = version
        self.entries: dict[str, Any] = entries if entries is not None else {}
        self.recording = False
        self.verifying = False
        self.hits = 0
        self.mismatches: list[str] = []

    @classmethod
    def read(cls, path: Path, version: str) -> "AnswerKey | None":
        """The key stored at `path` if it was written for `version`; None if there is
        none, it is unreadable, or it belongs to another version."""
        data = _load(path)
        if data.get("version") != version or not isinstance(data.get("entries"), dict):
            return None
        return cls(version, data["entries"])

    def write(self, path: Path) -> None:
        partial = path.with_suffix(".partial")
        torch.save({"version": self.version, "entries": self.entries}, partial)
        partial.replace(path)


def _load(path: Path) -> dict:
    """What a key file holds; empty if it is absent, truncated or not a key."""
    try:
        data = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError):
        return {}
    return data if isinstance(data, dict) else {}


def stored_version(path: Path) -> str | None:
    """The grader version the key at `path` was written for, or None."""
    return _load(path).get("version")


_active: AnswerKey | None = None
_memory: "OrderedDict[str, Any]" = OrderedDict()


@contextlib.contextmanager
def using(key: AnswerKey | None) -> Iterator[AnswerKey | None]:
    """Look results up in `key` (and record or verify, as it says) while the body runs."""
    global _active
    previous, _active = _active, key
    try:
        yield key
    finally:
        _active = previous


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.nan_to_num(0.0) if a.is_floating_point() else a,
                                b.nan_to_num(0.0) if b.is_floating_point() else b))
    if isinstance(a, (tuple, list)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_equal(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_equal(a[k], b[k]) for k in a))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def answer(function: Callable) -> Callable:
    """Store `function`'s results under the content of its arguments, in the answer
    key and in this process (see the module's docstring). The function must be
    deterministic in its arguments and what the suite's files define, and return
    tensors, numbers, strings or containers of them."""
    name = f"{function.__module__}.{function.__qualname__}"

    @functools.wraps(function)
    def stored(*args: Any, **kwargs: Any) -> Any:
        key = f"{name}:{content_key(args, kwargs)}"
        book = _active
        if book is not None and key in book.entries:
            book.hits += 1
            if book.verifying and not _equal(_plain(function(*args, **kwargs)),
                                             book.entries[key]):
                book.mismatches.append(key)
            return copy.deepcopy(book.entries[key])
        if key in _memory:
            _memory.move_to_end(key)
            value = _memory[key]
        else:
            value = _plain(function(*args, **kwargs))
            _memory[key] = value
            while len(_memory) > MEMORY_ENTRIES:
                _memory.popitem(last=False)
        if book is not None and book.recording:
            book.entries[key] = value
        return copy.deepcopy(value)

    return stored
