"""Account management: rename, enable, disable, remove. Each returns what it did."""

from __future__ import annotations

from dataclasses import dataclass

from acct.base.errors import UsageError
from acct.base.models import Account
from acct.services import prompt_state
from acct.services.context import Ctx
from acct.services.store import validate_name


@dataclass(frozen=True)
class Changed:
    """The account a command acted on, and whether anything changed."""

    account: Account
    changed: bool


def rename(c: Ctx, old: str, new: str) -> Changed:
    """Rename ``old`` to ``new``. Usage, benches and custody are keyed by the account's id, so
    they follow the new name."""
    validate_name(new)
    with c.store.transaction() as accounts:
        account = accounts.get(old)
        if old == new:
            return Changed(account, False)
        if accounts.find(new):
            raise UsageError(f"an account named {new!r} exists already", hint="choose another name")
        renamed = account.copy(name=new)
        accounts.put(renamed)
    prompt_state.refresh_quietly(c)
    return Changed(renamed, True)


def set_enabled(c: Ctx, name: str, enabled: bool) -> Changed:
    """Enable or disable ``name``; a disabled account is never picked nor polled."""
    with c.store.transaction() as accounts:
        account = accounts.get(name)
        if account.enabled == enabled:
            return Changed(account, False)
        account = account.copy(enabled=enabled)
        accounts.put(account)
    prompt_state.refresh_quietly(c)
    return Changed(account, True)


def remove(c: Ctx, name: str) -> Account:
    """Remove ``name`` and forget its cached usage and benches. Returns the removed account:
    when its ``holder`` is set, that tool's file keeps a login acct no longer tracks."""
    with c.store.transaction() as accounts:
        removed = accounts.remove(name)
    c.state.forget(removed.id)
    prompt_state.refresh_quietly(c)
    return removed
