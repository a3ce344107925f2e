"""The account picker (a terminal menu, best account first) and the words for an account's state,
shared by ``acct list`` and every command that takes an account name."""

from __future__ import annotations

import sys
from collections.abc import Callable

from acct.cli.common import is_interactive
from acct.cli.render import human_duration, pct, until
from acct.context import Ctx
from acct.errors import Interrupted, NotFound, UsageError
from acct.views import AccountView, current_views, rank_for_picker

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


def state_text(row: AccountView) -> str:
    """``ok``, ``held by claude-code``, ``benched 2h10m``, ``needs login`` or ``disabled``."""
    if row.state == "held":
        return f"held by {row.holder_target}"
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
    """Everything worth a remark on the row: bench reason, custody file, usage problem."""
    parts: list[str] = []
    if row.state == "benched" and row.bench_reason:
        parts.append(row.bench_reason)
    if row.holder_path:
        parts.append(f"lent to {row.holder_path}")
    problem = usage_problem(row)
    if problem:
        parts.append(problem)
    return "; ".join(parts)


def _choice_title(row: AccountView, name_width: int) -> str:
    five = pct(row.utilization(row.five_hour))
    seven = pct(row.utilization(row.seven_day))
    return f"{row.name:<{name_width}}  {state_text(row):<18} 5h {five:>4}  7d {seven:>4}  {row.email or ''}"


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
    width = max(len(r.name) for r in ranked)
    choices = [questionary.Choice(title=_choice_title(r, width), value=r.name) for r in ranked]
    answer = questionary.select(
        message, choices=choices, output=create_output(stdout=sys.stderr)
    ).ask()
    if answer is None:
        raise Interrupted("cancelled")
    return str(answer)
