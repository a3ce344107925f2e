"""How acct spells times and durations, for people (``3h05m``, ``14:20 CET``) and for JSON."""

from __future__ import annotations

import time
from datetime import datetime

from acct.fast.prompt import duration

# Epoch seconds pass this in the year 5138, epoch milliseconds passed it in 1973: a larger
# timestamp is in milliseconds.
MS_THRESHOLD = 100_000_000_000


def epoch_seconds(n: float) -> float:
    """``n`` as epoch seconds, whether it came in seconds or in milliseconds."""
    return n / 1000.0 if n >= MS_THRESHOLD else n


def human_duration(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d4h``; ``-`` when unknown. The prompt spells it the same."""
    return "-" if seconds is None else duration(seconds)


def until(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    return human_duration(ts - (time.time() if now is None else now))


def _datetime(ts: float | None) -> datetime | None:
    """The local time of ``ts``; None when unknown or beyond what a calendar can show."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts).astimezone()
    except (OverflowError, OSError, ValueError):
        return None


def local_time(ts: float | None) -> str:
    dt = _datetime(ts)
    if ts is None or dt is None:
        return "-"
    if abs(ts - time.time()) < 20 * 3600:
        return dt.strftime("%H:%M %Z")
    return dt.strftime("%b %d %H:%M %Z")


def time_left(seconds: float) -> str:
    """``59m12s``, ``2h05m12s``, ``40s``: to the second, as a countdown ticks."""
    m, s = divmod(int(max(0.0, seconds)), 60)
    h, m = divmod(m, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def iso(ts: float | None) -> str | None:
    dt = _datetime(ts)
    return None if dt is None else dt.isoformat(timespec="seconds")


def epoch(ts: float | None) -> int | None:
    """Whole epoch seconds for ``--json`` (``<x>_at_epoch`` beside the ISO-8601 ``<x>_at``)."""
    return None if ts is None else round(ts)
