"""Command line: `python -m autograder <command>` (also the `autograder` script).

Exit codes: 0 when the command did its job (a submission that cannot be
graded still gets a results file with score 0 and exit 0), 2 for misuse
(bad arguments or assignment folder), 1 for an internal error. `cohort` exits
3 when some submissions are in error (the grader failed on them: retried
once on the next run), 0 when every input was graded or recorded with a
reason. `check`,
the student's self-check, exits 0 only when every visible check passed, 1
otherwise. Only the student's commands import nothing Linux-specific up
front: `check` runs on macOS and Windows too.
"""

import argparse
import os
import signal
import sys
from pathlib import Path

from .assignment import Assignment, AssignmentError
from .outcome import RETRY_ERRORS, GradeReport, Status
from .terminal import printable

DEFAULT_ASSIGNMENTS = Path(__file__).resolve().parent.parent / "assignments"
DISTRIBUTION = "krylov-autograder"  # the name pip knows the engine by (free on PyPI)
# The staff's tools, installed only with an extra (pyproject.toml): which one brings which.
EXTRAS = {"nbgrader": "authoring", "sqlalchemy": "cohort", "yaml": "cohort",
          "distributed": "dask"}


def _assignment(path: str | None, notebook: str | None = None) -> Assignment:
    """The assignment named by --assignment; else the only one in `assignments/`, or
    the one whose notebook bears the name of `notebook` (the file graded)."""
    if path:
        return Assignment.load(path)
    found = sorted(p.parent for p in DEFAULT_ASSIGNMENTS.glob("*/assignment.toml"))
    if len(found) == 1:
        return Assignment.load(found[0])
    assignments = [Assignment.load(folder) for folder in found]
    if notebook is not None:
        named = [a for a in assignments if a.master.name == Path(notebook).name]
        if len(named) == 1:
            return named[0]
    if not assignments:
        raise AssignmentError(f"no assignment in {DEFAULT_ASSIGNMENTS}: name the assignment "
                              "folder with --assignment")
    choices = ", ".join(f"{a.root} (notebook {a.master.name})" for a in assignments)
    raise AssignmentError(f"{len(assignments)} assignments could be meant: {choices}; "
                          "name the folder with --assignment")


def print_table(report: GradeReport) -> None:
    """A per-exercise score table for the terminal. Names, messages and reasons are
    the student's text: shown through `printable`, so none can clear the screen or
    print a fake total, and a message's own lines stay indented under its check."""
    if report.status != Status.GRADED:
        print(f"{printable(report.submission)}: not graded: {printable(report.reason)}")
    width = max((len(printable(e.name)) for e in report.exercises), default=10)
    for e in report.exercises:
        failed = [c for c in e.checks if not c.passed]
        mark = "✓" if e.checks and not failed else "✗"
        print(f"{mark} {printable(e.id):>4}  {printable(e.name):<{width}}  "
              f"{e.score:5.1f} / {e.max_score:g}")
        for check in failed[:3]:
            print(f"{'':9}- {printable(check.name)}: {printable(check.message, ' ' * 11)}")
        if len(failed) > 3:
            print(f"{'':9}  ... and {len(failed) - 3} more failed checks (see feedback.md)")
    print(f"{'':7}{'total':<{width}}  {report.score:5.1f} / {report.max_score:g}"
          f"   ({report.execution_time:.1f} s)")


def _grade(args: argparse.Namespace) -> int:
    from .grader import grade, lean_heap

    lean_heap()
    report = grade(args.submission, _assignment(args.assignment, args.submission), args.out)
    print_table(report)
    print(f"results written to {args.out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .selfcheck import Progress, check_file, find_release

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise AssignmentError(f"{args.notebook}: no such notebook file")
    assignment = (Assignment.load(args.assignment) if args.assignment
                  else find_release(notebook.parent))
    print(f"Checking {printable(args.notebook)} with the visible checks of "
          f"{printable(assignment.title)} ...", flush=True)
    result = check_file(notebook, assignment, Progress())
    print(result.text)
    return 0 if result.passed else 1


# Addresses that may hold credentials: from the environment, never from argv, which any
# process on the machine can read in /proc (a student's notebook included).
ADDRESS_VARIABLES = {"db": "AUTOGRADER_DB_URL", "gradebook": "AUTOGRADER_GRADEBOOK_URL",
                     "dask": "AUTOGRADER_DASK_ADDRESS"}


def _addresses(args: argparse.Namespace) -> None:
    """Fill --db, --gradebook, --dask from their environment variables; refuse a
    password on the command line."""
    from urllib.parse import urlsplit

    for option, variable in ADDRESS_VARIABLES.items():
        given = getattr(args, option)
        if given is not None:
            try:
                password = urlsplit(given).password
            except ValueError:
                password = None
            if password:
                raise AssignmentError(
                    f"--{option} holds a password, which every process on this machine can "
                    f"read in the command line; set {variable} in the environment instead")
        else:
            setattr(args, option, os.environ.get(variable) or None)


def _cohort(args: argparse.Namespace) -> int:
    from .cohort import grade_cohort
    from .cohort.inputs import CohortInputError

    _addresses(args)
    assignment = _assignment(args.assignment)
    out = Path(args.out)
    try:
        entries = grade_cohort(Path(args.submissions), assignment, out, workers=args.workers,
                               db_url=args.db, regrade=tuple(args.regrade), dask=args.dask,
                               retry_errors=args.retry_errors)
    except CohortInputError as exc:  # may quote a zip's member names: print them inert
        raise AssignmentError(printable(str(exc))) from exc
    where = printable(str(out))
    if args.gradebook:
        from .cohort.gradebook import export_gradebook

        written = export_gradebook(entries, assignment, args.gradebook,
                                   out / "gradebook_student_ids.csv")
        print(f"{written} submissions exported to the nbgrader gradebook "
              f"{printable(args.gradebook)} (their ids: {where}/gradebook_student_ids.csv)")
    counts = {status: sum(e.status == status for e in entries) for status in Status}
    flagged = sum(bool(e.flags) for e in entries if e.status == Status.GRADED)
    print(f"{len(entries)} inputs: {counts[Status.GRADED]} graded ({flagged} flagged for a "
          f"look), {counts[Status.REJECTED]} rejected, {counts[Status.DUPLICATE]} "
          f"duplicates, {counts[Status.ERROR]} in error")
    print(f"report: {(out / 'report.html').resolve().as_uri()}")
    print(f"grades: {where}/grades.csv   feedback: {where}/feedback/<student>/")
    if counts[Status.ERROR]:
        print(f"{counts[Status.ERROR]} submissions hit a grader error: see their reason in "
              "grades.csv; a rerun retries each once (--retry-errors all for more)")
        return 3
    return 0


def _checks(args: argparse.Namespace) -> int:
    from .plugin import collect_checks

    assignment = _assignment(args.assignment)
    suites = [(label, path) for label, path in (("hidden", assignment.hidden),
                                                ("visible", assignment.visible)) if path]
    known = {e.id: e for e in assignment.exercises}
    if args.exercise and args.exercise not in known:
        raise AssignmentError(f"{assignment.name} has no exercise {args.exercise!r}; "
                              f"its exercises are {', '.join(known)}")
    found = {label: collect_checks(path) for label, path in suites}
    for exercise in assignment.exercises:
        if args.exercise and exercise.id != args.exercise:
            continue
        print(f"{exercise.id} {exercise.name} ({exercise.points:g} points, {exercise.visibility})")
        for label, path in suites:
            checks = [c for c in found[label][0] if c.exercise == exercise.id]
            total = sum(c.weight for c in checks)
            print(f"  {label} suite ({path.relative_to(assignment.root)}/): "
                  f"{len(checks)} checks, weight {total:g}")
            for c in checks:
                print(f"    {c.location:<28} w={c.weight:<4g} {c.name}")
    for label, (_, problems) in found.items():
        for problem in problems:
            print(f"warning: {label} suite: {problem}", file=sys.stderr)
    return 0


def _costs(args: argparse.Namespace) -> int:
    from .grader import KEY_FILE, measure_costs

    assignment = _assignment(args.assignment)
    print(f"Grading the master of {assignment.name} to measure its costs ...")
    costs = measure_costs(assignment)
    print(f"{len(costs['cells'])} cells and {len(costs['calls'])} functions measured; "
          f"written to {assignment.costs_path}, with the answer key {KEY_FILE}")
    return 0


def _key(args: argparse.Namespace) -> int:
    from .grader import KEY_FILE, build_answer_key

    assignment = _assignment(args.assignment)
    print(f"Grading the master of {assignment.name} to record its answer key ...")
    key = build_answer_key(assignment)
    print(f"{len(key.entries)} reference results written to {assignment.root / KEY_FILE} "
          f"for grader version {key.version}")
    return 0


def _release(args: argparse.Namespace) -> int:
    from .release import build_release  # nbgrader is slow to import; only this needs it

    folder = build_release(Assignment.load(args.assignment), args.out)
    print(f"release written to {folder}")
    return 0


def _gradescope_build(args: argparse.Namespace) -> int:
    from .grader import key_state
    from .gradescope import build_zip

    assignment = _assignment(args.assignment)
    path = build_zip(assignment, args.out, args.timeout)
    print(f"autograder zip written to {path} ({path.stat().st_size / 2**20:.1f} MB; answer "
          f"key {key_state(assignment)}); upload it under Configure Autograder > Zip file upload")
    return 0


def _gradescope_run(args: argparse.Namespace) -> int:
    from .gradescope import grade_gradescope

    print_table(grade_gradescope(Path(args.root), _assignment(args.assignment),
                                 args.deadline_s))
    return 0


def _version(assignment_path: str | None) -> int:
    """The engine's version, and the digest that ties stored results to this grader."""
    from importlib.metadata import PackageNotFoundError, version

    from .grader import grader_version, key_state

    try:
        engine = version(DISTRIBUTION)
    except PackageNotFoundError:
        engine = "unknown (not installed)"
    print(f"autograder {engine}")
    try:
        assignment = _assignment(assignment_path)
    except AssignmentError as exc:
        print(f"(no grader version: {exc})")
        return 0
    print(f"{assignment.name}: grader version {grader_version(assignment)}, "
          f"answer key {key_state(assignment)}")
    return 0


def _new(args: argparse.Namespace) -> int:
    from .scaffold import scaffold

    folder = scaffold(args.name, Path(args.project), args.title)
    print(f"wrote {folder} and {Path(args.project) / 'reference' / (args.name + '.py')}; "
          f"next: autograder validate {folder}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .validate import render, validate

    assignment = Assignment.load(args.assignment)
    findings = validate(assignment, args.timeout,
                        progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(render(findings))
    return 1 if any(f.passed is False for f in findings) else 0


def _config_keys(args: argparse.Namespace) -> int:
    from .schema import key_reference

    print(key_reference(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    return _dispatch(_parse(argv))


def entry() -> None:
    """The `autograder` command: `main`, then, after a command that ends at once (it
    holds no pool, database or worker that would want a goodbye), an exit that skips
    the interpreter's teardown. With torch loaded that teardown, a garbage collection
    of every module's objects, takes about 0.4 s: a quarter to a third of what grading one
    submission adds to the notebook's own time. Every file is closed by then; only the
    standard streams are flushed."""
    args = _parse(None)
    code = _dispatch(args)
    if not args.ends_at_once:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="autograder", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true",
                        help="print the engine's version and the grader version of the "
                        "assignment (--assignment, default: the only one)")
    parser.add_argument("--assignment", dest="version_assignment", help=argparse.SUPPRESS)
    parser.set_defaults(ends_at_once=False)
    commands = parser.add_subparsers(dest="command")
    graded = commands.add_parser("grade", help="grade one submitted notebook")
    graded.add_argument("submission", help="the submitted .ipynb file")
    graded.add_argument("--out", required=True, help="folder for results.json and feedback")
    graded.add_argument("--assignment", help="assignment folder (default: the only one)")
    graded.set_defaults(run=_grade, ends_at_once=True)
    cohort = commands.add_parser("cohort", help="grade a whole cohort (resumable, parallel)")
    cohort.add_argument("submissions", help="a folder of <student>.ipynb, nbgrader's "
                        "submitted/ layout, or a Gradescope export folder or zip")
    cohort.add_argument("--out", required=True, help="folder for grades.csv, report.html, "
                        "feedback/ and the results database")
    cohort.add_argument("--assignment", help="assignment folder (default: the only one)")
    cohort.add_argument("--workers", type=int, help="parallel graders (default: the CPUs)")
    cohort.add_argument("--db", help="SQLAlchemy URL of the results database (default: "
                        "AUTOGRADER_DB_URL, else sqlite in --out); credentials only in "
                        "the environment variable")
    cohort.add_argument("--regrade", action="append", default=[], metavar="STUDENT",
                        help="grade this student again even if nothing changed (repeatable)")
    cohort.add_argument("--dask", metavar="ADDRESS", help="grade on this Dask scheduler "
                        "(e.g. tcp://HOST:8786; default: AUTOGRADER_DASK_ADDRESS); its "
                        "workers must see the same paths")
    cohort.add_argument("--gradebook", metavar="URL",
                        help="also export the scores into this nbgrader gradebook "
                        "(default: AUTOGRADER_GRADEBOOK_URL)")
    cohort.add_argument("--retry-errors", choices=RETRY_ERRORS, default="once",
                        help="grade rows in error again on a rerun: once (default: after "
                        "one failed run, not after two), all, or none")
    cohort.set_defaults(run=_cohort)
    check = commands.add_parser("check", help="self-check a notebook with the visible checks")
    check.add_argument("notebook", help="your .ipynb file")
    check.add_argument("--assignment", help="assignment folder (default: found above the "
                       "notebook)")
    check.set_defaults(run=_check, ends_at_once=True)
    listing = commands.add_parser("checks", help="list each exercise's checks and where "
                                  "they are, in the hidden and visible suites")
    listing.add_argument("--exercise", help="only this exercise (e.g. 2.1)")
    listing.add_argument("--assignment", help="assignment folder (default: the only one)")
    listing.set_defaults(run=_checks)
    costs = commands.add_parser("costs", help="measure the master's cost per cell and per "
                                "checked function (costs.json), which the budgets scale, "
                                "and record its answer key")
    costs.add_argument("--assignment", help="assignment folder (default: the only one)")
    costs.set_defaults(run=_costs)
    key = commands.add_parser("key", help="record the answer key: the reference results "
                              "of the master's hidden grade, read by every later grade")
    key.add_argument("--assignment", help="assignment folder (default: the only one)")
    key.set_defaults(run=_key)
    new = commands.add_parser("new", help="scaffold a new assignment that validates and "
                              "grades out of the box")
    new.add_argument("name", help="its name: lowercase letters, digits, underscores")
    new.add_argument("--project", default=".", help="the project folder, which holds "
                     "assignments/ and reference/ (default: here)")
    new.add_argument("--title", help="its title (default: from the name)")
    new.set_defaults(run=_new)
    check_all = commands.add_parser("validate", help="check that an assignment works: "
                                    "master, release, suites, budgets; records its costs")
    check_all.add_argument("assignment", help="assignment folder (holds assignment.toml)")
    check_all.add_argument("--timeout", type=int, default=600,
                           help="the Gradescope limit the budgets must fit, in seconds")
    check_all.set_defaults(run=_validate)
    keys = commands.add_parser("config-keys", help="print the reference of every "
                               "assignment.toml key (Markdown)")
    keys.set_defaults(run=_config_keys)
    release = commands.add_parser("release", help="generate the student release of an assignment")
    release.add_argument("assignment", help="assignment folder (holds assignment.toml)")
    release.add_argument("--out", default="build/release", help="output folder")
    release.set_defaults(run=_release)
    gradescope = commands.add_parser("gradescope", help="Gradescope autograder zip and run")
    steps = gradescope.add_subparsers(dest="step", required=True)
    build = steps.add_parser("build", help="write the zip to upload to Gradescope")
    build.add_argument("--out", default="build/autograder.zip", help="zip file to write")
    build.add_argument("--assignment", help="assignment folder (default: the only one)")
    build.add_argument("--timeout", type=int, default=600,
                       help="the autograder timeout set in Gradescope, in seconds")
    build.set_defaults(run=_gradescope_build)
    run = steps.add_parser("run", help="grade inside the container (run_autograder calls it)")
    run.add_argument("--root", default="/autograder", help="Gradescope's /autograder folder")
    run.add_argument("--assignment", help="assignment folder (default: the only one)")
    run.add_argument("--deadline-s", type=float, help="end the whole grade within this many "
                     "seconds (default: the assignment's grade_timeout_s)")
    run.set_defaults(run=_gradescope_run, ends_at_once=True)
    args = parser.parse_args(argv)
    if args.command is None and not args.version:
        parser.error("name a command")
    return args


def _dispatch(args: argparse.Namespace) -> int:
    if args.version:
        return _version(args.version_assignment)
    # A TERM (Gradescope's or timeout's) unwinds like an exception, so the runner is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        return args.run(args)
    except AssignmentError as exc:
        print(f"autograder: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"autograder {args.command}: needs {exc.name}, which the engine installs only "
              f"with the {extra!r} extra: pip install '{DISTRIBUTION}[{extra}]'",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    entry()
