"""Plain output without Rich: terminal-safe text, one-line messages, the JSON switch.

What ``acct exec`` prints on its way to the tool needs no more than this, so a run does not
pay for importing Rich (:mod:`acct.cli.render` re-exports these next to its consoles).
"""

from __future__ import annotations

import re
import sys

# What a terminal would obey rather than show: C0 and C1 controls (ESC starts every escape
# sequence; 0x9b is a one-byte CSI), DEL, and the marks that reorder text (bidi overrides).
_MARKS = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_MARKS}]")
UNSAFE_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f{_MARKS}]")  # newline and tab may stay


def _escaped(m: re.Match[str]) -> str:
    c = ord(m[0])
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def safe(text: str | None, *, lines: bool = False) -> str:
    """``text`` fit for a terminal: every control character shown as an escape (``\\x1b``),
    never obeyed. For strings from outside (a server's email or organization name, a file a
    user edited), at the place they are printed. ``lines`` keeps newlines and tabs (whole
    messages); a single value always stays on its line."""
    if not text:
        return text or ""
    return (UNSAFE_IN_TEXT if lines else _UNSAFE).sub(_escaped, text)


class _Mode:
    json = False


mode = _Mode()


def line(message: str) -> None:
    """One plain line on stderr, flushed at once (no markup, safe for URLs)."""
    sys.stderr.write(safe(message) + "\n")
    sys.stderr.flush()
