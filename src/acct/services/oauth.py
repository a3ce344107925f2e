"""Anthropic OAuth: PKCE login, token refresh and the profile.

Nothing here prints. The login flow hands its authorize URL to a callback the CLI supplies and
reads pasted answers from a file descriptor the CLI passes in.

Refresh tokens are single-use and rotate, so spending one is the one dangerous act: every refresh
runs under the account's own lock, re-reads the store after taking it, and sends nothing when the
lineage moved on since the caller looked (another process refreshed it) or when the lineage is
lent to a tool's file.

A refresh either stores its answer or was never sent:

- before the request goes out, the room to keep the answer is reserved: a file the size of a
  store write in the store's directory (given back just before the store is written) and a
  rescue slot in the state directory (the answer goes there, in place, when the store cannot
  take it). When neither can be had (a full disk, read-only directories), nothing is sent;
- from just before the request until the answer is stored or rescued, SIGINT, SIGTERM and
  SIGHUP are held back (:func:`signals_held`): the signal takes effect once the answer is safe.
  Worker threads that refresh count too: the main thread's handler holds the signal until the
  last refresh in flight is stored.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import html
import json
import os
import queue
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

from acct.services.context import Ctx
from acct.base.endpoints import CLIENT_ID, MANUAL_REDIRECT_URI, OAUTH_BETA, SCOPES, Endpoints
from acct.base.errors import (
    AcctError,
    AuthError,
    CorruptFile,
    HeldByTarget,
    Interrupted,
    NeedsLogin,
    NetworkError,
    NotFound,
    ProtocolError,
    RateLimited,
    UsageError,
)
from acct.base.fsio import ensure_dir, file_lock, read_json_object, write_json
from acct.base.inputs import read_lines
from acct.base.models import PLAN_BY_ORG_TYPE, Account, Tokens
from acct.services.store import Accounts, name_from, validate_name

HTTP_TIMEOUT = 20.0
LOGIN_TIMEOUT = 300.0
DEFAULT_EXPIRES_IN = (
    3600  # assumed when a token answer names no lifetime: refresh early rather than late
)
from acct.services import prompt_state
_WAIT_SLICE = 0.25  # the login wait wakes this often, so Ctrl-C is seen at once
_HANDLER_TIMEOUT = 5.0  # a loopback connection that sends no request is dropped after this

# A refresh answer cut short may be lost after the server has rotated the lineage, so a refresh
# waits long for its answer, and longer still for the store lock once the answer is in hand.
REFRESH_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
STORE_WAIT = 120.0
# A forced refresh sends nothing when the stored tokens are this young: another process has
# just refreshed them, and a second refresh would only rotate the lineage under its feet.
RECENT_REFRESH = 60.0


class ClientRejected(AcctError):
    """The token endpoint refuses acct's client id (``invalid_client``): nothing is wrong with
    any account, and no refresh can work until that changes."""

    code = "invalid_client"


def _client_rejected() -> ClientRejected:
    return ClientRejected(
        "the token endpoint refuses acct's client id (invalid_client): no account can be "
        "refreshed or logged in until that changes; the accounts' logins are not affected "
        "and none was marked",
        hint="check that ACCT_TOKEN_URL (if set) is Anthropic's token endpoint; otherwise "
        "upgrade acct",
    )


class TokenRefused(AuthError):
    """The profile endpoint answered 401: the server does not accept this access token (it
    expired, or its login was revoked)."""

    code = "token_refused"


class ProfileForbidden(AuthError):
    """The profile endpoint answered 403: a token without ``user:profile`` (a setup token)."""

    code = "profile_forbidden"


# --- PKCE and the authorize URL ---------------------------------------------------------------


@dataclass(frozen=True)
class Pkce:
    verifier: str = field(repr=False)
    challenge: str


def new_pkce() -> Pkce:
    """A PKCE pair: a 64-character URL-safe verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    return Pkce(verifier, s256(verifier))


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    """The ``state`` value: random and separate from the PKCE verifier."""
    return secrets.token_urlsafe(32)


def authorize_url(
    endpoints: Endpoints,
    redirect_uri: str,
    challenge: str,
    state: str,
    login_hint: str | None = None,
) -> str:
    params = {
        "code": "true",
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": " ".join(SCOPES),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    if login_hint:
        params["login_hint"] = login_hint
    return f"{endpoints.authorize_url}?{urlencode(params)}"


# --- the token endpoint -----------------------------------------------------------------------


@dataclass(frozen=True)
class TokenAnswer:
    access: str = field(repr=False)
    refresh: str | None = field(repr=False)
    expires_at: int
    scopes: tuple[str, ...]
    account_uuid: str | None = None
    email: str | None = None
    org_uuid: str | None = None
    org_name: str | None = None
    obtained_at: int | None = None

    def tokens(self, previous: Tokens | None = None) -> Tokens:
        """The stored form; keeps the previous refresh token when the answer carries none, and
        the stored keys this acct does not know."""
        keep = previous.refresh if previous else None
        return Tokens(
            self.access,
            self.refresh or keep,
            self.expires_at,
            self.scopes,
            self.obtained_at,
            extra=previous.extra if previous else {},
        )


def _str(d: Any, key: str) -> str | None:
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, str) and v else None


def parse_token_answer(
    doc: Any, *, default_scopes: tuple[str, ...], now: float | None = None
) -> TokenAnswer:
    if not isinstance(doc, dict) or not _str(doc, "access_token"):
        raise ProtocolError("the token endpoint answered without an access token")
    expires_in = doc.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = DEFAULT_EXPIRES_IN
    scope = _str(doc, "scope")
    account, org = doc.get("account"), doc.get("organization")
    now = time.time() if now is None else now
    return TokenAnswer(
        access=doc["access_token"],
        refresh=_str(doc, "refresh_token"),
        expires_at=int(now + expires_in),
        scopes=tuple(scope.split()) if scope else default_scopes,
        account_uuid=_str(account, "uuid"),
        email=_str(account, "email_address"),
        org_uuid=_str(org, "uuid"),
        org_name=_str(org, "name"),
        obtained_at=int(now),
    )


def _oauth_error(response: Any) -> str | None:
    """The ``error`` code of an OAuth error answer, if it is one."""
    try:
        doc = response.json()
    except ValueError:
        return None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, str):
            return err
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return err["type"]
    return None


class _Unanswered(Exception):
    """The request may have reached the token endpoint, but no answer came back."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _post_token(ctx: Ctx, body: dict[str, str], *, timeout: float) -> Any:
    """POST a JSON grant to the token endpoint; the response (any status).

    Failures before anything was sent raise NetworkError (safe to retry). Once the request may
    have been sent, a timeout or a broken connection raises :class:`_Unanswered`: the server may
    have acted on it (for a refresh: rotated the lineage) and only its answer was lost.
    """
    import httpx

    unsent = (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.ProxyError,
        httpx.UnsupportedProtocol,
        httpx.LocalProtocolError,
    )
    try:
        with ctx.http(timeout=timeout) as client:
            return client.post(
                ctx.endpoints.token_url, json=body, headers={"accept": "application/json"}
            )
    except unsent as e:
        raise NetworkError(
            f"cannot reach the token endpoint ({type(e).__name__}); nothing was sent",
            hint="try again later",
        ) from None
    except httpx.ReadTimeout:
        raise _Unanswered(f"the token endpoint did not answer within {timeout:g}s") from None
    except httpx.HTTPError as e:
        raise _Unanswered(
            f"the connection to the token endpoint broke before its answer ({type(e).__name__})"
        ) from None


def _transient(response: Any, what: str) -> AcctError | None:
    """5xx and 429 answers: worth retrying later, nothing is wrong with the account."""
    if response.status_code == 429:
        retry = response.headers.get("retry-after")
        try:
            after = float(retry) if retry is not None else None
        except ValueError:
            after = None
        return RateLimited(
            f"{what} is rate-limited (429)", retry_after=after, hint="try again later"
        )
    if response.status_code >= 500:
        return NetworkError(f"{what} answered {response.status_code}", hint="try again later")
    return None


def _json(response: Any, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(
            f"{what} answered {response.status_code} with something that is not JSON"
        ) from None


def exchange_code(
    ctx: Ctx,
    code: str,
    state: str,
    verifier: str,
    redirect_uri: str,
    *,
    timeout: float = HTTP_TIMEOUT,
) -> TokenAnswer:
    """Trade an authorization code for the first tokens of a new lineage."""
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "state": state,
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    try:
        response = _post_token(ctx, body, timeout=timeout)
    except _Unanswered as e:
        raise NetworkError(
            f"{e.detail}: the login code may be spent; nothing was stored",
            hint="run `acct login` again",
        ) from None
    failure = _transient(response, "the token endpoint")
    if failure:
        raise failure
    if response.status_code != 200:
        error = _oauth_error(response) or f"status {response.status_code}"
        if error == "invalid_client":
            raise _client_rejected()
        raise AuthError(
            f"the login code was refused ({error}): it may have expired or been used already; nothing was stored",
            hint="run `acct login` again",
        )
    return parse_token_answer(_json(response, "the token endpoint"), default_scopes=SCOPES)


# --- the profile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    uuid: str | None
    email: str | None
    display_name: str | None
    org_uuid: str | None
    org_name: str | None
    organization_type: str | None
    plan: str | None
    tier: str | None


def parse_profile(doc: Any) -> Profile:
    if not isinstance(doc, dict):
        raise ProtocolError("the profile endpoint answered something that is not an object")
    account, org = doc.get("account"), doc.get("organization")
    org_type = _str(org, "organization_type")
    return Profile(
        uuid=_str(account, "uuid"),
        email=_str(account, "email") or _str(account, "email_address"),
        display_name=_str(account, "display_name"),
        org_uuid=_str(org, "uuid"),
        org_name=_str(org, "name"),
        organization_type=org_type,
        plan=PLAN_BY_ORG_TYPE.get(org_type, org_type) if org_type else None,
        tier=_str(org, "rate_limit_tier"),
    )


def fetch_profile(ctx: Ctx, access: str, *, timeout: float = HTTP_TIMEOUT) -> Profile:
    """Who an access token belongs to. 403 (setup tokens) raises :class:`ProfileForbidden`."""
    import httpx

    headers = {
        "authorization": f"Bearer {access}",
        "anthropic-beta": OAUTH_BETA,
        "accept": "application/json",
    }
    try:
        with ctx.http(timeout=timeout) as client:
            response = client.get(ctx.endpoints.profile_url, headers=headers)
    except httpx.TimeoutException:
        raise NetworkError(f"the profile endpoint did not answer within {timeout:g}s") from None
    except httpx.HTTPError as e:
        raise NetworkError(f"cannot reach the profile endpoint: {type(e).__name__}") from None
    failure = _transient(response, "the profile endpoint")
    if failure:
        raise failure
    if response.status_code == 403:
        raise ProfileForbidden(
            "the profile endpoint refused this token (403; a setup token has no profile scope)"
        )
    if response.status_code == 401:
        raise TokenRefused("the profile endpoint refused this access token (401)")
    if response.status_code != 200:
        raise ProtocolError(f"the profile endpoint answered {response.status_code}")
    return parse_profile(_json(response, "the profile endpoint"))


# --- refresh ----------------------------------------------------------------------------------


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
) -> Account:
    """Refresh the account's tokens unless they are fresh for ``margin`` seconds (or ``force``).

    ``seen`` is the lineage fingerprint the caller looked at (default: the store now). When the
    store holds another one once the lock is taken, someone else refreshed meanwhile and nothing is sent.
    """
    return refresh_result(
        ctx, account_id, force=force, margin=margin, seen=seen, timeout=timeout
    ).account


def ensure_fresh(
    ctx: Ctx, account_id: str, margin: float, *, timeout: float = REFRESH_TIMEOUT
) -> Account:
    """The account with an access token good for at least ``margin`` seconds."""
    return refresh(ctx, account_id, margin=margin, timeout=timeout)


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
) -> RefreshResult:
    """:func:`refresh`, also saying whether a request was sent.

    ``since`` is when the caller began (default: now). A forced refresh sends nothing when the
    stored tokens were obtained after it, or within the last :data:`RECENT_REFRESH` seconds:
    processes started one after another must not each spend the lineage once.
    """
    since = time.time() if since is None else since
    margin = ctx.config.refresh_margin if margin is None else margin
    if seen is None:
        before = _load(ctx, account_id)
        seen = before.tokens.lineage_fingerprint if before.tokens else None
    with file_lock(
        ctx.paths.account_lock(account_id), timeout=_lock_wait(timeout), what="the account"
    ):
        acc = _load(ctx, account_id)
        rescued = _adopt_rescued(ctx, acc)
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
        with _spending(), _Room(ctx, acc) as room:
            answer = _counted_refresh(ctx, acc, tokens, timeout=timeout)
            return RefreshResult(_keep_refreshed(ctx, acc, tokens, answer, room), sent=True)


def _counted_refresh(ctx: Ctx, acc: Account, tokens: Tokens, *, timeout: float) -> TokenAnswer:
    """:func:`_send_refresh`, counted by result for the metrics (``needs_login``: invalid_grant)."""
    from acct.services import events

    try:
        answer = _send_refresh(ctx, acc, tokens, timeout=timeout)
    except AcctError as e:
        events.count(ctx, "token_refreshes", account_id=acc.id, result=e.code)
        if isinstance(e, NeedsLogin):
            events.emit(ctx, "login_died", account_id=acc.id)
        raise
    events.count(ctx, "token_refreshes", account_id=acc.id, result="ok")
    return answer


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


def _send_refresh(ctx: Ctx, acc: Account, tokens: Tokens, *, timeout: float) -> TokenAnswer:
    assert tokens.refresh
    response = _post_refresh(
        ctx, acc, _refresh_body(tokens.refresh, tokens.scopes), timeout=timeout
    )
    if response.status_code == 400 and tokens.scopes and _oauth_error(response) == "invalid_scope":
        # Some servers refuse `scope` on refresh; such a refusal spends nothing, so ask once without it.
        response = _post_refresh(ctx, acc, _refresh_body(tokens.refresh, ()), timeout=timeout)
    failure = _transient(response, "the token endpoint")
    if failure:
        raise failure
    if response.status_code != 200:
        error = _oauth_error(response)
        if error == "invalid_grant" and response.status_code in (400, 401):
            _mark_needs_login(ctx, acc.id, tokens)
            raise NeedsLogin(
                f"account {acc.name!r} was signed out: its refresh token is no longer valid",
                hint=f"acct login {acc.name}",
            )
        if error == "invalid_client":
            raise _client_rejected()
        raise ProtocolError(
            f"the token endpoint refused the refresh ({error or response.status_code})"
        )
    return parse_token_answer(_json(response, "the token endpoint"), default_scopes=tokens.scopes)


def _mark_needs_login(ctx: Ctx, account_id: str, spent: Tokens) -> None:
    with ctx.store.transaction() as accounts:
        acc = accounts.by_id(account_id)
        if (
            acc is not None
            and acc.tokens
            and acc.tokens.lineage_fingerprint == spent.lineage_fingerprint
        ):
            accounts.put(acc.copy(needs_login=True))


def _store_refreshed(ctx: Ctx, seen: Account, spent: Tokens, answer: TokenAnswer) -> Account:
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
    return ctx.paths.state_dir / "rescued" / f"{account_id}.json"


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
        },
    }


def _keep_refreshed(
    ctx: Ctx, seen: Account, spent: Tokens, answer: TokenAnswer, room: _Room | None = None
) -> Account:
    """Store the answer; when that fails, never drop it: write it to the rescue file and say so."""
    if room is not None:
        room.give_back_store()
    try:
        return _store_refreshed(ctx, seen, spent, answer)
    except NotFound:
        raise
    except AcctError as e:
        problem = e.message
    path = rescue_path(ctx, seen.id)
    doc = _rescue_doc(seen, spent, answer.tokens(spent))
    try:
        if room is None or not room.rescue(path, doc):
            write_json(path, doc)
    except AcctError as e:
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
        rescue_dir = rescue_path(self.ctx, self.acc.id).parent
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
        """Write ``doc`` into the reserved slot and move it to ``path``; False without a slot."""
        if self.slot is None:
            return False
        fd, slot = self.slot
        data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
            os.replace(slot, path)
        except OSError as e:
            raise AcctError(f"cannot write {path}: {_problem(e)}") from None
        self.slot = None
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


def _adopt_rescued(ctx: Ctx, acc: Account) -> Account | None:
    """Store the tokens of an earlier refresh the store could not take, when they continue the
    stored lineage. The rescue file goes once they are stored; one that belongs to an older
    lineage (a login replaced it) is left for the user to look at."""
    path = rescue_path(ctx, acc.id)
    if not path.exists():
        return None
    doc = read_json_object(path, what="rescued refresh answer") or {}
    rescued = _rescued_tokens(doc, path)
    stored = acc.tokens
    if stored is not None and rescued.lineage_fingerprint == stored.lineage_fingerprint:
        path.unlink(missing_ok=True)  # stored already
        return None
    if acc.holder is not None or stored is None:
        return None
    if doc.get("spent_lineage") != stored.lineage_fingerprint:
        return None
    with ctx.store.transaction(timeout=STORE_WAIT) as accounts:
        current = accounts.by_id(acc.id)
        if current is None or current.tokens != stored:
            return None
        updated = current.copy(tokens=rescued, needs_login=False)
        accounts.put(updated)
    path.unlink(missing_ok=True)
    return updated


def _rescued_tokens(doc: dict[str, Any], path: Path) -> Tokens:
    t = doc.get("tokens")
    t = t if isinstance(t, dict) else {}
    access, refresh, expires = t.get("access"), t.get("refresh"), t.get("expires_at")
    scopes, obtained = t.get("scopes"), t.get("obtained_at")
    if (
        not isinstance(access, str)
        or not isinstance(refresh, str | None)
        or not isinstance(expires, int)
        or not isinstance(scopes, list)
        or not isinstance(obtained, int | None)
    ):
        raise CorruptFile(
            f"rescued refresh answer {path} is not one acct wrote; acct leaves it untouched",
            hint=f"move {path} aside",
        )
    return Tokens(access, refresh, expires, tuple(str(x) for x in scopes), obtained)


def refresh_unstored(
    ctx: Ctx, tokens: Tokens, *, what: str, timeout: float = REFRESH_TIMEOUT
) -> TokenAnswer:
    """Spend the refresh token of a lineage the store does not hold, and return the answer.

    For a tool's file refreshed in place under the tool's own lock, as the tool itself would
    (``acct import`` of a login whose access token expired): the caller writes the rotated pair
    back into that file. ``what`` names the login in errors. Nothing in the store changes;
    :class:`NeedsLogin` when the lineage is dead, :class:`RefreshUnanswered` when the answer
    was lost.
    """
    if not tokens.refresh:
        raise NeedsLogin(f"{what} has no refresh token", hint="log in again")
    return _send_refresh(ctx, Account(name=what, id=""), tokens, timeout=timeout)


# --- refreshes in flight ------------------------------------------------------------------------

_flight = threading.Condition()
_in_flight = 0
_closing = False
# Signals held back while a refresh is in flight, and the handlers they go to afterwards.
HELD_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_pending: list[int] = []
_previous: dict[int, Any] = {}
_holding = 0  # nesting depth of signals_held() in the main thread


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _deliver(signum: int, frame: Any = None) -> None:
    """What the signal would have done without acct holding it: the handler it replaced (Ctrl-C
    raises KeyboardInterrupt); a signal that would end the process raises SystemExit(128+N) so
    cleanup code still runs."""
    previous = _previous.get(signum, signal.getsignal(signum))
    if previous is _on_signal:
        previous = signal.SIG_DFL
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _on_signal(signum: int, frame: Any) -> None:
    if _in_flight > 0:
        _pending.append(signum)  # acted on once the last refresh in flight is stored
        return
    _deliver(signum, frame)


def _take_pending() -> list[int]:
    taken = list(dict.fromkeys(_pending))
    _pending.clear()
    return taken


def _act_on_pending() -> None:
    """The last refresh in flight is stored: the signals held back take effect now (in the
    main thread, which is where Python runs signal handlers)."""
    pending = _take_pending()
    if not _main_thread():
        for sig in pending:
            with contextlib.suppress(OSError):
                os.kill(os.getpid(), sig)
        return
    for sig in pending:
        _deliver(sig)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back while a refresh of this process is in flight.

    Installs the handler in the main thread (a no-op elsewhere: only the main thread can, and
    it is the one that receives signals). Outside a refresh a signal acts at once, as before;
    during one it waits until the answer is stored or rescued. Wrap code that refreshes on
    worker threads (a usage poll) in it; :func:`_spending` wraps the main thread's own.
    """
    global _holding
    if not _main_thread():
        yield
        return
    if _holding == 0:
        for sig in HELD_SIGNALS:
            try:
                _previous[sig] = signal.signal(sig, _on_signal)
            except (ValueError, OSError):
                pass
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
        if _holding == 0:
            for num, old in list(_previous.items()):
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(num, old if old is not None else signal.SIG_DFL)
            try:
                if _in_flight == 0 and _pending:
                    _act_on_pending()
            finally:
                _previous.clear()


@contextlib.contextmanager
def _spending() -> Iterator[None]:
    """Mark a refresh between sending and storing: signals wait for it, and an interrupted
    process lets it finish (:func:`finish_refreshes`)."""
    global _in_flight
    with signals_held():
        with _flight:
            if _closing or _pending:
                raise Interrupted("interrupted before refreshing; nothing was sent")
            _in_flight += 1
        try:
            yield
        finally:
            with _flight:
                _in_flight -= 1
                _flight.notify_all()
                last = _in_flight == 0
            if last and _pending:
                _act_on_pending()


def refresh_in_flight() -> contextlib.AbstractContextManager[None]:
    """For a refresh made outside this module whose answer goes to a tool's file (``acct
    import`` renewing a login in place): signals wait until it is written."""
    return _spending()


def finish_refreshes(timeout: float) -> bool:
    """Start no new refresh in this process and wait for those in flight to be stored.

    Called when the process is about to end early (Ctrl-C) while worker threads may be
    refreshing: a refresh cut off between the server's answer and the store loses the lineage.
    Returns False when some are still running after ``timeout`` seconds.
    """
    global _closing
    with _flight:
        _closing = True
        return _flight.wait_for(lambda: _in_flight == 0, timeout=timeout)


# --- the login flow ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeAnswer:
    code: str = field(repr=False)
    state: str | None  # None: the paste carried no state, so it cannot be checked


def parse_pasted(text: str) -> CodeAnswer | None:
    """``CODE#STATE`` or a full redirect URL (``...?code=..&state=..``); None when no code.

    A code without its state comes back with ``state=None``: the caller refuses it, since the
    state is what ties the answer to this login attempt.
    """
    text = text.strip()
    if not text:
        return None
    if "://" in text or text.startswith(("/", "?")):
        query = parse_qs(urlsplit(text).query)
        code = (query.get("code") or [""])[0]
        if not code:
            return None
        states = query.get("state")
        return CodeAnswer(code, states[0] if states else None)
    code, sep, state = text.partition("#")
    if not code.strip():
        return None
    return CodeAnswer(code.strip(), state.strip() if sep and state.strip() else None)


def printable(text: str, limit: int = 100) -> str:
    """``text`` without control characters (they could rewrite the terminal), cut to ``limit``."""
    clean = "".join(c for c in text if c.isprintable())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>acct</title></head>
<body style="font-family: sans-serif; margin: 3em"><p>{message}</p></body></html>
"""


class _CallbackServer(ThreadingHTTPServer):
    """The loopback redirect target; each answer goes into the flow's event queue.

    One thread per connection, none waited for at the end: browsers open idle speculative
    connections to localhost, and one of them must neither block the real callback nor keep
    the login from ending (on time-out or Ctrl-C).
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, events: queue.Queue[tuple[str, Any]], state: str) -> None:
        self.events = events
        self.expected_state = state
        super().__init__(("127.0.0.1", 0), _CallbackHandler)

    @property
    def redirect_uri(self) -> str:
        return f"http://localhost:{self.server_address[1]}/callback"


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = _HANDLER_TIMEOUT  # socket timeout: a silent connection is dropped

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the default writes every request to stderr."""

    def _page(self, status: int, message: str) -> None:
        body = _PAGE.format(message=html.escape(message)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/callback":
            self._page(404, "acct: not found")
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if query.get("state") != self.server.expected_state:
            # Not an answer to this login (another attempt, or some other local program):
            # ignore it and keep waiting for the real one.
            self._page(
                400,
                "acct: this answer belongs to another login attempt and was ignored. "
                "Nothing was stored.",
            )
            return
        if "error" in query:
            error = printable(query["error"])
            self._page(400, f"acct: login failed ({error}). You can close this tab.")
            self.server.events.put(("denied", error))
            return
        if not query.get("code"):
            self._page(400, "acct: this address expects a login answer (no code).")
            return
        self._page(200, "acct: login complete, you can close this tab")
        self.server.events.put(("code", CodeAnswer(query["code"], query["state"])))


@contextlib.contextmanager
def _callback_server(events: queue.Queue[tuple[str, Any]], state: str) -> Iterator[_CallbackServer]:
    server = _CallbackServer(events, state)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _read_lines(fd: int, events: queue.Queue[tuple[str, Any]]) -> None:
    """Feed each line read from ``fd`` into ``events`` (bounded: see ``inputs.read_lines``)."""
    for line in read_lines(fd):
        if line.strip():
            events.put(("paste", line.decode("utf-8", "replace")))
    events.put(("eof", None))


@dataclass(frozen=True)
class LoginPrompt:
    """What the user must be shown: the URL to open, and whether a paste is the only way back."""

    url: str
    redirect_uri: str
    manual: bool


def _wait_for_code(
    events: queue.Queue[tuple[str, Any]],
    state: str,
    *,
    timeout: float,
    manual: bool,
    on_bad_paste: Callable[[], None],
) -> CodeAnswer:
    """The first answer to this login: a callback with our state, or a paste of CODE#STATE.

    A paste that is not this login's CODE#STATE (no state, another attempt's state, not a code
    at all) is a slip of the clipboard: ``on_bad_paste`` is told and the wait goes on.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AcctError(
                f"no login answer within {timeout:g}s; nothing was stored",
                hint="run `acct login` again (with --manual, paste the code the page shows)",
            )
        try:
            kind, value = events.get(timeout=min(left, _WAIT_SLICE))
        except queue.Empty:
            continue
        if kind == "eof":
            if manual:
                raise UsageError(
                    "no code was pasted (input ended); nothing was stored",
                    hint="run `acct login --manual` again",
                )
            continue
        if kind == "denied":
            raise AuthError(f"the login was not approved ({value}); nothing was stored")
        if kind == "paste":
            value = parse_pasted(value)
            if value is None or value.state != state:
                on_bad_paste()
                continue
        return value  # a callback's state was checked by the callback server


@dataclass(frozen=True)
class LoginResult:
    account: Account
    created: bool
    notes: tuple[str, ...] = ()  # things the user should hear about (degraded profile, renames)


def login_flow(
    ctx: Ctx,
    *,
    name: str | None = None,
    manual: bool = False,
    timeout: float = LOGIN_TIMEOUT,
    paste_fd: int | None = None,
    on_prompt: Callable[[LoginPrompt], None] = lambda prompt: None,
    on_bad_paste: Callable[[], None] = lambda: None,
    login_hint: str | None = None,
) -> LoginResult:
    """Log in through the browser: loopback callback or a pasted answer, whichever comes first.

    ``manual`` uses the manual redirect page and waits for a paste only. A paste that is not this
    login's CODE#STATE calls ``on_bad_paste`` and the wait goes on until ``timeout``; a right one
    whose exchange fails ends the login. Nothing is stored unless the whole flow succeeds.
    """
    if name is not None:
        validate_name(name)
    # A store acct cannot read or write would refuse the login at the end: say so before the
    # user goes through the browser.
    ctx.store.read()
    ensure_dir(ctx.paths.accounts_file.parent)
    pkce, state = new_pkce(), new_state()
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    if paste_fd is not None:
        threading.Thread(target=_read_lines, args=(paste_fd, events), daemon=True).start()
    elif manual:
        raise UsageError("--manual needs an input to paste the code into")
    with contextlib.ExitStack() as stack:
        if manual:
            redirect_uri = MANUAL_REDIRECT_URI
        else:
            redirect_uri = stack.enter_context(_callback_server(events, state)).redirect_uri
        url = authorize_url(ctx.endpoints, redirect_uri, pkce.challenge, state, login_hint)
        on_prompt(LoginPrompt(url, redirect_uri, manual))
        answer = _wait_for_code(
            events, state, timeout=timeout, manual=manual, on_bad_paste=on_bad_paste
        )
    tokens = exchange_code(ctx, answer.code, state, pkce.verifier, redirect_uri)
    return store_login(ctx, tokens, name=name)


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
        file_lock(ctx.paths.account_lock(existing.id), what="the account")
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


# --- API keys ---------------------------------------------------------------------------------

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
