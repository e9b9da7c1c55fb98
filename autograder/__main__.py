"""Command line: `python -m autograder <command>` (also the `autograder` script).

Exit codes: 0 when the command did its job (a submission that cannot be
graded still gets a results file with score 0 and exit 0), 2 for misuse
(bad arguments or assignment folder), 1 for an internal error.
"""

import argparse
import sys
from pathlib import Path

from .assignment import Assignment, AssignmentError
from .grader import grade
from .outcome import GradeReport

DEFAULT_ASSIGNMENTS = Path(__file__).resolve().parent.parent / "assignments"


def _assignment(path: str | None) -> Assignment:
    if path:
        return Assignment.load(path)
    found = sorted(p.parent for p in DEFAULT_ASSIGNMENTS.glob("*/assignment.toml"))
    if len(found) != 1:
        raise AssignmentError("name the assignment folder with --assignment")
    return Assignment.load(found[0])


def print_table(report: GradeReport) -> None:
    """A per-exercise score table for the terminal."""
    if report.status != "graded":
        print(f"{report.submission}: not graded: {report.reason}")
    width = max((len(e.name) for e in report.exercises), default=10)
    for e in report.exercises:
        failed = [c for c in e.checks if not c.passed]
        mark = "✓" if e.checks and not failed else "✗"
        print(f"{mark} {e.id:>4}  {e.name:<{width}}  {e.score:5.1f} / {e.max_score:g}")
        for check in failed[:3]:
            print(f"{'':9}- {check.name}: {check.message}")
        if len(failed) > 3:
            print(f"{'':9}  ... and {len(failed) - 3} more failed checks (see feedback.md)")
    print(f"{'':7}{'total':<{width}}  {report.score:5.1f} / {report.max_score:g}"
          f"   ({report.execution_time:.1f} s)")


def _grade(args: argparse.Namespace) -> int:
    report = grade(args.submission, _assignment(args.assignment), args.out)
    print_table(report)
    print(f"results written to {args.out}")
    return 0


def _release(args: argparse.Namespace) -> int:
    from .release import build_release  # nbgrader is slow to import; only this needs it

    folder = build_release(Assignment.load(args.assignment), args.out)
    print(f"release written to {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autograder", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    graded = commands.add_parser("grade", help="grade one submitted notebook")
    graded.add_argument("submission", help="the submitted .ipynb file")
    graded.add_argument("--out", required=True, help="folder for results.json and feedback")
    graded.add_argument("--assignment", help="assignment folder (default: the only one)")
    graded.set_defaults(run=_grade)
    release = commands.add_parser("release", help="generate the student release of an assignment")
    release.add_argument("assignment", help="assignment folder (holds assignment.toml)")
    release.add_argument("--out", default="build/release", help="output folder")
    release.set_defaults(run=_release)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except AssignmentError as exc:
        print(f"autograder: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
