"""The boundary's wire format: plain data round-trips, everything else is refused."""

import json
import math
import socket

import pytest
import torch
from torch import nn

from autograder.sandbox import protocol


@pytest.mark.parametrize("value", [
    None, True, 3, -2**62, 1.5, "text", [1, 2.0, "x"], (1, (2, 3)), {"a": [1, {"b": None}]},
    [], (), {},
])
def test_plain_values_round_trip(value):
    assert protocol.decode(json.loads(json.dumps(protocol.encode(value)))) == value


def test_non_finite_floats_round_trip():
    decoded = protocol.decode(protocol.encode([math.nan, math.inf, -math.inf]))
    assert math.isnan(decoded[0]) and decoded[1] == math.inf and decoded[2] == -math.inf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bool,
                                   torch.bfloat16, torch.complex64])
def test_tensors_round_trip_exactly(dtype):
    t = (torch.randn(3, 4) * 10).to(dtype)
    back = protocol.decode(json.loads(json.dumps(protocol.encode(t))))
    assert back.dtype == dtype and back.shape == t.shape and torch.equal(back, t)


def test_tensor_views_and_grad_are_plain_on_arrival():
    base = torch.arange(12.0, requires_grad=True)
    view = (base * 2).reshape(3, 4).T[1:]
    back = protocol.decode(protocol.encode(view))
    assert torch.equal(back, view.detach()) and not back.requires_grad
    assert protocol.decode(protocol.encode(torch.empty(0, 3))).shape == (0, 3)


def test_models_cross_as_architecture_and_weights():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    back = protocol.decode(json.loads(json.dumps(protocol.encode(model))))
    x = torch.randn(5, 4)
    assert type(back) is nn.Sequential and torch.equal(back(x), model(x))


class Lying:
    def __eq__(self, other):
        return True


class Sub(torch.Tensor):
    pass


@pytest.mark.parametrize("value", [
    Lying(), {1: 2}, {"a": Lying()}, torch.tensor([1.0]).as_subclass(Sub),
    nn.Sequential(nn.Conv2d(1, 1, 3)), print, 2**70 + 0j, b"bytes", {1, 2},
])
def test_unsupported_values_are_refused(value):
    with pytest.raises(protocol.UnsupportedValue):
        protocol.encode(value)


@pytest.mark.parametrize("data", [
    {"__tensor__": {"dtype": "float32", "shape": [2], "data": "AAAA"}},  # wrong length
    {"__tensor__": {"dtype": "object", "shape": [1], "data": ""}},
    {"__tensor__": {"dtype": "float32", "shape": [-1], "data": ""}},
    {"__tensor__": {"dtype": "float32", "shape": [1], "data": "!!!"}},
    {"__pickle__": "gASVAAAAAAAAAAAu"},
    {"__tuple__": "not a list"},
    {"__float__": "1e5"},
    {"a": 1, "b": 2},
    {"__sequential__": {"layers": [{"type": "Conv2d"}], "state": {}}},
    {"__sequential__": {"layers": [{"type": "Linear", "in": 2, "out": 2, "bias": True}],
                        "state": {}}},
    {"__sequential__": {"layers": [{"type": "Linear", "in": 10**6, "out": 10**6}],
                        "state": {}}},
])
def test_malformed_data_is_a_protocol_error(data):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(data)


def test_deep_nesting_is_refused_both_ways():
    deep = []
    for _ in range(protocol.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(protocol.UnsupportedValue):
        protocol.encode(deep)
    data = []
    for _ in range(protocol.MAX_DEPTH + 5):
        data = [data]
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(data)


def test_framing_round_trip_and_limits():
    a, b = socket.socketpair()
    with a, b:
        protocol.send(a, {"op": "x", "value": protocol.encode(torch.ones(1000))})
        assert torch.equal(protocol.decode(protocol.receive(b)["value"]), torch.ones(1000))
        a.sendall((protocol.MAX_MESSAGE_BYTES + 1).to_bytes(4, "big"))
        with pytest.raises(protocol.ProtocolError):
            protocol.receive(b)
    c, d = socket.socketpair()
    with c, d:
        payload = b"[1, 2]"
        c.sendall(len(payload).to_bytes(4, "big") + payload)
        with pytest.raises(protocol.ProtocolError):
            protocol.receive(d)  # valid JSON but not an object
        c.sendall((5).to_bytes(4, "big") + b"\xff\xfe{}}")
        with pytest.raises(protocol.ProtocolError):
            protocol.receive(d)
        c.close()
        with pytest.raises(EOFError):
            protocol.receive(d)
