"""Anthropic OAuth: PKCE login, token refresh and the profile (FACTS: Anthropic OAuth).

Nothing here prints. The login flow hands its authorize URL to a callback the CLI supplies and
reads pasted answers from a file descriptor the CLI passes in.

Refresh tokens are single-use and rotate, so spending one is the one dangerous act: every refresh
runs under the account's own lock, re-reads the store after taking it, and sends nothing when the
lineage moved on since the caller looked (another process refreshed it) or when the lineage is
lent to a tool's file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from acct.context import Ctx
from acct.endpoints import CLIENT_ID, MANUAL_REDIRECT_URI, OAUTH_BETA, SCOPES, Endpoints
from acct.errors import (
    AcctError,
    AuthError,
    HeldByTarget,
    NeedsLogin,
    NetworkError,
    NotFound,
    ProtocolError,
    RateLimited,
    UsageError,
)
from acct.fsio import file_lock
from acct.models import PLAN_BY_ORG_TYPE, Account, Tokens
from acct.store import Accounts, validate_name

HTTP_TIMEOUT = 20.0
LOGIN_TIMEOUT = 300.0
DEFAULT_EXPIRES_IN = (
    3600  # assumed when a token answer names no lifetime: refresh early rather than late
)
_WAIT_SLICE = 0.25  # the login wait wakes this often, so Ctrl-C is seen at once


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

    def tokens(self, previous: Tokens | None = None) -> Tokens:
        """The stored form; keeps the previous refresh token when the answer carries none."""
        keep = previous.refresh if previous else None
        return Tokens(self.access, self.refresh or keep, self.expires_at, self.scopes)


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
    return TokenAnswer(
        access=doc["access_token"],
        refresh=_str(doc, "refresh_token"),
        expires_at=int((time.time() if now is None else now) + expires_in),
        scopes=tuple(scope.split()) if scope else default_scopes,
        account_uuid=_str(account, "uuid"),
        email=_str(account, "email_address"),
        org_uuid=_str(org, "uuid"),
        org_name=_str(org, "name"),
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


def _post_token(ctx: Ctx, body: dict[str, str], *, timeout: float) -> Any:
    """POST a JSON grant to the token endpoint; the response (any status) or NetworkError."""
    import httpx

    try:
        with ctx.http(timeout=timeout) as client:
            return client.post(
                ctx.endpoints.token_url, json=body, headers={"accept": "application/json"}
            )
    except httpx.TimeoutException:
        raise NetworkError(
            f"the token endpoint did not answer within {timeout:g}s", hint="try again later"
        ) from None
    except httpx.HTTPError as e:
        raise NetworkError(
            f"cannot reach the token endpoint: {type(e).__name__}", hint="try again later"
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
    response = _post_token(ctx, body, timeout=timeout)
    failure = _transient(response, "the token endpoint")
    if failure:
        raise failure
    if response.status_code != 200:
        error = _oauth_error(response) or f"status {response.status_code}"
        if error == "invalid_client":
            raise AuthError("the token endpoint does not accept acct's client id (invalid_client)")
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
        raise AuthError("the profile endpoint refused this access token (401)")
    if response.status_code != 200:
        raise ProtocolError(f"the profile endpoint answered {response.status_code}")
    return parse_profile(_json(response, "the profile endpoint"))


# --- refresh ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshResult:
    account: Account
    sent: bool  # False: nothing was sent (still fresh, or another process refreshed it first)


def _load(ctx: Ctx, account_id: str) -> Account:
    acc = ctx.store.read().by_id(account_id)
    if acc is None:
        raise NotFound(f"no account with id {account_id}", hint="run `acct list`")
    return acc


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
    timeout: float = HTTP_TIMEOUT,
) -> Account:
    """Refresh the account's tokens unless they are fresh for ``margin`` seconds (or ``force``).

    ``seen`` is the lineage fingerprint the caller looked at (default: the store now). When the
    store holds another one once the lock is taken, someone else refreshed meanwhile and nothing is sent.
    """
    return refresh_result(
        ctx, account_id, force=force, margin=margin, seen=seen, timeout=timeout
    ).account


def ensure_fresh(
    ctx: Ctx, account_id: str, margin: float, *, timeout: float = HTTP_TIMEOUT
) -> Account:
    """The account with an access token good for at least ``margin`` seconds."""
    return refresh(ctx, account_id, margin=margin, timeout=timeout)


def refresh_result(
    ctx: Ctx,
    account_id: str,
    *,
    force: bool = False,
    margin: float | None = None,
    seen: str | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> RefreshResult:
    """:func:`refresh`, also saying whether a request was sent."""
    margin = ctx.config.refresh_margin if margin is None else margin
    if seen is None:
        before = _load(ctx, account_id)
        seen = before.tokens.lineage_fingerprint if before.tokens else None
    lock_wait = timeout + 30.0  # the holder may be waiting for a slow token endpoint
    with file_lock(ctx.paths.account_lock(account_id), timeout=lock_wait, what="the account"):
        acc = _load(ctx, account_id)
        tokens = _check_refreshable(acc)
        if tokens.lineage_fingerprint != seen:
            return RefreshResult(acc, sent=False)
        if not force and tokens.fresh_for(margin):
            return RefreshResult(acc, sent=False)
        if not tokens.refresh:
            raise NeedsLogin(
                f"account {acc.name!r} has no refresh token (a setup token?) and its access token "
                + ("is being replaced" if force else "is about to expire"),
                hint=f"acct login {acc.name}",
            )
        answer = _send_refresh(ctx, acc, tokens, timeout=timeout)
        return RefreshResult(_store_refreshed(ctx, acc, tokens, answer), sent=True)


def _refresh_body(refresh_token: str, scopes: tuple[str, ...]) -> dict[str, str]:
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    if scopes:
        body["scope"] = " ".join(scopes)
    return body


def _send_refresh(ctx: Ctx, acc: Account, tokens: Tokens, *, timeout: float) -> TokenAnswer:
    assert tokens.refresh
    response = _post_token(ctx, _refresh_body(tokens.refresh, tokens.scopes), timeout=timeout)
    if response.status_code == 400 and tokens.scopes and _oauth_error(response) == "invalid_scope":
        # Some servers refuse `scope` on refresh; such a refusal spends nothing, so ask once without it.
        response = _post_token(ctx, _refresh_body(tokens.refresh, ()), timeout=timeout)
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
            raise AuthError(
                "the token endpoint does not accept acct's client id (invalid_client); "
                "this is systemic and affects every account",
                hint="upgrade acct",
            )
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
    with ctx.store.transaction() as accounts:
        acc = accounts.by_id(seen.id)
        if acc is None:
            raise NotFound(f"account {seen.name!r} was removed while it was being refreshed")
        if acc.tokens is None or acc.tokens.lineage_fingerprint != spent.lineage_fingerprint:
            # A new login replaced the lineage meanwhile; it wins, the refreshed one is dropped.
            return acc
        updated = acc.copy(tokens=answer.tokens(spent), needs_login=False)
        accounts.put(updated)
        return updated


# --- the login flow ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeAnswer:
    code: str = field(repr=False)
    state: str


def parse_pasted(text: str, our_state: str) -> CodeAnswer | None:
    """``CODE#STATE``, a full redirect URL (``...?code=..&state=..``) or a bare code."""
    text = text.strip()
    if not text:
        return None
    if "://" in text or text.startswith(("/", "?")):
        query = parse_qs(urlsplit(text).query)
        code = (query.get("code") or [""])[0]
        if not code:
            return None
        return CodeAnswer(code, (query.get("state") or [our_state])[0])
    code, sep, state = text.partition("#")
    return CodeAnswer(code.strip(), state.strip() if sep else our_state) if code.strip() else None


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>acct</title></head>
<body style="font-family: sans-serif; margin: 3em"><p>{message}</p></body></html>
"""


class _CallbackServer(HTTPServer):
    """The loopback redirect target; each answer goes into the flow's event queue."""

    def __init__(self, events: queue.Queue[tuple[str, Any]], state: str) -> None:
        self.events = events
        self.expected_state = state
        super().__init__(("127.0.0.1", 0), _CallbackHandler)

    @property
    def redirect_uri(self) -> str:
        return f"http://localhost:{self.server_address[1]}/callback"


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer

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
        if "error" in query:
            self._page(400, f"acct: login failed ({query['error']}). You can close this tab.")
            self.server.events.put(("denied", query["error"]))
            return
        if not query.get("code"):
            self._page(400, "acct: this address expects a login answer (no code).")
            return
        if query.get("state") != self.server.expected_state:
            self._page(
                400,
                "acct: login refused: this answer belongs to another login. Nothing was stored.",
            )
            self.server.events.put(("bad_state", None))
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
    """Feed each line read from ``fd`` into ``events``; raw reads, so no buffer lock outlives us."""
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            if pending.strip():
                events.put(("paste", pending.decode("utf-8", "replace")))
            events.put(("eof", None))
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                events.put(("paste", line.decode("utf-8", "replace")))


@dataclass(frozen=True)
class LoginPrompt:
    """What the user must be shown: the URL to open, and whether a paste is the only way back."""

    url: str
    redirect_uri: str
    manual: bool


def _wait_for_code(
    events: queue.Queue[tuple[str, Any]], state: str, *, timeout: float, manual: bool
) -> CodeAnswer:
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
            value = parse_pasted(value, state)
            if value is None:
                raise UsageError(
                    "that is not a login code: paste CODE#STATE or the whole redirect URL; nothing was stored"
                )
        if kind == "bad_state" or value.state != state:
            raise AuthError(
                "login refused: the answer belongs to another login attempt (state mismatch); nothing was stored",
                hint="run `acct login` again",
            )
        return value


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
    login_hint: str | None = None,
) -> LoginResult:
    """Log in through the browser: loopback callback or a pasted answer, whichever comes first.

    ``manual`` uses the manual redirect page and waits for a paste only. Nothing is stored unless
    the whole flow succeeds.
    """
    if name is not None:
        validate_name(name)
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
        answer = _wait_for_code(events, state, timeout=timeout, manual=manual)
    tokens = exchange_code(ctx, answer.code, answer.state, pkce.verifier, redirect_uri)
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
    uuid = profile.uuid or answer.account_uuid
    wanted = name or profile.email or answer.email or (uuid or "account")[:8]
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
    with contextlib.suppress(Exception):
        from acct import prompt_state

        prompt_state.update(ctx)


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
