"""Token refresh: spending a single-use refresh token and keeping its answer.

Refresh tokens are single-use and rotate, so spending one is the one dangerous act: every refresh
runs under the account's own lock, re-reads the store after taking it, and sends nothing when the
lineage moved on since the caller looked (another process refreshed it) or when the lineage is
lent to a tool's file.

A refresh either stores its answer or was never sent:

- before the request goes out, the room to keep the answer is reserved: a file the size of a
  store write in the store's directory (given back just before the store is written) and a
  rescue slot in the state directory. When neither can be had (a full disk, read-only
  directories), nothing is sent;
- the answer goes to the rescue slot (fsynced, then renamed to the rescue file) before the store
  is written, and the file goes once the store has it: a process killed in between (``kill -9``)
  leaves it for the next acct command on this machine (:func:`recover_refreshes`), as does a
  store that cannot take it (a corrupt file, a pool that is unreachable);
- in a pool, the "refresh in flight" mark is committed as the request goes on the wire
  (:mod:`acct.base.wire`), so a process killed before that leaves a token every machine may use;
- the request itself is carried by a courier process (:mod:`acct.base.courier`) that outlives
  acct and journals each step in ``rescued/<id>.flight``: its intent before the mark, "sending"
  before the request, the answer as it came. A process killed at any instant leaves the next
  command (:func:`recover_refreshes`) a verdict: never sent (the mark, or a cut-off another
  machine made of it, goes), an answer to store, or a token that may be spent;
- from just before the request until the answer is stored or rescued, SIGINT, SIGTERM and
  SIGHUP are held back (:mod:`acct.services.oauth.flight`): the signal takes effect once the
  answer is safe. Worker threads that refresh count too: the main thread's handler holds the
  signal until the last refresh in flight is stored."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

from acct.base import wire
from acct.base.endpoints import CLIENT_ID
from acct.base.errors import (
    AcctError,
    Busy,
    CorruptFile,
    HeldByTarget,
    LineageMoved,
    NeedsLogin,
    NetworkError,
    NotFound,
    ProtocolError,
    UsageError,
)
from acct.base.fsio import ensure_dir, read_json_object, write_json
from acct.base.models import Account, Tokens
from acct.services import events
from acct.services.answers import json_of, transient
from acct.services.context import Ctx
from acct.services.oauth.client import (
    TokenAnswer,
    _client_rejected,
    _oauth_error,
    _post_token,
    _Unanswered,
    parse_token_answer,
)
from acct.services.oauth.flight import GUARD

# A refresh answer cut short may be lost after the server has rotated the lineage, so a refresh
# waits long for its answer, and longer still for the store lock once the answer is in hand.
REFRESH_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
STORE_WAIT = 120.0
# A forced refresh sends nothing when the stored tokens are this young: another process has
# just refreshed them, and a second refresh would only rotate the lineage under its feet.
RECENT_REFRESH = 60.0
# How long the recovery at a command's start waits for an account's lock: its holder is a
# refresh, which adopts the rescued answer itself.
RECOVER_LOCK_WAIT = 0.5


# --- refresh ----------------------------------------------------------------------------------


class Refreshed(Protocol):
    """A token endpoint's answer to a refresh, whatever the provider."""

    def tokens(self, previous: Tokens | None = None) -> Tokens: ...


# Spends one refresh token at the account's provider: (ctx, account, tokens, timeout=...).
# The machinery here (lock, room, rescue, signals) is the same for every provider; only this
# request differs (acct.services.providers supplies it per account).
Sender = Callable[..., Refreshed]


class RefreshUnanswered(NetworkError):
    """A refresh request went out and no answer came back: the lineage may have rotated."""

    code = "refresh_unanswered"


@dataclass(frozen=True)
class RefreshResult:
    account: Account
    sent: bool  # False: nothing was sent (still fresh, or another process refreshed it first)
    recovered: bool = False  # the tokens came from the recovery file of an earlier refresh
    # Nothing was sent because the stored tokens came from the token endpoint moments before the
    # caller began (a login, or an earlier refresh): nobody refreshed while the caller waited.
    already_fresh: bool = False


def _load(ctx: Ctx, account_id: str) -> Account:
    return ctx.store.read().get_by_id(account_id)


def _check_refreshable(acc: Account) -> Tokens:
    if not acc.is_oauth:
        raise UsageError(f"account {acc.name!r} is an API key: there is nothing to refresh")
    if acc.holder is not None:
        host = acc.holder.extra.get("host_id")
        if host is not None and acc.holder.path.startswith(f"{host}"):  # another machine's file
            raise HeldByTarget(
                f"account {acc.name!r} is lent to {acc.holder.target} on machine "
                f"{acc.holder.path.split(':', 1)[0]}: that file holds its live refresh token, so "
                "acct will not spend it",
                hint="pick another account, or take it back on that machine first",
            )
        raise HeldByTarget(
            f"account {acc.name!r} is lent to {acc.holder.target} ({acc.holder.path}): that file holds "
            "its live refresh token, so acct will not spend it",
            hint=f"let {acc.holder.target} refresh it, or take the account back from that file first",
        )
    if acc.needs_login or acc.tokens is None or acc.tokens.is_blank:
        raise NeedsLogin(f"account {acc.name!r} needs a new login", hint=f"acct login {acc.name}")
    return acc.tokens


def refresh(
    ctx: Ctx,
    account_id: str,
    *,
    force: bool = False,
    margin: float | None = None,
    seen: str | None = None,
    timeout: float = REFRESH_TIMEOUT,
    send: Sender | None = None,
) -> Account:
    """Refresh the account's tokens unless they are fresh for ``margin`` seconds (or ``force``).

    ``seen`` is the lineage fingerprint the caller looked at (default: the store now). When the
    store holds another one once the lock is taken, someone else refreshed meanwhile and nothing is sent.
    """
    return refresh_result(
        ctx, account_id, force=force, margin=margin, seen=seen, timeout=timeout, send=send
    ).account


def ensure_fresh(
    ctx: Ctx,
    account_id: str,
    margin: float,
    *,
    timeout: float = REFRESH_TIMEOUT,
    send: Sender | None = None,
) -> Account:
    """The account with an access token good for at least ``margin`` seconds."""
    return refresh(ctx, account_id, margin=margin, timeout=timeout, send=send)


def _lock_wait(timeout: float) -> float:
    """How long to wait for an account's lock: its holder may be waiting for a slow endpoint."""
    return CONNECT_TIMEOUT + timeout + 30.0


def refresh_worst_case(timeout: float = REFRESH_TIMEOUT) -> float:
    """The longest one :func:`refresh_result` call can take: the lock, two requests (a refusal of
    ``scope`` is asked again without it) and the wait to store the answer."""
    return _lock_wait(timeout) + 2 * (CONNECT_TIMEOUT + timeout) + STORE_WAIT


def refresh_result(
    ctx: Ctx,
    account_id: str,
    *,
    force: bool = False,
    margin: float | None = None,
    seen: str | None = None,
    since: float | None = None,
    timeout: float = REFRESH_TIMEOUT,
    send: Sender | None = None,
) -> RefreshResult:
    """:func:`refresh`, also saying whether a request was sent.

    ``since`` is when the caller began (default: now). A forced refresh sends nothing when the
    stored tokens were obtained after it, or within the last :data:`RECENT_REFRESH` seconds:
    processes started one after another must not each spend the lineage once.

    ``send`` spends the refresh token at the account's provider (default: Anthropic's token
    endpoint, which refuses an account of another provider before sending anything).
    """
    since = time.time() if since is None else since
    margin = ctx.config.refresh_margin if margin is None else margin
    if seen is None:
        before = _load(ctx, account_id)
        seen = before.tokens.lineage_fingerprint if before.tokens else None
    with ctx.store.account_lock(account_id, timeout=_lock_wait(timeout), what="the account"):
        acc = _load(ctx, account_id)
        rescued = _adopt_rescued(ctx, acc, send=send, wait=timeout)
        if rescued is not None:
            return RefreshResult(rescued, sent=False, recovered=True)
        tokens = _check_refreshable(acc)
        if tokens.lineage_fingerprint != seen:
            return RefreshResult(acc, sent=False)
        if force and tokens.obtained_since(since):
            # Obtained after the caller began: another process refreshed meanwhile.
            return RefreshResult(acc, sent=False)
        if force and tokens.obtained_since(time.time() - RECENT_REFRESH):
            return RefreshResult(acc, sent=False, already_fresh=True)
        if not force and tokens.fresh_for(margin):
            return RefreshResult(acc, sent=False)
        if not tokens.refresh:
            raise NeedsLogin(
                f"account {acc.name!r} has no refresh token (a setup token?) and its access token "
                + ("is being replaced" if force else "is about to expire"),
                hint=f"acct login {acc.name}",
            )
        nonce = secrets.token_hex(8)  # names this refresh's mark and journal
        with (
            GUARD.spending(),
            _Room(ctx, acc) as room,
            ctx.store.refresh_mark(acc.id, tokens.lineage_fingerprint, nonce) as mark,
            wire.on_sending(
                mark.sending,
                journal=flight_path(ctx, acc.id),
                doc=_flight_doc(acc, tokens, nonce),
            ),
        ):
            try:
                answer = _counted_refresh(ctx, acc, tokens, timeout=timeout, send=send)
            except RefreshUnanswered:
                mark.spent = True  # it may have gone through
                _end_flight(ctx, acc.id)
                raise
            except LineageMoved:  # refused by the mark, before a byte went out
                _end_flight(ctx, acc.id)
                return RefreshResult(_load(ctx, account_id), sent=False)
            except BaseException:
                _end_flight(ctx, acc.id)
                raise
            mark.spent = True
            kept = _keep_refreshed(ctx, acc, tokens, answer, room)
            mark.stored = True
        events.count(ctx, "token_refreshes", account_id=acc.id, result="ok")
        return RefreshResult(kept, sent=True)


def _counted_refresh(
    ctx: Ctx, acc: Account, tokens: Tokens, *, timeout: float, send: Sender | None
) -> Refreshed:
    """The provider's refresh; a failure is counted by its code for the metrics (``needs_login``:
    a dead lineage). A success is counted once its answer is kept: nothing comes between the
    answer and its journal."""
    try:
        return (send or send_refresh)(ctx, acc, tokens, timeout=timeout)
    except AcctError as e:
        events.count(ctx, "token_refreshes", account_id=acc.id, result=e.code)
        if isinstance(e, NeedsLogin):
            events.emit(ctx, "login_died", account_id=acc.id)
        raise


def _refresh_body(refresh_token: str, scopes: tuple[str, ...]) -> dict[str, str]:
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    if scopes:
        body["scope"] = " ".join(scopes)
    return body


def _post_refresh(ctx: Ctx, acc: Account, body: dict[str, str], *, timeout: float) -> Any:
    try:
        return _post_token(ctx, body, timeout=timeout)
    except _Unanswered as e:
        raise RefreshUnanswered(
            f"{e.detail} while refreshing {acc.name!r}: the refresh may have gone through, "
            "and then its new tokens are lost",
            hint=f"if the next refresh fails, run `acct login {acc.name}`",
        ) from None


def send_refresh(ctx: Ctx, acc: Account, tokens: Tokens, *, timeout: float) -> TokenAnswer:
    """Spend an Anthropic refresh token once (Anthropic's :data:`Sender`)."""
    assert tokens.refresh
    if acc.provider != "anthropic":
        raise ProtocolError(
            f"account {acc.name!r} is a {acc.provider} login: Anthropic's token endpoint "
            "cannot refresh it; nothing was sent"
        )
    response = _post_refresh(
        ctx, acc, _refresh_body(tokens.refresh, tokens.scopes), timeout=timeout
    )
    if response.status_code == 400 and tokens.scopes and _oauth_error(response) == "invalid_scope":
        # Some servers refuse `scope` on refresh; such a refusal spends nothing, so ask once without it.
        response = _post_refresh(ctx, acc, _refresh_body(tokens.refresh, ()), timeout=timeout)
    failure = transient(response, "the token endpoint")
    if failure:
        raise failure
    if response.status_code != 200:
        error = _oauth_error(response)
        if error == "invalid_grant" and response.status_code in (400, 401):
            mark_needs_login(ctx, acc.id, tokens)
            raise NeedsLogin(
                f"account {acc.name!r} was signed out: its refresh token is no longer valid",
                hint=f"acct login {acc.name}",
            )
        if error == "invalid_client":
            raise _client_rejected()
        raise ProtocolError(
            f"the token endpoint refused the refresh ({error or response.status_code})"
        )
    return parse_token_answer(json_of(response, "the token endpoint"), default_scopes=tokens.scopes)


def mark_needs_login(ctx: Ctx, account_id: str, spent: Tokens) -> None:
    """Mark the account as needing a login, unless its lineage moved on since ``spent``."""
    with ctx.store.transaction() as accounts:
        acc = accounts.by_id(account_id)
        if (
            acc is not None
            and acc.tokens
            and acc.tokens.lineage_fingerprint == spent.lineage_fingerprint
        ):
            accounts.put(acc.copy(needs_login=True))


def _store_refreshed(ctx: Ctx, seen: Account, spent: Tokens, answer: Refreshed) -> Account:
    # The answer in hand is the lineage's only live copy: wait long for the store.
    with ctx.store.transaction(timeout=STORE_WAIT) as accounts:
        acc = accounts.by_id(seen.id)
        if acc is None:
            raise NotFound(f"account {seen.name!r} was removed while it was being refreshed")
        if acc.tokens is None or acc.tokens.lineage_fingerprint != spent.lineage_fingerprint:
            # A new login replaced the lineage meanwhile; it wins, the refreshed one is dropped.
            return acc
        updated = acc.copy(tokens=answer.tokens(spent), needs_login=False)
        accounts.put(updated)
        return updated


# --- keeping a refresh answer that could not be stored ------------------------------------------


def rescue_path(ctx: Ctx, account_id: str) -> Path:
    """Where a refresh answer the store could not take waits for the next refresh (0600)."""
    return ctx.paths.rescued_dir / f"{account_id}.json"


def _rescue_doc(seen: Account, spent: Tokens, tokens: Tokens) -> dict[str, Any]:
    return {
        "version": 1,
        "account_id": seen.id,
        "account_name": seen.name,
        "spent_lineage": spent.lineage_fingerprint,
        "saved_at": int(time.time()),
        "tokens": {
            "access": tokens.access,
            "refresh": tokens.refresh,
            "expires_at": tokens.expires_at,
            "scopes": list(tokens.scopes),
            "obtained_at": tokens.obtained_at,
            "extra": dict(tokens.extra),
        },
    }


def _keep_refreshed(
    ctx: Ctx, seen: Account, spent: Tokens, answer: Refreshed, room: _Room | None = None
) -> Account:
    """Store the answer, never dropping it: it is first written to the rescue file (fsynced,
    0600), so a process killed before the store takes it leaves it for the next command on this
    machine (:func:`recover_refreshes`); the file goes once the store has the answer. When the
    store cannot take it, the file stays and the error says so."""
    path = rescue_path(ctx, seen.id)
    doc = _rescue_doc(seen, spent, answer.tokens(spent))
    saved: AcctError | None = None
    try:
        _set_aside(path)
        if room is None or not room.rescue(path, doc):
            write_json(path, doc)
    except AcctError as e:
        saved = e
    else:
        flight_path(ctx, seen.id).unlink(missing_ok=True)  # the rescue file says it all now
    if room is not None:
        room.give_back_store()
    try:
        kept = _store_refreshed(ctx, seen, spent, answer)
    except NotFound:
        path.unlink(missing_ok=True)
        raise
    except AcctError as e:
        problem = e.message
    else:
        path.unlink(missing_ok=True)
        return kept
    if saved is not None:
        try:
            write_json(path, doc)
            flight_path(ctx, seen.id).unlink(missing_ok=True)
        except AcctError as e:
            journal = flight_path(ctx, seen.id)
            if _flight_doc_of(journal).get("state") == "answered":
                raise AcctError(
                    f"the refreshed tokens of {seen.name!r} could not be stored ({problem}) "
                    f"nor saved ({e.message}); their answer stays in {journal}",
                    hint=f"fix that, then run `acct refresh {seen.name}`, which stores them "
                    "from that file; keep the file until then",
                ) from None
            raise AcctError(
                f"the refreshed tokens of {seen.name!r} are lost: the store could not take them "
                f"({problem}), nor could they be saved ({e.message})",
                hint=f"fix that, then run `acct login {seen.name}`",
            ) from None
    raise AcctError(
        f"the refreshed tokens of {seen.name!r} were saved to {path} (0600): "
        f"the store could not take them: {problem}",
        hint=f"fix that, then run `acct refresh {seen.name}`, which stores them from that file; "
        "keep the file until then",
    )


def _set_aside(path: Path) -> None:
    """Keep a rescue file a new answer would replace (one of an older lineage, left for the
    user): it moves to a name of its own in the same directory."""
    if not path.exists():
        return
    aside = path.with_name(f"{path.stem}.{int(time.time())}.{os.getpid()}.json")
    try:
        os.replace(path, aside)
    except OSError as e:
        raise AcctError(f"cannot move {path} aside: {_problem(e)}") from None


# Room reserved before a refresh is sent: a store write (the store's size plus this) and a
# rescue file of this size. Both are far larger than what they stand for.
_STORE_SLACK = 64 * 1024
_RESCUE_ROOM = 16 * 1024


def _reserve(directory: Path, name: str, size: int) -> tuple[int, Path]:
    """A 0600 file of ``size`` bytes of real disk blocks in ``directory``: (fd, path)."""
    ensure_dir(directory)
    path = directory / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return fd, path


def _sweep_rooms(directory: Path) -> None:
    """Remove the rooms of refreshes whose process is gone (killed hard mid-refresh)."""
    with contextlib.suppress(OSError):
        for p in directory.glob(".*.room"):
            parts = p.name.split(".")
            pid = int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else 0
            if pid <= 0 or pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                with contextlib.suppress(OSError):
                    p.unlink()
            except PermissionError:
                pass


def _problem(e: BaseException) -> str:
    if isinstance(e, AcctError):
        return e.message
    if isinstance(e, OSError):
        return f"{e.strerror or type(e).__name__}: {e.filename or ''}".rstrip(": ")
    return type(e).__name__


class _Room:
    """The room a refresh answer needs, reserved before the refresh token is spent.

    A full disk would otherwise drop the new tokens after the server rotated the lineage. A
    store write needs a new file the store's size (the write is atomic: a temporary file, then
    a rename); the rescue file, a few hundred bytes. Both are allocated up front; the store's
    is given back just before the store is written, and the rescue slot is written in place
    when the store cannot take the answer. Without either, nothing is sent.
    """

    def __init__(self, ctx: Ctx, acc: Account) -> None:
        self.ctx = ctx
        self.acc = acc
        self.store: tuple[int, Path] | None = None
        self.slot: tuple[int, Path] | None = None

    def __enter__(self) -> Self:
        store_file = self.ctx.paths.accounts_file
        tag = f".{self.acc.id}.{os.getpid()}.{threading.get_ident()}.room"
        problems: list[str] = []
        rescue_dir = self.ctx.paths.rescued_dir
        for d in (store_file.parent, rescue_dir):
            _sweep_rooms(d)
        full = False
        try:
            size = store_file.stat().st_size if store_file.exists() else 0
            self.store = _reserve(store_file.parent, tag, size + _STORE_SLACK)
        except (OSError, AcctError) as e:
            # A full disk refuses at once; a store acct cannot write (read-only) is what the
            # rescue file is for.
            full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
            problems.append(f"the store's directory: {_problem(e)}")
        try:
            self.slot = _reserve(rescue_dir, tag, _RESCUE_ROOM)
        except (OSError, AcctError) as e:
            problems.append(f"the rescue directory: {_problem(e)}")
        if full or (self.store is None and self.slot is None):
            self.__exit__()
            raise AcctError(
                f"nothing was sent: acct could not make room to keep the refreshed tokens of "
                f"{self.acc.name!r} ({'; '.join(problems)})",
                hint="free some disk space (or make acct's directories writable), then try again",
            )
        return self

    def give_back_store(self) -> None:
        if self.store is not None:
            fd, path = self.store
            self.store = None
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()

    def rescue(self, path: Path, doc: dict[str, Any]) -> bool:
        """Write ``doc`` into the reserved slot and move it to ``path``; False without a slot.

        The rename comes before the fsyncs: once renamed, the answer is in the kernel under
        its name, so a process killed from then on (``kill -9``) leaves it for the next command;
        the fsyncs after it make it survive a power loss too. Only a power loss between the
        rename and the fsync can leave a torn file there (acct then names it and leaves it)."""
        if self.slot is None:
            return False
        fd, slot = self.slot
        data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.replace(slot, path)
        except OSError as e:
            raise AcctError(f"cannot write {path}: {_problem(e)}") from None
        self.slot = None
        try:
            os.fsync(fd)
        except OSError as e:
            raise AcctError(f"cannot write {path}: {_problem(e)}") from None
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return True

    def __exit__(self, *exc: object) -> None:
        self.give_back_store()
        if self.slot is not None:
            fd, path = self.slot
            self.slot = None
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()


# --- the courier's journal of a refresh ---------------------------------------------------------


def flight_path(ctx: Ctx, account_id: str) -> Path:
    """The journal of the account's refresh request (:mod:`acct.base.courier`), 0600."""
    return ctx.paths.rescued_dir / f"{account_id}.flight"


def _flight_doc(acc: Account, spent: Tokens, nonce: str) -> dict[str, Any]:
    return {
        "version": 1,
        "nonce": nonce,
        "account_id": acc.id,
        "account_name": acc.name,
        "provider": acc.provider,
        "spent_lineage": spent.lineage_fingerprint,
        "pid": os.getpid(),
    }


def _flight_doc_of(path: Path) -> dict[str, Any]:
    try:
        return read_json_object(path, what="refresh journal") or {}
    except AcctError:
        return {}


def _courier_alive(doc: dict[str, Any]) -> bool:
    from acct.base import courier  # lazy: it imports httpx (and httpx, Rich)

    return courier.alive(doc.get("courier_pid"), doc.get("courier_start"))


def _end_flight(ctx: Ctx, account_id: str) -> None:
    """This process is done with its refresh's journal (what it says is acted on already),
    unless the courier still waits for the answer: it journals it, for the next command. An
    intent means nothing was sent: a mark its commit may have left (the commit failed, or
    was refused) goes now, or, when the pool cannot be reached, with the next command."""
    path = flight_path(ctx, account_id)
    if not path.exists():
        return
    doc = _flight_doc_of(path)
    if _courier_alive(doc):
        return
    lineage, nonce = doc.get("spent_lineage"), doc.get("nonce")
    if doc.get("state") == "intent" and isinstance(lineage, str) and isinstance(nonce, str):
        try:
            ctx.store.unsent_refresh(account_id, lineage, nonce)
        except AcctError:
            return  # kept for the next command
    path.unlink(missing_ok=True)


# States of a courier's journal that say its request may have spent the token.
_MAYBE_SPENT = ("sending", "unanswered")


def _settle_flight(ctx: Ctx, acc: Account, send: Sender | None, wait: float) -> Account | None:
    """Act on the journal of a refresh whose process ended before it could (killed): the
    account with its tokens back, or None when there is nothing to take back.

    - a courier still running is waited for up to ``wait`` seconds, then left (Busy when
      ``wait`` is not 0: nothing may be sent while it may still send);
    - *intent* (its courier is gone): the request never left, the token is good: what its
      mark left in a pool goes (the mark, or the "needs login" of a cut-off of it);
    - *answered*: the answer goes through the provider's own parser, then to the rescue file
      and the store as if it had just come; a refusal that spends nothing counts as never sent;
    - *sending* or *unanswered*: the token may be spent; as for a refresh left unanswered,
      nothing more is done (a pool's mark stays)."""
    path = flight_path(ctx, acc.id)
    doc = _flight_doc_of(path)
    deadline = time.monotonic() + wait
    while _courier_alive(doc):
        if time.monotonic() >= deadline:
            if wait:
                raise Busy(
                    f"an earlier refresh of {acc.name!r} still waits for its answer; nothing "
                    "is sent meanwhile",
                    hint="try again in a minute",
                )
            return None
        time.sleep(0.01)
        doc = _flight_doc_of(path)
    stored = acc.tokens
    if not doc or stored is None or doc.get("spent_lineage") != stored.lineage_fingerprint:
        path.unlink(missing_ok=True)  # the lineage moved on since: nothing here applies
        return None
    state, answer = doc.get("state"), doc.get("answer")
    if state == "answered" and isinstance(answer, dict) and acc.holder is None:
        try:
            with wire.replaying(answer):
                replayed = (send or send_refresh)(ctx, acc, stored, timeout=REFRESH_TIMEOUT)
        except NeedsLogin:
            path.unlink(missing_ok=True)  # a dead lineage, marked so by the parser
            return None
        except AcctError:
            state = "intent"  # refused or failed without spending it
        else:
            received = answer.get("received_at")
            tokens = _as_of(replayed.tokens(stored), received)
            write_json(rescue_path(ctx, acc.id), _rescue_doc(acc, stored, tokens))
            path.unlink(missing_ok=True)
            return _adopt_rescued(ctx, acc)
    if state == "intent":
        healed = ctx.store.unsent_refresh(
            acc.id, stored.lineage_fingerprint, str(doc.get("nonce") or "")
        )
        path.unlink(missing_ok=True)
        return _load(ctx, acc.id) if healed else None
    if state in _MAYBE_SPENT or state == "answered":
        path.unlink(missing_ok=True)
    return None


def _as_of(tokens: Tokens, received: object) -> Tokens:
    """Tokens parsed now from an answer that came at ``received``: their times as of then."""
    if not isinstance(received, int | float):
        return tokens
    late = max(0, int(time.time() - received))
    if not late:
        return tokens
    obtained = tokens.obtained_at - late if tokens.obtained_at is not None else None
    return dataclasses.replace(tokens, expires_at=tokens.expires_at - late, obtained_at=obtained)


def _adopt_rescued(
    ctx: Ctx, acc: Account, *, send: Sender | None = None, wait: float = 0.0
) -> Account | None:
    """Store the tokens of an earlier refresh the store did not take, when they continue the
    stored lineage. The rescue file goes once they are stored; one that belongs to an older
    lineage (a login replaced it) moves aside (``<id>.<time>.<pid>.json``), left for the user to
    look at and no longer looked at by every command. Without a rescue file, the journal of a
    refresh cut short is settled (:func:`_settle_flight`)."""
    path = rescue_path(ctx, acc.id)
    if not path.exists():
        if flight_path(ctx, acc.id).exists():
            return _settle_flight(ctx, acc, send, wait)
        return None
    flight = flight_path(ctx, acc.id)
    if flight.exists() and not _courier_alive(_flight_doc_of(flight)):
        flight.unlink(missing_ok=True)  # the rescue file came after it
    doc = read_json_object(path, what="rescued refresh answer") or {}
    rescued = _rescued_tokens(doc, path)
    stored = acc.tokens
    if stored is not None and rescued.lineage_fingerprint == stored.lineage_fingerprint:
        path.unlink(missing_ok=True)  # stored already
        return None
    if stored is not None and doc.get("spent_lineage") != stored.lineage_fingerprint:
        _set_aside(path)  # its lineage was replaced: it can never be stored
        return None
    if acc.holder is not None or stored is None:
        return None
    with ctx.store.transaction(timeout=STORE_WAIT) as accounts:
        current = accounts.by_id(acc.id)
        if current is None or current.tokens != stored or current.holder is not None:
            return None
        updated = current.copy(tokens=rescued, needs_login=False)
        accounts.put(updated)
    path.unlink(missing_ok=True)
    return updated


def recover_refreshes(ctx: Ctx, send: Sender | None = None) -> list[str]:
    """Store the answers of refreshes this machine got but did not store (a process killed
    between the answer and the store write, or a store that refused it): the names of the
    accounts whose tokens came back. Cheap when there is nothing to recover (one directory
    listing). Each file is judged under its account's lock, on a fresh read of the store: a
    refresh in flight writes, adopts and removes that file under the same lock, so nothing here
    races it (an account whose lock is busy is left to its holder, which adopts first). A file
    acct cannot use now (a lent account, a store that is unreachable) is left for later, and
    this never raises for it. ``send`` parses a journaled answer (default: Anthropic's)."""
    names: list[str] = []
    for account_id in dict.fromkeys(p.stem for p in ctx.paths.rescued()):
        lock = ctx.store.account_lock(account_id, timeout=RECOVER_LOCK_WAIT, what="the account")
        with contextlib.suppress(AcctError, OSError), lock:
            acc = ctx.store.read().by_id(account_id)
            if acc is not None and _adopt_rescued(ctx, acc, send=send) is not None:
                names.append(acc.name)
    return names


def _rescued_tokens(doc: dict[str, Any], path: Path) -> Tokens:
    t = doc.get("tokens")
    t = t if isinstance(t, dict) else {}
    access, refresh, expires = t.get("access"), t.get("refresh"), t.get("expires_at")
    scopes, obtained = t.get("scopes"), t.get("obtained_at")
    extra = t.get("extra", {})
    if (
        not isinstance(access, str)
        or not isinstance(refresh, str | None)
        or not isinstance(expires, int)
        or not isinstance(scopes, list)
        or not isinstance(obtained, int | None)
        or not isinstance(extra, dict)
    ):
        raise CorruptFile(
            f"rescued refresh answer {path} is not one acct wrote; acct leaves it untouched",
            hint=f"move {path} aside",
        )
    return Tokens(access, refresh, expires, tuple(str(x) for x in scopes), obtained, extra=extra)


def refresh_unstored(
    ctx: Ctx,
    tokens: Tokens,
    *,
    what: str,
    timeout: float = REFRESH_TIMEOUT,
    send: Sender | None = None,
    provider: str = "anthropic",
) -> Refreshed:
    """Spend the refresh token of a lineage the store does not hold, and return the answer.

    For a tool's file refreshed in place under the tool's own lock, as the tool itself would
    (``acct import`` of a login whose access token expired): the caller writes the rotated pair
    back into that file. ``what`` names the login in errors. Nothing in the store changes;
    :class:`NeedsLogin` when the lineage is dead, :class:`RefreshUnanswered` when the answer
    was lost.
    """
    if not tokens.refresh:
        raise NeedsLogin(f"{what} has no refresh token", hint="log in again")
    stand_in = Account(
        name=what, id="", provider="chatgpt" if provider == "chatgpt" else "anthropic"
    )
    return (send or send_refresh)(ctx, stand_in, tokens, timeout=timeout)
