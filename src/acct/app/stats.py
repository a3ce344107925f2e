"""`acct stats`: tokens, requests, rotations and limits hit over a period, grouped one way, and
what the same traffic would have cost at API prices."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from acct.base.errors import UsageError
from acct.domain.pricing import PriceTable, table
from acct.services.state import AnswerRow

if TYPE_CHECKING:
    from acct.services.context import Ctx

By = Literal["account", "model", "tool", "day"]
BY: tuple[str, ...] = ("account", "model", "tool", "day")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
LIMIT_KINDS = ("quota", "cooloff")


def parse_since(text: str, now: float) -> float:
    """``30m``, ``12h``, ``7d``, ``2w`` ago, or a date (``2026-11-30``, ISO-8601)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since {text!r} is neither a span (30m, 12h, 7d, 2w) nor a date (2026-11-30)"
        ) from None
    return (dt if dt.tzinfo else dt.astimezone()).timestamp()


@dataclass
class Group:
    key: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    cost: float = 0.0
    unpriced_tokens: int = 0  # tokens of models the price table does not know
    rotations: int = 0
    limits: int = 0

    @property
    def tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_tokens
            + self.cache_read_tokens
        )

    def add(self, row: AnswerRow, prices: PriceTable) -> None:
        self.requests += row.requests
        self.input_tokens += row.input_tokens
        self.output_tokens += row.output_tokens
        self.cache_creation_tokens += row.cache_creation_tokens
        self.cache_read_tokens += row.cache_read_tokens
        cost = prices.cost(
            row.model,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cache_creation_tokens=row.cache_creation_tokens,
            cache_read_tokens=row.cache_read_tokens,
        )
        if cost is None:
            self.unpriced_tokens += (
                row.input_tokens
                + row.output_tokens
                + row.cache_creation_tokens
                + row.cache_read_tokens
            )
        else:
            self.cost += cost


@dataclass
class Stats:
    since: float | None
    until: float
    by: str
    groups: list[Group]
    total: Group
    prices_date: str
    days: list[Group] = field(default_factory=list)  # per day, for the chart


def _day(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d")


def _row_key(row: AnswerRow, by: str, names: dict[str, str]) -> str:
    if by == "account":
        return names.get(row.account_id, f"(removed {row.account_id})")
    if by == "model":
        return row.model
    if by == "tool":
        return row.tool
    return _day(row.hour)


def _event_key(ev: dict[str, object], by: str, names: dict[str, str]) -> str | None:
    if by == "account":
        aid = str(ev.get("account_id") or "")
        return names.get(aid, f"(removed {aid})")
    if by == "tool":
        return str(ev.get("target") or "-")
    if by == "day":
        t = ev.get("t")
        return _day(float(t)) if isinstance(t, int | float) else None
    return None  # a rotation has no model


def _group(groups: dict[str, Group], key: str) -> Group:
    if key not in groups:
        groups[key] = Group(key)
    return groups[key]


def _fold(
    rows: Iterable[AnswerRow],
    events: Iterable[dict[str, object]],
    by: str,
    names: dict[str, str],
    prices: PriceTable,
) -> tuple[list[Group], Group]:
    groups: dict[str, Group] = {}
    total = Group("total")
    for row in rows:
        _group(groups, _row_key(row, by, names)).add(row, prices)
        total.add(row, prices)
    for ev in events:
        rotation = ev["event"] == "rotate"
        if not rotation and ev.get("kind") not in LIMIT_KINDS:
            continue
        key = _event_key(ev, by, names)
        targets = [total] + ([_group(groups, key)] if key is not None else [])
        for g in targets:
            if rotation:
                g.rotations += 1
            else:
                g.limits += 1
    order = sorted(groups.values(), key=lambda g: g.key if by == "day" else (-g.tokens, g.key))
    return order, total


def stats(ctx: Ctx, *, since: float | None, by: str = "account") -> Stats:
    if by not in BY:
        raise UsageError(f"--by must be one of {', '.join(BY)}")
    now = time.time()
    names = {a.id: a.name for a in ctx.store.read()}
    prices = table(ctx.config.pricing)
    rows = [r for r in ctx.state.answers(since) if since is None or r.hour + 3600 > since]
    events = ctx.state.events("rotate", "bench", since=since)
    groups, total = _fold(rows, events, by, names, prices)
    days = groups if by == "day" else _fold(rows, events, "day", names, prices)[0]
    return Stats(since, now, by, groups, total, prices.date, days)
