"""``acct pool``: one pool of accounts for many machines, in PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import typer

from acct.app import pool as use
from acct.base.paths import Paths, display_path
from acct.base.timefmt import iso
from acct.cli import app
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


@pool_app.command("init")
def init(json_out: JsonOpt = False) -> None:
    """Create the pool's schema (or upgrade it) and, for a new pool, its key file (0600).

    The password comes from libpq's own sources (`PGPASSWORD`, `~/.pgpass`, a service file).
    """
    mode.json = json_out
    env, paths = _paths()
    r = use.init(env, paths)
    if json_out:
        emit_json("pool-init", {
            "pool": r.where, "schema": {"before": r.schema_before, "now": r.schema_now},
            "key": {"path": r.key_path, "created": r.key_created, "id": r.key_id},
        })  # fmt: skip
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


def _ago(t: float) -> str:
    s = max(0, int(time.time() - t))
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago" if s < 7200 else f"{s // 3600}h ago"


def _document(st: use.PoolStatus) -> dict[str, Any]:
    return {
        "pool": st.where, "schema": st.schema_version, "key_id": st.key_id, "host_id": st.host_id,
        "accounts": st.accounts,
        "machines": [{
            "host_id": m.host_id, "hostname": m.hostname, "last_contact": iso(m.last_contact),
            "silent": m.silent, "this": m.this, "sessions": m.sessions,
            "holds": [{"account": h.account, "target": h.target, "path": h.path,
                       "lineage": h.lineage, "since": iso(h.since)} for h in m.holds],
        } for m in st.machines],
    }  # fmt: skip


@pool_app.command("status")
def status(json_out: JsonOpt = False) -> None:
    """The pool's machines, their last contact, live sessions and which lineage each holds."""
    mode.json = json_out
    env, paths = _paths()
    st = use.status(env, paths)
    if json_out:
        emit_json("pool-status", _document(st))
        return
    out.print(f"pool {st.where}: schema {st.schema_version}, {st.accounts} accounts, "
              f"key id {st.key_id}", markup=False)  # fmt: skip
    for m in st.machines:
        me = " (this machine)" if m.this else ""
        state = "silent" if m.silent else "ok"
        out.print(f"{m.host_id}{me}: {state}, last contact {_ago(m.last_contact)}, "
                  f"{m.sessions} sessions", markup=False)  # fmt: skip
        for h in m.holds:
            out.print(f"  {h.account}: lineage {h.lineage} in {h.target} "
                      f"{display_path(env, h.path)}", markup=False)  # fmt: skip


__all__ = ["init", "pool_app", "status"]
