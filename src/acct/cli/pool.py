"""``acct pool``: one pool of accounts for many machines, in PostgreSQL."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from acct.app import pool as use
from acct.base.paths import Paths, display_path
from acct.cli import app, documents
from acct.cli.common import JsonOpt, ctx
from acct.cli.render import emit_json, mode, out

pool_app = typer.Typer(
    name="pool",
    help="One pool of accounts for all your machines, in PostgreSQL (`ACCT_POOL`).",
    no_args_is_help=True,
)
app.add_typer(pool_app, name="pool")


def _paths() -> tuple[dict[str, str], Paths]:
    c = ctx()
    return dict(c.env), c.paths


def _moved_lines(env: dict[str, str], r: use.JoinResult) -> None:
    for m in r.moved:
        name = m.name if m.pool_name == m.name else f"{m.name} (as {m.pool_name})"
        if m.outcome == "added":
            where = f", its lineage stays in {display_path(env, m.held)}" if m.held else ""
            out.print(f"moved {name} into the pool{where}", markup=False)
        elif m.outcome == "same" and m.held:
            out.print(
                f"{name}: the pool has it already (the same login), but {display_path(env, m.held)} "
                "here holds that lineage too: two files hold one login, and the first refresh in "
                f"either kills the other; run /login in one of them, or `acct login {m.pool_name}`",
                markup=False,
            )
        elif m.outcome == "same":
            out.print(f"{name}: the pool has it already (the same login)", markup=False)
        else:
            out.print(
                f"{name}: the pool has another login of this account and keeps it; this "
                "machine's login is not added (two live logins of one account are never kept)"
                + (f"; the one in {display_path(env, m.held)} stays there" if m.held else ""),
                markup=False,
            )
    if r.moved:
        out.print(f"this machine's accounts now live in pool {r.where}", markup=False)


@pool_app.command("init")
def init(json_out: JsonOpt = False) -> None:
    """Create the pool's schema (or upgrade it) and, for a new pool, its key file (0600); then
    move this machine's accounts into the pool, with their custody.

    The password comes from libpq's own sources (`PGPASSWORD`, `~/.pgpass`, a service file).
    """
    mode.json = json_out
    env, paths = _paths()
    j = use.init(env, paths)
    r = j.init
    assert r is not None
    if json_out:
        emit_json("pool-init", documents.pool_join(j))
        return
    schema = (
        f"schema version {r.schema_now}"
        if r.schema_before == r.schema_now
        else f"schema version {r.schema_before} -> {r.schema_now}"
    )
    key = "created" if r.key_created else "found"
    out.print(f"pool {r.where}: {schema}", markup=False)
    out.print(f"key {display_path(env, r.key_path)} ({key}, id {r.key_id})", markup=False)
    if r.key_created:
        out.print(
            "copy that key file (0600) to each machine that joins the pool; never through a "
            "chat or a shared folder",
            markup=False,
        )
    _moved_lines(env, j)


@pool_app.command("join")
def join(json_out: JsonOpt = False) -> None:
    """Move this machine's accounts into an existing pool (needs a copy of its key file):
    deduplicated by account and organization; a second login of an account the pool has is
    not added, and said so."""
    mode.json = json_out
    env, paths = _paths()
    j = use.join(env, paths)
    if json_out:
        emit_json("pool-join", documents.pool_join(j))
        return
    out.print(f"machine {j.host_id} joined pool {j.where}", markup=False)
    _moved_lines(env, j)


@pool_app.command("leave")
def leave(json_out: JsonOpt = False) -> None:
    """Take this machine out of the pool: the lineages lent to its files go back to the pool
    first (refused, with the reason, while a running session's tool holds one)."""
    mode.json = json_out
    c = ctx()
    r = use.leave(c)
    if json_out:
        emit_json("pool-leave", documents.pool_leave(r))
        return
    for name in r.returned:
        out.print(f"{name}: its lineage is back in the pool", markup=False)
    out.print(
        f"machine {r.host_id} left pool {r.where}; its accounts stay in the pool. Remove "
        "ACCT_POOL (or pool in config.toml) here: any acct command with it set joins again",
        markup=False,
    )


HostArg = Annotated[str, typer.Argument(metavar="HOST", help="The machine's id (ACCT_HOST_ID).")]
AccountOpt = Annotated[
    str | None,
    typer.Option("--account", metavar="NAME", help="Only this account's lineage."),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Also a machine that is not silent (it must be gone).")
]


@pool_app.command("reclaim")
def reclaim(
    host: HostArg, account: AccountOpt = None, force: ForceOpt = False, json_out: JsonOpt = False
) -> None:
    """Declare a silent machine gone: the pool takes back the lineages its files hold. It
    takes the tokens that machine last pushed when nothing newer can exist; otherwise the
    account needs a new login. The machine finds out at its next contact."""
    mode.json = json_out
    done = use.reclaim(ctx(), host, account=account, force=force)
    if json_out:
        emit_json("pool-reclaim", documents.pool_reclaim(host, list(done)))
        return
    if not done:
        out.print(f"machine {host} holds no lineage of the pool", markup=False)
    for r in done:
        if r.took_pushed:
            out.print(f"{r.account}: back in the pool, with the tokens {host} last pushed",
                      markup=False)  # fmt: skip
        else:
            out.print(f"{r.account}: taken from {host}; it needs a new login "
                      f"(`acct login {r.account}`): newer tokens may exist there", markup=False)  # fmt: skip


def _ago(t: float) -> str:
    s = max(0, int(time.time() - t))
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago" if s < 7200 else f"{s // 3600}h ago"


@pool_app.command("status")
def status(json_out: JsonOpt = False) -> None:
    """The pool's machines, their last contact, live sessions and which lineage each holds."""
    mode.json = json_out
    env, paths = _paths()
    st = use.status(env, paths, lease_timeout=ctx().config.lease_timeout)
    if json_out:
        emit_json("pool-status", documents.pool_status(st))
        return
    out.print(f"pool {st.where}: schema {st.schema_version}, {st.accounts} accounts, "
              f"key id {st.key_id}", markup=False)  # fmt: skip
    for m in st.machines:
        me = " (this machine)" if m.this else ""
        state = "silent" if m.silent else "ok"
        out.print(f"{m.host_id}{me}: {state}, last contact {_ago(m.last_contact)}, "
                  f"{m.sessions} sessions", markup=False)  # fmt: skip
        for h in m.holds:
            held = " (held by a silent machine)" if m.silent else ""
            out.print(f"  {h.account}: lineage {h.lineage} in {h.target} "
                      f"{display_path(env, h.path)}{held}", markup=False)  # fmt: skip
        for x in m.live:
            out.print(f"  session pid {x.pid}: {x.target} on {x.account or '-'}, heartbeat "
                      f"{_ago(x.heartbeat_at)}", markup=False)  # fmt: skip


__all__ = ["init", "join", "leave", "pool_app", "reclaim", "status"]
