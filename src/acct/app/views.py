"""What each account looks like right now: one row of derived data for list, status and pickers.

A row joins the store (who, which plan, custody), the shared state (usage cache, benches) and
the clock. It holds no secret: the token shows only as its fingerprint.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from acct.base.models import Account, UsageRecord, Window, live_utilization
from acct.services.state import Bench

if TYPE_CHECKING:
    from acct.services.context import Ctx

RowState = Literal["ok", "held", "full", "benched", "needs_login", "disabled"]
USABLE: frozenset[str] = frozenset({"ok", "held"})
_STATE_ORDER = {"ok": 0, "held": 0, "full": 1, "benched": 1, "needs_login": 2, "disabled": 3}
FULL = 100.0
WindowLabel = Literal["5h", "7d"]


@dataclass(frozen=True)
class AccountView:
    """One account as the user should see it.

    ``state`` is ``ok`` (usable), ``held`` (usable; its lineage is lent to the tool file
    ``holder_path`` of ``holder_target``), ``full`` (a window is at 100 % until it resets:
    ``full_window`` names it; acct does not pick it), ``benched`` (resting until ``bench_until``
    for ``bench_reason``), ``needs_login`` or ``disabled``. The usage fields hold the last good
    values (``fetched_at`` says how old they are) and the last poll's problem, if any.
    """

    id: str
    name: str
    email: str | None
    plan: str | None
    kind: str
    enabled: bool
    state: RowState
    fingerprint: str
    last_used_at: float | None
    holder_target: str | None = None
    holder_path: str | None = None
    bench_until: float | None = None
    bench_kind: str | None = None
    bench_reason: str | None = None
    five_hour: Window | None = None
    seven_day: Window | None = None
    scoped: tuple[tuple[str, float | None, float | None], ...] = ()
    fetched_at: float | None = None
    usage_error: str | None = None
    usage_error_message: str | None = None
    backoff_until: float | None = None
    usage_note: str | None = None  # why usage is not polled at all (api key, setup token...)
    now: float = 0.0
    provider: str = "anthropic"
    # The real length of each column's window when the provider says it (ChatGPT's windows):
    # (("five_hour", "5-hour"), ("seven_day", "7-day")); empty for Anthropic's.
    labels: tuple[tuple[str, str], ...] = ()

    def window_label(self, slot: str) -> str:
        """``5-hour`` / ``7-day`` or the length the provider gave the window in that column."""
        return dict(self.labels).get(slot, "5-hour" if slot == "five_hour" else "7-day")

    @property
    def usable(self) -> bool:
        return self.state in USABLE

    @property
    def usage_age(self) -> float | None:
        return None if self.fetched_at is None else max(0.0, self.now - self.fetched_at)

    @property
    def retry_in(self) -> float | None:
        """Seconds until the usage endpoint may be asked again about this account."""
        if self.backoff_until is None or self.backoff_until <= self.now:
            return None
        return self.backoff_until - self.now

    def utilization(self, window: Window | None) -> float | None:
        """A window's utilization as of now: 0 once its reset time has passed."""
        return live_utilization(window, self.now)

    @property
    def peak(self) -> float | None:
        vals = [
            v
            for v in (self.utilization(self.five_hour), self.utilization(self.seven_day))
            if v is not None
        ]
        return max(vals) if vals else None

    @property
    def full_window(self) -> WindowLabel | None:
        """The window at 100 % that has not reset yet (the weekly one when both are)."""
        return _full_window(self.five_hour, self.seven_day, self.now)

    @property
    def relevant_reset(self) -> float | None:
        """When this account gets quota back: the bench's end, else the reset of the fuller window."""
        if self.state == "benched":
            return self.bench_until
        windows = [
            w
            for w in (self.five_hour, self.seven_day)
            if w is not None and w.resets_at is not None and w.resets_at > self.now
        ]
        if not windows:
            return None
        full = [w.resets_at for w in windows if (w.utilization or 0.0) >= FULL]
        if full:  # usable again only once every full window has reset
            return max(r for r in full if r is not None)
        fullest = max(windows, key=lambda w: (w.utilization or 0.0, -(w.resets_at or 0.0)))
        return fullest.resets_at


def _full_window(five: Window | None, seven: Window | None, now: float) -> WindowLabel | None:
    windows: tuple[tuple[WindowLabel, Window | None], ...] = (("7d", seven), ("5h", five))
    for label, window in windows:
        used = live_utilization(window, now)
        if used is not None and used >= FULL:
            return label
    return None


def _state(account: Account, bench: Bench | None, full: bool) -> RowState:
    if not account.enabled:
        return "disabled"
    if account.is_oauth and (
        account.needs_login or account.tokens is None or account.tokens.is_blank
    ):
        return "needs_login"
    if bench is not None:
        return "benched"
    if full:
        return "full"
    if account.holder is not None:
        return "held"
    return "ok"


def _usage_note(account: Account) -> str | None:
    if not account.is_oauth:
        return "api key: no plan usage"
    if account.tokens is not None and account.tokens.is_setup_token:
        return "setup token: usage not readable"
    return None


def account_view(
    account: Account, record: UsageRecord | None, bench: Bench | None, now: float
) -> AccountView:
    usage = record.usage if record else None
    five = usage.five_hour if usage else None
    seven = usage.seven_day if usage else None
    full = _full_window(five, seven, now) is not None
    return AccountView(
        id=account.id,
        name=account.name,
        email=account.email,
        plan=account.plan,
        kind=account.kind,
        enabled=account.enabled,
        state=_state(account, bench, full),
        fingerprint=account.fingerprint,
        last_used_at=float(account.last_used_at) if account.last_used_at else None,
        holder_target=account.holder.target if account.holder else None,
        holder_path=account.holder.path if account.holder else None,
        bench_until=bench.until if bench else None,
        bench_kind=bench.kind if bench else None,
        bench_reason=bench.reason if bench else None,
        five_hour=five,
        seven_day=seven,
        scoped=usage.scoped if usage else (),
        fetched_at=record.fetched_at if record else None,
        usage_error=record.error if record else None,
        usage_error_message=record.error_message if record else None,
        backoff_until=record.backoff_until if record else None,
        usage_note=_usage_note(account),
        now=now,
        provider=account.provider,
        labels=usage.labels if usage else (),
    )


def build_views(
    accounts: Iterable[Account],
    usage: Mapping[str, UsageRecord],
    benches: Mapping[str, Bench],
    now: float | None = None,
) -> list[AccountView]:
    """Rows in the store's order."""
    now = time.time() if now is None else now
    return [account_view(a, usage.get(a.id), benches.get(a.id), now) for a in accounts]


def current_views(
    ctx: Ctx, accounts: Iterable[Account] | None = None, now: float | None = None
) -> list[AccountView]:
    """Rows for ``accounts`` (default: the whole store) from the shared state as of ``now``."""
    now = time.time() if now is None else now
    accounts = ctx.store.read() if accounts is None else accounts
    return build_views(accounts, ctx.state.all_usage(), ctx.state.benches(now), now)


def rank_for_picker(rows: Iterable[AccountView]) -> list[AccountView]:
    """Best first: usable accounts by lowest peak utilization (unknown counts as fresh), then
    soonest weekly reset, then least recently used; unusable ones after, by how close to usable."""

    def key(r: AccountView) -> tuple[int, float, float, float, str]:
        weekly = r.seven_day.resets_at if r.seven_day and r.seven_day.resets_at else float("inf")
        return (
            _STATE_ORDER[r.state],
            r.peak if r.peak is not None else 0.0,
            weekly,
            r.last_used_at or 0.0,
            r.name,
        )

    return sorted(rows, key=key)
