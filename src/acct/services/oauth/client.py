"""Anthropic's OAuth endpoints as a client: PKCE and the authorize URL, the token endpoint (code
exchange), the profile. Nothing here stores anything or spends a refresh token."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from acct.base import wire
from acct.base.endpoints import CLIENT_ID, OAUTH_BETA, SCOPES, Endpoints
from acct.base.errors import (
    AcctError,
    AuthError,
    NetworkError,
    ProtocolError,
)
from acct.base.models import PLAN_BY_ORG_TYPE, Tokens
from acct.services.answers import json_of, transient
from acct.services.context import Ctx

HTTP_TIMEOUT = 20.0
DEFAULT_EXPIRES_IN = (
    3600  # assumed when a token answer names no lifetime: refresh early rather than late
)


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
        kind = err.get("type") if isinstance(err, dict) else None
        if isinstance(kind, str):
            return kind
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
                ctx.endpoints.token_url,
                json=body,
                headers={"accept": "application/json"},
                extensions={"trace": wire.trace},  # a refresh in flight is recorded on the wire
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
    failure = transient(response, "the token endpoint")
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
    return parse_token_answer(json_of(response, "the token endpoint"), default_scopes=SCOPES)


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
    failure = transient(response, "the profile endpoint")
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
    return parse_profile(json_of(response, "the profile endpoint"))
