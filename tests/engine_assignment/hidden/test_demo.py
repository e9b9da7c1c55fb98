"""Hidden checks of the engine demo assignment."""

import torch

from autograder.testing import check


@check(exercise="A", weight=2)
def test_square_of_a_tensor(student):
    """square works on tensors"""
    out = student.call("square", torch.tensor([1.0, -3.0]))
    assert isinstance(out, torch.Tensor) and torch.equal(out, torch.tensor([1.0, 9.0])), \
        "square(x) should return x * x elementwise"


@check(exercise="A", weight=1)
def test_square_of_a_number(student):
    """square works on numbers"""
    out = student.call("square", 7)
    assert isinstance(out, int | float) and out == 49, "square(7) should be the number 49"


@check(exercise="B")
def test_answer(student):
    """answer is 42"""
    assert student.get("answer") == 42, "answer is not the answer"


@check(exercise="C", weight=1)
def test_apply_twice_result(student):
    """apply_twice applies the operator twice"""
    A = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    op = student.operator(lambda v: A @ v, dim=2, dtype=torch.float64, budget=5)
    out = student.call("apply_twice", op, torch.tensor([1.0, 1.0]))
    assert isinstance(out, torch.Tensor) and out.dtype in (torch.float32, torch.float64), \
        "apply_twice(op, v) should return a float32 or float64 tensor, as op does"
    assert torch.allclose(out.double(), torch.tensor([4.0, 9.0], dtype=torch.float64)), \
        "apply_twice(op, v) should return op(op(v))"


@check(exercise="C", weight=1)
def test_apply_twice_uses_two_calls(student):
    """apply_twice calls the operator exactly twice"""
    op = student.operator(lambda v: v, dim=2, budget=2, name="the operator",
                          hint="apply it exactly twice")
    student.call("apply_twice", op, torch.tensor([1.0, 1.0]))
    assert op.calls == 2, f"apply_twice called the operator {op.calls} times; apply it twice"
