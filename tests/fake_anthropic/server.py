"""A fake Anthropic API on loopback: OAuth, usage, profile and /v1/messages.

Standard library only, so it runs as ``python -m tests.fake_anthropic --port 0`` or as
``python tests/fake_anthropic/server.py --port 0``. On start it prints ``PORT <n>`` on
stdout, then serves until killed. Everything else is configured at run time through the
``/_admin/*`` endpoints (JSON in, JSON out).

Public endpoints (formats as measured against the real service):

``GET /oauth/authorize`` (alias ``/cai/oauth/authorize``)
    Checks the Claude Code authorize parameters, approves as the account chosen by
    ``/_admin/next-login`` (else the account whose email equals ``login_hint``, else the
    first account) and mints a one-time code. The manual redirect URI answers 200 with
    ``CODE#STATE`` on its own line (and in ``X-Fake-Code``); a loopback redirect URI
    answers 302 to ``<redirect_uri>?code=CODE&state=STATE``.
``POST /v1/oauth/token``
    ``authorization_code`` (PKCE S256) and ``refresh_token`` grants. Refresh tokens are
    single-use and rotate; presenting a spent one revokes its whole lineage.
``GET /api/oauth/usage``, ``GET /api/oauth/profile``
    Bearer access token plus ``anthropic-beta: oauth-2025-04-20``. Usage is throttled per
    account (``usage_limit`` answers per trailing ``usage_window_s``).
``POST /v1/messages`` (``?beta=true`` too), ``POST /v1/messages/count_tokens``
    Per-account behaviour: ok / quota / throttle / unauthorized / overage, with the
    ``anthropic-ratelimit-unified-*`` headers.

Admin endpoints: ``/_admin/accounts``, ``mint``, ``api-key``, ``config``, ``usage``,
``messages``, ``next-login``, ``authorize-code``, ``log``, ``stats``, ``lineage``, ``issued``,
``reset-log``, ``reset-throttle``, ``revoke``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import gzip
import hashlib
import importlib.util
import json
import os
import random
import re
import secrets
import sys
import threading
import time
import uuid as uuidlib
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
MANUAL_REDIRECT_URI = "https://platform.claude.com/oauth/code/callback"
OAUTH_BETA = "oauth-2025-04-20"
CLAUDE_CODE_SCOPES: tuple[str, ...] = (
    "org:create_api_key",
    "user:profile",
    "user:inference",
    "user:sessions:claude_code",
    "user:mcp_servers",
    "user:file_upload",
)
ORGANIZATION_TYPES = ("claude_max", "claude_pro", "claude_team", "claude_enterprise")
DEFAULT_TIERS = {
    "claude_max": "default_claude_max_20x",
    "claude_pro": "default_claude_ai",
    "claude_team": "default_claude_team",
    "claude_enterprise": "default_claude_enterprise",
}
DEFAULT_MODEL = "claude-sonnet-4-5"
MESSAGE_MODES = ("ok", "quota", "throttle", "unauthorized", "overage")
USAGE_VARIANTS = ("full", "limits_only", "nulls")

INVALID_BEARER = "Invalid bearer token"
EXPIRED_BEARER = (
    "OAuth token has expired. Please obtain a new token or refresh your existing token."
)
QUOTA_MESSAGE = "This request would exceed your account's rate limit. Please try again later."
THROTTLE_MESSAGE = "Server is temporarily limiting requests"

# Run-time settings, changed through POST /_admin/config.
DEFAULT_CONFIG: dict[str, Any] = {
    "expires_in": 28800,  # lifetime of access tokens from the token endpoint, seconds
    "token_fail_status": None,  # answer token requests with this status (e.g. 500, 503)
    "token_fail_times": None,  # ...only this many times (None: while the status is set)
    "token_delay_ms": 0,  # sleep before answering a token request (state already changed)
    "token_hangup_times": 0,  # act on this many token requests, then hang up without an answer
    "token_invalid_client": False,  # answer every token request 401 invalid_client
    "omit_refresh_token": False,  # refresh answers carry no refresh_token; the old one stays live
    "reject_refresh_scope": False,  # answer invalid_scope to any refresh that sends `scope`
    "code_ttl_s": 600,  # lifetime of authorization codes
    "usage_latency_ms": 0,  # sleep before answering a usage request
    "usage_fail_status": None,  # answer usage requests with this status (e.g. 500, 503)
    "usage_fail_times": None,  # ...only this many times (None: while the status is set)
    "usage_limit": 30,  # usage answers allowed per account per trailing window
    "usage_window_s": 3600,  # that window, seconds
    "usage_hang_s": 0,  # sleep this long before any usage answer (client timeouts)
    "profile_fail_status": None,  # answer profile requests with this status (403: setup-token-like)
    "profile_fail_times": None,  # ...only this many times (None: while the status is set)
    "messages_require_oauth_beta": False,  # bearer calls to /v1/messages need the beta header
    # Encode /v1/messages answers in the best coding the request's Accept-Encoding offers that
    # the fake can write: br (with the brotli module), gzip or deflate; off: always identity.
    "encode_answers": False,
}
# Codings the fake can write, best first (br only where the brotli module is installed).
ENCODINGS = (("br",) if importlib.util.find_spec("brotli") else ()) + ("gzip", "deflate")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def sha8(token: str) -> str:
    """Fingerprint of a secret as used in logs: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def s256(verifier: str) -> str:
    """PKCE S256 code challenge of a verifier (base64url, no padding)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def iso(dt: datetime) -> str:
    """ISO-8601 as the usage endpoint writes it: microseconds and ``+00:00``."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 string or epoch seconds (None stays None) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    dt = datetime.fromisoformat(str(value))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _user_account(request: dict[str, Any]) -> str | None:
    """The account uuid a request's ``metadata.user_id`` names (Claude Code 2.1 sends JSON text
    with ``account_uuid``; older releases ``user_<hash>_account_<uuid>_session_<uuid>``)."""
    meta = request.get("metadata")
    user = meta.get("user_id") if isinstance(meta, dict) else None
    if not isinstance(user, str):
        return None
    try:
        doc = json.loads(user)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return str(doc.get("account_uuid") or "") or None
    m = re.search(r"_account_([0-9a-fA-F-]{36})_", user)
    return m.group(1) if m else None


def api_error(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """The API's error document."""
    kind = error_type or ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def failure_body(status: int) -> dict[str, Any]:
    """Body of a configured failure (token_fail_status, usage_fail_status)."""
    messages = {429: "Rate limited", 529: "Overloaded"}
    default = "Internal server error" if status >= 500 else "Configured failure"
    return api_error(status, messages.get(status, default))


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(72)


class Fail(Exception):
    """Raised inside a handler to answer at once with `reply`."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON, str -> text, bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay_s: float = 0.0  # slept by the handler thread before sending, outside the lock
    hangup: bool = False  # close the connection instead of sending (the answer is lost)
    log: dict[str, Any] = field(default_factory=dict)  # extra fields for the request log


def fail(status: int, body: Any, **headers: str) -> Fail:
    return Fail(Reply(status, body, dict(headers)))


def oauth_fail(status: int, error: str, description: str) -> Fail:
    return fail(status, {"error": error, "error_description": description})


@dataclass
class Account:
    uuid: str
    email: str
    display_name: str
    org_uuid: str
    org_name: str
    organization_type: str
    rate_limit_tier: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Lineage:
    """One chain of tokens started by a login (or a mint) and continued by refreshes."""

    id: str
    account_uuid: str
    scopes: tuple[str, ...]
    created: float
    revoked: bool = False
    live_refresh: str | None = None
    refresh_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "lineage_id": self.id,
            "account_uuid": self.account_uuid,
            "revoked": self.revoked,
            "live_refresh_sha8": sha8(self.live_refresh) if self.live_refresh else None,
            "refresh_count": self.refresh_count,
            "scope": " ".join(self.scopes),
        }


@dataclass
class AccessToken:
    lineage_id: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class RefreshToken:
    lineage_id: str
    spent: bool = False


@dataclass
class AuthCode:
    account_uuid: str
    challenge: str
    redirect_uri: str
    state: str
    scopes: tuple[str, ...]
    expires_at: float
    used: bool = False


@dataclass
class UsageSettings:
    """What /api/oauth/usage answers for one account (utilization in percent)."""

    five_hour: float | None = 0.0
    seven_day: float | None = 0.0
    five_hour_resets_at: datetime | None = None
    seven_day_resets_at: datetime | None = None
    variant: str = "full"
    seven_day_opus: float | None = None
    seven_day_sonnet: float | None = None
    seven_day_oauth_apps: float | None = 0.0
    weekly_scoped: dict[str, float] = field(default_factory=dict)  # model name -> percent
    extra_usage: dict[str, Any] = field(
        default_factory=lambda: {
            "is_enabled": False,
            "monthly_limit": None,
            "used_credits": None,
            "utilization": None,
        }
    )
    document: dict[str, Any] | None = None  # when set, answered verbatim

    @classmethod
    def fresh(cls, now: datetime) -> UsageSettings:
        # Resets a few hours / days ahead, with the odd microseconds the real service has.
        micro = timedelta(microseconds=random.randrange(1, 1_000_000))
        hour = now.replace(minute=0, second=0, microsecond=0)
        return cls(
            five_hour_resets_at=hour + timedelta(hours=4) + micro,
            seven_day_resets_at=hour + timedelta(days=6, hours=5) + micro,
        )


@dataclass
class MessagesSettings:
    mode: str = "ok"
    reset_epoch: int | None = None  # for quota/overage; default now + 3600
    claim: str = "five_hour"  # anthropic-ratelimit-unified-representative-claim
    # quota: once reset_epoch has passed the window has reset and requests are answered again
    # (as the real API does); off by default, so a test's refusals stay refusals.
    lift_at_reset: bool = False
    # What each answer's usage reports as cache writes and reads (tokens).
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0


def _jitter(dt: datetime | None) -> str | None:
    """resets_at as a poll sees it: it moves by up to about 2 s between polls."""
    if dt is None:
        return None
    return iso(dt + timedelta(seconds=random.uniform(-1.0, 1.0)))


def _fraction(percent: float | None) -> str:
    return repr(round((percent or 0.0) / 100.0, 4))


class FakeState:
    """All state of the fake, guarded by one lock. Handlers return `Reply` objects."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.lock = threading.Lock()
        self.config: dict[str, Any] = {**DEFAULT_CONFIG, **(config or {})}
        self.accounts: dict[str, Account] = {}  # insertion order = creation order
        self.next_login: str | None = None
        self.codes: dict[str, AuthCode] = {}
        self.lineages: dict[str, Lineage] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.api_keys: dict[str, str] = {}  # key -> account uuid
        self.usage_settings: dict[str, UsageSettings] = {}
        self.usage_hits: dict[str, collections.deque[float]] = {}
        self.message_settings: dict[str, MessagesSettings] = {}
        self.log: list[dict[str, Any]] = []
        self.stats: collections.Counter[str] = collections.Counter()

    # ----- helpers (call with the lock held) -----

    def _account(self, account_uuid: Any) -> Account:
        account = self.accounts.get(str(account_uuid))
        if account is None:
            raise fail(404, {"error": f"no such account: {account_uuid}"})
        return account

    def _new_lineage(self, account_uuid: str, scopes: tuple[str, ...]) -> Lineage:
        lineage = Lineage(uuidlib.uuid4().hex, account_uuid, scopes, time.time())
        self.lineages[lineage.id] = lineage
        return lineage

    def _issue(
        self,
        lineage: Lineage,
        scopes: tuple[str, ...],
        expires_in: int,
        with_refresh: bool = True,
    ) -> dict[str, Any]:
        """Mint a new access (and refresh) token on `lineage`; the token endpoint's answer."""
        access = new_secret("sk-ant-oat01-")
        self.access[access] = AccessToken(lineage.id, scopes, time.time() + expires_in)
        account = self.accounts[lineage.account_uuid]
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": expires_in,
            "scope": " ".join(scopes),
            "account": {"uuid": account.uuid, "email_address": account.email},
            "organization": {"uuid": account.org_uuid, "name": account.org_name},
        }
        if with_refresh:
            refresh = new_secret("sk-ant-ort01-")
            self.refresh[refresh] = RefreshToken(lineage.id)
            lineage.live_refresh = refresh
            answer["refresh_token"] = refresh
        return answer

    def _usage_of(self, account_uuid: str) -> UsageSettings:
        settings = self.usage_settings.get(account_uuid)
        if settings is None:
            settings = UsageSettings.fresh(datetime.now(UTC))
            self.usage_settings[account_uuid] = settings
        return settings

    def _revoke(self, lineage: Lineage) -> None:
        # Tokens point at their lineage, so marking it revoked invalidates all of them.
        lineage.revoked = True
        lineage.live_refresh = None

    def _use_failure(self, status_key: str, times_key: str) -> int | None:
        """The configured failure status for this request, counting down its budget."""
        status = self.config.get(status_key)
        if not status:
            return None
        times = self.config.get(times_key)
        if times is not None:
            if times <= 0:
                return None
            self.config[times_key] = times - 1
        return int(status)

    def _bearer(self, headers: Any, required_scope: str) -> tuple[str, AccessToken, Lineage]:
        """Authenticate `Authorization: Bearer <access>`; 401/403 as the API does."""
        auth = headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise fail(401, api_error(401, INVALID_BEARER))
        record = self.access.get(token)
        lineage = self.lineages.get(record.lineage_id) if record else None
        if record is None or lineage is None or lineage.revoked:
            raise Fail(Reply(401, api_error(401, INVALID_BEARER), log={"token_sha8": sha8(token)}))
        log = {"token_sha8": sha8(token), "account_uuid": lineage.account_uuid}
        if record.expires_at <= time.time():
            raise Fail(Reply(401, api_error(401, EXPIRED_BEARER), log=log))
        if required_scope not in record.scopes:
            message = f"OAuth token does not meet scope requirement {required_scope}"
            raise Fail(Reply(403, api_error(403, message), log=log))
        return token, record, lineage

    # ----- /oauth/authorize -----

    def _check_authorize(self, p: dict[str, str]) -> str | None:
        """Why these authorize parameters are refused, or None."""
        if p.get("code") != "true":
            return "missing required parameter: code=true"
        if p.get("client_id") != CLIENT_ID:
            return f"unknown client_id: {p.get('client_id')!r}"
        if p.get("response_type") != "code":
            return "response_type must be 'code'"
        redirect = p.get("redirect_uri", "")
        if redirect != MANUAL_REDIRECT_URI:
            parts = urlsplit(redirect)
            loopback = parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1")
            if not (loopback and parts.path == "/callback"):
                return (
                    f"redirect_uri not allowed: {redirect!r} (use {MANUAL_REDIRECT_URI} "
                    "or http://localhost:<port>/callback)"
                )
        scopes = p.get("scope", "").split()
        if not scopes:
            return "missing scope"
        unknown = [s for s in scopes if s not in CLAUDE_CODE_SCOPES]
        if unknown:
            return f"invalid scope: {' '.join(unknown)}"
        if p.get("code_challenge_method") != "S256":
            return "code_challenge_method must be S256"
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", p.get("code_challenge", "")):
            return "code_challenge must be a base64url S256 digest (43 characters)"
        if not p.get("state"):
            return "missing state"
        return None

    def _approve(self, p: dict[str, str]) -> tuple[str, AuthCode]:
        """Mint a one-time code for valid authorize parameters (lock held)."""
        reason = self._check_authorize(p)
        if reason:
            raise fail(400, f"invalid authorization request: {reason}\n")
        account = self.accounts.get(self.next_login or "")
        if account is None and p.get("login_hint"):
            account = next((a for a in self.accounts.values() if a.email == p["login_hint"]), None)
        if account is None:
            account = next(iter(self.accounts.values()), None)
        if account is None:
            raise fail(400, "invalid authorization request: the fake has no account to log in as\n")
        code = secrets.token_urlsafe(32)
        grant = AuthCode(
            account_uuid=account.uuid,
            challenge=p["code_challenge"],
            redirect_uri=p["redirect_uri"],
            state=p["state"],
            scopes=tuple(p["scope"].split()),
            expires_at=time.time() + float(self.config["code_ttl_s"]),
        )
        self.codes[code] = grant
        return code, grant

    def authorize(self, params: dict[str, str]) -> Reply:
        with self.lock:
            code, grant = self._approve(params)
        log = {"account_uuid": grant.account_uuid}
        if grant.redirect_uri == MANUAL_REDIRECT_URI:
            pasted = f"{code}#{grant.state}"
            page = (
                "<!doctype html>\n<title>Authentication Code</title>\n"
                "<p>Paste this into Claude Code:</p>\n<pre>\n"
                f"{pasted}\n</pre>\n"
            )
            return Reply(200, page, {"X-Fake-Code": pasted}, "text/html; charset=utf-8", log=log)
        query = urlencode({"code": code, "state": grant.state})
        sep = "&" if "?" in grant.redirect_uri else "?"
        return Reply(302, "", {"Location": f"{grant.redirect_uri}{sep}{query}"}, log=log)

    # ----- /v1/oauth/token -----

    def token(self, body: dict[str, Any]) -> Reply:
        grant_type = body.get("grant_type")
        log: dict[str, Any] = {"grant_type": grant_type}
        with self.lock:
            delay = float(self.config["token_delay_ms"]) / 1000.0
            try:
                reply = self._token(body, log)
            except Fail as exc:
                reply = exc.reply
            hangups = int(self.config["token_hangup_times"] or 0)
            if hangups > 0:
                self.config["token_hangup_times"] = hangups - 1
                reply.hangup = True
                log["hangup"] = True
        reply.delay_s = delay
        reply.log = {**log, **reply.log}
        return reply

    def _token(self, body: dict[str, Any], log: dict[str, Any]) -> Reply:
        status = self._use_failure("token_fail_status", "token_fail_times")
        if status is not None:
            if status >= 500:
                raise fail(status, failure_body(status))
            raise oauth_fail(status, "invalid_request", "configured failure")
        if body.get("client_id") != CLIENT_ID or self.config["token_invalid_client"]:
            raise fail(401, {"error": "invalid_client", "error_description": "Invalid client_id"})
        grant_type = body.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(body, log)
        if grant_type == "refresh_token":
            return self._refresh(body, log)
        raise oauth_fail(400, "unsupported_grant_type", f"unsupported grant_type {grant_type!r}")

    def _exchange_code(self, body: dict[str, Any], log: dict[str, Any]) -> Reply:
        for name in ("code", "state", "redirect_uri", "code_verifier"):
            if not body.get(name):
                raise oauth_fail(400, "invalid_request", f"missing parameter: {name}")
        grant = self.codes.get(str(body["code"]))
        if grant is None or grant.used or grant.expires_at <= time.time():
            raise oauth_fail(400, "invalid_grant", "Invalid 'code' in request")
        log["account_uuid"] = grant.account_uuid
        if body["state"] != grant.state:
            raise oauth_fail(400, "invalid_grant", "state does not match the authorization")
        if body["redirect_uri"] != grant.redirect_uri:
            raise oauth_fail(400, "invalid_grant", "redirect_uri does not match the authorization")
        verifier = str(body["code_verifier"])
        if not re.fullmatch(r"[A-Za-z0-9._~-]{43,128}", verifier):
            raise oauth_fail(400, "invalid_request", "code_verifier must be 43-128 characters")
        if s256(verifier) != grant.challenge:
            raise oauth_fail(400, "invalid_grant", "code_verifier does not match code_challenge")
        grant.used = True
        lineage = self._new_lineage(grant.account_uuid, grant.scopes)
        answer = self._issue(lineage, grant.scopes, int(self.config["expires_in"]))
        log["token_sha8"] = sha8(answer["refresh_token"])
        return Reply(200, answer)

    def _refresh(self, body: dict[str, Any], log: dict[str, Any]) -> Reply:
        token = body.get("refresh_token")
        if not token:
            raise oauth_fail(400, "invalid_request", "missing parameter: refresh_token")
        log["token_sha8"] = sha8(str(token))
        record = self.refresh.get(str(token))
        if record is None:
            raise oauth_fail(400, "invalid_grant", "Invalid refresh token")
        lineage = self.lineages[record.lineage_id]
        log["account_uuid"] = lineage.account_uuid
        if lineage.revoked:
            raise oauth_fail(400, "invalid_grant", "Refresh token has been revoked")
        if record.spent:
            # Reuse of a rotated-out token: treat the chain as stolen and kill all of it.
            self._revoke(lineage)
            raise oauth_fail(400, "invalid_grant", "Refresh token reuse detected; grant revoked")
        scopes = lineage.scopes
        if "scope" in body:
            if self.config["reject_refresh_scope"]:
                raise oauth_fail(400, "invalid_scope", "scope may not be sent on refresh")
            requested = tuple(str(body["scope"]).split())
            if not requested or not set(requested) <= set(lineage.scopes):
                raise oauth_fail(400, "invalid_scope", "requested scope exceeds the grant")
            scopes = requested
        keep_old = bool(self.config["omit_refresh_token"])
        if not keep_old:
            record.spent = True
        lineage.refresh_count += 1
        answer = self._issue(
            lineage, scopes, int(self.config["expires_in"]), with_refresh=not keep_old
        )
        return Reply(200, answer)

    # ----- /api/oauth/usage and /api/oauth/profile -----

    def usage(self, headers: Any) -> Reply:
        with self.lock:
            delay = (
                float(self.config["usage_hang_s"]) + float(self.config["usage_latency_ms"]) / 1000
            )
            try:
                reply = self._usage(headers)
            except Fail as exc:
                reply = exc.reply
        reply.delay_s = delay
        return reply

    def _usage(self, headers: Any) -> Reply:
        status = self._use_failure("usage_fail_status", "usage_fail_times")
        if status is not None:
            raise fail(status, failure_body(status))
        self._check_beta(headers)
        token, _, lineage = self._bearer(headers, "user:profile")
        log = {"token_sha8": sha8(token), "account_uuid": lineage.account_uuid}
        # Throttle: count answered requests in the trailing window, per account.
        now = time.time()
        hits = self.usage_hits.setdefault(lineage.account_uuid, collections.deque())
        while hits and hits[0] <= now - float(self.config["usage_window_s"]):
            hits.popleft()
        if len(hits) >= int(self.config["usage_limit"]):
            body = api_error(429, "Rate limited")
            return Reply(429, body, {"retry-after": "0"}, log=log)
        hits.append(now)
        return Reply(200, self._usage_document(lineage.account_uuid), log=log)

    def _usage_document(self, account_uuid: str) -> dict[str, Any]:
        s = self._usage_of(account_uuid)
        if s.document is not None:
            return copy.deepcopy(s.document)
        five_reset = _jitter(s.five_hour_resets_at)
        week_reset = _jitter(s.seven_day_resets_at)

        def window(percent: float | None, resets_at: str | None) -> dict[str, Any] | None:
            if percent is None:
                return None
            return {"utilization": float(percent), "resets_at": resets_at}

        def limit(kind: str, percent: float | None, resets_at: str | None) -> dict[str, Any]:
            return {
                "kind": kind,
                "percent": None if percent is None else round(percent),
                "resets_at": resets_at,
            }

        limits = [
            limit("session", s.five_hour, five_reset),
            limit("weekly_all", s.seven_day, week_reset),
        ]
        for model, percent in s.weekly_scoped.items():
            scoped = limit("weekly_scoped", percent, week_reset)
            scoped["scope"] = {"model": {"display_name": model}}
            limits.append(scoped)
        if s.variant == "limits_only":
            return {"limits": limits}
        nulls = s.variant == "nulls"
        return {
            "five_hour": None if nulls else window(s.five_hour, five_reset),
            "seven_day": None if nulls else window(s.seven_day, week_reset),
            "seven_day_oauth_apps": window(s.seven_day_oauth_apps, week_reset),
            "seven_day_opus": window(s.seven_day_opus, week_reset),
            "seven_day_sonnet": window(s.seven_day_sonnet, week_reset),
            "extra_usage": copy.deepcopy(s.extra_usage),
            "limits": [] if nulls else limits,
        }

    def profile(self, headers: Any) -> Reply:
        with self.lock:
            status = self._use_failure("profile_fail_status", "profile_fail_times")
            if status is not None:
                return Reply(status, api_error(status, "configured failure"))
            try:
                # No beta check here: the real Claude Code (2.1.197) calls the profile with a
                # bare bearer token and the real service answers it.
                token, _, lineage = self._bearer(headers, "user:profile")
            except Fail as exc:
                return exc.reply
            account = self.accounts[lineage.account_uuid]
            body = {
                "account": {
                    "uuid": account.uuid,
                    "email": account.email,
                    "display_name": account.display_name,
                },
                "organization": {
                    "uuid": account.org_uuid,
                    "name": account.org_name,
                    "organization_type": account.organization_type,
                    "rate_limit_tier": account.rate_limit_tier,
                },
            }
        return Reply(200, body, log={"token_sha8": sha8(token), "account_uuid": account.uuid})

    @staticmethod
    def _check_beta(headers: Any) -> None:
        betas = [b.strip() for b in (headers.get("anthropic-beta") or "").split(",")]
        if OAUTH_BETA not in betas:
            message = "OAuth authentication is currently not supported."
            raise fail(400, api_error(400, message))

    # ----- /v1/messages -----

    def _caller(self, headers: Any) -> tuple[str, Account]:
        """Authenticate a Messages call by OAuth bearer token or x-api-key."""
        api_key = headers.get("x-api-key")
        if api_key and not headers.get("Authorization"):
            account_uuid = self.api_keys.get(api_key)
            if account_uuid is None:
                log = {"token_sha8": sha8(api_key)}
                raise Fail(Reply(401, api_error(401, "invalid x-api-key"), log=log))
            return api_key, self.accounts[account_uuid]
        if self.config["messages_require_oauth_beta"] and headers.get("Authorization"):
            self._check_beta(headers)
        token, _, lineage = self._bearer(headers, "user:inference")
        return token, self.accounts[lineage.account_uuid]

    def _unified_headers(
        self, account: Account, status: str, reset: int | None, claim: str
    ) -> dict[str, str]:
        """The anthropic-ratelimit-unified-* headers; `reset` None means the 5 h reset."""
        usage = self._usage_of(account.uuid)
        five = usage.five_hour_resets_at
        week = usage.seven_day_resets_at
        if reset is None:
            reset = int(five.timestamp()) if five else int(time.time()) + 5 * 3600
        return {
            "anthropic-ratelimit-unified-status": status,
            "anthropic-ratelimit-unified-reset": str(reset),
            "anthropic-ratelimit-unified-5h-utilization": _fraction(usage.five_hour),
            "anthropic-ratelimit-unified-7d-utilization": _fraction(usage.seven_day),
            "anthropic-ratelimit-unified-5h-reset": str(int(five.timestamp()) if five else reset),
            "anthropic-ratelimit-unified-7d-reset": str(int(week.timestamp()) if week else reset),
            "anthropic-ratelimit-unified-representative-claim": claim,
        }

    def messages(self, headers: Any, raw: bytes, count_tokens: bool = False) -> Reply:
        with self.lock:
            try:
                token, account = self._caller(headers)
            except Fail as exc:
                return exc.reply
            settings = self.message_settings.setdefault(account.uuid, MessagesSettings())
            log: dict[str, Any] = {"token_sha8": sha8(token), "account_uuid": account.uuid}
            try:
                request = json.loads(raw or b"{}")
            except ValueError as exc:
                return Reply(400, api_error(400, f"invalid JSON body: {exc}"), log=log)
            if not isinstance(request, dict):
                return Reply(400, api_error(400, "the body must be a JSON object"), log=log)
            required = (
                ("model", "messages") if count_tokens else ("model", "max_tokens", "messages")
            )
            for name in required:
                if name not in request:
                    return Reply(400, api_error(400, f"{name}: Field required"), log=log)
            prompt_tokens = max(1, len(json.dumps(request["messages"])) // 4)
            if count_tokens:
                return Reply(200, {"input_tokens": prompt_tokens}, log=log)
            log["model"] = request["model"]
            log["stream"] = bool(request.get("stream"))
            log["user_account"] = _user_account(request)
            # Which request this was, byte for byte (a request sent again on another account
            # has the same one unless something in it names the account), and what in it could.
            log["body_sha8"] = hashlib.sha256(raw or b"").hexdigest()[:8]
            meta = request.get("metadata")
            log["metadata_keys"] = sorted(meta) if isinstance(meta, dict) else None
            log["header_names"] = sorted({str(k).lower() for k in headers})
            now = int(time.time())
            reset = settings.reset_epoch or now + 3600
            mode = settings.mode
            if mode == "quota" and settings.lift_at_reset and settings.reset_epoch:
                mode = "ok" if now >= settings.reset_epoch else mode
            if mode == "unauthorized":
                return Reply(401, api_error(401, INVALID_BEARER), log=log)
            if mode == "throttle":
                body = api_error(429, THROTTLE_MESSAGE)
                return Reply(429, body, {"retry-after": "0"}, log=log)
            if mode == "quota":
                headers_out = self._unified_headers(account, "rejected", reset, settings.claim)
                return Reply(429, api_error(429, QUOTA_MESSAGE), headers_out, log=log)
            if mode == "overage":
                # A depleted plan paying for extra usage: 200, plan status rejected.
                headers_out = self._unified_headers(account, "rejected", reset, settings.claim)
                headers_out["anthropic-ratelimit-unified-overage-status"] = "allowed"
                headers_out["anthropic-ratelimit-unified-overage-in-use"] = "true"
            else:
                headers_out = self._unified_headers(account, "allowed", None, "five_hour")
            text = f"Hello from {account.email}"
            cache = (settings.cache_creation_tokens, settings.cache_read_tokens)
        return self._message_reply(request, text, prompt_tokens, headers_out, log, cache)

    @staticmethod
    def _message_reply(
        request: dict[str, Any],
        text: str,
        input_tokens: int,
        headers: dict[str, str],
        log: dict[str, Any],
        cache: tuple[int, int] = (0, 0),
    ) -> Reply:
        message_id = "msg_01" + secrets.token_hex(11)
        model = str(request.get("model") or DEFAULT_MODEL)
        output_tokens = len(text.split()) + 1
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache[0],
            "cache_read_input_tokens": cache[1],
            "output_tokens": output_tokens,
        }
        log["answer_model"] = model
        log["usage"] = usage  # what the answer reports, for tests to compare with
        # The answer's and message_start's usage also break the cache writes down by lifetime
        # and name the service tier, as the API's do; message_delta repeats the four counts.
        full = {
            **usage,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache[0],
                "ephemeral_1h_input_tokens": 0,
            },
            "service_tier": "standard",
        }
        if not request.get("stream"):
            body = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": full,
            }
            return Reply(200, body, headers, log=log)
        start: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**full, "output_tokens": 1},
        }
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            delta = {"type": "text_delta", "text": piece}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    # Cumulative counts, as the API sends them.
                    "usage": {**usage, "output_tokens": output_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        stream = "".join(
            f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
            for name, data in events
        )
        headers = {**headers, "Cache-Control": "no-cache"}
        return Reply(200, stream, headers, "text/event-stream; charset=utf-8", log=log)

    # ----- admin -----

    def admin(self, method: str, name: str, query: dict[str, str], body: dict[str, Any]) -> Reply:
        handler = getattr(self, f"admin_{method.lower()}_{name.replace('-', '_')}", None)
        if handler is None:
            return Reply(404, {"error": f"no admin endpoint {method} /_admin/{name}"})
        with self.lock:
            try:
                result = handler(query if method == "GET" else body)
            except Fail as exc:
                return exc.reply
            except (KeyError, TypeError, ValueError) as exc:
                return Reply(400, {"error": f"bad request: {exc!r}"})
        return Reply(200, result)

    def admin_post_accounts(self, body: dict[str, Any]) -> dict[str, Any]:
        account_uuid = str(body.get("uuid") or uuidlib.uuid4())
        email = str(body.get("email") or f"user{len(self.accounts) + 1}@example.com")
        org_type = str(body.get("organization_type") or "claude_max")
        if org_type not in ORGANIZATION_TYPES:
            raise ValueError(f"organization_type must be one of {ORGANIZATION_TYPES}")
        account = Account(
            uuid=account_uuid,
            email=email,
            display_name=str(body.get("display_name") or email.split("@")[0]),
            org_uuid=str(body.get("org_uuid") or uuidlib.uuid4()),
            org_name=str(body.get("org_name") or f"{email}'s Organization"),
            organization_type=org_type,
            rate_limit_tier=str(body.get("rate_limit_tier") or DEFAULT_TIERS[org_type]),
        )
        self.accounts[account_uuid] = account
        self._usage_of(account_uuid)
        self.message_settings.setdefault(account_uuid, MessagesSettings())
        return account.to_json()

    def admin_get_accounts(self, query: dict[str, str]) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.accounts.values()]

    def admin_post_mint(self, body: dict[str, Any]) -> dict[str, Any]:
        account = self._account(body["uuid"])
        scopes = tuple(body.get("scopes") or CLAUDE_CODE_SCOPES)
        expires_in = body.get("expires_in")
        expires_in = int(self.config["expires_in"] if expires_in is None else expires_in)
        lineage = self._new_lineage(account.uuid, scopes)
        return self._issue(lineage, scopes, expires_in)

    def admin_post_api_key(self, body: dict[str, Any]) -> dict[str, Any]:
        account = self._account(body["uuid"])
        key = new_secret("sk-ant-api03-")
        self.api_keys[key] = account.uuid
        return {"api_key": key}

    def admin_post_config(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - set(DEFAULT_CONFIG))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(DEFAULT_CONFIG)}")
        self.config.update(body)
        return dict(self.config)

    def admin_get_config(self, query: dict[str, str]) -> dict[str, Any]:
        return dict(self.config)

    def admin_post_usage(self, body: dict[str, Any]) -> dict[str, Any]:
        account = self._account(body["uuid"])
        s = self._usage_of(account.uuid)
        if "variant" in body and body["variant"] not in USAGE_VARIANTS:
            raise ValueError(f"variant must be one of {USAGE_VARIANTS}")
        for key in ("five_hour_resets_at", "seven_day_resets_at"):
            if key in body:
                setattr(s, key, parse_time(body[key]))
        plain = (
            "five_hour",
            "seven_day",
            "variant",
            "seven_day_opus",
            "seven_day_sonnet",
            "seven_day_oauth_apps",
            "weekly_scoped",
            "extra_usage",
            "document",
        )
        for key in plain:
            if key in body:
                setattr(s, key, body[key])
        unknown = set(body) - set(plain) - {"uuid", "five_hour_resets_at", "seven_day_resets_at"}
        if unknown:
            raise ValueError(f"unknown usage keys {sorted(unknown)}")
        return {
            "uuid": account.uuid,
            "five_hour": s.five_hour,
            "seven_day": s.seven_day,
            "five_hour_resets_at": iso(s.five_hour_resets_at) if s.five_hour_resets_at else None,
            "seven_day_resets_at": iso(s.seven_day_resets_at) if s.seven_day_resets_at else None,
            "variant": s.variant,
        }

    def admin_post_messages(self, body: dict[str, Any]) -> dict[str, Any]:
        account = self._account(body["uuid"])
        settings = self.message_settings.setdefault(account.uuid, MessagesSettings())
        mode = body.get("mode", settings.mode)
        if mode not in MESSAGE_MODES:
            raise ValueError(f"mode must be one of {MESSAGE_MODES}")
        settings.mode = mode
        if "reset_epoch" in body:
            settings.reset_epoch = None if body["reset_epoch"] is None else int(body["reset_epoch"])
        if "claim" in body:
            settings.claim = str(body["claim"])
        if "lift_at_reset" in body:
            settings.lift_at_reset = bool(body["lift_at_reset"])
        for key in ("cache_creation_tokens", "cache_read_tokens"):
            if key in body:
                setattr(settings, key, int(body[key]))
        return {"uuid": account.uuid, **settings.__dict__}

    def admin_post_next_login(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("uuid") is not None:
            self._account(body["uuid"])
        self.next_login = body.get("uuid")
        return {"next_login": self.next_login}

    def admin_post_authorize_code(self, body: dict[str, Any]) -> dict[str, Any]:
        params = {k: str(v) for k, v in body.items() if v is not None}
        try:
            code, grant = self._approve(params)
        except Fail as exc:
            raise fail(400, {"error": str(exc.reply.body).strip()}) from None
        return {"code": code, "state": grant.state, "account_uuid": grant.account_uuid}

    def admin_get_log(self, query: dict[str, str]) -> list[dict[str, Any]]:
        kind = query.get("kind")
        return [dict(e) for e in self.log if kind is None or e.get("kind") == kind]

    def admin_get_stats(self, query: dict[str, str]) -> dict[str, int]:
        kinds = ("token_refresh", "token_code", "usage", "profile", "messages")
        return {**{k: 0 for k in kinds}, **self.stats}

    def admin_get_issued(self, query: dict[str, str]) -> dict[str, list[str]]:
        """Every token this fake ever issued (spent or not), for tests that look for them in
        what acct wrote: a database dump, logs, output."""
        return {"access": list(self.access), "refresh": list(self.refresh)}

    def admin_post_reset_log(self, body: dict[str, Any]) -> dict[str, Any]:
        self.log.clear()
        self.stats.clear()
        return {"ok": True}

    def admin_post_reset_throttle(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("uuid"):
            self.usage_hits.pop(str(body["uuid"]), None)
        else:
            self.usage_hits.clear()
        return {"ok": True}

    def admin_get_lineage(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("refresh_token"):
            record = self.refresh.get(query["refresh_token"])
            if record is None:
                raise fail(404, {"error": "unknown refresh token"})
            return self.lineages[record.lineage_id].to_json()
        if query.get("access_token"):
            access = self.access.get(query["access_token"])
            if access is None:
                raise fail(404, {"error": "unknown access token"})
            return self.lineages[access.lineage_id].to_json()
        account = self._account(query.get("uuid"))
        mine = [lin for lin in self.lineages.values() if lin.account_uuid == account.uuid]
        if not mine:
            raise fail(404, {"error": f"account {account.uuid} has no lineage"})
        # The newest lineage answers; all of them are listed too.
        return {**mine[-1].to_json(), "lineages": [lin.to_json() for lin in mine]}

    def admin_post_revoke(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("refresh_token"):
            record = self.refresh.get(str(body["refresh_token"]))
            if record is None:
                raise fail(404, {"error": "unknown refresh token"})
            targets = [self.lineages[record.lineage_id]]
        else:
            account = self._account(body["uuid"])
            targets = [lin for lin in self.lineages.values() if lin.account_uuid == account.uuid]
        for lineage in targets:
            self._revoke(lineage)
        return {"revoked": len(targets)}

    # ----- request log -----

    def record(self, kind: str, method: str, path: str, status: int, extra: dict[str, Any]) -> None:
        entry = {"kind": kind, "method": method, "path": path, "status": status, "t": time.time()}
        entry.update({k: v for k, v in extra.items() if v is not None})
        with self.lock:
            self.log.append(entry)
            self.stats[kind] += 1


class Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"
    # A real server's answer leaves whole: without this, headers and body go in two sends and
    # the second waits for the client's delayed ACK (40 ms on Linux) on every answer.
    disable_nagle_algorithm = True
    server_version = "fake-anthropic/1"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        # Always drain the body so a kept-alive connection stays in sync.
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _form_or_json(self, raw: bytes) -> dict[str, Any]:
        ctype = (self.headers.get("Content-Type") or "").lower()
        text = raw.decode("utf-8", "replace")
        if "x-www-form-urlencoded" in ctype or (text and not text.lstrip().startswith("{")):
            return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
        try:
            value = json.loads(text or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        raw = self._read_body()
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}

        if path.startswith("/_admin/"):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self._send(Reply(400, {"error": "admin bodies are JSON objects"}))
                return
            self._send(state.admin(method, path[len("/_admin/") :], query, body))
            return

        kind, reply = self._route(method, path, query, raw)
        encoding = None
        if kind == "messages":
            offered = self.headers.get("Accept-Encoding")
            if state.config["encode_answers"]:
                encoding = choose_encoding(offered)
            reply.log.update(accept_encoding=offered, content_encoding=encoding)
        if kind != "not_found" or method != "GET" or path != "/favicon.ico":
            state.record(kind, method, path, reply.status, reply.log)
        self._send(reply, encoding)

    def _route(
        self, method: str, path: str, query: dict[str, str], raw: bytes
    ) -> tuple[str, Reply]:
        state = self.server.state
        if method == "GET" and path in ("/oauth/authorize", "/cai/oauth/authorize"):
            try:
                return "authorize", state.authorize(query)
            except Fail as exc:
                return "authorize", exc.reply
        if method == "POST" and path == "/v1/oauth/token":
            body = self._form_or_json(raw)
            grant = body.get("grant_type")
            kind = {"refresh_token": "token_refresh", "authorization_code": "token_code"}.get(
                str(grant), "token_other"
            )
            return kind, state.token(body)
        if method == "GET" and path == "/api/oauth/usage":
            return "usage", state.usage(self.headers)
        if method == "GET" and path == "/api/oauth/profile":
            return "profile", state.profile(self.headers)
        if method == "POST" and path == "/v1/messages":
            return "messages", state.messages(self.headers, raw)
        if method == "POST" and path == "/v1/messages/count_tokens":
            return "count_tokens", state.messages(self.headers, raw, count_tokens=True)
        return "not_found", Reply(404, api_error(404, f"Not found: {method} {path}"))

    def _send(self, reply: Reply, encoding: str | None = None) -> None:
        if reply.delay_s > 0:
            time.sleep(reply.delay_s)
        if reply.hangup:
            self.close_connection = True  # the request was acted on; its answer never comes
            return
        body = reply.body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            ctype = reply.content_type or "application/json"
        elif isinstance(body, bytes):
            data, ctype = body, reply.content_type or "application/octet-stream"
        else:
            data = str(body or "").encode()
            ctype = reply.content_type or "text/plain; charset=utf-8"
        if encoding is not None:
            data = encode(data, encoding)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", "req_011" + secrets.token_hex(12))
            if encoding is not None:
                self.send_header("Content-Encoding", encoding)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its timeout fired during a configured hang).
            self.close_connection = True


def choose_encoding(accept_encoding: str | None) -> str | None:
    """The best of :data:`ENCODINGS` that ``accept_encoding`` offers (q above 0); None: identity."""
    offered: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name.strip():
            offered[name.strip().lower()] = q
    usable = [e for e in ENCODINGS if offered.get(e, offered.get("*", 0.0)) > 0]
    return max(usable, key=lambda e: offered.get(e, offered.get("*", 0.0)), default=None)


def encode(data: bytes, encoding: str) -> bytes:
    if encoding == "br":
        import brotli  # type: ignore[import-not-found,unused-ignore]

        return bytes(brotli.compress(data))
    if encoding == "gzip":
        return gzip.compress(data)
    return zlib.compress(data)  # deflate: the zlib format (RFC 9110 §8.4.1.2)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: FakeState, verbose: bool = False) -> None:
        self.state = state
        self.verbose = verbose
        super().__init__(address, Handler)


def _exit_when_stdin_closes() -> None:
    # Started with --watch-stdin by a parent that keeps our stdin open: when the parent
    # dies, stdin reaches EOF and the fake goes with it instead of lingering.
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Anthropic API for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay of usage answers")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    state = FakeState({"usage_latency_ms": args.latency_ms})
    server = FakeServer((args.host, args.port), state, verbose=args.verbose)
    print(f"PORT {server.server_address[1]}", flush=True)
    if args.watch_stdin:
        threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
