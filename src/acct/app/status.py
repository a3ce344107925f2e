"""``acct status``: what each tool's credential file holds now, and whose it is."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from acct.base.errors import CorruptFile
from acct.base.fsio import holder_path
from acct.base.models import Account, fingerprint, live_utilization
from acct.base.timefmt import epoch, iso
from acct.services.context import Ctx
from acct.services.store import Accounts
from acct.services.targets import get_target
from acct.services.targets.base import Entry


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
