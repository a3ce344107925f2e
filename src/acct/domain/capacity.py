"""Whether the pool has room for more work: a pure verdict over each account's state and usage.

- ``green``: room for more work.
- ``yellow``: work can start, but the pool runs low; ``reasons`` say why (every usable account
  at or over the ``low`` utilization, the pool's headroom in a window under ``min_headroom``
  accounts' worth, every usable account busy with a live session, only API keys left).
- ``red``: nothing can run now; ``back_at`` says when the first account comes back.

Headroom in a window is the sum, over usable subscription accounts, of what is left of that
window (1.0 = one whole account's window). An account whose usage was never read counts as a
whole one: acct probes such an account before it picks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["green", "yellow", "red"]
EXIT_STATUS: dict[str, int] = {"green": 0, "yellow": 10, "red": 20}
WINDOWS = ("five_hour", "seven_day")
_LABELS = {"five_hour": "5-hour", "seven_day": "7-day"}


@dataclass(frozen=True)
class PoolAccount:
    """One account as the verdict sees it. Utilization in percent, times in epoch seconds."""

    name: str
    state: str  # ok | held | full | benched | needs_login | disabled (acct.app.views)
    api_key: bool = False
    five_hour: float | None = None
    seven_day: float | None = None
    five_hour_resets_at: float | None = None
    seven_day_resets_at: float | None = None
    back_at: float | None = None  # when a full or benched account is usable again
    sessions: int = 0  # live `acct exec` sessions on it

    @property
    def usable(self) -> bool:
        return self.state in ("ok", "held")

    @property
    def peak(self) -> float | None:
        known = [v for v in (self.five_hour, self.seven_day) if v is not None]
        return max(known) if known else None

    def left(self, window: str) -> float:
        """What is left of ``window`` (0-1); a window never read counts as whole."""
        used = self.five_hour if window == "five_hour" else self.seven_day
        return 1.0 if used is None else max(0.0, 1.0 - used / 100.0)


@dataclass(frozen=True)
class Capacity:
    verdict: Verdict
    reasons: tuple[str, ...]
    headroom: dict[str, float]  # window -> accounts' worth left across usable accounts
    usable: tuple[str, ...]
    idle: tuple[str, ...]  # usable, with no live session
    back_at: float | None  # red: when the first account comes back (None: not by waiting)
    back_name: str | None
    soonest_reset: float | None  # the soonest reset of any window of any enabled account
    accounts: tuple[PoolAccount, ...] = field(default=())

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.verdict]


def _soonest_reset(accounts: Iterable[PoolAccount], now: float) -> float | None:
    times = [
        t
        for a in accounts
        if a.state != "disabled"
        for t in (a.five_hour_resets_at, a.seven_day_resets_at)
        if t is not None and t > now
    ]
    return min(times) if times else None


def _first_back(accounts: Iterable[PoolAccount], now: float) -> tuple[float | None, str | None]:
    """The account that comes back first by waiting (a login or an `enable` is no wait)."""
    waiting = [
        (a.back_at, a.name)
        for a in accounts
        if a.state in ("full", "benched") and a.back_at is not None and a.back_at > now
    ]
    if not waiting:
        return None, None
    at, name = min(waiting)
    return at, name


def _yellow_reasons(
    plan: list[PoolAccount],
    usable: list[PoolAccount],
    headroom: dict[str, float],
    low: float,
    min_headroom: float,
) -> list[str]:
    reasons: list[str] = []
    if not plan:
        reasons.append("only API-key accounts are usable")
    elif all((a.peak or 0.0) >= low for a in plan):
        reasons.append(f"every usable account is at {low:g}% or more of a window")
    for window in WINDOWS:
        if plan and headroom[window] < min_headroom:
            reasons.append(
                f"{_LABELS[window]} headroom is {headroom[window]:.2f} accounts' worth "
                f"(under {min_headroom:g})"
            )
    if all(a.sessions > 0 for a in usable):
        reasons.append("every usable account already has a live session")
    return reasons


def assess(
    accounts: Iterable[PoolAccount], *, now: float, low: float = 80.0, min_headroom: float = 0.5
) -> Capacity:
    """The pool's verdict at ``now`` (pure: the caller gathers the facts)."""
    pool = tuple(accounts)
    usable = [a for a in pool if a.usable]
    plan = [a for a in usable if not a.api_key]
    headroom = {w: round(float(sum(a.left(w) for a in plan)), 4) for w in WINDOWS}
    back_at, back_name = _first_back(pool, now)
    verdict: Verdict
    if not usable:
        verdict = "red"
        if not pool:
            reasons = ["no accounts: `acct login` adds one"]
        elif back_name is not None:
            reasons = [f"no account is usable now; {back_name} comes back first"]
        else:
            reasons = [
                "no account is usable, and none comes back by waiting (log in or enable one)"
            ]
    else:
        reasons = _yellow_reasons(plan, usable, headroom, low, min_headroom)
        verdict = "yellow" if reasons else "green"
        back_at, back_name = None, None
    return Capacity(
        verdict=verdict,
        reasons=tuple(reasons),
        headroom=headroom,
        usable=tuple(a.name for a in usable),
        idle=tuple(a.name for a in usable if a.sessions == 0),
        back_at=back_at,
        back_name=back_name,
        soonest_reset=_soonest_reset(pool, now),
        accounts=pool,
    )
