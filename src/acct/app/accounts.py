"""Account management: storing a fresh login or an API key, rename, enable, disable, remove.
Each returns what it did."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from acct.base.errors import (
    AcctError,
    AuthError,
    NetworkError,
    ProtocolError,
    RateLimited,
    UsageError,
)
from acct.base.models import Account
from acct.services import prompt_state
from acct.services.context import Ctx
from acct.services.oauth.client import Profile, ProfileForbidden, TokenAnswer, fetch_profile
from acct.services.store import Accounts, name_from, validate_name


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


# --- a fresh login -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    account: Account
    created: bool
    notes: tuple[str, ...] = ()  # things the user should hear about (degraded profile, renames)


def _identity(ctx: Ctx, answer: TokenAnswer) -> tuple[Profile, list[str]]:
    """The profile of a fresh login, degraded to the token answer's identity when unavailable."""
    notes: list[str] = []
    try:
        return fetch_profile(ctx, answer.access), notes
    except ProfileForbidden:
        notes.append("the profile is not available to this token (403): plan unknown")
    except (NetworkError, RateLimited, ProtocolError, AuthError) as e:
        notes.append(f"could not read the profile ({e.message}): plan unknown")
    fallback = Profile(
        answer.account_uuid, answer.email, None, answer.org_uuid, answer.org_name, None, None, None
    )
    return fallback, notes


def store_login(ctx: Ctx, answer: TokenAnswer, *, name: str | None = None) -> LoginResult:
    """Store a fresh lineage: update the account with the same identity, else add one."""
    profile, notes = _identity(ctx, answer)
    uuid = profile.uuid or answer.account_uuid
    org_uuid = profile.org_uuid or answer.org_uuid
    existing = ctx.store.read().by_identity(uuid, org_uuid)
    lock = (
        ctx.store.account_lock(existing.id, timeout=10.0, what="the account")
        if existing
        else contextlib.nullcontext()
    )
    with lock, ctx.store.transaction() as accounts:
        acc = accounts.by_identity(uuid, org_uuid)
        if acc is None:
            result = _add_login(accounts, answer, profile, name, notes)
        else:
            result = _update_login(accounts, acc, answer, profile, name, notes)
    with contextlib.suppress(AcctError):  # the login is stored; stale caches only delay a poll
        ctx.state.fresh_login(result.account.id)
    if acc is not None and acc.holder is not None:
        _custody_changed(ctx)
    return result


def _update_login(
    accounts: Accounts,
    acc: Account,
    answer: TokenAnswer,
    profile: Profile,
    name: str | None,
    notes: list[str],
) -> LoginResult:
    if name and name != acc.name:
        notes.append(
            f"this login is the account {acc.name!r}: updated it rather than adding {name!r}"
        )
    # A fresh login starts a new lineage that belongs to the store. A lineage lent earlier
    # stays valid in that tool's file, but it is no longer this account's stored one.
    updated = _with_identity(acc, answer, profile).copy(
        tokens=answer.tokens(), needs_login=False, holder=None, enabled=True
    )
    accounts.put(updated)
    return LoginResult(updated, created=False, notes=tuple(notes))


def _add_login(
    accounts: Accounts, answer: TokenAnswer, profile: Profile, name: str | None, notes: list[str]
) -> LoginResult:
    """A new account. A NAME the user gave that belongs to another account is not taken over:
    the login is stored under its email (made unique), and a note names both accounts."""
    uuid = profile.uuid or answer.account_uuid
    email = profile.email or answer.email
    # The server's email names the account; one a name cannot hold (control characters, spaces)
    # is made into one, so the fresh login is never lost to a naming rule.
    default = name_from(email, (uuid or "account")[:8])
    taken = accounts.find(name) if name else None
    if taken is not None:
        final = accounts.unique_name(default)
        notes.append(
            f"{name!r} is the account {taken.email or taken.name}, but this login is "
            f"{email or 'another account'}: stored it as {final!r} and left {name!r} unchanged"
        )
    else:
        wanted = name or default
        final = accounts.unique_name(wanted)
        if final != wanted:
            notes.append(
                f"the name {wanted!r} belongs to another account: stored this one as {final!r}"
            )
    created = _with_identity(Account(name=final), answer, profile).copy(tokens=answer.tokens())
    accounts.add(created)
    return LoginResult(created, created=True, notes=tuple(notes))


def _custody_changed(ctx: Ctx) -> None:
    """Keep the shell prompt's state current; it must never make a login fail."""
    prompt_state.refresh_quietly(ctx)


def _with_identity(acc: Account, answer: TokenAnswer, profile: Profile) -> Account:
    """Fill identity fields from the profile (or the token answer); keep what is unknown now."""
    return acc.copy(
        kind="oauth",
        uuid=profile.uuid or answer.account_uuid or acc.uuid,
        email=profile.email or answer.email or acc.email,
        display_name=profile.display_name or acc.display_name,
        org_uuid=profile.org_uuid or answer.org_uuid or acc.org_uuid,
        org_name=profile.org_name or answer.org_name or acc.org_name,
        plan=profile.plan or acc.plan,
        tier=profile.tier or acc.tier,
        api_key=None,
    )


# --- API keys -----------------------------------------------------------------------------------

API_KEY_PREFIX = "sk-ant-api"


def store_api_key(ctx: Ctx, name: str, key: str) -> LoginResult:
    """Add an API-key account (or replace the key of the API-key account ``name``)."""
    validate_name(name)
    key = key.strip()
    if not key or any(c.isspace() for c in key):
        raise UsageError(
            "that is not an API key (empty, or it contains spaces); nothing was stored"
        )
    notes = (
        []
        if key.startswith(API_KEY_PREFIX)
        else [f"the key does not start with {API_KEY_PREFIX}: stored anyway"]
    )
    with ctx.store.transaction() as accounts:
        acc = accounts.find(name)
        if acc is not None and acc.is_oauth:
            raise UsageError(
                f"{name!r} is an OAuth account; an API key needs its own name",
                hint="acct login OTHER_NAME --api-key",
            )
        if acc is not None:
            updated = acc.copy(api_key=key, needs_login=False)
            accounts.put(updated)
            return LoginResult(updated, created=False, notes=tuple(notes))
        created = accounts.add(Account(name=name, kind="api_key", api_key=key))
    return LoginResult(created, created=True, notes=tuple(notes))
