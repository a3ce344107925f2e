"""The account picker (a terminal menu, best account first) and the words for an account's state,
shared by ``acct list`` and every command that takes an account name."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from acct.app.views import AccountView, current_views, rank_for_picker
from acct.base.errors import Interrupted, NotFound, UsageError
from acct.cli.common import is_interactive
from acct.cli.render import err, human_duration, line, pct, safe, until
from acct.services.context import Ctx

_ERROR_WORDS = {
    "rate_limited": "rate-limited",
    "network": "unreachable",
    "timeout": "timed out",
    "server_error": "server error",
    "auth": "token refused",
    "forbidden": "not allowed for this token",
    "needs_login": "needs login",
    "protocol": "unexpected answer",
}


def state_text(row: AccountView, *, short: bool = False) -> str:
    """``ok``, ``held by claude-code`` (``in claude-code`` when ``short``), ``full (5h)``,
    ``benched 2h10m``, ``needs login`` or ``disabled``."""
    if row.state == "held":
        return f"in {row.holder_target}" if short else f"held by {row.holder_target}"
    if row.state == "full":
        return f"full ({row.full_window})"
    if row.state == "benched":
        return f"benched {until(row.bench_until, row.now)}"
    if row.state == "needs_login":
        return "needs login"
    return row.state


def usage_problem(row: AccountView) -> str | None:
    """Why the usage shown may be old, e.g. ``usage: rate-limited, retry in 12m``."""
    if row.usage_note:
        return row.usage_note
    if not row.usage_error or (row.usage_error == "needs_login" and row.state == "needs_login"):
        return None
    text = f"usage: {_ERROR_WORDS.get(row.usage_error, row.usage_error)}"
    if row.retry_in is not None:
        text += f", retry in {human_duration(row.retry_in)}"
    return text


def notes(row: AccountView) -> str:
    """Everything worth a remark on the row: bench reason, the tool holding an account whose
    state says something else, usage problem. (`acct status` shows the tools' files.)"""
    parts: list[str] = []
    if row.state == "benched" and row.bench_reason:
        parts.append(row.bench_reason)
    if row.holder_target and row.state != "held":
        parts.append(f"in {row.holder_target}")
    problem = usage_problem(row)
    if problem:
        parts.append(problem)
    return "; ".join(parts)


# The picker shows emails only this wide; below, a row keeps name, state and usage.
_EMAIL_COLUMNS = 100
_POINTER = 3  # questionary's " » " before each row


def choice_titles(rows: list[AccountView], columns: int) -> list[str]:
    """One aligned line per account for a picker ``columns`` wide: name, state, 5h and 7d,
    and the email on a wide terminal. No line is longer than the terminal (it would wrap)."""
    short = columns < _EMAIL_COLUMNS
    states = [safe(state_text(r, short=short)) for r in rows]
    names = [safe(r.name) for r in rows]
    name_w = max(len(n) for n in names)
    state_w = max(len(s) for s in states)
    titles = []
    for r, name, state in zip(rows, names, states, strict=True):
        five = pct(r.utilization(r.five_hour))
        seven = pct(r.utilization(r.seven_day))
        title = f"{name:<{name_w}}  {state:<{state_w}}  5h {five:>4}  7d {seven:>4}"
        if not short and r.email and r.email != r.name:
            title += f"  {safe(r.email)}"
        titles.append(_fit(title, columns - _POINTER - 1))
    return titles


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def ask(question: Any) -> Any:
    """Run a questionary prompt; Ctrl-C cancels the command (exit 130).

    ``unsafe_ask`` because ``ask`` prints its own "Cancelled by user" before the error line."""
    try:
        answer = question.unsafe_ask()
    except KeyboardInterrupt:
        raise Interrupted("cancelled") from None
    if answer is None:
        raise Interrupted("cancelled")
    return answer


def pick_account(
    ctx: Ctx,
    message: str,
    *,
    filter: Callable[[AccountView], bool] | None = None,
    command: str | None = None,
) -> str:
    """Ask which account on a terminal (best first); without one, the user must name it.

    ``command`` names the command for the error message (``acct <command> NAME``).
    """
    if not is_interactive():
        how = f"acct {command} NAME" if command else "give the account's name"
        raise UsageError(f"name an account: {how}", hint="`acct list` shows the names")
    rows = current_views(ctx)
    if filter is not None:
        rows = [r for r in rows if filter(r)]
    if not rows:
        raise NotFound("no account to choose from", hint="run `acct login` to add one")
    import questionary
    from prompt_toolkit.output import create_output

    ranked = rank_for_picker(rows)
    titles = choice_titles(ranked, err.width)
    choices = [
        questionary.Choice(title=t, value=r.name) for t, r in zip(titles, ranked, strict=True)
    ]
    question = questionary.select(message, choices=choices, output=create_output(stdout=sys.stderr))
    # questionary would leave the whole chosen row on the screen: erase the menu, echo the name.
    question.application.erase_when_done = True
    name = str(ask(question))
    line(f"? {message} {name}")
    return name
