"""Student text made inert for a staff terminal.

Check messages, cell errors, reasons, student ids and file names come from the
student. Printed raw, an escape sequence in one can clear the TA's screen, move
the cursor to overwrite the total, set the clipboard (OSC 52) or reorder a line
(bidi overrides); a lone surrogate (a file name that is not UTF-8) makes print
raise. Everything the command line prints of them goes through `printable`.
"""

import re

# C0 controls, DEL, C1 controls, line and paragraph separators, bidi embeddings,
# overrides and isolates, and lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str, indent: str | None = None) -> str:
    """`text` with every control shown as a visible escape (`\\x1b`, `\\u202e`). With
    `indent`, a newline stays a line break and the next line starts with `indent`, so
    a multi-line message never passes for a line of the table around it."""

    def escape(match: re.Match) -> str:
        char = match.group()
        if char == "\n" and indent is not None:
            return "\n" + indent
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNSAFE.sub(escape, str(text))
