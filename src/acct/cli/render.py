"""Output helpers. Data goes to stdout; progress, prompts, warnings and errors to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from acct.base.timefmt import epoch, human_duration, iso, local_time, until
from acct.cli.plain import UNSAFE_IN_TEXT, line, mode, safe

__all__ = ["epoch", "human_duration", "iso", "line", "local_time", "mode", "safe", "until"]

JSON_VERSION = 1

# Piped output is read by programs and pagers: never cut it to a terminal's width.
_PIPE_WIDTH = 10_000


def _width() -> int | None:
    try:
        return None if sys.stdout.isatty() else _PIPE_WIDTH
    except (AttributeError, ValueError):
        return _PIPE_WIDTH


class _SafeConsole(Console):
    """A console that shows control characters in what it prints instead of sending them.

    Covers every ``out.print`` / ``err.print`` of acct (rich itself strips only a few)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(_safe_renderable(o) for o in objects), **kwargs)


def _safe_renderable(obj: Any) -> Any:
    if isinstance(obj, str):
        return safe(obj, lines=True)
    if isinstance(obj, Text) and UNSAFE_IN_TEXT.search(obj.plain):
        return Text(safe(obj.plain, lines=True), style=obj.style, end=obj.end)
    return obj


out = _SafeConsole(highlight=False, soft_wrap=True, width=_width())
err = _SafeConsole(stderr=True, highlight=False, soft_wrap=True)


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


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"
