"""``acct list`` and account management: remove, rename, disable, enable."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.markup import escape

from acct.app import accounts as manage
from acct.app.views import AccountView, current_views
from acct.base.errors import UsageError
from acct.base.models import Account
from acct.base.paths import display_path
from acct.cli import app, documents
from acct.cli.common import (
    AccountArg,
    JsonOpt,
    RequiredAccountArg,
    YesOpt,
    complete_account,
    ctx,
    is_interactive,
)
from acct.cli.picker import ask, notes, pick_account, state_text, usage_problem
from acct.cli.render import (
    emit_json,
    err,
    human_duration,
    info,
    line,
    mode,
    out,
    pct,
    safe,
    until,
    warn,
)
from acct.services.context import Ctx

UsageOpt = Annotated[
    bool,
    typer.Option(
        "--usage", "-u", help="Poll the usage of accounts whose cached values are stale first."
    ),
]


# --- list -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    """A progress callback for :func:`acct.services.usage.poll`: a live bar on a terminal, else one line."""
    if quiet:
        yield None
        return
    if not err.is_terminal:

        def note(done: int, total: int) -> None:
            if done == 0:
                line(f"acct: polling usage of {total} account{'s' if total != 1 else ''}…")

        yield note
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("polling usage"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("usage", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield tick


def _refresh_usage(c: Ctx, accounts: list[Account], quiet: bool) -> None:
    from acct.services.usage import poll

    with _progress(quiet) as progress:
        poll(c, accounts, progress=progress)


def _age(row: AccountView) -> str:
    age = row.usage_age
    return "-" if age is None else f"{human_duration(age)} ago"


_ORDER = ("NAME", "EMAIL", "PLAN", "STATE", "5H", "7D", "RESETS", "USAGE AGE", "TOKEN", "NOTE")
_RIGHT = ("5H", "7D", "RESETS", "USAGE AGE")
# Left out, in this order, when a row would not fit the terminal (a row never wraps).
_DROPPABLE = ("USAGE AGE", "TOKEN")
_GAP = 2  # between columns


_STANDARD = {"five_hour": "5-hour", "seven_day": "7-day"}


def _window_cell(r: AccountView, slot: str) -> str:
    """The window's utilization; with its real length when that is not the column's (a
    ChatGPT plan whose windows have other lengths)."""
    w = r.five_hour if slot == "five_hour" else r.seven_day
    text = pct(r.utilization(w))
    label = r.window_label(slot)
    return text if w is None or label == _STANDARD[slot] else f"{text} ({label})"


def _plan_cell(r: AccountView) -> str:
    plan = safe(r.plan) or ("api key" if r.kind == "api_key" else "-")
    return plan if r.provider == "anthropic" else f"{r.provider} {plan}"


def _cells(r: AccountView, short: bool) -> dict[str, str]:
    return {
        "NAME": safe(r.name),
        "EMAIL": safe(r.email) or "-",
        "PLAN": _plan_cell(r),
        "STATE": safe(state_text(r, short=short)),
        "5H": _window_cell(r, "five_hour"),
        "7D": _window_cell(r, "seven_day"),
        "RESETS": until(r.relevant_reset, r.now),
        "USAGE AGE": _age(r),
        "TOKEN": r.fingerprint,
        "NOTE": safe(notes(r)),
    }


def _widths(titles: list[str], cells: list[dict[str, str]]) -> dict[str, int]:
    return {t: max(len(t), *(len(c[t]) for c in cells)) for t in titles}


def _line_width(titles: list[str], cells: list[dict[str, str]]) -> int:
    return sum(_widths(titles, cells).values()) + _GAP * (len(titles) - 1)


def _layout(rows: list[AccountView], width: int) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and cells that fit ``width``: the short state words first, then fewer
    columns (USAGE AGE, then TOKEN); EMAIL and NOTE only when they fit whole.

    EMAIL is left out when it only repeats NAME, NOTE when no row has one.
    """
    titles = ["NAME", "PLAN", "STATE", "5H", "7D", "RESETS", "USAGE AGE", "TOKEN"]
    cells = [_cells(r, short=False) for r in rows]
    if _line_width(titles, cells) > width:
        cells = [_cells(r, short=True) for r in rows]
    for title in _DROPPABLE:
        if _line_width(titles, cells) <= width:
            break
        titles.remove(title)
    wanted = {
        "EMAIL": any(r.email not in (None, r.name) for r in rows),
        "NOTE": any(c["NOTE"] for c in cells),
    }
    for title in ("EMAIL", "NOTE"):
        if wanted[title] and _line_width([*titles, title], cells) <= width:
            titles.append(title)
    return [t for t in _ORDER if t in titles], cells


def _table_lines(titles: list[str], cells: list[dict[str, str]]) -> list[str]:
    """The header and one line per row, aligned, with no padding after the last cell."""
    widths = _widths(titles, cells)

    def fmt(values: dict[str, str]) -> str:
        parts = [
            values[t].rjust(widths[t]) if t in _RIGHT else values[t].ljust(widths[t])
            for t in titles
        ]
        return (" " * _GAP).join(parts).rstrip()

    return [fmt({t: t for t in titles}), *(fmt(c) for c in cells)]


def _print_table(rows: list[AccountView], width: int) -> None:
    """The listing in ``width`` columns; the notes that did not fit follow it, one a line."""
    from rich.text import Text

    def row(text: str, style: str) -> None:  # cut at the edge as a last resort, never wrapped
        out.print(Text(text, style=style), no_wrap=True, overflow="ellipsis", soft_wrap=False)

    titles, cells = _layout(rows, width)
    header, *lines = _table_lines(titles, cells)
    row(header, "bold")
    for r, text in zip(rows, lines, strict=True):
        row(text, "" if r.usable else "dim")
    if "NOTE" not in titles:
        for r, c in zip(rows, cells, strict=True):
            if c["NOTE"]:
                out.print(f"{r.name}: {c['NOTE']}", markup=False)


def list_accounts(usage: bool, json: bool) -> None:
    mode.json = json
    c = ctx()
    accounts = list(c.store.read())
    if usage and accounts:
        _refresh_usage(c, accounts, quiet=json)
        accounts = list(c.store.read())  # a poll may refresh tokens or find a signed-out account
    rows = current_views(c, accounts, time.time())
    if json:
        emit_json("accounts", {"accounts": [documents.account_row(r) for r in rows]})
        return
    if not rows:
        line("No accounts yet: run `acct login` to add one.")
        return
    _print_table(rows, out.width)
    if not usage and _unpolled(accounts, rows):
        info("[dim]`acct list --usage` fetches usage.[/]")


def _unpolled(accounts: list[Account], rows: list[AccountView]) -> bool:
    """Whether `--usage` would fetch something: an account it polls has no values and no
    back-off running (disabled, logged-out and API-key accounts are never polled)."""
    from acct.services.usage import pollable

    polled = {a.id for a in accounts if pollable(a)}
    return any(r.id in polled and r.fetched_at is None and usage_problem(r) is None for r in rows)


@app.command("list")
def list_cmd(usage: UsageOpt = False, json: JsonOpt = False) -> None:
    """List accounts with their state, quota usage and token fingerprint."""
    list_accounts(usage, json)


@app.command("ls", hidden=True)
def ls_cmd(usage: UsageOpt = False, json: JsonOpt = False) -> None:
    """List accounts (same as `acct list`)."""
    list_accounts(usage, json)


# --- management -------------------------------------------------------------------------------


def _ask(question: str) -> bool:
    import questionary
    from prompt_toolkit.output import create_output

    return bool(
        ask(questionary.confirm(question, default=False, output=create_output(stdout=sys.stderr)))
    )


@app.command()
def remove(name: AccountArg = None, yes: YesOpt = False) -> None:
    """Remove an account and forget its cached usage and benches."""
    c = ctx()
    if name is None:
        name = pick_account(c, "Remove which account?", command="remove")
    account = c.store.read().get(name)
    if not yes:
        if not is_interactive():
            raise UsageError(
                f"removing {name!r} needs confirmation", hint=f"run `acct remove {name} --yes`"
            )
        if not _ask(safe(f"Remove account {name} ({account.email or account.kind})?")):
            info(f"Kept {escape(name)}.")
            return
    removed = manage.remove(c, name)
    info(f"Removed account {escape(name)}.")
    if removed.holder is not None:
        _warn_still_held(c, removed)


def _warn_still_held(c: Ctx, removed: Account) -> None:
    """The tool's file keeps the removed account's login, now one acct does not know."""

    assert removed.holder is not None
    target = removed.holder.target
    warn(
        f"{target}'s file {display_path(c.env, removed.holder.path)} keeps {removed.name}'s login; "
        f"the next `acct use` or `acct exec` for {target} will refuse to overwrite a login acct "
        f"does not track unless given --force (`acct import {target}` keeps tracking it)"
    )


FirstNameArg = Annotated[
    str,
    typer.Argument(
        metavar="OLD",
        help="The account to rename; alone, the new name (a picker asks for OLD).",
        autocompletion=complete_account,
    ),
]
NewNameArg = Annotated[
    str | None, typer.Argument(metavar="NEW", help="Its new name.", show_default=False)
]


@app.command()
def rename(first: FirstNameArg, second: NewNameArg = None) -> None:
    """Rename an account: `acct rename OLD NEW`, or `acct rename NEW` to pick OLD from a list.

    Usage, benches and custody are keyed by the account's id, so they follow the new name.
    """
    c = ctx()
    if second is None:
        if not is_interactive():
            raise UsageError("name the account to rename: acct rename OLD NEW")
        old, new = pick_account(c, f"Rename which account to {first}?"), first
    else:
        old, new = first, second
    if manage.rename(c, old, new).changed:
        info(f"Renamed {escape(old)} to {escape(new)}.")


def _set_enabled(name: str, enabled: bool) -> None:
    word = "enabled" if enabled else "disabled"
    if not manage.set_enabled(ctx(), name, enabled).changed:
        info(f"{escape(name)} is {word} already.")
        return
    info(
        f"{name} is {word}."
        + ("" if enabled else f" acct will not pick it until you run `acct enable {name}`.")
    )


@app.command()
def disable(name: RequiredAccountArg) -> None:
    """Keep an account but never pick it or poll its usage."""
    _set_enabled(name, False)


@app.command()
def enable(name: RequiredAccountArg) -> None:
    """Let acct pick a disabled account again."""
    _set_enabled(name, True)
