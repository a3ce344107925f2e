"""Output helpers. Data goes to stdout; progress, prompts, warnings and errors to stderr."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from acct.base.timefmt import epoch, human_duration, iso, local_time, until

__all__ = ["epoch", "human_duration", "iso", "local_time", "until"]

JSON_VERSION = 1

# Piped output is read by programs and pagers: never cut it to a terminal's width.
_PIPE_WIDTH = 10_000


def _width() -> int | None:
    try:
        return None if sys.stdout.isatty() else _PIPE_WIDTH
    except (AttributeError, ValueError):
        return _PIPE_WIDTH


# What a terminal would obey rather than show: C0 and C1 controls (ESC starts every escape
# sequence; 0x9b is a one-byte CSI), DEL, and the marks that reorder text (bidi overrides).
_MARKS = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_MARKS}]")
_UNSAFE_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f{_MARKS}]")  # newline and tab may stay


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
    return (_UNSAFE_IN_TEXT if lines else _UNSAFE).sub(_escaped, text)


class _SafeConsole(Console):
    """A console that shows control characters in what it prints instead of sending them.

    Covers every ``out.print`` / ``err.print`` of acct (rich itself strips only a few)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(_safe_renderable(o) for o in objects), **kwargs)


def _safe_renderable(obj: Any) -> Any:
    if isinstance(obj, str):
        return safe(obj, lines=True)
    if isinstance(obj, Text) and _UNSAFE_IN_TEXT.search(obj.plain):
        return Text(safe(obj.plain, lines=True), style=obj.style, end=obj.end)
    return obj


out = _SafeConsole(highlight=False, soft_wrap=True, width=_width())
err = _SafeConsole(stderr=True, highlight=False, soft_wrap=True)


class _Mode:
    json = False


mode = _Mode()


def emit_json(kind: str, payload: dict[str, Any]) -> None:
    """Print one versioned JSON document on stdout."""
    doc = {"version": JSON_VERSION, "kind": kind, **payload}
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    err.print(message)


def warn(message: str) -> None:
    """A warning in plain text (an account name with brackets is not markup)."""
    from rich.markup import escape

    err.print(f"[yellow]acct: warning:[/] {escape(message)}")


def line(message: str) -> None:
    """One plain line on stderr, flushed at once (no markup, safe for URLs)."""
    sys.stderr.write(safe(message) + "\n")
    sys.stderr.flush()


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"
