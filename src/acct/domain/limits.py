"""Limit and rest arithmetic: which windows are full, and until when a limited account rests.

Pure functions over usage records and a tool's ending; no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

from dataclasses import dataclass

from acct.base.models import Usage, UsageRecord
from acct.domain.classify import Ending

FULL = 100.0


@dataclass
class Rest:
    """Why an account stops for now, and until when."""

    until: float
    kind: str  # quota | cooloff | auth | needs_login
    label: str  # "5-hour limit", "7-day limit", "limit", ...
    note: str = ""


def fresh(rec: UsageRecord, since: float) -> bool:
    """Whether the record was fetched at or after ``since`` (so it can confirm or deny a limit)."""
    return rec.usage is not None and rec.fetched_at is not None and rec.fetched_at >= since


def full_windows(u: Usage | None, named: str | None = None) -> list[tuple[str, float | None]]:
    """Windows at or over 100 %: (label, resets_at). A reset may have passed a moment ago.

    The 5-hour and 7-day windows always count; a per-model weekly cap (``Opus weekly``) only when
    ``named`` is it, i.e. when the tool said that cap stopped it: such a cap stops one model only.
    """
    if u is None:
        return []
    out: list[tuple[str, float | None]] = []
    for label, w in (("5-hour", u.five_hour), ("7-day", u.seven_day)):
        if w is not None and w.utilization is not None and w.utilization >= FULL:
            out.append((label, w.resets_at))
    for label, pct, reset in u.scoped:
        scoped = f"{label} weekly"
        if pct is not None and pct >= FULL and named and scoped.casefold() == named.casefold():
            out.append((scoped, reset))
    return out


def quota_rest(ending: Ending, rec: UsageRecord | None, now: float, cooloff: float) -> Rest:
    """Until when a limited account rests.

    A fresh usage answer with room left everywhere means the tool's limit was not the plan's:
    rest for ``cooloff``. Otherwise the latest of the reset the tool named and the resets of the
    full windows; ``cooloff`` when nothing names a time.
    """
    if rec is not None and rec.usage is not None:
        full = full_windows(rec.usage, ending.window)
        if not full:
            peak = rec.usage.peak
            note = f"usage shows {peak:.0f}%" if peak is not None else "usage does not confirm it"
            return Rest(now + cooloff, "cooloff", ending.window or "usage", note)
        resets = [t for _, t in full if t is not None]
        if ending.reset_at is not None:
            resets.append(ending.reset_at)
        label = ending.window or max(full, key=lambda w: w[1] or 0)[0]
        # A reset that passed while acct was confirming: the account may run again at once.
        return Rest(max(resets) if resets else now + cooloff, "quota", label)
    if ending.reset_at is not None and ending.reset_at > now:
        return Rest(ending.reset_at, "quota", ending.window or "usage")
    return Rest(now + cooloff, "cooloff", ending.window or "usage", "no reset time given")
