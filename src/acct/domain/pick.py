"""Which account runs next: a pure function of accounts, usage, benches, history and the clock.

Policies:

- ``headroom`` (default): the lowest of max(5-hour, 7-day) utilization; ties go to the soonest
  weekly reset (spend quota before it expires), then to the least recently used.
- ``pace``: the account furthest behind its weekly pace line, i.e. the largest gap between the
  fraction of the week elapsed and its 7-day utilization.
- ``round-robin``: the least recently used.
- ``drain``: the soonest weekly reset first.

An account whose lineage is lent to another tool's file may not run: that tool spends its refresh
token, and only ``acct use`` moves it. One lent to the file this choice is for is the one in use.

Every policy ranks OAuth accounts before API-key accounts (an API key is spent only when no
subscription can run) and an account with a window at 100 % after every account without one.
Unknown usage ranks as a fresh account; the caller is told which eligible accounts were never
polled (``Choice.probe``) so it can fetch their usage once and pick again.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from acct.base.config import POLICIES
from acct.base.models import Account, Usage, UsageRecord, live_utilization
from acct.base.timefmt import human_duration

WEEK = 7 * 86400.0
FULL = 100.0


class BenchLike(Protocol):
    @property
    def until(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class Ranked:
    """One line of an explanation: an account, whether it may run, its sort key and why."""

    name: str
    eligible: bool
    key: tuple[float, ...]
    why: str


@dataclass(frozen=True)
class Choice:
    account: Account | None
    reason: str
    ranking: list[Ranked] = field(default_factory=list)
    # Ids of eligible accounts whose usage was never fetched: poll them once, then pick again.
    probe: tuple[str, ...] = ()


def _peak(u: Usage | None, now: float) -> float | None:
    if u is None:
        return None
    vals = [
        v
        for v in (live_utilization(u.five_hour, now), live_utilization(u.seven_day, now))
        if v is not None
    ]
    return max(vals) if vals else None


def _saturated(u: Usage | None, now: float) -> bool:
    """Any window (scoped ones too) at or over 100 % that has not reset yet."""
    if u is None:
        return False
    if any((live_utilization(w, now) or 0.0) >= FULL for w in (u.five_hour, u.seven_day)):
        return True
    return any(p is not None and p >= FULL and (r is None or r > now) for _, p, r in u.scoped)


def _weekly_reset(u: Usage | None, now: float) -> float | None:
    if u is None or u.seven_day is None or u.seven_day.resets_at is None:
        return None
    r = u.seven_day.resets_at
    return r if r > now else None


def _pace_gap(u: Usage | None, now: float) -> float | None:
    """Percentage points the account is behind its weekly pace line (negative: ahead)."""
    reset = _weekly_reset(u, now)
    if u is None or reset is None:
        return None
    used = live_utilization(u.seven_day, now) or 0.0
    elapsed = min(1.0, max(0.0, (now - (reset - WEEK)) / WEEK))
    return elapsed * FULL - used


def _ineligible(
    a: Account,
    benches: Mapping[str, BenchLike],
    now: float,
    exclude: Collection[str],
    here: tuple[str, str] | None,
    provider: str | None = None,
) -> str | None:
    if provider is not None and a.provider != provider:
        return f"a {a.provider} login (this tool takes {provider} logins)"
    if a.id in exclude or a.name in exclude:
        return "already tried in this run"
    if a.holder is not None and (a.holder.target, a.holder.path) != here:
        return f"lent to {a.holder.target} ({a.holder.path})"
    if not a.enabled:
        return "disabled"
    if a.needs_login:
        return "needs a new login"
    if a.is_oauth and (a.tokens is None or a.tokens.is_blank):
        return "holds no tokens"
    if not a.is_oauth and not a.api_key:
        return "holds no key"
    b = benches.get(a.id)
    if b is not None and b.until > now:
        return f"benched ({b.kind}) for {human_duration(b.until - now)}: {b.reason}"
    return None


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}%"


def _describe(u: Usage | None, now: float) -> str:
    if u is None:
        return "usage unknown"
    text = f"5h {_pct(live_utilization(u.five_hour, now))}, 7d {_pct(live_utilization(u.seven_day, now))}"
    reset = _weekly_reset(u, now)
    if reset is not None:
        text += f", week resets in {human_duration(reset - now)}"
    return text


def _policy_key(policy: str, u: Usage | None, now: float, last: float) -> tuple[float, ...]:
    """Smaller sorts first. ``last`` is when the account was last lent (0: never)."""
    weekly = _weekly_reset(u, now)
    soon = weekly if weekly is not None else math.inf
    peak = _peak(u, now) or 0.0
    if policy == "pace":
        gap = _pace_gap(u, now)
        return (-(gap if gap is not None else FULL), peak, last)
    if policy == "round-robin":
        return (last, peak)
    if policy == "drain":
        return (soon, peak, last)
    return (peak, soon, last)


def _policy_why(policy: str, u: Usage | None, now: float, last: float) -> str:
    base = _describe(u, now)
    if policy == "pace":
        gap = _pace_gap(u, now)
        pace = (
            "pace unknown"
            if gap is None
            else f"{abs(gap):.0f} points {'behind' if gap >= 0 else 'ahead of'} pace"
        )
        base = f"{pace}; {base}"
    if policy == "round-robin":
        base = (
            f"{'never used' if not last else f'last used {human_duration(now - last)} ago'}; {base}"
        )
    return base


def pick(
    accounts: Iterable[Account],
    usage_records: Mapping[str, UsageRecord],
    benches: Mapping[str, BenchLike],
    now: float,
    policy: str = "headroom",
    *,
    last_used: Mapping[str, float],
    exclude: Collection[str] = (),
    here: tuple[str, str] | None = None,
    provider: str | None = None,
) -> Choice:
    """Rank every account under ``policy`` and choose the best eligible one.

    ``exclude`` holds account ids (or names) that may not be chosen, e.g. the ones that already
    hit a limit during this run. ``here`` is the tool file the account is for, as custody records
    it (target, resolved path): an account lent to any other file is skipped. ``provider`` is
    the tool's (a target only ever gets an account of its own provider). The result is
    deterministic: the account name breaks ties.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}")
    items = list(accounts)
    ranking: list[Ranked] = []
    unpolled: list[str] = []
    for a in items:
        rec = usage_records.get(a.id)
        u = rec.usage if rec else None
        last = last_used.get(a.id, float(a.last_used_at or 0))
        blocked = _ineligible(a, benches, now, exclude, here, provider)
        if blocked is not None:
            ranking.append(Ranked(a.name, False, (math.inf,), blocked))
            continue
        api_key = 0.0 if a.is_oauth else 1.0
        full = 1.0 if _saturated(u, now) else 0.0
        key = (api_key, full, *_policy_key(policy, u, now, last))
        why = _policy_why(policy, u, now, last)
        if full:
            why += "; a window is full"
        if api_key:
            why += "; API key (used only when no subscription account can run)"
        if a.is_oauth and (rec is None or rec.fetched_at is None):
            unpolled.append(a.id)
        ranking.append(Ranked(a.name, True, key, why))
    ranking.sort(key=lambda r: (not r.eligible, r.key, r.name))
    return _choose(items, ranking, policy, tuple(unpolled))


def _choose(
    accounts: list[Account], ranking: list[Ranked], policy: str, unpolled: tuple[str, ...]
) -> Choice:
    best = ranking[0] if ranking and ranking[0].eligible else None
    if best is None:
        reason = "no account can run: " + (
            "; ".join(f"{r.name} {r.why}" for r in ranking) or "none exist"
        )
        return Choice(None, reason, ranking, ())
    account = next(a for a in accounts if a.name == best.name)
    return Choice(account, f"{policy}: {best.why}", ranking, unpolled)
