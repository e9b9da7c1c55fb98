"""Visible checks, Section 2: Hutch++ on a low-rank matrix, and the comparison."""

from visible_checks import counted, spectrum

from autograder.testing import check, number, numbers


@check(exercise="2.1", weight=1)
def test_exact_on_low_rank(student):
    """Hutch++ with num_matvecs / 3 >= rank is exact, in exactly num_matvecs matvecs"""
    A = spectrum([3.0, 2.0, 1.0] + [0.0] * 27, seed=1)
    op = counted(student, A, 12, "Hutch++ spends exactly num_matvecs")
    got = number(student.call("hutchpp", op, 30, 12, seed=0), "the estimate")
    assert op.calls == 12, f"hutchpp(matvec, 30, 12) called the matvec {op.calls} times"
    assert abs(got - 6.0) <= 1e-4, f"hutchpp on a rank-3 matrix of trace 6 returned {got:.6g}"


@check(exercise="2.2", weight=1)
def test_hutchpp_ends_far_ahead(student):
    """at 192 matvecs Hutch++ is more than 10x more accurate than Hutchinson"""
    hutch = numbers(student.get("err_hutch"), "err_hutch", length=5)
    hpp = numbers(student.get("err_hpp"), "err_hpp", length=5)
    assert hpp[-1] <= hutch[-1] / 10, f"err_hpp[-1] = {hpp[-1]:.3g}, err_hutch[-1] = " \
                                      f"{hutch[-1]:.3g}"
