"""Every ``--json`` document acct prints, built from the typed results of the use cases.

One convention throughout: a time is two keys, ``<x>_at`` (ISO-8601 with the local offset) and
``<x>_at_epoch`` (whole seconds); a token is only ever its fingerprint. :func:`emit` wraps a
payload in ``{"version": 1, "kind": ...}`` (:func:`acct.cli.render.emit_json`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from acct.app.status import TargetStatus
from acct.app.views import AccountView
from acct.base.models import Account, Window
from acct.base.timefmt import epoch, iso
from acct.services.custody import LendResult
from acct.services.state import SessionRow
from acct.services.store import Accounts
from acct.services.targets import get_target

if TYPE_CHECKING:
    from acct.app.pool import JoinResult, LeaveResult, PoolStatus
    from acct.app.stats import Group, Stats
    from acct.domain.capacity import Capacity, PoolAccount
    from acct.services.pool.custody import Reclaimed


def login_account(acc: Account) -> dict[str, object]:
    expires_at = acc.tokens.expires_at if acc.tokens else None
    """An account as `acct login --json` shows it."""
    return {
        "name": acc.name,
        "kind": acc.kind,
        "provider": acc.provider,
        "email": acc.email,
        "plan": acc.plan,
        "uuid": acc.uuid,
        "fingerprint": acc.fingerprint,
        "added_at": iso(acc.added_at),
        "added_at_epoch": epoch(acc.added_at),
        "expires_at": iso(expires_at),
        "expires_at_epoch": epoch(expires_at),
    }


def account_brief(name: str, email: str | None, plan: str | None, fp: str) -> dict[str, Any]:
    """The account a command acted on, shaped as `acct login --json` shows it."""
    return {"name": name, "email": email, "plan": plan, "fingerprint": fp}


def lend(r: LendResult, email: str | None) -> dict[str, Any]:
    expires = r.entry.tokens.expires_at or None
    return {
        "target": r.target,
        "path": r.path,
        "account": account_brief(r.account_name, email, r.plan, r.fingerprint),
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


def target_status(st: TargetStatus) -> dict[str, Any]:
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


def session(accounts: Accounts, row: SessionRow) -> dict[str, Any]:
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


def window(w: Window | None, row: AccountView, slot: str) -> dict[str, Any] | None:
    if w is None:
        return None
    return {
        "window": row.window_label(slot),
        "utilization": w.utilization,
        "utilization_now": row.utilization(w),
        "resets_at": iso(w.resets_at),
        "resets_at_epoch": epoch(w.resets_at),
    }


def _retry_at(row: AccountView) -> float | None:
    return row.backoff_until if row.retry_in is not None else None


def account_row(row: AccountView) -> dict[str, Any]:
    """One account for ``--json``: the table's data, times as ISO-8601 plus epoch, no secret."""
    return {
        "id": row.id,
        "name": row.name,
        "email": row.email,
        "plan": row.plan,
        "account_kind": row.kind,
        "provider": row.provider,
        "enabled": row.enabled,
        "state": row.state,
        "usable": row.usable,
        "full_window": row.full_window,
        "bench": None
        if row.bench_until is None
        else {
            "until_at": iso(row.bench_until),
            "until_at_epoch": epoch(row.bench_until),
            "kind": row.bench_kind,
            "reason": row.bench_reason,
        },
        "holder": None
        if row.holder_target is None
        else {"target": row.holder_target, "path": row.holder_path},
        "usage": {
            "five_hour": window(row.five_hour, row, "five_hour"),
            "seven_day": window(row.seven_day, row, "seven_day"),
            "scoped": [
                {
                    "label": label,
                    "utilization": p,
                    "resets_at": iso(r),
                    "resets_at_epoch": epoch(r),
                }
                for label, p, r in row.scoped
            ],
            "fetched_at": iso(row.fetched_at),
            "fetched_at_epoch": epoch(row.fetched_at),
            "age_seconds": epoch(row.usage_age),
            "error": None
            if row.usage_error is None
            else {
                "code": row.usage_error,
                "message": row.usage_error_message,
                "retry_at": iso(_retry_at(row)),
                "retry_at_epoch": epoch(_retry_at(row)),
            },
            "note": row.usage_note,
        },
        "resets_at": iso(row.relevant_reset),
        "resets_at_epoch": epoch(row.relevant_reset),
        "fingerprint": row.fingerprint,
        "last_used_at": iso(row.last_used_at),
        "last_used_at_epoch": epoch(row.last_used_at),
    }


def _pool_account(a: PoolAccount) -> dict[str, Any]:
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


def capacity(c: Capacity) -> dict[str, Any]:
    """`acct capacity --json`: the verdict, why, headroom per window, a row per account."""
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
        "accounts": [_pool_account(a) for a in c.accounts],
    }


def _stats_group(g: Group) -> dict[str, Any]:
    return {
        "key": g.key,
        "requests": g.requests,
        "tokens": {
            "input": g.input_tokens,
            "output": g.output_tokens,
            "cache_creation": g.cache_creation_tokens,
            "cache_read": g.cache_read_tokens,
            "total": g.tokens,
        },
        "cost_usd": round(g.cost, 6),
        "unpriced_tokens": g.unpriced_tokens,
        "rotations": g.rotations,
        "limits": g.limits,
    }


def stats(s: Stats) -> dict[str, Any]:
    """`acct stats --json`: the period, the grouping, the price table's date, groups and total."""
    return {
        "since_at": iso(s.since),
        "since_at_epoch": epoch(s.since),
        "by": s.by,
        "prices_date": s.prices_date,
        "groups": [_stats_group(g) for g in s.groups],
        "total": _stats_group(s.total),
    }


# --- acct pool ---------------------------------------------------------------------------------


def _moved(r: JoinResult) -> list[dict[str, Any]]:
    return [{"account": m.name, "pool_name": m.pool_name, "outcome": m.outcome, "held": m.held}
            for m in r.moved]  # fmt: skip


def pool_join(r: JoinResult) -> dict[str, Any]:
    """`acct pool join --json`, and `acct pool init --json` with the schema and key."""
    doc: dict[str, Any] = {"pool": r.where, "host_id": r.host_id}
    if r.init is not None:
        i = r.init
        doc["schema"] = {"before": i.schema_before, "now": i.schema_now}
        doc["key"] = {"path": i.key_path, "created": i.key_created, "id": i.key_id}
    doc["accounts"] = _moved(r)
    return doc


def pool_leave(r: LeaveResult) -> dict[str, Any]:
    return {"pool": r.where, "host_id": r.host_id, "returned": list(r.returned)}


def pool_reclaim(host: str, done: list[Reclaimed]) -> dict[str, Any]:
    return {"host_id": host,
            "accounts": [{"account": r.account, "took_pushed": r.took_pushed} for r in done]}  # fmt: skip


def pool_status(st: PoolStatus) -> dict[str, Any]:
    return {
        "pool": st.where, "schema": st.schema_version, "key_id": st.key_id, "host_id": st.host_id,
        "accounts": st.accounts,
        "machines": [{
            "host_id": m.host_id, "hostname": m.hostname,
            "last_contact_at": iso(m.last_contact), "last_contact_at_epoch": epoch(m.last_contact),
            "silent": m.silent, "this": m.this, "sessions": m.sessions,
            "live": [{"pid": x.pid, "target": x.target, "account": x.account,
                      "started_at": iso(x.started_at), "started_at_epoch": epoch(x.started_at),
                      "heartbeat_at": iso(x.heartbeat_at),
                      "heartbeat_at_epoch": epoch(x.heartbeat_at)}
                     for x in m.live],
            "holds": [{"account": h.account, "target": h.target, "path": h.path,
                       "lineage": h.lineage, "lent_at": iso(h.since),
                       "lent_at_epoch": epoch(h.since)} for h in m.holds],
        } for m in st.machines],
    }  # fmt: skip
