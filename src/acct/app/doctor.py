"""``acct doctor``: what stands between acct and each tool, and the repairs it can make.

Checked for every tool: whether it is set up, whether its credential file parses and holds an
account acct knows (and whether that account needs a new login), and the environment variables
that would override the file. Each tool's own settings checks (Pi's retry settings, OpenCode's
plugin) are the target's :meth:`~acct.services.targets.base.JsonTarget.doctor_checks`. Then
every account's login: a dead one (its refresh token refused) is a problem wherever it is, and
a live one says when acct last refreshed it.
"""

from __future__ import annotations

import time

from acct.app.status import target_status
from acct.base.fsio import holder_path
from acct.base.timefmt import human_duration
from acct.services import providers
from acct.services.context import Ctx
from acct.services.store import Accounts
from acct.services.targets import TARGET_NAMES, get_target
from acct.services.targets.base import Check

__all__ = ["Check", "run_doctor"]


def _file_checks(c: Ctx, accounts: Accounts, name: str) -> list[Check]:
    st = target_status(c, accounts, name)
    if st.state == "corrupt":
        return [Check(name, "file", False, st.error or "unreadable")]
    if st.state == "none":
        title = providers.get(get_target(name).provider).title
        msg = f"no {title} login" if st.present else "absent"
        return [Check(name, "file", True, msg, path=st.path)]
    if st.state == "needs_login":
        return [Check(name, "file", False, _blanked_message(accounts, name, st.path), st.path)]
    checks = [Check(name, "file", True, "parses", path=st.path)]
    if st.account is None:
        checks.append(
            Check(
                name,
                "account",
                False,
                f"holds a login acct does not track (fp {st.fingerprint}): `acct import {name}`",
            )
        )
        return checks
    acc = accounts.get(st.account)
    if acc.needs_login:
        how = f"{providers.of(acc).login_command} {acc.name}"
        checks.append(Check(name, "account", False, f"{acc.name} needs a new login: `{how}`"))
    else:
        checks.append(Check(name, "account", True, f"holds {acc.name}"))
    return checks


def _blanked_message(accounts: Accounts, name: str, path: str) -> str:
    held = accounts.held_by(name, holder_path(path))
    who = held[0].name if held else "NAME"
    return f"blanked by the tool: run /login in it, or `acct use {who} -t {name}`"


def _env_checks(c: Ctx, name: str) -> list[Check]:
    target = get_target(name)
    checks = [
        Check(name, "env", False, f"{var} is set: {name} uses it instead of its credential file")
        for var in target.overriding_env
        if c.env.get(var)
    ]
    checks += [
        Check(
            name,
            "env",
            True,
            f"{var} is set ({name} uses it only when its file has no "
            f"{providers.get(target.provider).title} login)",
        )
        for var in target.fallback_env
        if c.env.get(var)
    ]
    return checks


def run_doctor(c: Ctx, fix: bool) -> list[Check]:
    accounts = c.store.read()
    checks: list[Check] = []
    for name in TARGET_NAMES:
        target = get_target(name)
        tool_dir = target.tool_dir(c.env)
        if not tool_dir.is_dir() and not target.path(c.env).exists():
            checks.append(Check(name, "installed", True, "not set up (absent)", path=str(tool_dir)))
            checks += _env_checks(c, name)
            continue
        checks += _file_checks(c, accounts, name)
        checks += _env_checks(c, name)
        checks += target.doctor_checks(c.env, fix)
    checks += login_checks(accounts, time.time())
    return checks


def login_checks(accounts: Accounts, now: float) -> list[Check]:
    """A dead login is a problem; a live one says how long ago acct last refreshed it (a login
    lent to a tool is refreshed by the tool, unseen until acct harvests its file)."""
    checks: list[Check] = []
    for acc in accounts:
        if not acc.is_oauth or not acc.enabled:
            continue
        if acc.needs_login or acc.tokens is None or acc.tokens.is_blank:
            message = f"{acc.name} needs a new login (its refresh token was refused)"
            how = f"{providers.of(acc).login_command} {acc.name}"
            checks.append(Check("logins", "login", False, f"{message}: `{how}`"))
            continue
        at = acc.tokens.obtained_at
        age = f"last refreshed {human_duration(now - at)} ago" if at else "refresh time unknown"
        lent = f", lent to {acc.holder.target}" if acc.holder else ""
        kind = f" ({providers.of(acc).title})" if acc.provider != "anthropic" else ""
        checks.append(Check("logins", "login", True, f"{acc.name}{kind}: {age}{lent}"))
    return checks
