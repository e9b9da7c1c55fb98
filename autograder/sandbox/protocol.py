"""The data-only wire format between the grader and the untrusted runner.

Messages are JSON objects, each framed by a 4-byte big-endian length, over
a socket. Values are restricted to None, bool, int, float (NaN and inf
allowed), str, list, tuple, str-keyed dict, torch tensors (dense, strided,
CPU, numeric or bool), small torch `nn.Sequential` stacks of whitelisted
layers (so a model can cross as architecture + weights), and opaque handles
to grader-side callables. Nothing is pickled, nothing executes on decode,
and every decode checks the schema and size limits: whatever the runner
sends, the grader gets plain data or a `ProtocolError`.
"""

import base64
import json
import math
import os
import socket
import struct
from dataclasses import dataclass

import torch
from torch import nn

MAX_MESSAGE_BYTES = 256 * 2**20
MAX_DEPTH = 32
MAX_ITEMS = 1_000_000
# How long the runner lets a fork draw one collection of figures (see
# `runner.FigureCollector`); the grader waits that long, and more, for the last ones.
DRAWING_S = 10.0
# How a cell's figures are drawn (a run request's "drawing"): in the cell, by a fork of
# the runner beside it, or not at all (no one will see a picture; the line data stays).
DRAWN_HERE, DRAWN_ASIDE, NO_PICTURES = "here", "aside", "none"

DTYPES = {str(dt).removeprefix("torch."): dt for dt in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8,
    torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128)}

# Layers a model may be built from on either side of the boundary.
LAYERS = {"Linear": nn.Linear, "Tanh": nn.Tanh, "ReLU": nn.ReLU, "GELU": nn.GELU,
          "Sigmoid": nn.Sigmoid, "Softplus": nn.Softplus, "Identity": nn.Identity,
          "Flatten": nn.Flatten}


class ProtocolError(ValueError):
    """A message or value that does not fit the schema."""


class UnsupportedValue(ProtocolError):
    """A value of a type the boundary does not carry."""


@dataclass(frozen=True)
class Handle:
    """Reference to a grader-side callable; the runner sees only the number."""

    id: int


# --- values ----------------------------------------------------------------


def encode(value, _depth: int = 0):
    """Turn a value into JSON-ready data, or raise UnsupportedValue."""
    if _depth > MAX_DEPTH:
        raise UnsupportedValue("value is nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value if abs(value) < 2**63 else {"__float__": float(value)}
    if kind is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if kind is list:
        return [encode(v, _depth + 1) for v in value]
    if kind is tuple:
        return {"__tuple__": [encode(v, _depth + 1) for v in value]}
    if kind is dict:
        if not all(type(k) is str for k in value):
            raise UnsupportedValue("dict keys must be strings")
        return {"__dict__": {k: encode(v, _depth + 1) for k, v in value.items()}}
    if kind is torch.Tensor or kind is nn.Parameter:
        return _encode_tensor(value)
    if kind is nn.Sequential:
        return _encode_sequential(value)
    if kind is Handle:
        return {"__handle__": value.id}
    raise UnsupportedValue(f"values of type {kind.__name__} cannot cross the boundary")


def _encode_tensor(t: torch.Tensor) -> dict:
    if t.layout != torch.strided or t.device.type != "cpu" or t.is_quantized:
        raise UnsupportedValue("only dense CPU tensors cross the boundary")
    dtype = str(t.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise UnsupportedValue(f"tensors of dtype {dtype} are not supported")
    data = t.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
    raw = data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
    return {"__tensor__": {"dtype": dtype, "shape": list(t.shape),
                           "data": base64.b64encode(raw).decode("ascii")}}


def _encode_sequential(model: nn.Sequential) -> dict:
    layers = []
    for layer in model:
        name = type(layer).__name__
        if LAYERS.get(name) is not type(layer):
            raise UnsupportedValue(f"model layer {name} cannot cross the boundary")
        if name == "Linear":
            layers.append({"type": name, "in": layer.in_features, "out": layer.out_features,
                           "bias": layer.bias is not None})
        else:
            layers.append({"type": name})
    state = {k: _encode_tensor(v)["__tensor__"] for k, v in model.state_dict().items()}
    return {"__sequential__": {"layers": layers, "state": state}}


def decode(data, _depth: int = 0, _budget: list[int] | None = None):
    """Rebuild a value from JSON data, checking every part of the schema."""
    budget = _budget if _budget is not None else [MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0:
        raise ProtocolError("value has too many parts")
    if _depth > MAX_DEPTH:
        raise ProtocolError("value is nested too deeply")
    kind = type(data)
    if data is None or kind in (bool, str, float):
        return data
    if kind is int:
        return data
    if kind is list:
        return [decode(v, _depth + 1, budget) for v in data]
    if kind is not dict or len(data) != 1:
        raise ProtocolError("malformed value")
    (tag, body), = data.items()
    if tag == "__tuple__" and type(body) is list:
        return tuple(decode(v, _depth + 1, budget) for v in body)
    if tag == "__dict__" and type(body) is dict:
        return {str(k): decode(v, _depth + 1, budget) for k, v in body.items()}
    if tag == "__float__" and type(body) in (str, float):
        if type(body) is float:
            return body
        if body not in ("nan", "inf", "-inf"):
            raise ProtocolError("malformed float")
        return float(body)
    if tag == "__tensor__":
        return _decode_tensor(body)
    if tag == "__sequential__":
        return _decode_sequential(body)
    if tag == "__handle__" and type(body) is int:
        return Handle(body)
    raise ProtocolError(f"unknown value tag {tag!r}")


def _decode_tensor(body) -> torch.Tensor:
    if type(body) is not dict or set(body) != {"dtype", "shape", "data"}:
        raise ProtocolError("malformed tensor")
    dtype = DTYPES.get(body["dtype"]) if type(body["dtype"]) is str else None
    shape = body["shape"]
    if dtype is None:
        raise ProtocolError(f"unsupported tensor dtype {body['dtype']!r}")
    if type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape):
        raise ProtocolError("malformed tensor shape")
    if len(shape) > 16:
        raise ProtocolError("tensor has too many dimensions")
    if type(body["data"]) is not str:
        raise ProtocolError("malformed tensor data")
    try:
        raw = base64.b64decode(body["data"], validate=True)
    except ValueError as exc:
        raise ProtocolError("malformed tensor data") from exc
    itemsize = torch.empty((), dtype=dtype).element_size()
    numel = math.prod(shape)
    if len(raw) != numel * itemsize:
        raise ProtocolError("tensor data does not match its shape and dtype")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()


def _decode_sequential(body) -> nn.Sequential:
    if type(body) is not dict or set(body) != {"layers", "state"}:
        raise ProtocolError("malformed model")
    layers, state = body["layers"], body["state"]
    if type(layers) is not list or type(state) is not dict or len(layers) > 64:
        raise ProtocolError("malformed model")
    modules = []
    for spec in layers:
        if type(spec) is not dict or spec.get("type") not in LAYERS:
            raise ProtocolError("model has an unsupported layer")
        if spec["type"] == "Linear":
            sizes = (spec.get("in"), spec.get("out"))
            if not all(type(s) is int and 0 < s <= 1_000_000 for s in sizes):
                raise ProtocolError("malformed Linear layer")
            if sizes[0] * sizes[1] > 50_000_000:
                raise ProtocolError("Linear layer too large")
            with torch.device("meta"):
                layer = nn.Linear(*sizes, bias=spec.get("bias") is True)
            modules.append(layer)
        else:
            modules.append(LAYERS[spec["type"]]())
    model = nn.Sequential(*modules)
    tensors = {str(k): _decode_tensor(v) for k, v in state.items()}
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if {k: v.shape for k, v in tensors.items()} != expected:
        raise ProtocolError("model weights do not match its layers")
    model.load_state_dict(tensors, assign=True)
    return model


# --- framing ---------------------------------------------------------------


def send(sock: socket.socket, message: dict) -> None:
    """Write one message; values inside must already be encoded."""
    payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_MESSAGE_BYTES:
        raise UnsupportedValue(f"message of {len(payload)} bytes exceeds the limit")
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket) -> dict:
    """Read one message (a JSON object), enforcing the size limit."""
    (size,) = struct.unpack(">I", _recv_exact(sock, 4))
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {size} bytes exceeds the limit")
    message = _parse(_recv_exact(sock, size))
    if type(message) is not dict:
        raise ProtocolError("message is not a JSON object")
    return message


def _parse(payload: bytes):
    """JSON from the other side; every way it can be unreadable is a ProtocolError
    (ValueError covers bad UTF-8, bad JSON and integers past the digit limit)."""
    # Parsing allocates per container and per item (a 100 MiB message of "{}," would take
    # gigabytes), so the parts are counted first, at the speed of a byte scan: separators
    # inside strings count too, which only makes the bound stricter.
    parts = payload.count(b"{") + payload.count(b"[") + payload.count(b",")
    if parts > MAX_ITEMS:
        raise ProtocolError(f"message has more than {MAX_ITEMS:,} parts")
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("message is not valid JSON") from exc


def send_with_fd(sock: socket.socket, message: dict, fd: int) -> None:
    """Send a small message together with a file descriptor (SCM_RIGHTS)."""
    payload = json.dumps(message).encode("utf-8")
    socket.send_fds(sock, [struct.pack(">I", len(payload)) + payload], [fd])


def receive_with_fd(sock: socket.socket) -> tuple[dict, int]:
    """Receive a message sent by `send_with_fd`; the descriptor is ours to close."""
    data, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not data:
        raise EOFError("the other side closed the connection")
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ProtocolError("expected exactly one file descriptor")
    if len(data) < 4:
        data += _recv_exact(sock, 4 - len(data))
    (size,) = struct.unpack(">I", data[:4])
    if size > 4096:
        os.close(fds[0])
        raise ProtocolError("descriptor message too large")
    body = data[4:]
    if len(body) < size:
        body += _recv_exact(sock, size - len(body))
    try:
        message = _parse(body)
    except ProtocolError:
        os.close(fds[0])
        raise
    if type(message) is not dict:
        os.close(fds[0])
        raise ProtocolError("message is not a JSON object")
    return message, fds[0]
