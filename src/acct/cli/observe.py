"""Seeing the pool: ``acct capacity``, ``acct stats`` and ``acct metrics``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from acct.cli import app
from acct.cli.common import JsonOpt, ctx
from acct.cli.render import emit_json, epoch, iso, local_time, mode, out, pct, until
from acct.domain.capacity import Capacity, PoolAccount

_COLOURS = {"green": "green", "yellow": "yellow", "red": "red"}


# --- capacity ---------------------------------------------------------------------------------


def _account_json(a: PoolAccount) -> dict[str, Any]:
    return {
        "name": a.name,
        "state": a.state,
        "usable": a.usable,
        "account_kind": "api_key" if a.api_key else "oauth",
        "five_hour": a.five_hour,
        "seven_day": a.seven_day,
        "five_hour_resets_at": iso(a.five_hour_resets_at),
        "five_hour_resets_at_epoch": epoch(a.five_hour_resets_at),
        "seven_day_resets_at": iso(a.seven_day_resets_at),
        "seven_day_resets_at_epoch": epoch(a.seven_day_resets_at),
        "back_at": iso(a.back_at),
        "back_at_epoch": epoch(a.back_at),
        "sessions": a.sessions,
    }


def capacity_json(c: Capacity) -> dict[str, Any]:
    return {
        "verdict": c.verdict,
        "exit_status": c.exit_status,
        "reasons": list(c.reasons),
        "headroom": dict(c.headroom),
        "usable": list(c.usable),
        "idle": list(c.idle),
        "back_at": iso(c.back_at),
        "back_at_epoch": epoch(c.back_at),
        "back_account": c.back_name,
        "soonest_reset_at": iso(c.soonest_reset),
        "soonest_reset_at_epoch": epoch(c.soonest_reset),
        "accounts": [_account_json(a) for a in c.accounts],
    }


def _print_capacity(c: Capacity) -> None:
    from rich.markup import escape
    from rich.table import Table

    colour = _COLOURS[c.verdict]
    head = f"[bold {colour}]{c.verdict}[/]"
    if c.verdict == "red" and c.back_at is not None:
        head += f": {escape(c.back_name or '?')} is back at {local_time(c.back_at)} (in {until(c.back_at)})"
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
        emit_json("capacity", capacity_json(result))
    else:
        _print_capacity(result)
    return result.exit_status
