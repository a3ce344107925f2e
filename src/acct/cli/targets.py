"""The tools' credential files: ``acct use``, ``acct status``, ``acct doctor``, ``acct import``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from acct.app.doctor import Check, run_doctor
from acct.app.importing import import_login
from acct.app.status import TargetStatus, target_status
from acct.base.errors import UsageError
from acct.base.models import Account, fingerprint
from acct.base.paths import display_path
from acct.cli import app, documents
from acct.cli.common import AccountArg, JsonOpt, complete_target, ctx, is_interactive
from acct.cli.render import emit_json, line, mode, out, pct, warn
from acct.services import custody, procs, sessions
from acct.services.context import Ctx
from acct.services.targets import EXTRA_USAGE_NOTE, TARGET_NAMES, get_target, targets_of

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


# --- use ---------------------------------------------------------------------------------------


def _default_target(c: Ctx, name: str | None) -> str:
    """The configured default target, or, for an account of another provider, the first
    target of its own (a ChatGPT account goes to Codex)."""
    default = c.config.default_target
    acc = c.store.read().find(name) if name else None
    if acc is None or get_target(default).provider == acc.provider:
        return default
    return targets_of(acc.provider)[0]


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
    mode.json = json_out
    c = ctx()
    names = list(dict.fromkeys(target or [_default_target(c, name)]))
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

        wanted = get_target(names[0]).provider
        name = pick_account(
            c, "Which account?", command="use", filter=lambda row: row.provider == wanted
        )
    acc = c.store.read().get(name)
    results = [custody.lend(c, acc.id, t, force=force) for t in names]
    if json_out:
        emit_json("use", {"targets": [documents.lend(r, acc.email) for r in results]})
        return
    for r in results:
        _print_lend(c, r)


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


def _status_line(c: Ctx, st: TargetStatus) -> str:
    path = display_path(c.env, st.path)
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


def _session_line(c: Ctx, s: Mapping[str, Any]) -> str:
    path = display_path(c.env, s["path"])
    where = f"own file {path}" if s["isolated"] else path
    return f"session {s['id']} (pid {s['pid']}): {s['target']} on {s['account'] or '-'} · {where}"


@app.command()
def status(json_out: JsonOpt = False) -> None:
    """Which account each tool's credential file holds now, and the running `acct exec` sessions.

    No network, except to take back the login of a session that ended without cleaning up.
    """
    mode.json = json_out
    c = ctx()
    for message in sessions.sweep(c):
        warn(message)
    accounts = c.store.read()
    rows = [target_status(c, accounts, n) for n in TARGET_NAMES]
    running = [documents.session(accounts, r) for r in procs.live(c)]
    if json_out:
        emit_json(
            "status", {"targets": [documents.target_status(r) for r in rows], "sessions": running}
        )
        return
    for r in rows:
        out.print(_status_line(c, r), markup=False)
    for s in running:
        out.print(_session_line(c, s), markup=False)


# --- doctor ------------------------------------------------------------------------------------


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
    path = display_path(c.env, ch.path) if ch.path else None
    if ch.fixed:
        return f"fixed   {ch.target}: {ch.done}" + (f" in {path}" if path else "")
    mark = "ok" if ch.ok else "PROBLEM"
    text = f"{mark:7} {ch.target}: " + (f"{path}: " if path else "") + ch.message
    if not ch.ok and ch.fix:
        text += f" (acct doctor --fix: {ch.fix})"
    return text


# --- import ------------------------------------------------------------------------------------


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
                "account": documents.account_brief(acc.name, acc.email, acc.plan, fp),
                "account_id": acc.id,
                "created": r.created,
                "target": target,
                "path": r.path,
            },
        )
        return
    verb = "added" if r.created else "updated"
    out.print(
        f"{verb} {_account_label(acc)} from {target} ({display_path(c.env, r.path)}) fp {fp}",
        markup=False,
    )
    if get_target(target).extra_usage_billing:
        line(f"acct: note: {_extra_usage_note(target)}")


__all__ = ["doctor", "import_", "import_login", "run_doctor", "status", "target_status", "use"]
