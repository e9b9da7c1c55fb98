"""What the report writers share: the Jinja2 environments and small public helpers.

The human-facing pages are Jinja2 templates in `autograder/templates/`, rendered by two
environments created once, here:

- `HTML` autoescapes every value a template prints. Student-controlled strings (check
  names and messages, errors, warnings, reasons, figure titles, ids, flags) are passed as
  data and printed escaped; only markup the engine generated itself may be passed as
  `markupsafe.Markup`, never a string that contains student text.
- `MARKDOWN` has no autoescape (Jinja knows none for Markdown); instead its `finalize`
  runs `md_escape` on every value a template prints, so that escaping is the default there
  too. Engine-generated Markdown that must print as it is (a figure's file name) is passed
  wrapped in `Verbatim`.

Student text is only ever data given to a template, never template source, so a `{{ 7*7 }}`
in a message prints literally.
"""

import html
import math
import os
import re
import tempfile
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from . import ENGINE

# A folder of the engine, so that it travels with it: pip installs it as package data, and
# the student release copies the whole engine folder.
TEMPLATES = ENGINE / "templates"

# The pages load nothing and run nothing: inline styles and data: images only.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

MD_SPECIAL = "\\`*_[]|~#!"
_SURROGATE = re.compile("[\ud800-\udfff]")


class Verbatim(str):
    """Markdown the engine generated itself, which the Markdown environment prints as it is.
    Never wrap a string that contains student text; any str operation drops the mark."""

    __slots__ = ()


def md_escape(value) -> str:
    """Text that Markdown shows literally: no HTML, links, emphasis or table breaks, and
    whitespace collapsed to single spaces (a newline would end a table row or list item)."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return "".join("\\" + ch if ch in MD_SPECIAL else ch for ch in text)


def _md_finalize(value) -> str:
    return value if isinstance(value, Verbatim) else md_escape(value)


def fmt(value: float) -> str:
    """A score for people: at most two decimals, no trailing zeros, never "-0"."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def finite(value) -> float:
    """A finite float: JSON has no NaN or infinity, and Gradescope wants numbers."""
    value = float(value)
    return value if math.isfinite(value) else 0.0


def full_marks(score: float, max_score: float) -> bool:
    return math.isclose(score, max_score, rel_tol=1e-9, abs_tol=1e-6)


def valid_text(text: str) -> str:
    """`text` with each lone surrogate (a file name that is not UTF-8, a "\\udcff" in the
    JSON a student's runner sends) written as the visible escape \\udcff: no UTF-8 writer
    can encode one, and a plain encode() would raise and leave the student ungraded."""
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def utf8(text: str) -> bytes:
    """`text` as UTF-8, never failing (see `valid_text`)."""
    return valid_text(text).encode("utf-8")


def json_utf8(text: str) -> bytes:
    """JSON text as UTF-8, never failing: a lone surrogate, which can only stand inside one
    of its strings, is written as \\\\udcff, so that a reader gets the text \\udcff back
    and not the surrogate again."""
    return _SURROGATE.sub(lambda found: f"\\\\u{ord(found.group()):04x}", text).encode("utf-8")


def _environment(**options) -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                       auto_reload=False, **options)


HTML = _environment(autoescape=True)
MARKDOWN = _environment(autoescape=False, finalize=_md_finalize)


def render_html(template: str, **context) -> str:
    """Render an HTML template of `autograder/templates/`, every printed value escaped."""
    return HTML.get_template(template).render(csp=CSP, **context)


def render_markdown(template: str, **context) -> str:
    """Render a Markdown template, every printed value Markdown-escaped unless Verbatim."""
    return MARKDOWN.get_template(template).render(**context)


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`, so that a reader
    never sees half a file. `durable` also syncs it to disk (a killed process loses nothing
    written without it; a crashed machine might)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
