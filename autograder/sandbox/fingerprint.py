"""Digests of what a check can read of an executed notebook (untrusted side).

Checks may run on a snapshot of the notebook taken while it still executes
(see `session`). Such a verdict stands only if the final state would give
the same one, which holds when everything the check's calls can reach is
the same in both: the names it asked for, and, through every function among
them, the globals their code names (recursively), closures, defaults and
attributes, user classes and modules by content, tensors and arrays by
their bytes, generators by their state. Library objects count by identity
(a snapshot is a fork, so an unchanged object has the same address in both
processes) and `ambient` covers what a notebook can change about libraries
and settings. Whatever is not understood digests as `UNKNOWN`, which never
matches: the check is then run again on the final state.

Nothing here calls the notebook's code: objects are read through their raw
`__dict__`, exact builtin types, tensors and arrays only.
"""

import builtins
import dis
import hashlib
import marshal
import os
import sys
import types
import warnings

UNKNOWN = "unknown"
MAX_NODES = 50_000  # objects visited for one name
MAX_DEPTH = 60


class _Unknown(Exception):
    pass


_GLOBAL_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"}
_PLAIN = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))


def _user_root() -> str:
    return os.path.join(os.environ.get("HOME", "/nonexistent"), "")


class _Digest:
    """Feeds one value's reachable state into a hash."""

    def __init__(self, namespace: dict):
        import numpy
        import torch

        self.namespace, self.torch, self.numpy = namespace, torch, numpy
        self.root = _user_root()
        self.hash = hashlib.blake2b(digest_size=16)
        self.seen: dict[int, int] = {}
        self.keep: list = []  # what is walked stays alive, so no id is reused meanwhile

    def token(self, *parts) -> None:
        self.hash.update(repr(parts).encode())

    def user_globals(self, scope: dict) -> bool:
        file = scope.get("__file__")
        return scope is self.namespace or (isinstance(file, str) and file.startswith(self.root))

    def user_module(self, module: types.ModuleType) -> bool:
        file = getattr(module, "__file__", None)  # ModuleType's own slot: no user code
        return isinstance(file, str) and file.startswith(self.root)

    def user_made(self, value) -> bool:
        """Whether the notebook (not a library) made this function, class or object."""
        kind = type(value)
        if kind is types.FunctionType:
            return self.user_globals(value.__globals__)
        if kind is types.MethodType:
            return self.user_made(value.__func__) or self.user_made(value.__self__)
        return self.user_class(value if issubclass(kind, type) else kind)

    def user_class(self, cls: type) -> bool:
        module = sys.modules.get(type.__getattribute__(cls, "__module__"))
        return (type.__getattribute__(cls, "__module__") == "__main__"
                or (module is not None and self.user_module(module)))

    def walk(self, value, depth: int = 0) -> None:
        if depth > MAX_DEPTH or len(self.seen) > MAX_NODES:
            raise _Unknown
        kind = type(value)
        if kind in _PLAIN:
            self.token(kind.__name__, repr(value))
            return
        if id(value) in self.seen:
            self.token("again", self.seen[id(value)])
            return
        self.seen[id(value)] = len(self.seen)
        self.keep.append(value)
        self._walk(value, kind, depth + 1)

    def _walk(self, value, kind: type, depth: int) -> None:
        torch, numpy = self.torch, self.numpy
        if kind in (torch.Tensor, torch.nn.Parameter):
            tensor = value.detach()
            if tensor.layout != torch.strided or tensor.device.type != "cpu" \
                    or tensor.is_quantized:
                raise _Unknown
            self.token("tensor", str(tensor.dtype), tuple(tensor.shape), value.requires_grad,
                       kind.__name__)
            flat = tensor.contiguous().reshape(-1)
            self.hash.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
            return
        if kind is numpy.ndarray:
            if value.dtype.hasobject:
                raise _Unknown
            self.token("array", value.dtype.str, value.shape)
            self.hash.update(numpy.ascontiguousarray(value).tobytes())
            return
        if issubclass(kind, torch.Tensor | numpy.ndarray):
            raise _Unknown  # a subclass may keep its data anywhere
        if issubclass(kind, list | tuple):
            self.token(kind.__qualname__, id(kind), len(value))
            for item in (list.__iter__ if issubclass(kind, list) else tuple.__iter__)(value):
                self.walk(item, depth)
            self.extra_state(value, kind, depth)
            return
        if issubclass(kind, dict):
            self.token(kind.__qualname__, id(kind), len(value))
            for key, item in list(dict.items(value)):
                self.walk(key, depth)
                self.walk(item, depth)
            self.extra_state(value, kind, depth)
            return
        if kind in (set, frozenset):
            self.token(kind.__name__, sorted(_part(self.namespace, item) for item in value))
            return
        if kind is types.FunctionType:
            self.function(value, depth)
            return
        if kind is types.MethodType:
            self.token("method")
            self.walk(value.__self__, depth)
            self.walk(value.__func__, depth)
            return
        if kind is types.ModuleType:
            if self.user_module(value):
                self.token("user module", value.__name__)
                self.walk(dict(object.__getattribute__(value, "__dict__")), depth)
            else:
                self.token("module", value.__name__)
            return
        if kind is torch.Generator:
            self.token("generator")
            self.hash.update(value.get_state().numpy().tobytes())
            return
        if kind in (torch.dtype, torch.device):
            self.token(kind.__name__, str(value))
            return
        if issubclass(kind, type):
            self.cls(value, depth)
            return
        if kind in (types.BuiltinFunctionType, types.MethodDescriptorType,
                    types.WrapperDescriptorType, types.MethodWrapperType,
                    types.GetSetDescriptorType, types.MemberDescriptorType):
            self.token("builtin", id(value))
            return
        if kind in (staticmethod, classmethod, property):
            self.token(kind.__name__)
            for part in ((value.__func__,) if kind is not property
                         else (value.fget, value.fset, value.fdel)):
                self.walk(part, depth)
            return
        self.instance(value, kind, depth)

    def function(self, fn: types.FunctionType, depth: int) -> None:
        scope = fn.__globals__
        if not self.user_globals(scope):
            self.token("library function", id(fn))
            return
        try:
            code = marshal.dumps(fn.__code__)
        except ValueError as exc:
            raise _Unknown from exc
        self.token("function")
        self.hash.update(code)
        for part in (fn.__defaults__, fn.__kwdefaults__, dict(fn.__dict__)):
            self.walk(part, depth)
        for cell in fn.__closure__ or ():
            try:
                self.walk(cell.cell_contents, depth)
            except ValueError:
                self.token("empty cell")
        for name in sorted(_global_names(fn.__code__)):
            if name in scope:
                self.token("global", name)
                self.walk(scope[name], depth)
            else:
                self.token("builtin" if hasattr(builtins, name) else "missing", name)

    def cls(self, cls: type, depth: int) -> None:
        if not self.user_class(cls):
            self.token("library class", id(cls))
            return
        mro = type.__getattribute__(cls, "__mro__")
        self.token("class", type.__getattribute__(cls, "__qualname__"))
        for base in mro[1:]:
            self.walk(base, depth)
        self.walk({key: item for key, item in vars(cls).items()
                   if key not in ("__dict__", "__weakref__")}, depth)

    def instance(self, value, kind: type, depth: int) -> None:
        """Any other object: its class and its own attributes; state held elsewhere (a C
        type, slots) is not understood."""
        self.token("object")
        self.walk(kind, depth)
        if not self.extra_state(value, kind, depth):
            raise _Unknown

    def extra_state(self, value, kind: type, depth: int) -> bool:
        """Walk an object's own attributes; False if it keeps state where this cannot
        see (slots, or no attribute dictionary)."""
        try:
            state = object.__getattribute__(value, "__dict__")
        except AttributeError:
            state = None
        if any("__slots__" in vars(base) for base in type.__getattribute__(kind, "__mro__")
               if self.user_class(base)):
            raise _Unknown
        if state is None:
            return False
        if type(state) is not dict:
            raise _Unknown
        self.walk(dict(state), depth)
        return True


def _global_names(code: types.CodeType) -> set[str]:
    """Every name a code object, or one nested in it, looks up as a global."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_OPS}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _part(namespace: dict, value) -> str:
    digest = _Digest(namespace)
    digest.walk(value)
    return digest.hash.hexdigest()


def digests(namespace: dict, names: list[str]) -> dict[str, str]:
    """A digest of each name's value and everything reachable from it; `UNKNOWN`
    where that cannot be told."""
    found = {}
    for name in names:
        if name not in namespace:
            found[name] = "missing"
            continue
        try:
            found[name] = _part(namespace, namespace[name])
        except Exception:  # noqa: BLE001 - any surprise means "run the check again"
            found[name] = UNKNOWN
    return found


# Library attributes that a notebook could rebind, changing what its functions compute.
_WATCHED = ("builtins", "math", "random", "numpy", "numpy.linalg", "torch", "torch.linalg",
            "torch.autograd", "torch.autograd.functional", "torch.func", "torch.nn",
            "torch.nn.functional", "torch.nn.init")
_ABSENT = object()


def _spaces() -> dict[str, dict]:
    import torch

    spaces = {name: vars(sys.modules[name]) for name in _WATCHED if name in sys.modules}
    spaces.update({f"{cls.__module__}.{cls.__qualname__}": vars(cls)
                   for cls in (torch.Tensor, torch.nn.Module)})
    return spaces


def library_baseline() -> dict[str, dict]:
    """The watched library attributes as imported, before any cell runs."""
    return {name: dict(space) for name, space in _spaces().items()}


def _wraps(value, original) -> bool:
    """Whether a library replaced `original` by a wrapper of it (as torch._dynamo, on
    import, wraps torch.manual_seed): the same function to a notebook."""
    for _ in range(5):
        if type(value) is not types.FunctionType:
            return False
        value = value.__dict__.get("__wrapped__")
        if value is original:
            return True
    return False


def ambient(namespace: dict, baseline: dict[str, dict]) -> str:
    """A digest of the process-wide state a check's calls depend on beyond the names:
    torch's and numpy's settings, warnings made errors, the working folder, and every
    watched library attribute the notebook rebound (one a library added or wrapped
    on its own counts as unchanged)."""
    import numpy
    import torch

    digest = _Digest(namespace)
    digest.token(torch.get_default_dtype(), torch.is_grad_enabled(),
                 torch.are_deterministic_algorithms_enabled(), torch.is_anomaly_enabled(),
                 torch.get_num_threads(), numpy.geterr(), sys.getrecursionlimit(), os.getcwd(),
                 [(str(f[1]), getattr(f[2], "__name__", ""), str(f[3]), f[4])
                  for f in warnings.filters if f[0] == "error"])
    for name, space in _spaces().items():
        before = baseline.get(name, {})
        for key, value in sorted(space.items(), key=lambda item: str(item[0])):
            original = before.get(key, _ABSENT)
            if value is original or _wraps(value, original):
                continue
            if original is _ABSENT and not digest.user_made(value):
                continue  # a library's own lazy attribute
            digest.token("rebound", name, str(key))
            if digest.user_made(value):
                digest.walk(value)
            else:
                digest.token(id(value))
        digest.token("removed", name, sorted(str(k) for k in before if k not in space))
    return digest.hash.hexdigest()
