"""Command line: `python -m autograder <command>` (also the `autograder` script)."""

import argparse
import sys

from .assignment import Assignment, AssignmentError
from .release import build_release


def _release(args: argparse.Namespace) -> int:
    folder = build_release(Assignment.load(args.assignment), args.out)
    print(f"release written to {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
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
