"""Seeing the pool: ``acct capacity``, ``acct stats`` and ``acct metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from acct.cli import app, documents
from acct.cli.common import JsonOpt, ctx
from acct.cli.render import emit_json, local_time, mode, out, pct, until
from acct.domain.capacity import Capacity

if TYPE_CHECKING:
    from acct.app.stats import Group, Stats

_COLOURS = {"green": "green", "yellow": "yellow", "red": "red"}


# --- capacity ---------------------------------------------------------------------------------


def _print_capacity(c: Capacity) -> None:
    from rich.markup import escape
    from rich.table import Table

    colour = _COLOURS[c.verdict]
    head = f"[bold {colour}]{c.verdict}[/]"
    if c.verdict == "red" and c.back_at is not None:
        who = escape(c.back_name or "?")
        head += f": {who} is back at {local_time(c.back_at)} (in {until(c.back_at)})"
    out.print(head)
    for reason in c.reasons:
        out.print(f"  {escape(reason)}")
    out.print(
        f"headroom: 5-hour {c.headroom['five_hour']:.2f}, 7-day {c.headroom['seven_day']:.2f} "
        f"accounts' worth across {len(c.usable)} usable; soonest reset {until(c.soonest_reset)}"
    )
    if not c.accounts:
        return
    table = Table(box=None, pad_edge=False, show_edge=False)
    for title in ("NAME", "STATE", "5H", "7D", "SESSIONS", "BACK IN"):
        table.add_column(title, justify="right" if title not in ("NAME", "STATE") else "left")
    for a in c.accounts:
        table.add_row(
            escape(a.name),
            a.state.replace("_", " "),
            pct(a.five_hour),
            pct(a.seven_day),
            str(a.sessions),
            until(a.back_at),
        )
    out.print(table)


@app.command("capacity")
def capacity_command(
    json_: JsonOpt = False,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Poll stale accounts' usage first (otherwise no network)."),
    ] = False,
) -> int:
    """Say whether the pool has room for more work: green, yellow or red (exit 0, 10, 20).

    Reads local data only (the usage cache, benches, live sessions) unless --refresh.
    Thresholds: `capacity_low` and `capacity_min_headroom` in the config.
    """
    from acct.app.capacity import capacity

    mode.json = json_
    c = ctx()
    result = capacity(c, refresh=refresh)
    if json_:
        emit_json("capacity", documents.capacity(result))
    else:
        _print_capacity(result)
    return result.exit_status


# --- stats ------------------------------------------------------------------------------------


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _bars(days: list[Group], width: int = 40) -> None:
    from rich.markup import escape

    peak = max((d.tokens for d in days), default=0)
    if len(days) < 2 or peak == 0:
        return
    out.print("tokens per day")
    for d in days:
        n = round(d.tokens / peak * width)
        out.print(f"  {escape(d.key)} {'█' * n}{' ' * (width - n)} {_count(d.tokens)}")


def _print_stats(s: Stats) -> None:
    from rich.markup import escape
    from rich.table import Table

    since = "the beginning" if s.since is None else local_time(s.since)
    out.print(f"since {since}, by {s.by}; API prices of {s.prices_date}")
    table = Table(box=None, pad_edge=False, show_edge=False)
    cols = (
        "REQUESTS",
        "INPUT",
        "OUTPUT",
        "CACHE WRITE",
        "CACHE READ",
        "COST",
        "ROTATIONS",
        "LIMITS",
    )
    table.add_column(s.by.upper())
    for title in cols:
        table.add_column(title, justify="right")
    for g in [*s.groups, s.total]:
        table.add_row(
            escape(g.key) if g is not s.total else "[bold]total[/]",
            str(g.requests),
            _count(g.input_tokens),
            _count(g.output_tokens),
            _count(g.cache_creation_tokens),
            _count(g.cache_read_tokens),
            f"${g.cost:.2f}" + ("*" if g.unpriced_tokens else ""),
            str(g.rotations),
            str(g.limits),
        )
    out.print(table)
    if s.total.unpriced_tokens:
        out.print("* some tokens are of models the price table does not know: not counted")
    _bars(s.days)


@app.command("stats")
def stats_command(
    since: Annotated[
        str, typer.Option("--since", help="A span (30m, 12h, 7d, 2w) or a date (2026-11-30).")
    ] = "7d",
    by: Annotated[
        str, typer.Option("--by", help="Group by account, model, tool or day.")
    ] = "account",
    json_: JsonOpt = False,
) -> None:
    """Tokens, requests, rotations and limits hit, and what they would cost at API prices.

    Tokens are those the usage proxy saw in answers (counted to the hour). Prices come from the
    table acct ships (its date is shown), overridden by the config's pricing table.
    """
    import time as _time

    from acct.app.stats import parse_since, stats

    mode.json = json_
    result = stats(ctx(), since=parse_since(since, _time.time()), by=by)
    if json_:
        emit_json("stats", documents.stats(result))
    else:
        _print_stats(result)


# --- metrics ----------------------------------------------------------------------------------


@app.command("metrics")
def metrics_command(
    openmetrics: Annotated[
        bool, typer.Option("--openmetrics", help="OpenMetrics text instead of Prometheus text.")
    ] = False,
) -> None:
    """Print the pool's state in the Prometheus text exposition format (local data only).

    Per account (labelled by name): utilization and reset times per window, state, bench,
    live sessions; counters of usage polls, token refreshes and rotations; tokens, requests
    and estimated cost of the traffic the usage proxy relayed. `metrics_textfile` in the
    config keeps a file of the same text current for node_exporter's textfile collector.
    """
    import sys

    from acct.app.metrics import exposition

    sys.stdout.buffer.write(exposition(ctx(), openmetrics=openmetrics))
    sys.stdout.flush()
