"""The tools' credential files: ``acct use``, ``acct status``, ``acct doctor``, ``acct import``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from acct.cli import app
from acct.cli.common import AccountArg, JsonOpt, complete_target, ctx, is_interactive
from acct.cli.render import emit_json, epoch, iso, line, mode, out, pct, warn
from acct.services.context import Ctx
from acct.base.errors import AcctError, CorruptFile, NeedsLogin, NotFound, UsageError
from acct.base.fsio import dir_lock, read_json_object, real_path, write_json
from acct.base.models import Account, Holder, Tokens, fingerprint, live_utilization
from acct.services.state import SessionRow
from acct.services.store import Accounts
from acct.services.targets import EXTRA_USAGE_NOTE, TARGET_NAMES, get_target
from acct.services.targets.base import Entry, JsonTarget

TargetsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        "-t",
        help="claude-code, opencode or pi (default: config default_target).",
        autocompletion=complete_target,
    ),
]


def _extra_usage_note(name: str) -> str:
    return EXTRA_USAGE_NOTE.format(tool=name)


def _account_label(acc: Account) -> str:
    return f"{acc.name} ({acc.plan})" if acc.plan else acc.name


def display_path(c: Ctx, path: str | Path) -> str:
    """A path for people to read: ``~/…`` under HOME (``--json`` keeps the absolute path)."""
    home = c.env.get("HOME")
    text = str(path)
    if not home or home == "/":
        return text
    home = home.rstrip("/")
    if text == home:
        return "~"
    return "~" + text[len(home) :] if text.startswith(home + "/") else text



def _account_json(name: str, email: str | None, plan: str | None, fp: str) -> dict[str, Any]:
    """The account a command acted on, shaped as `acct login --json` shows it."""
    return {"name": name, "email": email, "plan": plan, "fingerprint": fp}


# --- use ---------------------------------------------------------------------------------------


@app.command()
def use(
    name: AccountArg = None,
    target: TargetsOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a login in the tool's file that acct cannot take back (it is lost).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write an account into a tool's credential file (its login moves there)."""
    from acct.services import custody
    mode.json = json_out
    c = ctx()
    names = list(dict.fromkeys(target or [c.config.default_target]))
    for t in names:
        get_target(t)
    if len(names) > 1:
        raise UsageError(
            "one login can live in one tool's file at a time (its refresh token is single-use)",
            hint="name one --target per account: `acct use A -t claude-code` then `acct use B -t pi`",
        )
    if name is None:
        if not is_interactive():
            raise UsageError("name an account: acct use NAME", hint="`acct list` shows the names")
        from acct.cli.picker import pick_account

        name = pick_account(c, "Which account?", command="use")
    acc = c.store.read().get(name)
    results = [custody.lend(c, acc.id, t, force=force) for t in names]
    if json_out:
        emit_json("use", {"targets": [_lend_json(r, acc.email) for r in results]})
        return
    for r in results:
        _print_lend(c, r)


def _lend_json(r: Any, email: str | None) -> dict[str, Any]:
    expires = r.entry.tokens.expires_at or None
    return {
        "target": r.target,
        "path": r.path,
        "account": _account_json(r.account_name, email, r.plan, r.fingerprint),
        "account_id": r.account_id,
        "expires_at": iso(expires),
        "expires_at_epoch": epoch(expires),
        "already": r.already,
        "in_use_by": list(r.in_use_by),
        "returned": list(r.returned),
        "moved_from": r.moved_from,
        "needs_login": list(r.lost),
        "warnings": list(r.warnings),
        "harvest": {"status": r.harvest.status, "message": r.harvest.message or None},
        "extra_usage_billing": get_target(r.target).extra_usage_billing,
    }


def _print_lend(c: Ctx, r: Any) -> None:
    label = f"{r.account_name} ({r.plan})" if r.plan else r.account_name
    suffix = " (already there)" if r.already else ""
    out.print(f"{r.target} ← {label} fp {r.fingerprint}{suffix}", markup=False)
    if r.harvest.message:
        line(f"acct: {r.target}: {r.harvest.message}")
    if r.in_use_by:
        pids = ", ".join(str(p) for p in r.in_use_by)
        line(
            f"acct: note: a running acct exec (pid {pids}) uses this login; acct leaves it as "
            f"{r.target} has it ({r.target} refreshes it itself)"
        )
    if r.returned:
        line(f"acct: {', '.join(r.returned)} returned to the store")
    if r.moved_from:
        line(f"acct: moved {r.account_name} from {r.moved_from}")
    for name in r.lost:
        warn(
            f"{name} needs a new login: its lineage in the file was replaced (`acct login {name}`)"
        )
    for text in r.warnings:
        warn(text)
    if get_target(r.target).extra_usage_billing:
        line(f"acct: note: {_extra_usage_note(r.target)}")


# --- status ------------------------------------------------------------------------------------


@dataclass
class TargetStatus:
    target: str
    path: str
    present: bool
    state: str  # none | holds | needs_login | corrupt
    account: str | None = None  # the stored account the file holds
    account_id: str | None = None
    fingerprint: str | None = None  # of the file's access token
    changed: bool | None = None  # since acct wrote it (None: acct did not write it)
    holder: str | None = None  # the account acct recorded there
    expires_at: int | None = None
    error: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


def _owner(
    accounts: Accounts, name: str, path: str, entry: Entry
) -> tuple[Account | None, Account | None, bool | None]:
    """(account the file holds, account recorded there, changed since acct wrote it)."""
    from acct.services.custody import holder_path

    key = holder_path(path)
    held = accounts.held_by(name, key)
    fp = entry.lineage_fingerprint
    for acc in held:
        assert acc.holder is not None
        if acc.holder.fingerprint == fp:
            return acc, acc, False
    lent = held[0] if held else None
    same = next((a for a in accounts if a.tokens and a.tokens.lineage_fingerprint == fp), None)
    if same is not None:
        return same, lent, None if lent is None else False
    return None, lent, None if lent is None else True


def target_status(c: Ctx, accounts: Accounts, name: str) -> TargetStatus:
    target = get_target(name)
    path = target.path(c.env)
    st = TargetStatus(target=name, path=str(path), present=path.exists(), state="none")
    try:
        entry = target.read(c.env)
    except CorruptFile as e:
        st.state, st.error = "corrupt", e.message
        return st
    if entry is None:
        return st
    st.fingerprint = fingerprint(entry.tokens.access) if entry.tokens.access else None
    st.expires_at = entry.tokens.expires_at or None
    if entry.blank:
        st.state = "needs_login"
        return st
    st.state = "holds"
    owner, lent, changed = _owner(accounts, name, str(path), entry)
    st.changed = changed
    st.holder = lent.name if lent else None
    if owner is not None:
        st.account, st.account_id = owner.name, owner.id
        st.usage = _usage(c, owner)
    return st


def _usage(c: Ctx, acc: Account) -> dict[str, Any]:
    record = c.state.usage(acc.id)
    if record is None or record.usage is None:
        return {}
    u, now = record.usage, time.time()
    return {
        "five_hour": live_utilization(u.five_hour, now),
        "seven_day": live_utilization(u.seven_day, now),
        "fetched_at": iso(record.fetched_at),
        "fetched_at_epoch": epoch(record.fetched_at),
    }


def _status_json(st: TargetStatus) -> dict[str, Any]:
    return {
        "target": st.target,
        "path": st.path,
        "present": st.present,
        "state": st.state,
        "account": st.account,
        "account_id": st.account_id,
        "holder": st.holder,
        "fingerprint": st.fingerprint,
        "changed_since_written": st.changed,
        "expires_at": iso(st.expires_at),
        "expires_at_epoch": epoch(st.expires_at),
        "error": st.error,
        "usage": st.usage or None,
    }


def _status_line(c: Ctx, st: TargetStatus) -> str:
    path = display_path(c, st.path)
    if st.state == "corrupt":
        return f"{st.target}: {path}: unreadable ({st.error})"
    if st.state == "none":
        return f"{st.target}: {path}: {'no Claude login' if st.present else 'absent'}"
    if st.state == "needs_login":
        return f"{st.target}: {path}: needs login (the tool blanked it)"
    who = st.account or f"unknown account {st.fingerprint or '-'}"
    parts = [f"{st.target}: {who}"]
    if st.usage:
        parts.append(f"5h {pct(st.usage.get('five_hour'))} 7d {pct(st.usage.get('seven_day'))}")
    if st.changed:
        parts.append(
            "changed since acct wrote it" + (f" (acct wrote {st.holder})" if st.holder else "")
        )
    elif st.changed is None and st.account:
        parts.append("not written by acct")
    parts.append(path)
    return " · ".join(parts)


def _session_json(accounts: Accounts, row: SessionRow) -> dict[str, Any]:
    acc = accounts.by_id(row.account_id) if row.account_id else None
    return {
        "id": row.id,
        "pid": row.pid,
        "tool_pid": row.child_pid,
        "target": row.target,
        "account": acc.name if acc else None,
        "account_id": row.account_id,
        "isolated": row.isolated,
        "path": row.path,
        "started_at": iso(row.started_at),
        "started_at_epoch": epoch(row.started_at),
    }


def _session_line(c: Ctx, s: Mapping[str, Any]) -> str:
    path = display_path(c, s["path"])
    where = f"own file {path}" if s["isolated"] else path
    return f"session {s['id']} (pid {s['pid']}): {s['target']} on {s['account'] or '-'} · {where}"


@app.command()
def status(json_out: JsonOpt = False) -> None:
    """Which account each tool's credential file holds now, and the running `acct exec` sessions.

    No network, except to take back the login of a session that ended without cleaning up.
    """
    from acct.services import sessions
    mode.json = json_out
    c = ctx()
    for message in sessions.sweep(c):
        warn(message)
    accounts = c.store.read()
    rows = [target_status(c, accounts, n) for n in TARGET_NAMES]
    running = [_session_json(accounts, r) for r in sessions.live(c)]
    if json_out:
        emit_json("status", {"targets": [_status_json(r) for r in rows], "sessions": running})
        return
    for r in rows:
        out.print(_status_line(c, r), markup=False)
    for s in running:
        out.print(_session_line(c, s), markup=False)


# --- doctor ------------------------------------------------------------------------------------

# Variables that override a tool's credential file, and for which tool.
OVERRIDING_ENV = {
    "claude-code": ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
    "opencode": ("OPENCODE_AUTH_CONTENT",),
}
# Variables a tool uses only when its file has no Anthropic entry.
FALLBACK_ENV = {"pi": ("ANTHROPIC_OAUTH_TOKEN", "ANTHROPIC_API_KEY")}
# Pi retries a 429 at two levels: the agent (`retry.enabled`, on by default) and the provider.
PI_NO_RETRY = {"retry": {"enabled": False, "provider": {"maxRetries": 0}}}


@dataclass
class Check:
    target: str
    check: str
    ok: bool
    message: str
    path: str | None = None  # the file or directory the message is about
    fixed: bool = False
    fix: str | None = None  # what --fix would do, when it can
    done: str | None = None  # what --fix did


def _tool_dir(c: Ctx, name: str) -> Path:
    from acct.services.targets import claude_code, opencode, pi

    if name == "claude-code":
        return claude_code.config_dir(c.env)
    if name == "opencode":
        return opencode.data_dir(c.env)
    return pi.agent_dir(c.env)


def _file_checks(c: Ctx, accounts: Accounts, name: str) -> list[Check]:
    st = target_status(c, accounts, name)
    if st.state == "corrupt":
        return [Check(name, "file", False, st.error or "unreadable")]
    if st.state == "none":
        msg = "no Claude login" if st.present else "absent"
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
        checks.append(
            Check(name, "account", False, f"{acc.name} needs a new login: `acct login {acc.name}`")
        )
    else:
        checks.append(Check(name, "account", True, f"holds {acc.name}"))
    return checks


def _blanked_message(accounts: Accounts, name: str, path: str) -> str:
    from acct.services.custody import holder_path

    held = accounts.held_by(name, holder_path(path))
    who = held[0].name if held else "NAME"
    return f"blanked by the tool: run /login in it, or `acct use {who} -t {name}`"


def _env_checks(c: Ctx, name: str) -> list[Check]:
    checks = [
        Check(name, "env", False, f"{var} is set: {name} uses it instead of its credential file")
        for var in OVERRIDING_ENV.get(name, ())
        if c.env.get(var)
    ]
    checks += [
        Check(
            name,
            "env",
            True,
            f"{var} is set ({name} uses it only when its file has no Anthropic login)",
        )
        for var in FALLBACK_ENV.get(name, ())
        if c.env.get(var)
    ]
    return checks


def _merge(doc: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for k, v in patch.items():
        old = out.get(k)
        out[k] = _merge(old, v) if isinstance(v, Mapping) and isinstance(old, dict) else v
    return out


def _pi_retry_ok(doc: Mapping[str, Any]) -> bool:
    retry = doc.get("retry")
    if not isinstance(retry, dict) or retry.get("enabled") is not False:
        return False
    provider = retry.get("provider")
    return isinstance(provider, dict) and provider.get("maxRetries") == 0


def _pi_settings_check(c: Ctx, fix: bool) -> list[Check]:
    from acct.services.targets.pi import settings_file

    path = settings_file(c.env)
    try:
        doc = read_json_object(path, what="Pi settings") or {}
    except CorruptFile as e:
        return [Check("pi", "retry", False, e.message)]
    if _pi_retry_ok(doc):
        return [
            Check(
                "pi",
                "retry",
                True,
                "Pi exits on a 429 (retry.enabled=false, retry.provider.maxRetries=0)",
                path=str(path),
            )
        ]
    check = Check(
        "pi",
        "retry",
        False,
        "Pi retries a 429 for as long as the server says (hours on a quota limit), "
        "so acct cannot rotate",
        path=str(path),
        fix="set retry.enabled=false and retry.provider.maxRetries=0",
    )
    if fix:
        with dir_lock(Path(str(real_path(path)) + ".lock"), what="Pi's settings"):
            doc = read_json_object(path, what="Pi settings") or {}
            write_json(path, _merge(doc, PI_NO_RETRY))
        check.ok, check.fixed = True, True
        check.done = "set retry.enabled=false and retry.provider.maxRetries=0"
    return [check]


def _has_plugin(doc: Mapping[str, Any], plugin: str) -> bool:
    plugins = doc.get("plugin")
    return isinstance(plugins, list) and any(
        isinstance(p, str) and (p == plugin or p.startswith(plugin + "@")) for p in plugins
    )


def _opencode_plugin_check(c: Ctx, fix: bool) -> list[Check]:
    from acct.services.targets.opencode import PLUGIN, config_file

    path = config_file(c.env)
    try:
        doc = read_json_object(path, what="OpenCode config") or {}
    except CorruptFile as e:
        return [Check("opencode", "plugin", False, e.message)]
    if _has_plugin(doc, PLUGIN):
        return [Check("opencode", "plugin", True, f"plugin {PLUGIN} is enabled", path=str(path))]
    check = Check(
        "opencode",
        "plugin",
        False,
        f"without the plugin {PLUGIN} OpenCode cannot use a Claude login",
        path=str(path),
        fix=f'add "{PLUGIN}" to "plugin"',
    )
    plugins = doc.get("plugin")
    if fix and (plugins is None or isinstance(plugins, list)):
        with dir_lock(Path(str(real_path(path)) + ".lock"), what="OpenCode's config"):
            doc = read_json_object(path, what="OpenCode config") or {}
            current = doc.get("plugin")
            doc["plugin"] = [*(current if isinstance(current, list) else []), PLUGIN]
            write_json(path, doc)
        check.ok, check.fixed = True, True
        check.done = f'added "{PLUGIN}" to "plugin"'
    return [check]


def run_doctor(c: Ctx, fix: bool) -> list[Check]:
    accounts = c.store.read()
    checks: list[Check] = []
    for name in TARGET_NAMES:
        if not _tool_dir(c, name).is_dir() and not get_target(name).path(c.env).exists():
            checks.append(
                Check(name, "installed", True, "not set up (absent)", path=str(_tool_dir(c, name)))
            )
            checks += _env_checks(c, name)
            continue
        checks += _file_checks(c, accounts, name)
        checks += _env_checks(c, name)
        if name == "pi":
            checks += _pi_settings_check(c, fix)
        if name == "opencode":
            checks += _opencode_plugin_check(c, fix)
    return checks


@app.command()
def doctor(
    fix: Annotated[
        bool, typer.Option("--fix", help="Repair what can be repaired (tool settings).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check the tools' files, settings and environment; exit 1 while a problem remains."""
    mode.json = json_out
    c = ctx()
    checks = run_doctor(c, fix)
    bad = [ch for ch in checks if not ch.ok]
    if json_out:
        emit_json("doctor", {"ok": not bad, "checks": [vars(ch) for ch in checks]})
    else:
        for ch in checks:
            out.print(_check_line(c, ch), markup=False)
    if bad:
        raise typer.Exit(1)


def _check_line(c: Ctx, ch: Check) -> str:
    """``ok      pi: ~/.pi/agent/settings.json: …``; a repair says what it did, and where."""
    path = display_path(c, ch.path) if ch.path else None
    if ch.fixed:
        return f"fixed   {ch.target}: {ch.done}" + (f" in {path}" if path else "")
    mark = "ok" if ch.ok else "PROBLEM"
    text = f"{mark:7} {ch.target}: " + (f"{path}: " if path else "") + ch.message
    if not ch.ok and ch.fix:
        text += f" (acct doctor --fix: {ch.fix})"
    return text


# --- import ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    account: Account
    created: bool
    path: str
    entry: Entry


def _read_for_import(c: Ctx, target: JsonTarget, path: Path) -> Entry:
    entry = target.read(c.env, path=path)
    if entry is None:
        raise NotFound(
            f"{path} holds no Claude login for {target.name}", hint="log in inside the tool first"
        )
    if entry.blank:
        raise NeedsLogin(
            "that account needs a new login (run /login in the tool, or acct login)",
        )
    return entry


def import_login(
    c: Ctx, target_name: str, *, name: str | None = None, source: Path | None = None
) -> ImportResult:
    """Take the login a tool holds now into the store; the file stays its live holder.

    A login whose access token has expired (the tool sat idle) is refreshed in its file first,
    as the tool itself would do it (:func:`acct.services.custody.renew_at`). acct's lock of the file is
    held throughout, so no other acct process changes its custody meanwhile.
    """
    from acct.services import custody
    from acct.services.store import validate_name

    if name is not None:
        validate_name(name)
    target = get_target(target_name)
    path = Path(source) if source is not None else target.path(c.env)
    if not path.exists():
        raise NotFound(
            f"{path if mode.json else display_path(c, path)} does not exist",
            hint=None if source is not None else f"log in inside {target.name} first",
        )
    with custody.target_lock(c, path):
        custody.harvest_at(c, target, path, c.env)
        entry = _read_for_import(c, target, path)
        if entry.tokens.refresh and not entry.tokens.fresh_for(custody.RENEW_BELOW):
            custody.renew_at(c, target, path, c.env)
            entry = _read_for_import(c, target, path)
        return _store_import(c, target, path, entry, name)


def _store_import(
    c: Ctx, target: JsonTarget, path: Path, entry: Entry, name: str | None
) -> ImportResult:
    from acct.services import custody, oauth
    try:
        profile = oauth.fetch_profile(c, entry.tokens.access)
    except oauth.ProfileForbidden:
        profile = None
    except oauth.TokenRefused:
        if not entry.tokens.fresh_for(custody.DEAD_MARGIN):
            raise
        raise NeedsLogin(
            f"{path} holds a login the server refuses (401 for an access token that has not "
            "expired): it is signed out, so there is nothing to import",
            hint=f"log in again inside {target.name} (/login), or with `acct login`",
        ) from None
    if profile is None and name is None:
        raise UsageError(
            "this token has no profile access (a setup token?): acct cannot tell whose it is",
            hint=f"name it: acct import {target.name} --name NAME",
        )
    key = custody.holder_path(path)
    fp = entry.lineage_fingerprint
    with c.store.transaction() as accounts:
        existing = accounts.by_identity(profile.uuid, profile.org_uuid) if profile else None
        if existing is None and profile is None and name is not None:
            existing = accounts.find(name)
        base = existing or Account(name=accounts.unique_name(name or _name_from(profile)))
        acc = _imported(base, entry, profile, Holder(target.name, key, fp, int(time.time())))
        if existing is None:
            accounts.add(acc)
        else:
            accounts.put(acc)
    with contextlib.suppress(AcctError):
        c.state.record("import", account_id=acc.id, target=target.name, path=key)
    with contextlib.suppress(Exception):
        from acct.services import prompt_state
        prompt_state.update(c)
    return ImportResult(acc, existing is None, key, entry)


def _name_from(profile: Any) -> str:
    email = (profile.email if profile else None) or "account"
    return email.split("@", 1)[0] or "account"


def _imported(base: Account, entry: Entry, profile: Any, holder: Holder) -> Account:
    t = entry.tokens
    scopes = t.scopes or (base.tokens.scopes if base.tokens else ())
    changes: dict[str, Any] = {
        "kind": "oauth",
        "api_key": None,
        "tokens": Tokens(
            access=t.access, refresh=t.refresh, expires_at=t.expires_at, scopes=scopes
        ),
        "needs_login": False,
        "holder": holder,
    }
    if profile is not None:
        changes.update(
            uuid=profile.uuid or base.uuid,
            email=profile.email or base.email,
            display_name=profile.display_name or base.display_name,
            org_uuid=profile.org_uuid or base.org_uuid,
            org_name=profile.org_name or base.org_name,
            plan=profile.plan or base.plan,
            tier=profile.tier or base.tier,
        )
    return base.copy(**changes)


@app.command("import")
def import_(
    target: Annotated[
        str, typer.Argument(help="claude-code, opencode or pi.", autocompletion=complete_target)
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Name for a new account.")
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from", help="Read this file (in the tool's format) instead of the tool's own."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Take the Claude login a tool holds now into acct (the tool keeps using it)."""
    mode.json = json_out
    c = ctx()
    r = import_login(c, target, name=name, source=source)
    acc = r.account
    fp = fingerprint(r.entry.tokens.access)
    if json_out:
        emit_json(
            "import",
            {
                "account": _account_json(acc.name, acc.email, acc.plan, fp),
                "account_id": acc.id,
                "created": r.created,
                "target": target,
                "path": r.path,
            },
        )
        return
    verb = "added" if r.created else "updated"
    out.print(
        f"{verb} {_account_label(acc)} from {target} ({display_path(c, r.path)}) fp {fp}",
        markup=False,
    )
    if get_target(target).extra_usage_billing:
        line(f"acct: note: {_extra_usage_note(target)}")


__all__ = ["doctor", "import_", "import_login", "run_doctor", "status", "target_status", "use"]
