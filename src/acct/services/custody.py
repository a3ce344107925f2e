"""Custody of refresh-token lineages: who holds an account's live refresh token.

Refresh tokens rotate and are single-use, so a lineage lives in exactly one place: acct's store,
or the one tool file acct lent it to (``Account.holder``, kept in the store so tokens and custody
change in one atomic write). The rules here:

- **one custody change per file at a time.** Harvest, lend and reclaim hold acct's own lock of
  the tool file (``locks_dir/target-<sha8 of its real path>.lock``) from the look at the file to
  the last record, so two acct processes never interleave on one file. Locks are taken in this
  order only: target-file locks (several in sorted order, taken together up front) → the
  account's lock → the store's lock. The tool's own lock is taken inside, around each read-write
  of its file, and nothing of acct's is taken while it is held except a store write.
- **harvest** reads a tool's file back. Tokens that changed since acct wrote them are taken into
  the lent account only when the file still holds the same lineage (same refresh token, newer
  access token) or the profile endpoint says they belong to the same account uuid. A blanked
  entry marks the account "needs login" and never replaces its tokens. A file that now holds
  someone else (the user ran ``/login``) leaves the lent account's tokens alone; its custody is
  released, since the file no longer holds its lineage. Its stored refresh token may have been
  spent by the tool before that login: the next refresh tells (``invalid_grant`` marks it "needs
  login").
- **a stored account's login found in a file** (the profile names it, and acct did not record
  the file as its holder: an old session that refreshed it after a switch, or a ``/login`` in the
  tool). When the account has no holder, the file's tokens are taken into the store and the file
  recorded as their holder ("adopted") if they are the newest: the stored lineage is dead or
  absent, or the file's access token expires no earlier than the stored one. Expiry is the only
  order two lineages of one account have: the token endpoint issues every access token for the
  same lifetime, so the later expiry was issued later (a tie, both issued within one second,
  goes to the file: a descendant of the stored link is the likelier). A later link of the stored lineage means
  the stored refresh token is spent and only the file's is live; a separate later login is live
  as well, and taking it keeps the proven one (its access token just passed the profile check).
  An older one is either a spent link or a second login acct does not need: it stays untouched
  and may be overwritten. When the account is lent to *another* file, the file holds a second
  lineage of it and either may be the one in use: acct will not overwrite it unless forced.
- **lend** harvests first, then writes the account into the file. The custody record is set
  *before* the file is written and the previous occupant's record is cleared only *after*: a crash
  in between leaves a record that is too cautious (acct refuses to spend a lineage it still has),
  never a lineage in a file without a record (which could be spent twice). The next harvest of the
  file sorts it out. The write itself is compare-and-swap against what the harvest saw, so a tool
  refreshing in the meantime is never overwritten. A login acct could not take back (another
  identity, one acct could not check, an API key) is replaced only when forced; when forced over
  a change acct could not check, the accounts recorded there are marked "needs login", since
  their stored refresh tokens may be spent. A *dead* login is not one to keep: one whose access
  token the server refuses (401) before its expiry, or, once its access token has expired, whose
  refresh the server refuses when acct renews it in place as the tool would (see renew), is
  replaced without force, and said so. A refresh before the write whose answer was lost
  (:class:`~acct.services.oauth.RefreshUnanswered`) lends nothing: the stored refresh token may
  be spent, and a tool handed it would present it.
- **a running tool's login is its own** (``acct.services.sessions``). While an ``acct exec``
  session of another process is live on a file (its acct or its tool still runs), the lineage
  in that file belongs to that tool: no acct process takes it out of the file (reclaim), and
  none refreshes it, since the tool holds its refresh token and would present it once spent (the
  chain would be revoked) or read an empty file meanwhile. So a lend of the account the file
  already holds leaves the entry exactly as it is, *however short its access token* (the tool
  refreshes it itself, under its own lock), and reports the sessions using it; moving the
  account from that file to another, and renewing it in place (``acct import``), are refused.
  Only that session itself, once its tool has exited, may take it back or switch it (its own
  rotation and its end). Writing *another* account into such a file is refused unless forced
  (the tool re-reads it: the session would switch); sessions sharing one file switch together
  when one of them rotates.
- a lineage is never written into two files. An account lent elsewhere moves only when that file
  still holds exactly what acct recorded: its entry is removed (other keys kept) before the new
  file gets it, and written back there if the lend fails after that.
- **renew** (for ``acct import``): a tool's login whose access token has expired is refreshed in
  its own file, under the tool's own lock, exactly as the tool would do it, so the lineage never
  has two holders. Only where that keeps the tool from spending the same refresh token at the
  same moment: Claude Code and Pi (their lock covers their refresh), and Codex while no Codex
  process runs on the file (its locks cover its re-read before a refresh, not the refresh
  request itself; ``targets/codex.py``). OpenCode takes no lock: never. Never under a running
  session's tool.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from acct.base.errors import (
    AcctError,
    AuthError,
    Busy,
    HeldByTarget,
    NeedsLogin,
    NetworkError,
    RateLimited,
)
from acct.base.fsio import file_lock, holder_path
from acct.base.models import Account, Holder, Tokens, fingerprint
from acct.services import oauth, procs, prompt_state, providers
from acct.services.context import Ctx
from acct.services.providers.base import Identity
from acct.services.state import SessionRow
from acct.services.targets import JsonTarget, get_target
from acct.services.targets.base import (
    NO_ENTRY,
    Entry,
    TargetChanged,
    entry_fingerprint,
    require_oauth,
)

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
    "dead",
]
LEND_ATTEMPTS = 3
# How long to wait for another acct process's custody change of the same file: a lend holding
# the lock may be waiting for the profile and token endpoints.
TARGET_LOCK_WAIT = 120.0
# `acct import` refreshes a file's login first when its access token has less than this left.
RENEW_BELOW = 60.0
# Statuses after which the file holds nothing acct would lose by overwriting it.
_SAFE_TO_REPLACE = ("absent", "blank", "unchanged", "refreshed", "harvested", "adopted", "dead")
# A login whose access token the server refuses with this long still to go by its own expiry
# is dead (revoked), not merely expired: the margin covers clocks that disagree.
DEAD_MARGIN = 60.0


@dataclass(frozen=True)
class HarvestResult:
    """What reading a tool's file back found, and what it changed in the store.

    status:
      absent      no entry (custody of anything lent there is released)
      blank       the tool blanked the entry: the lent account needs a new login
      unchanged   the file holds exactly the lineage acct recorded
      refreshed   same refresh token, newer access token: taken into the store
      harvested   the tool rotated the lineage; the profile confirmed the account; taken
      foreign     the file holds another identity (or an older or second login of a stored
                  account); nothing taken, custody released
      unverified  the file changed and acct could not confirm whose it is; nothing changed
      untracked   nothing is lent there; the file holds a login acct does not track
      adopted     the file holds a stored account's exact lineage, or its newest login (see
                  the module docstring): taken into the store, custody recorded
      dead        the server refuses the file's login (401 for an access token that has not
                  expired): it is signed out, nothing is lost by replacing it; custody of
                  anything recorded there is released (the next refresh of each tells)
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
    checked: bool = False  # the profile endpoint answered for the file's login
    other: str | None = None  # a login of another kind where the entry goes (an API key)
    slot: str | None = None  # compare-and-swap fingerprint of what the file holds

    @property
    def fingerprint(self) -> str:
        return self.slot or entry_fingerprint(self.entry)


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
    lost: tuple[str, ...] = ()  # accounts a forced write left needing a new login
    warnings: tuple[str, ...] = ()  # follow-up steps that failed; the lend itself stands
    # pids of running `acct exec` sessions whose tool holds the login: left as the file has it
    in_use_by: tuple[int, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the access token the file holds (safe to show)."""
        return fingerprint(self.entry.tokens.access)


def _env(ctx: Ctx, env: Mapping[str, str] | None) -> Mapping[str, str]:
    return ctx.env if env is None else env


def _after_change(ctx: Ctx) -> None:
    """Keep the shell prompt's state current; never fails the caller."""
    prompt_state.refresh_quietly(ctx)


def _record(ctx: Ctx, event: str, **detail: object) -> None:
    with contextlib.suppress(AcctError):
        ctx.state.record(event, **detail)  # type: ignore[arg-type]


# --- acct's lock of a tool file ----------------------------------------------------------------

_held = threading.local()


def _held_keys() -> set[str]:
    keys: set[str] | None = getattr(_held, "keys", None)
    if keys is None:
        keys = _held.keys = set()
    return keys


@contextlib.contextmanager
def target_lock(ctx: Ctx, *paths: Path | str) -> Iterator[None]:
    """Hold acct's lock of each tool file: custody changes of one file never interleave.

    Keyed by the real path (one file, one lock). Several files are locked together, in sorted
    order, so two processes never wait on each other crosswise. Re-entrant within a thread: the
    files this thread holds already are skipped (callers lock every file they will touch up
    front, so a nested call only ever asks for files it holds).
    """
    held = _held_keys()
    keys = sorted({holder_path(p) for p in paths} - held)
    with contextlib.ExitStack() as stack:
        for key in keys:
            lock = ctx.paths.locks_dir / f"target-{fingerprint(key)}"
            stack.enter_context(
                file_lock(lock, timeout=TARGET_LOCK_WAIT, what=f"acct's custody of {key}")
            )
            held.add(key)
            stack.callback(held.discard, key)
        yield


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


def _spent(acc: Account) -> Account:
    """Released, and its stored refresh token may be spent: it needs a new login."""
    return acc.copy(holder=None, needs_login=True)


def _with_file_tokens(acc: Account, entry: Entry, lineage: str) -> Account:
    """The file's tokens taken into the account. An entry without a refresh token (the token
    endpoint answered none, so the old one stays live, and the tool wrote ``null``) keeps the
    stored one, as a refresh answer without one does."""
    t = entry.tokens
    scopes = t.scopes or (acc.tokens.scopes if acc.tokens else ())
    refresh = t.refresh or (acc.tokens.refresh if acc.tokens else None)
    # Keys of the stored tokens acct does not read, updated by what the file carries (a
    # ChatGPT login's id_token and workspace come with the file's tokens).
    extra = {**(acc.tokens.extra if acc.tokens else {}), **t.extra}
    tokens = Tokens(
        access=t.access, refresh=refresh, expires_at=t.expires_at, scopes=scopes, extra=extra
    )
    holder = replace(acc.holder, fingerprint=lineage) if acc.holder else None
    return acc.copy(tokens=tokens, holder=holder, needs_login=False)


def _is_newest(acc: Account, entry: Entry) -> bool:
    """Whether the file's login of ``acc`` should replace the stored one (module docstring)."""
    stored = acc.tokens
    if stored is None or stored.is_blank or acc.needs_login:
        return True
    if stored.lineage_fingerprint == entry.lineage_fingerprint:
        return True
    return entry.tokens.expires_at >= stored.expires_at  # issued in the same second: the file's


def _adopt(ctx: Ctx, account_id: str, base: HarvestResult, entry: Entry) -> Account | None:
    """Record the file as the holder of the account's login, taking the file's tokens.

    Under the account's lock, like a claim: a refresh of the stored lineage that started first
    finishes first (and then the stored tokens are the newer ones), one that starts later sees
    the holder and sends nothing. None when the account is held somewhere by now, or the
    stored login is the newer one.
    """
    if ctx.store.reclaimed(account_id, entry.lineage_fingerprint):
        return None  # the pool took this lineage from this machine: the file's copy is not live
    with (
        ctx.store.account_lock(account_id, timeout=10.0, what="the account"),
        ctx.store.transaction() as accounts,
    ):
        acc = accounts.by_id(account_id)
        if acc is None or not acc.is_oauth or acc.holder is not None or not _is_newest(acc, entry):
            return None
        fp = entry.lineage_fingerprint
        holder = Holder(base.target, base.path, fp, int(time.time()))
        adopted = _with_file_tokens(acc, entry, fp).copy(holder=holder)
        accounts.put(adopted)
    return adopted


# --- harvest -----------------------------------------------------------------------------------


def harvest(ctx: Ctx, target_name: str, env: Mapping[str, str] | None = None) -> HarvestResult:
    """Read the target's file back into the store (see the module docstring for the rules)."""
    target = get_target(target_name)
    e = _env(ctx, env)
    return harvest_at(ctx, target, target.path(e), e)


def harvest_at(
    ctx: Ctx,
    target: JsonTarget,
    path: Path,
    env: Mapping[str, str],
    *,
    identify: bool = False,
) -> HarvestResult:
    """:func:`harvest` of one file of the target's format (``path`` may be a custody record's).

    ``identify`` also asks the profile endpoint whose login an untracked file holds (a lend is
    about to overwrite it), adopting a stored account's newest login.
    """
    with target_lock(ctx, path):
        result = _harvest(ctx, target, path, env, identify)
    if result.released or result.status in ("blank", "refreshed", "harvested", "adopted"):
        _record(
            ctx, "harvest", account_id=result.account_id, target=target.name, status=result.status
        )
        _after_change(ctx)
    return result


def _harvest(
    ctx: Ctx, target: JsonTarget, path: Path, env: Mapping[str, str], identify: bool
) -> HarvestResult:
    key = holder_path(path)
    slot = target.look(env, path=path)
    entry = slot.entry
    held = ctx.store.read().held_by(target.name, key)
    base = HarvestResult(
        target=target.name,
        path=key,
        status="untracked",
        entry=entry,
        other=slot.other,
        slot=slot.fingerprint,
    )
    if not held:
        return _untracked(ctx, base, identify)
    if entry is None:
        names = _update(ctx, held, _released)
        now = f" (it holds {slot.other} now)" if slot.other else ""
        return replace(
            base,
            status="absent",
            released=tuple(names),
            message=_plural(names, f"no longer in the file{now}: custody released"),
        )
    if entry.blank:
        return _blanked(ctx, base, held)
    return _changed_or_not(ctx, base, held, entry)


def _plural(names: list[str], what: str) -> str:
    return f"{', '.join(names)}: {what}" if names else ""


def _untracked(ctx: Ctx, base: HarvestResult, identify: bool) -> HarvestResult:
    entry = base.entry
    if entry is None:
        if base.other:
            return replace(base, message=f"the file holds {base.other}, which acct does not track")
        return replace(base, status="absent")
    if entry.blank:
        return replace(
            base, status="blank", message="the file holds a blanked login (needs a new login)"
        )
    fp = entry.lineage_fingerprint
    same = [
        a
        for a in ctx.store.read()
        if a.is_oauth and a.tokens and a.tokens.lineage_fingerprint == fp
    ]
    for acc in (a for a in same if a.holder is None):
        if _adopt(ctx, acc.id, base, entry) is not None:
            return replace(
                base,
                status="adopted",
                account_id=acc.id,
                account_name=acc.name,
                message=f"the file holds {acc.name}'s lineage: custody recorded",
            )
    if same:
        acc = same[0]
        where = f", also recorded at {acc.holder.path}" if acc.holder else ""
        return replace(
            base,
            account_id=acc.id,
            account_name=acc.name,
            message=f"the file holds {acc.name}'s lineage{where}",
        )
    if identify:
        return _identify(ctx, base, [], entry)
    return replace(base, message="the file holds a login acct does not track")


def _blanked(ctx: Ctx, base: HarvestResult, held: list[Account]) -> HarvestResult:
    """The tool got ``invalid_grant`` and blanked its file: that lineage is dead.

    With one account recorded there, it needs a new login; its stored tokens stay (they are never
    replaced by blanks). With several records (a crash in the middle of a lend), which lineage
    died is unknown: custody is released and the next refresh of each tells.
    """
    if len(held) == 1:
        acc = held[0]
        names = _update(ctx, held, _spent)
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
    return _identify(ctx, base, held, entry)


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


def _identify(ctx: Ctx, base: HarvestResult, held: list[Account], entry: Entry) -> HarvestResult:
    """The file holds a lineage acct did not record there: whose is it?

    Only the provider can say (the slot poisoning guard): Anthropic's profile endpoint, the
    id_token of a ChatGPT login. ``held`` are the accounts
    recorded at the file; empty for a file nothing is lent to.
    """
    try:
        profile = providers.get(get_target(base.target).provider).whose(ctx, entry.tokens)
    except oauth.TokenRefused as e:
        if not entry.tokens.fresh_for(DEAD_MARGIN):
            return _unchecked(base, held, e)  # expired: the tool would refresh it
        names = _update(ctx, held, _released) if held else []
        return replace(
            base,
            status="dead",
            account_id=held[0].id if held else None,
            account_name=held[0].name if held else None,
            released=tuple(names),
            checked=True,
            message="the file holds a login the server refuses (401 for an access token that "
            "has not expired): it is signed out, so replacing it loses nothing"
            + _also_released(names),
        )
    except AcctError as e:
        return _unchecked(base, held, e)
    return _identified(ctx, base, held, entry, profile)


def _unchecked(base: HarvestResult, held: list[Account], e: AcctError) -> HarvestResult:
    """The profile endpoint could not say whose the file's login is."""
    if not held:
        return replace(
            base,
            message=f"the file holds a login acct does not track, and acct could not check "
            f"whose ({e.message})",
        )
    written = ", ".join(a.name for a in held)
    return replace(
        base,
        status="unverified",
        account_id=held[0].id,
        account_name=held[0].name,
        message=f"the file changed since acct wrote {written} and acct could not check "
        f"whose login it holds now ({e.message})",
    )


def _identified(
    ctx: Ctx, base: HarvestResult, held: list[Account], entry: Entry, profile: Identity
) -> HarvestResult:
    """The profile named the file's login: the owner recorded there, or someone else."""
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
    names = _update(ctx, held, _released) if held else []
    provider = get_target(base.target).provider
    known = ctx.store.read().by_identity(profile.uuid, profile.org_uuid, provider)
    result = replace(
        base,
        status="foreign" if held else "untracked",
        account_id=held[0].id if held else None,
        account_name=held[0].name if held else None,
        identity=profile.email,
        known_id=known.id if known else None,
        released=tuple(names),
        checked=True,
    )
    if known is not None and _adopt(ctx, known.id, base, entry) is not None:
        return replace(
            result,
            status="adopted",
            account_id=known.id,
            account_name=known.name,
            message=f"the file holds {known.name}'s newest login: taken into the store, "
            f"custody recorded" + _also_released(names),
        )
    return replace(result, message=_whose(ctx, known, profile.email) + _also_released(names))


def _also_released(names: list[str]) -> str:
    return f"; {', '.join(names)} released, tokens kept" if names else ""


def _whose(ctx: Ctx, known: Account | None, email: str | None) -> str:
    if known is None:
        return f"the file holds {email or 'an unknown account'}, which acct does not track"
    now = ctx.store.read().by_id(known.id) or known
    if now.holder is not None:
        return (
            f"the file holds another login of {now.name}, which is lent to {now.holder.target} "
            f"({now.holder.path})"
        )
    return f"the file holds an older login of {now.name}; acct keeps the newer one it has"


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
    with target_lock(ctx, acc.holder.path):
        seen = acc.holder
        acc = _account(ctx, account_id)
        if acc.holder is None or acc.holder.path != seen.path:
            raise Busy(
                f"account {acc.name!r} was just moved by another acct process", hint="try again"
            )
        return _reclaim_locked(ctx, acc, e)[0]


def _reclaim_locked(ctx: Ctx, acc: Account, env: Mapping[str, str]) -> tuple[HarvestResult, bool]:
    """:func:`reclaim` with the holder's file locked; also says whether its entry was removed."""
    assert acc.holder is not None
    seen = acc.holder
    refuse_other_machine(ctx, acc)
    target = get_target(seen.target)
    rows = _live_tools_on(ctx, seen.path)
    if rows:
        raise HeldByTarget(
            f"account {acc.name!r} is in use by a running acct exec (pid {_pids(rows)}) of "
            f"{seen.target} ({seen.path}); taking it back would leave that tool without a "
            "login and spend the refresh token it holds",
            hint="wait for that session to end; the tool refreshes its login itself",
        )
    hv = harvest_at(ctx, target, Path(seen.path), env)
    acc = _account(ctx, acc.id)
    if acc.holder is None:
        return hv, False  # the harvest found the file no longer holds it
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
        target.remove(env, path=Path(seen.path), expect=acc.holder.fingerprint)
    except TargetChanged:
        raise HeldByTarget(
            f"{seen.target} changed {seen.path} just now: account {acc.name!r} stays there",
            hint="try again in a moment",
        ) from None
    _update(ctx, [acc], _released)
    _record(ctx, "reclaim", account_id=acc.id, target=seen.target)
    _after_change(ctx)
    return hv, True


def other_machine(ctx: Ctx, holder: Holder | None) -> str | None:
    """The pool's machine whose file holds the lineage, when it is not this one."""
    if holder is None or ctx.host_id is None:
        return None
    host = holder.extra.get("host_id")
    return str(host) if host is not None and host != ctx.host_id else None


def refuse_other_machine(ctx: Ctx, acc: Account) -> None:
    """A lineage lent on another machine of the pool stays there: this machine can neither read
    that file nor take the lineage out of it."""
    host = other_machine(ctx, acc.holder)
    if host is not None and acc.holder is not None:
        silent = " (silent)" if acc.holder.path.startswith(f"{host} (silent):") else ""
        raise HeldByTarget(
            f"account {acc.name!r} is lent to {acc.holder.target} on machine {host}{silent}",
            hint="pick another account, take it back on that machine, or `acct pool reclaim "
            f"{host}` if that machine is gone",
        )


# --- lend --------------------------------------------------------------------------------------


def _account(ctx: Ctx, account_id: str) -> Account:
    return ctx.store.read().get_by_id(account_id)


def _force_hint(target: str) -> str:
    return f"replace it with `acct use NAME --target {target} --force`"


def _refuse_unknown(hv: HarvestResult, who: str) -> HeldByTarget:
    # The access token's fingerprint: the one `acct status`, `list` and `doctor` show.
    fp = f", fp {hv.entry.access_fingerprint}" if hv.entry is not None else ""
    return HeldByTarget(
        f"{hv.target} holds a login acct does not track ({who}{fp}); replacing it would lose it",
        hint=f"keep it with `acct import {hv.target}`, or {_force_hint(hv.target)}",
    )


def _check_overwrite(ctx: Ctx, hv: HarvestResult, force: bool) -> None:
    """Refuse to overwrite a login acct could not take into its store (nothing lost)."""
    if force:
        return
    if hv.other:
        raise HeldByTarget(
            f"{hv.target} holds {hv.other} in {hv.path}, which acct does not track; replacing "
            "it would lose it",
            hint=f"keep it in acct with `acct login NAME --api-key`, or {_force_hint(hv.target)}",
        )
    if hv.status in _SAFE_TO_REPLACE:
        return
    if hv.status == "unverified":
        names = [a.name for a in _recorded_there(ctx, hv)]
        who = ", ".join(names) or "the account recorded there"
        raise HeldByTarget(
            f"{hv.target} ({hv.path}): {hv.message}",
            hint=f"try again when online; --force replaces it, and then {who} will need a new "
            "login (its stored refresh token may be spent)",
        )
    if hv.status == "untracked" and hv.account_id is not None:
        return  # a copy of a stored lineage recorded at another file: dropping it loses nothing
    if not hv.checked:
        raise _refuse_unknown(hv, "acct could not check whose")
    known = ctx.store.read().by_id(hv.known_id) if hv.known_id else None
    if known is None:
        raise _refuse_unknown(hv, hv.identity or "unknown account")
    if known.holder is not None and (known.holder.target, known.holder.path) != (
        hv.target,
        hv.path,
    ):
        raise HeldByTarget(
            f"{hv.target} ({hv.path}) holds another login of {known.name}, which is lent to "
            f"{known.holder.target} ({known.holder.path}); either may be the one in use, so "
            "replacing it could lose it",
            hint=f"if no {hv.target} session uses it any more, {_force_hint(hv.target)}",
        )


def _recorded_there(ctx: Ctx, hv: HarvestResult) -> list[Account]:
    return ctx.store.read().held_by(hv.target, hv.path)


def _spent_by_overwrite(ctx: Ctx, hv: HarvestResult, force: bool) -> frozenset[str]:
    """Accounts a forced write leaves without a live lineage: those recorded at a file that
    changed in a way acct could not check (the change may be their rotation)."""
    if not force or hv.status != "unverified":
        return frozenset()
    return frozenset(a.id for a in _recorded_there(ctx, hv))


def _fresh(ctx: Ctx, acc: Account, target: JsonTarget) -> Account:
    """The account with an access token good for the tool (refreshed while the store holds it)."""
    margin = max(ctx.config.refresh_margin, target.refresh_margin)
    try:
        return providers.ensure_fresh(ctx, acc.id, margin)
    except oauth.RefreshUnanswered as e:
        # The server may have rotated the lineage: then the stored refresh token is spent, and
        # a tool handed it would present it and revoke the chain. Lend nothing; the next
        # refresh tells which it was.
        _record(ctx, "refresh_unanswered", account_id=acc.id, target=target.name)
        raise oauth.RefreshUnanswered(
            f"{e.message}; so acct did not lend {acc.name!r} to {target.name}, whose stored "
            "refresh token may be spent",
            hint=f"run `acct refresh {acc.name}`: if it succeeds, lend it again; if it says "
            f"{acc.name} needs a new login, run `acct login {acc.name}`",
        ) from None
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
        ctx.store.account_lock(account_id, timeout=10.0, what="the account"),
        ctx.store.transaction() as accounts,
    ):
        acc = accounts.get_by_id(account_id)
        refuse_other_machine(ctx, acc)
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


def _holds(target: JsonTarget, env: Mapping[str, str], path: Path, claimed: Account) -> bool:
    """Whether the file holds the claimed lineage; True when it cannot be read (cautious)."""
    assert claimed.tokens is not None
    try:
        entry = target.read(env, path=path)
    except (AcctError, OSError):
        return True
    return entry is not None and entry.lineage_fingerprint == claimed.tokens.lineage_fingerprint


def _write_claimed(
    ctx: Ctx,
    target: JsonTarget,
    env: Mapping[str, str],
    claimed: Account,
    path: Path,
    expect: str,
) -> Entry:
    """Write the claimed account; a write that did not happen drops the claim again."""
    try:
        return target.write(env, claimed, path=path, expect=expect)
    except BaseException:
        if not _holds(target, env, path, claimed):
            _update(ctx, [claimed], _released)
        raise


def _put_back(ctx: Ctx, account_id: str, holder: Holder, env: Mapping[str, str]) -> None:
    """A lend failed after taking the account out of a file: write it back there, so the tool
    keeps its login. Best effort: when that file changed meanwhile, the store keeps it."""
    target = get_target(holder.target)
    with contextlib.suppress(AcctError, OSError):
        claimed = _claim(ctx, account_id, holder.target, holder.path)
        _write_claimed(ctx, target, env, claimed, Path(holder.path), NO_ENTRY)


def _settle(
    ctx: Ctx, target: str, key: str, account_id: str, spent: frozenset[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The file now holds the new account: every other record of this file is cleared.

    Returns (accounts whose lineage is back in the store, accounts marked "needs login").
    """
    others = [a for a in ctx.store.read().held_by(target, key) if a.id != account_id]
    returned = _update(ctx, [a for a in others if a.id not in spent], _released)
    lost = _update(ctx, [a for a in others if a.id in spent], _spent)
    return tuple(returned), tuple(lost)


def _after_write(
    target: JsonTarget, env: Mapping[str, str], path: Path, account: Account
) -> tuple[str, ...]:
    """The tool's other settings (Claude Code's identity): a failure is a warning, since the
    credentials are written and recorded already."""
    try:
        target.after_write(env, path, account)
    except AcctError as e:
        problem = e.message
    except OSError as e:
        problem = f"{e.strerror or type(e).__name__}: {e.filename or path}"
    else:
        return ()
    warning = (
        f"{target.name} holds {account.name} now, but updating its other settings failed "
        f"({problem})"
    )
    return (warning,)


def _prepare(ctx: Ctx, account_id: str, target: str) -> Account:
    """The account, if it can be lent at all (a subscription login that does not need renewing)."""
    acc = _account(ctx, account_id)
    require_oauth(acc, target, get_target(target).provider)
    return acc


def lend(
    ctx: Ctx,
    account_id: str,
    target_name: str,
    env: Mapping[str, str] | None = None,
    *,
    force: bool = False,
    move: bool = True,
) -> LendResult:
    """Write the account into the target's file and record the file as its lineage's holder.

    Harvests the file first (the lineage there returns to the store), moves the account from
    another file if it is lent elsewhere and unchanged there (``move=False`` refuses instead),
    refreshes it while the store holds it, then writes compare-and-swap. ``force`` replaces a
    login acct could not take back. The target file, and the file the account is lent to, stay
    locked throughout.
    """
    target = get_target(target_name)
    e = _env(ctx, env)
    path = target.path(e)
    key = holder_path(path)
    _prepare(ctx, account_id, target.name)
    for _ in range(LEND_ATTEMPTS):
        lent = _account(ctx, account_id).holder
        files = [key] + ([lent.path] if lent else [])
        with target_lock(ctx, *files):
            now = _account(ctx, account_id).holder
            if now is not None and now.path not in files:
                continue  # moved by another process meanwhile: lock its new file too
            if now is not None and now.path != key:
                _refuse_move(ctx, _account(ctx, account_id), now, target.name, move)
            result = _lend_locked(ctx, target, path, account_id, e, force)
        if result is not None:
            return result
    raise Busy(
        f"{target.name} kept changing {path} while acct tried to write it",
        hint="try again when the tool is idle",
    )


def _live_tools_on(ctx: Ctx, key: str) -> list[SessionRow]:
    """The live ``acct exec`` sessions of other processes whose tool reads the file ``key``: the
    lineage there is that tool's (see the module docstring). This process's own session does
    not count: its tool is not running while it lends or ends."""
    return [r for r in procs.live(ctx) if r.path == key and r.pid != os.getpid()]


def _refuse_under_live_tool(ctx: Ctx, key: str, what: str) -> None:
    rows = _live_tools_on(ctx, key)
    if rows:
        raise HeldByTarget(
            f"a running acct exec (pid {_pids(rows)}) uses {key}: its tool holds the login "
            f"there, so acct will not {what}",
            hint="wait for that session to end; the tool refreshes its login itself",
        )


def _sessions_on(ctx: Ctx, key: str) -> list[SessionRow]:
    """The live ``acct exec`` sessions whose tool reads the file ``key``; none when this process
    runs one of them (the sessions of one file switch it together, when one rotates)."""
    rows = [r for r in procs.live(ctx) if r.path == key]
    return [] if any(r.pid == os.getpid() for r in rows) else rows


def _pids(rows: list[SessionRow]) -> str:
    return ", ".join(str(r.pid) for r in rows)


def _refuse_move(ctx: Ctx, acc: Account, lent: Holder, target: str, move: bool) -> None:
    """Refuse to take the account out of the file it is lent to, when that is not allowed:
    ``move=False``, or a running ``acct exec`` session's tool reads that file (its tool would be
    left without a login)."""
    if not move:
        raise HeldByTarget(
            f"account {acc.name!r} is lent to {lent.target} ({lent.path})",
            hint=f"move it with `acct use {acc.name} --target {target}`",
        )
    rows = _live_tools_on(ctx, lent.path)
    if rows:
        raise HeldByTarget(
            f"account {acc.name!r} is in use by a running acct exec (pid {_pids(rows)}) of "
            f"{lent.target} ({lent.path}); taking it would leave that session without a login",
            hint="wait for that session to end, or start one more with `acct exec`: sessions "
            "run in parallel, each on an account of its own",
        )


def _refuse_switch(ctx: Ctx, target: str, key: str) -> None:
    """Refuse to write another account into a file a running ``acct exec`` session's tool reads
    (the tool re-reads it: the session would go on with that account) unless forced."""
    rows = _sessions_on(ctx, key)
    if rows:
        raise HeldByTarget(
            f"{target}'s file is in use by a running acct exec (pid {_pids(rows)}); switching "
            "it would switch that session",
            hint="pass --force to do it anyway",
        )


def _lend_locked(
    ctx: Ctx,
    target: JsonTarget,
    path: Path,
    account_id: str,
    env: Mapping[str, str],
    force: bool,
) -> LendResult | None:
    """One attempt of :func:`lend` under the files' locks; None when the tool wrote meanwhile."""
    key = holder_path(path)
    hv = _harvest_for_lend(ctx, target, path, env)
    acc = _account(ctx, account_id)
    here = acc.holder is not None and acc.holder.target == target.name and acc.holder.path == key
    if here and hv.entry is not None and hv.account_id == acc.id:
        # The rule that closes the same-account lend (module docstring): a running tool's
        # login is left as the file holds it, however short its access token.
        users = tuple(r.pid for r in _live_tools_on(ctx, key))
        if users or _fresh_enough(ctx, hv, target):
            return LendResult(
                target.name,
                key,
                acc.id,
                acc.name,
                acc.plan,
                hv.entry,
                hv,
                already=True,
                in_use_by=users,
            )
    if not force and not here:
        _refuse_switch(ctx, target.name, key)
    _check_overwrite(ctx, hv, force)
    spent = _spent_by_overwrite(ctx, hv, force)
    expect = hv.fingerprint
    taken: Holder | None = None  # where the account was taken out of, to put it back on failure
    if acc.holder is not None and _reclaim_locked(ctx, acc, env)[1]:
        taken = acc.holder
        if taken.path == key:
            expect = NO_ENTRY  # reclaiming emptied this very file
    try:
        # What the write would refuse (Claude Code's identity file unreadable, ...) is refused
        # before custody records anything: a refused lend leaves the store as it was.
        target.before_write(env, path)
        acc = _fresh(ctx, _prepare(ctx, account_id, target.name), target)
        claimed = _claim(ctx, account_id, target.name, key)
        entry = _write_claimed(ctx, target, env, claimed, path, expect)
    except BaseException as exc:
        if taken is not None and _account(ctx, account_id).holder is None:
            _put_back(ctx, account_id, taken, env)
        if isinstance(exc, TargetChanged):
            return None
        raise
    returned, lost = _settle(ctx, target.name, key, account_id, spent)
    _record(ctx, "lend", account_id=account_id, target=target.name, path=key)
    warnings = _after_write(target, env, path, claimed)
    _after_change(ctx)
    moved_from = (
        f"{taken.target} ({taken.path})" if taken is not None and taken.path != key else None
    )
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
        lost=lost,
        warnings=warnings,
    )


def _harvest_for_lend(
    ctx: Ctx, target: JsonTarget, path: Path, env: Mapping[str, str]
) -> HarvestResult:
    """The harvest before a lend. A login acct does not track whose access token has expired
    cannot be identified as it is: it is renewed in its file first, as the tool would on its
    next start (:func:`renew_at`), and then identified; one whose refresh token the server
    refuses is dead and may be replaced."""
    hv = harvest_at(ctx, target, path, env, identify=True)
    entry = hv.entry
    if (
        hv.status != "untracked"
        or hv.checked
        or hv.account_id is not None
        or entry is None
        or entry.tokens.fresh_for(DEAD_MARGIN)
        or not entry.tokens.refresh
        or not target.can_renew(env, path)
        or _live_tools_on(ctx, holder_path(path))
    ):
        return hv
    try:
        renew_at(ctx, target, path, env)
    except NeedsLogin:
        return replace(
            hv,
            status="dead",
            checked=True,
            message="the file holds a login whose refresh token the server refuses: it is "
            "signed out, so replacing it loses nothing",
        )
    except AcctError:
        return hv  # not renewed: the refusal to overwrite it stands
    return harvest_at(ctx, target, path, env, identify=True)


def _fresh_enough(ctx: Ctx, hv: HarvestResult, target: JsonTarget) -> bool:
    """Whether an account already in the file can stay as it is.

    When the tool has been refreshing it (the entry is its own), yes: the tool manages it. When
    the file holds exactly acct's write (or a login acct just adopted) and the access token runs
    out within the margin, no: acct takes it back, refreshes it and writes it again (OpenCode's
    refresh is unreliable).
    """
    if hv.status in ("refreshed", "harvested"):
        return True
    if hv.status not in ("unchanged", "adopted") or hv.entry is None:
        return False
    margin = max(ctx.config.refresh_margin, target.refresh_margin)
    return hv.entry.tokens.fresh_for(margin)


# --- renew: refresh a tool's expired login in its own file ----------------------------------------


def renew_at(ctx: Ctx, target: JsonTarget, path: Path, env: Mapping[str, str]) -> Entry | None:
    """Refresh the login in a tool's file in place when its access token has (nearly) expired.

    What the tool itself would do on its next start (Codex: after its 401), under the tool's own
    lock (see the module docstring), so the file stays the lineage's only holder. Refused, with
    what to do instead, for a tool without a lock, for a Codex running on the file, and for a
    file that holds a copy of a lineage recorded at another file (refreshing it would spend that
    file's lineage). A refresh token the server refuses is :class:`NeedsLogin` ("signed out"),
    the file left as it was. Returns the entry the file holds after.
    """
    key = holder_path(path)
    hint = f"run {target.name} once so it refreshes its login, then try again"
    if not target.can_renew(env, path):
        raise AuthError(
            f"the access token in {path} has expired, and acct cannot refresh it safely: "
            f"{target.name} could be refreshing it at the same moment (it takes no lock)",
            hint=hint,
        )

    def spend(entry: Entry) -> Tokens | None:
        if entry.tokens.fresh_for(RENEW_BELOW) or not entry.tokens.refresh:
            return None  # the tool refreshed it meanwhile, or there is nothing to refresh with
        fp = entry.lineage_fingerprint
        for acc in ctx.store.read():
            copy = acc.tokens is not None and acc.tokens.lineage_fingerprint == fp
            if copy and acc.holder is not None and acc.holder.path != key:
                raise HeldByTarget(
                    f"{path} holds a copy of {acc.name}'s lineage, which is lent to "
                    f"{acc.holder.target} ({acc.holder.path}); refreshing it here would spend "
                    "that file's login",
                    hint=hint,
                )
        what = f"the login in {path}"
        try:
            answer = providers.refresh_unstored(
                ctx, entry.tokens, what=what, provider=target.provider
            )
        except NeedsLogin:
            raise NeedsLogin(
                f"{what} is signed out (its refresh token is no longer valid)",
                hint=f"{target.relogin}, or `{providers.get(target.provider).login_command}`",
            ) from None
        except oauth.RefreshUnanswered as e:
            raise NetworkError(
                f"{e.message}", hint=f"if {target.name} then says it is not logged in, log in again"
            ) from None
        return answer.tokens(entry.tokens)

    with target_lock(ctx, path):
        _refuse_under_live_tool(ctx, key, f"refresh the login in {path}")
        before = target.read(env, path=path)
        with oauth.refresh_in_flight():  # signals wait until the rotated pair is in the file
            entry = target.renew(env, spend, path=path)
    if entry is not None and before is not None and entry.tokens != before.tokens:
        _record(ctx, "renew", target=target.name, path=key)
    return entry


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
