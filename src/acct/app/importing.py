"""``acct import``: take the login a tool holds now into the store (the tool keeps holding it)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acct.base.errors import AcctError, NeedsLogin, NotFound, UsageError
from acct.base.fsio import holder_path
from acct.base.models import Account, Holder, Tokens
from acct.base.paths import display_path
from acct.services import custody, oauth, prompt_state, providers
from acct.services.context import Ctx
from acct.services.store import validate_name
from acct.services.targets import get_target
from acct.services.targets.base import Entry, JsonTarget


@dataclass(frozen=True)
class ImportResult:
    account: Account
    created: bool
    path: str
    entry: Entry


def _read_for_import(c: Ctx, target: JsonTarget, path: Path) -> Entry:
    entry = target.read(c.env, path=path)
    if entry is None:
        title = providers.get(target.provider).title
        raise NotFound(
            f"{path} holds no {title} login for {target.name}", hint="log in inside the tool first"
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
    as the tool itself would do it (:func:`acct.services.custody.renew_at`): the server vouches
    for whose it is only on a live access token, and the rotated pair goes back to the file, its
    one holder. That goes for Codex too, although Codex would refresh it on its next run: the
    import cannot wait for that. acct's lock of the file is held throughout, so no other acct
    process changes its custody meanwhile.
    """
    if name is not None:
        validate_name(name)
    target = get_target(target_name)
    target.check_store(c.env)  # Codex set to keep its login in the OS keyring: refused here
    path = Path(source) if source is not None else target.path(c.env)
    if not path.exists():
        raise NotFound(
            f"{display_path(c.env, path)} does not exist",
            hint=None if source is not None else f"log in inside {target.name} first",
        )
    with custody.target_lock(c, path):
        custody.harvest_at(c, target, path, c.env)
        entry = _read_for_import(c, target, path)
        stale = not entry.tokens.fresh_for(custody.RENEW_BELOW)
        if entry.tokens.refresh and stale:
            custody.renew_at(c, target, path, c.env)
            entry = _read_for_import(c, target, path)
        return _store_import(c, target, path, entry, name)


def _store_import(
    c: Ctx, target: JsonTarget, path: Path, entry: Entry, name: str | None
) -> ImportResult:
    provider = providers.get(target.provider)
    try:
        profile = provider.whose(c, entry.tokens)
    except oauth.ProfileForbidden:
        profile = None
    except oauth.TokenRefused:
        if not entry.tokens.fresh_for(custody.DEAD_MARGIN):
            raise
        raise NeedsLogin(
            f"{path} holds a login the server refuses (401 for an access token that has not "
            "expired): it is signed out, so there is nothing to import",
            hint=f"log in again: {target.relogin}, or `{provider.login_command}`",
        ) from None
    if profile is None and name is None:
        raise UsageError(
            "this token has no profile access (a setup token?): acct cannot tell whose it is",
            hint=f"name it: acct import {target.name} --name NAME",
        )
    key = holder_path(path)
    fp = entry.lineage_fingerprint
    with c.store.transaction() as accounts:
        existing = (
            accounts.by_identity(profile.uuid, profile.org_uuid, provider.name) if profile else None
        )
        if existing is None and profile is None and name is not None:
            existing = accounts.find(name)
        if existing is not None and existing.provider != provider.name:
            raise UsageError(
                f"{existing.name!r} is an {existing.provider} account; {target.name} holds a "
                f"{provider.title} login",
                hint=f"name it otherwise: acct import {target.name} --name NAME",
            )
        base = existing or Account(
            name=accounts.unique_name(name or _name_from(profile)), provider=provider.name
        )
        acc = _imported(base, entry, profile, Holder(target.name, key, fp, int(time.time())))
        if existing is None:
            accounts.add(acc)
        else:
            accounts.put(acc)
    with contextlib.suppress(AcctError):
        c.state.record("import", account_id=acc.id, target=target.name, path=key)
    prompt_state.refresh_quietly(c)
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
            access=t.access,
            refresh=t.refresh,
            expires_at=t.expires_at,
            scopes=scopes,
            extra={**(base.tokens.extra if base.tokens else {}), **t.extra},
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
