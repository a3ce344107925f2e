"""Custody of refresh-token lineages: who holds an account's live refresh token.

Refresh tokens rotate and are single-use, so a lineage lives in exactly one place: acct's store,
or the one tool file acct lent it to (``Account.holder``, kept in the store so tokens and custody
change in one atomic write). The rules here:

- **harvest** reads a tool's file back. Tokens that changed since acct wrote them are taken into
  the lent account only when the file still holds the same lineage (same refresh token, newer
  access token) or the profile endpoint says they belong to the same account uuid. A blanked
  entry marks the account "needs login" and never replaces its tokens. A file that now holds
  someone else (the user ran ``/login``) leaves every stored token alone; the lent account's
  custody is released, since the file no longer holds its lineage. Its stored refresh token may
  have been spent by the tool before that login: the next refresh tells (``invalid_grant`` marks
  it "needs login").
- **lend** harvests first, then writes the account into the file. The custody record is set
  *before* the file is written and the previous occupant's record is cleared only *after*: a crash
  in between leaves a record that is too cautious (acct refuses to spend a lineage it still has),
  never a lineage in a file without a record (which could be spent twice). The next harvest of the
  file sorts it out. The write itself is compare-and-swap against what the harvest saw, so a tool
  refreshing in the meantime is never overwritten.
- a lineage is never written into two files. An account lent elsewhere moves only when that file
  still holds exactly what acct recorded: its entry is removed (other keys kept) before the new
  file gets it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from acct.context import Ctx
from acct.errors import AcctError, Busy, HeldByTarget, NetworkError, NotFound, RateLimited
from acct.fsio import file_lock
from acct.models import Account, Holder, Tokens, fingerprint
from acct.store import Accounts
from acct.targets import JsonTarget, get_target
from acct.targets.base import Entry, TargetChanged, entry_fingerprint, require_oauth

Status = Literal[
    "absent",
    "blank",
    "unchanged",
    "refreshed",
    "harvested",
    "foreign",
    "unverified",
    "untracked",
    "adopted",
]
LEND_ATTEMPTS = 3


@dataclass(frozen=True)
class HarvestResult:
    """What reading a tool's file back found, and what it changed in the store.

    status:
      absent      no entry (custody of anything lent there is released)
      blank       the tool blanked the entry: the lent account needs a new login
      unchanged   the file holds exactly the lineage acct recorded
      refreshed   same refresh token, newer access token: taken into the store
      harvested   the tool rotated the lineage; the profile confirmed the account; taken
      foreign     the file holds another identity; nothing taken, custody released
      unverified  the file changed and acct could not confirm whose it is; nothing changed
      untracked   nothing is lent there; the file holds a login acct does not track
      adopted     nothing was recorded, but the file holds a stored account's exact lineage:
                  custody recorded so acct will not spend it
    """

    target: str
    path: str
    status: Status
    account_id: str | None = None  # the account concerned (lent there, or matched)
    account_name: str | None = None
    entry: Entry | None = None
    identity: str | None = None  # the email the profile named for a foreign login
    known_id: str | None = None  # the stored account with that identity, if any
    released: tuple[str, ...] = ()  # names of accounts whose custody of this file was cleared
    message: str = ""

    @property
    def fingerprint(self) -> str:
        return entry_fingerprint(self.entry)


@dataclass(frozen=True)
class LendResult:
    target: str
    path: str
    account_id: str
    account_name: str
    plan: str | None
    entry: Entry
    harvest: HarvestResult
    returned: tuple[str, ...] = ()  # accounts whose lineage came back to the store
    moved_from: str | None = None  # "target (path)" the account was taken from
    already: bool = False  # the file held this account already; nothing was written

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the access token the file holds (safe to show)."""
        return fingerprint(self.entry.tokens.access)


def holder_path(path: Path | str) -> str:
    """The path custody records: symlinks resolved, so one file is one holder."""
    return os.path.realpath(path)


def _env(ctx: Ctx, env: Mapping[str, str] | None) -> Mapping[str, str]:
    return ctx.env if env is None else env


def _after_change(ctx: Ctx) -> None:
    """Keep the shell prompt's state current; never fails the caller."""
    with contextlib.suppress(Exception):
        from acct import prompt_state

        prompt_state.update(ctx)


def _record(ctx: Ctx, event: str, **detail: object) -> None:
    with contextlib.suppress(AcctError):
        ctx.state.record(event, **detail)  # type: ignore[arg-type]


# --- store updates, guarded against a concurrent process ---------------------------------------


def _update(
    ctx: Ctx, seen: list[Account], change: Callable[[Account], Account | None]
) -> list[str]:
    """Apply ``change`` to each account whose custody record is still what we saw.

    Returns the names changed. The store may have moved on (another acct process harvested or
    lent meanwhile): such accounts are skipped, their newer state wins.
    """
    done: list[str] = []
    with ctx.store.transaction() as accounts:
        for old in seen:
            now = accounts.by_id(old.id)
            if now is None or now.holder != old.holder:
                continue
            new = change(now)
            if new is not None:
                accounts.put(new)
                done.append(new.name)
    return done


def _released(acc: Account) -> Account:
    return acc.copy(holder=None)


def _with_file_tokens(acc: Account, entry: Entry, lineage: str) -> Account:
    t = entry.tokens
    scopes = t.scopes or (acc.tokens.scopes if acc.tokens else ())
    tokens = Tokens(access=t.access, refresh=t.refresh, expires_at=t.expires_at, scopes=scopes)
    holder = replace(acc.holder, fingerprint=lineage) if acc.holder else None
    return acc.copy(tokens=tokens, holder=holder, needs_login=False)


# --- harvest -----------------------------------------------------------------------------------


def harvest(ctx: Ctx, target_name: str, env: Mapping[str, str] | None = None) -> HarvestResult:
    """Read the target's file back into the store (see the module docstring for the rules)."""
    target = get_target(target_name)
    e = _env(ctx, env)
    return harvest_at(ctx, target, target.path(e), e)


def harvest_at(ctx: Ctx, target: JsonTarget, path: Path, env: Mapping[str, str]) -> HarvestResult:
    """:func:`harvest` of one file of the target's format (``path`` may be a custody record's)."""
    key = holder_path(path)
    entry = target.read(env, path=path)
    accounts = ctx.store.read()
    held = accounts.held_by(target.name, key)
    base = HarvestResult(target=target.name, path=key, status="untracked", entry=entry)
    if not held:
        result = _untracked(ctx, base, accounts)
    elif entry is None:
        names = _update(ctx, held, _released)
        result = replace(
            base,
            status="absent",
            released=tuple(names),
            message=_plural(names, "no longer in the file: custody released"),
        )
    elif entry.blank:
        result = _blanked(ctx, base, held)
    else:
        result = _changed_or_not(ctx, base, held, entry)
    if result.released or result.status in ("blank", "refreshed", "harvested", "adopted"):
        _record(
            ctx, "harvest", account_id=result.account_id, target=target.name, status=result.status
        )
        _after_change(ctx)
    return result


def _plural(names: list[str], what: str) -> str:
    return f"{', '.join(names)}: {what}" if names else ""


def _untracked(ctx: Ctx, base: HarvestResult, accounts: Accounts) -> HarvestResult:
    entry = base.entry
    if entry is None:
        return replace(base, status="absent")
    if entry.blank:
        return replace(
            base, status="blank", message="the file holds a blanked login (needs a new login)"
        )
    fp = entry.lineage_fingerprint
    same = [a for a in accounts if a.is_oauth and a.tokens and a.tokens.lineage_fingerprint == fp]
    free = [a for a in same if a.holder is None]
    if free:
        acc = free[0]
        holder = Holder(base.target, base.path, fp, int(time.time()))
        _update(ctx, [acc], lambda a: a.copy(holder=holder))
        return replace(
            base,
            status="adopted",
            account_id=acc.id,
            account_name=acc.name,
            message=f"the file holds {acc.name}'s lineage: custody recorded",
        )
    if same:
        acc = same[0]
        assert acc.holder is not None
        return replace(
            base,
            account_id=acc.id,
            account_name=acc.name,
            message=f"the file holds {acc.name}'s lineage, also recorded at {acc.holder.path}",
        )
    return replace(base, message="the file holds a login acct does not track")


def _blanked(ctx: Ctx, base: HarvestResult, held: list[Account]) -> HarvestResult:
    """The tool got ``invalid_grant`` and blanked its file: that lineage is dead.

    With one account recorded there, it needs a new login; its stored tokens stay (they are never
    replaced by blanks). With several records (a crash in the middle of a lend), which lineage
    died is unknown: custody is released and the next refresh of each tells.
    """
    if len(held) == 1:
        acc = held[0]
        names = _update(ctx, held, lambda a: a.copy(holder=None, needs_login=True))
        return replace(
            base,
            status="blank",
            account_id=acc.id,
            account_name=acc.name,
            released=tuple(names),
            message=f"{acc.name} was logged out by the tool: it needs a new login",
        )
    names = _update(ctx, held, _released)
    return replace(
        base,
        status="blank",
        released=tuple(names),
        message="the tool blanked the file; custody released",
    )


def _changed_or_not(
    ctx: Ctx, base: HarvestResult, held: list[Account], entry: Entry
) -> HarvestResult:
    fp = entry.lineage_fingerprint
    current = next((a for a in held if a.holder and a.holder.fingerprint == fp), None)
    if current is not None:
        others = [a for a in held if a is not current]
        released = _update(ctx, others, _released) if others else []
        return _same_lineage(ctx, replace(base, released=tuple(released)), current, entry)
    return _verify(ctx, base, held, entry)


def _same_lineage(ctx: Ctx, base: HarvestResult, acc: Account, entry: Entry) -> HarvestResult:
    """The file holds the lineage acct recorded; take a newer access token the tool got."""
    result = replace(base, status="unchanged", account_id=acc.id, account_name=acc.name)
    stored = acc.tokens
    if (
        stored is None
        or entry.tokens.access == stored.access
        or entry.tokens.expires_at < stored.expires_at
    ):
        return result
    fp = entry.lineage_fingerprint
    _update(ctx, [acc], lambda a: _with_file_tokens(a, entry, fp))
    return replace(
        result, status="refreshed", message=f"{acc.name}: took the access token the tool refreshed"
    )


def _verify(ctx: Ctx, base: HarvestResult, held: list[Account], entry: Entry) -> HarvestResult:
    """The file changed: whose is it? Only the profile endpoint can say (slot poisoning guard)."""
    from acct import oauth

    try:
        profile = oauth.fetch_profile(ctx, entry.tokens.access)
    except AcctError as e:
        names = ", ".join(a.name for a in held)
        return replace(
            base,
            status="unverified",
            account_id=held[0].id,
            account_name=held[0].name,
            message=f"the file changed since acct wrote {names} and acct could not check "
            f"whose login it holds now ({e.message})",
        )
    owner = next((a for a in held if a.same_identity(profile.uuid, profile.org_uuid)), None)
    if owner is not None:
        fp = entry.lineage_fingerprint
        others = [a for a in held if a is not owner]
        released = _update(ctx, others, _released) if others else []
        _update(ctx, [owner], lambda a: _with_file_tokens(a, entry, fp))
        return replace(
            base,
            status="harvested",
            account_id=owner.id,
            account_name=owner.name,
            released=tuple(released),
            message=f"{owner.name}: took the tokens the tool rotated",
        )
    names = _update(ctx, held, _released)
    known = ctx.store.read().by_identity(profile.uuid, profile.org_uuid)
    who = known.name if known else (profile.email or "an unknown account")
    return replace(
        base,
        status="foreign",
        account_id=held[0].id,
        account_name=held[0].name,
        identity=profile.email,
        known_id=known.id if known else None,
        released=tuple(names),
        message=f"the file now holds {who}; {', '.join(names) or 'nothing'} released, tokens kept",
    )


# --- reclaim -----------------------------------------------------------------------------------


def reclaim(
    ctx: Ctx, account_id: str, env: Mapping[str, str] | None = None
) -> HarvestResult | None:
    """Take the account's lineage back from the file it is lent to, so acct may spend it.

    Allowed only while that file still holds exactly what acct recorded (the tool has not rotated
    it: if it had, a running tool would spend it too). The entry is removed from the file (other
    keys kept) before the record is cleared. Returns the harvest of that file, or None when the
    account was not lent. :class:`HeldByTarget` when the tool changed the file.
    """
    e = _env(ctx, env)
    acc = _account(ctx, account_id)
    if acc.holder is None:
        return None
    seen = acc.holder
    target = get_target(seen.target)
    hv = harvest_at(ctx, target, Path(seen.path), e)
    acc = _account(ctx, account_id)
    if acc.holder is None:
        return hv  # the harvest found the file no longer holds it
    if (
        hv.status != "unchanged"
        or acc.holder.fingerprint != seen.fingerprint
        or hv.account_id != acc.id
    ):
        raise HeldByTarget(
            f"account {acc.name!r} is in use by {seen.target} ({seen.path}): the tool has refreshed "
            "its login since acct wrote it",
            hint=f"switch {seen.target} to another account first (`acct use OTHER --target {seen.target}`)",
        )
    try:
        target.remove(e, path=Path(seen.path), expect=acc.holder.fingerprint)
    except TargetChanged:
        raise HeldByTarget(
            f"{seen.target} changed {seen.path} just now: account {acc.name!r} stays there",
            hint="try again in a moment",
        ) from None
    _update(ctx, [acc], _released)
    _record(ctx, "reclaim", account_id=acc.id, target=seen.target)
    _after_change(ctx)
    return hv


# --- lend --------------------------------------------------------------------------------------


def _account(ctx: Ctx, account_id: str) -> Account:
    acc = ctx.store.read().by_id(account_id)
    if acc is None:
        raise NotFound(f"no account with id {account_id}", hint="run `acct list`")
    return acc


def _refuse_unknown(target: str, who: str, fp: str) -> HeldByTarget:
    return HeldByTarget(
        f"{target} holds a login acct does not track ({who}, fp {fp}); replacing it would lose it",
        hint=f"keep it with `acct import {target}`, or replace it with `acct use NAME --target {target} --force`",
    )


def _check_overwrite(ctx: Ctx, hv: HarvestResult, force: bool) -> None:
    """Refuse to overwrite a lineage acct could not take into its store (nothing lost)."""
    if force or hv.status in ("absent", "blank", "unchanged", "refreshed", "harvested", "adopted"):
        return
    if hv.status == "foreign":
        if hv.known_id is None:
            raise _refuse_unknown(hv.target, hv.identity or "unknown account", hv.fingerprint)
        return
    if hv.status == "unverified":
        raise HeldByTarget(hv.message, hint="try again when online, or pass --force to replace it")
    if hv.account_id is not None:
        return  # a stored lineage recorded at another file too: dropping this copy is safe
    # untracked: whose is it? A known identity keeps its own lineage in the store: safe to replace.
    assert hv.entry is not None
    from acct import oauth

    try:
        profile = oauth.fetch_profile(ctx, hv.entry.tokens.access)
    except AcctError:
        raise _refuse_unknown(hv.target, "acct could not check whose", hv.fingerprint) from None
    if ctx.store.read().by_identity(profile.uuid, profile.org_uuid) is None:
        raise _refuse_unknown(hv.target, profile.email or "unknown account", hv.fingerprint)


def _fresh(ctx: Ctx, acc: Account, target: JsonTarget) -> Account:
    """The account with an access token good for the tool (refreshed while the store holds it)."""
    from acct import oauth

    margin = max(ctx.config.refresh_margin, target.refresh_margin)
    try:
        return oauth.ensure_fresh(ctx, acc.id, margin)
    except (NetworkError, RateLimited):
        if acc.tokens is not None and acc.tokens.fresh_for(target.refresh_margin + 60):
            return acc  # still usable: the tool refreshes it itself later
        raise


def _claim(ctx: Ctx, account_id: str, target: str, key: str) -> Account:
    """Record custody before the file is written (see the module docstring for why).

    Under the account's lock, like a refresh: a refresh that started before this claim finishes
    first (and the claim takes its new tokens); one that starts after sees the holder and stops.
    Without it, a file could receive a refresh token that a concurrent refresh is spending.
    """
    with (
        file_lock(ctx.paths.account_lock(account_id), what="the account"),
        ctx.store.transaction() as accounts,
    ):
        acc = accounts.by_id(account_id)
        if acc is None:
            raise NotFound(f"no account with id {account_id}", hint="run `acct list`")
        if acc.holder is not None:
            raise HeldByTarget(
                f"account {acc.name!r} was just lent to {acc.holder.target} by another acct process",
                hint="try again",
            )
        assert acc.tokens is not None
        now = int(time.time())
        acc = acc.copy(
            holder=Holder(target, key, acc.tokens.lineage_fingerprint, now), last_used_at=now
        )
        accounts.put(acc)
    return acc


def _unclaim(ctx: Ctx, claimed: Account) -> None:
    _update(ctx, [claimed], _released)


def _settle(ctx: Ctx, target: str, key: str, account_id: str) -> tuple[str, ...]:
    """The file now holds the new account: every other record of this file is released."""
    others = [a for a in ctx.store.read().held_by(target, key) if a.id != account_id]
    return tuple(_update(ctx, others, _released)) if others else ()


def _prepare(ctx: Ctx, account_id: str, target: str) -> Account:
    """The account, if it can be lent at all (a subscription login that does not need renewing)."""
    acc = _account(ctx, account_id)
    require_oauth(acc, target)
    return acc


def lend(
    ctx: Ctx,
    account_id: str,
    target_name: str,
    env: Mapping[str, str] | None = None,
    *,
    force: bool = False,
) -> LendResult:
    """Write the account into the target's file and record the file as its lineage's holder.

    Harvests the file first (the lineage there returns to the store), moves the account from
    another file if it is lent elsewhere and unchanged there, refreshes it while the store holds
    it, then writes compare-and-swap. ``force`` replaces a login acct could not identify.
    """
    target = get_target(target_name)
    e = _env(ctx, env)
    path = target.path(e)
    key = holder_path(path)
    _prepare(ctx, account_id, target.name)
    for _ in range(LEND_ATTEMPTS):
        hv = harvest_at(ctx, target, path, e)
        acc = _account(ctx, account_id)
        here = (
            acc.holder is not None and acc.holder.target == target.name and acc.holder.path == key
        )
        if (
            here
            and hv.entry is not None
            and hv.account_id == acc.id
            and _fresh_enough(ctx, hv, target)
        ):
            return LendResult(
                target.name, key, acc.id, acc.name, acc.plan, hv.entry, hv, already=True
            )
        _check_overwrite(ctx, hv, force)
        moved_from = None
        if acc.holder is not None:
            if not here:
                moved_from = f"{acc.holder.target} ({acc.holder.path})"
            reclaim(ctx, acc.id, e)
            hv = harvest_at(ctx, target, path, e)  # reclaiming may have emptied this very file
        acc = _prepare(ctx, account_id, target.name)
        acc = _fresh(ctx, acc, target)
        claimed = _claim(ctx, account_id, target.name, key)
        try:
            entry = target.write(e, claimed, expect=hv.fingerprint)
        except TargetChanged:
            _unclaim(ctx, claimed)
            continue
        except BaseException:
            _unclaim(ctx, claimed)
            raise
        returned = _settle(ctx, target.name, key, account_id)
        _record(ctx, "lend", account_id=account_id, target=target.name, path=key)
        _after_change(ctx)
        return LendResult(
            target.name,
            key,
            claimed.id,
            claimed.name,
            claimed.plan,
            entry,
            hv,
            returned=returned,
            moved_from=moved_from,
        )
    raise Busy(
        f"{target.name} kept changing {path} while acct tried to write it",
        hint="try again when the tool is idle",
    )


def _fresh_enough(ctx: Ctx, hv: HarvestResult, target: JsonTarget) -> bool:
    """Whether an account already in the file can stay as it is.

    When the tool has been refreshing it (the entry is its own), yes: the tool manages it. When
    the file holds exactly acct's write and the access token runs out within the margin, no:
    acct takes it back, refreshes it and writes it again (OpenCode's refresh is unreliable).
    """
    if hv.status in ("refreshed", "harvested"):
        return True
    if hv.status != "unchanged" or hv.entry is None:
        return False
    margin = max(ctx.config.refresh_margin, target.refresh_margin)
    return hv.entry.tokens.fresh_for(margin)


# --- the live access token ---------------------------------------------------------------------


def access_token_for(ctx: Ctx, account: Account) -> str | None:
    """The access token to use for reading the account's usage: never spends a refresh token.

    While the lineage is lent and the file still holds it (the recorded lineage, or a newer
    access token on the same refresh token), the file's access token is the live one; otherwise
    the store's. API-key accounts and accounts without tokens have none.
    """
    if not account.is_oauth or account.tokens is None:
        return None
    if account.holder is not None:
        with contextlib.suppress(AcctError, OSError):
            target = get_target(account.holder.target)
            entry = target.read(ctx.env, path=Path(account.holder.path))
            if (
                entry is not None
                and not entry.blank
                and entry.lineage_fingerprint == account.holder.fingerprint
            ):
                return entry.tokens.access or account.tokens.access or None
    return account.tokens.access or None
