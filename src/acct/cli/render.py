"""Output helpers. Data goes to stdout; progress, prompts, warnings and errors to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

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


out = Console(highlight=False, soft_wrap=True, width=_width())
err = Console(stderr=True, highlight=False, soft_wrap=True)


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
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"
