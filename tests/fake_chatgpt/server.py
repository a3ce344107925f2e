"""A fake ChatGPT (auth.openai.com + chatgpt.com/backend-api) on loopback, for tests.

Standard library only: ``python -m tests.fake_chatgpt --port 0`` prints ``PORT <n>`` and serves
until killed (or, with ``--watch-stdin``, until its stdin closes). Configured at run time through
``/_admin/*`` (JSON in, JSON out). Shapes follow what the Codex CLI 0.171.0 sends and expects
(docs/codex.md).

Public endpoints:

``GET /oauth/authorize``
    Codex's parameters (client ``app_EMoamEEZ73f0CkXaXp7hrann``, ``response_type=code``, a
    loopback ``redirect_uri`` ending in ``/auth/callback``, ``scope`` with ``openid``, PKCE S256,
    ``state``). Approves as the account chosen by ``/_admin/next-login`` (else the first) and
    answers 302 to ``<redirect_uri>?code=CODE&state=STATE``.
``POST /oauth/token``
    ``authorization_code`` (form or JSON, PKCE S256) and ``refresh_token`` (JSON) grants. The
    answer carries ``id_token`` (a JWT with the ``https://api.openai.com/auth`` claims),
    ``access_token`` (a JWT with ``exp``) and ``refresh_token``. Refresh tokens are single-use and
    rotate; presenting a spent one revokes the whole chain (401 ``refresh_token_reused``), and any
    token of a revoked chain gets 401 ``refresh_token_invalidated``.
``GET /backend-api/wham/usage``
    Bearer access token + ``ChatGPT-Account-Id``; primary/secondary windows; throttled per
    account (``usage_limit`` answers per trailing ``usage_window_s``).
``POST /backend-api/codex/responses``
    The Responses API as Codex streams it (SSE). With ``hold_responses`` each request is parked
    (``/_admin/held`` lists them) until ``/_admin/release`` lets it go, so a test can change
    files and modes between a client's requests without timing. Per account: ok, limit (429
    ``usage_limit_reached``), throttle (429 without it), unauthorized (401). Every answer carries
    the ``x-codex-primary-*`` / ``x-codex-secondary-*`` headers.
Anything else answers 404 and is logged (kind ``not_found``) so a test can see what a client asked.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import copy
import hashlib
import json
import re
import secrets
import sys
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"
ISSUER = "https://auth.openai.com"
PLAN_TYPES = ("free", "plus", "pro", "team", "business", "enterprise", "edu")
RESPONSE_MODES = ("ok", "limit", "throttle", "unauthorized")
PRIMARY_WINDOW_S = 5 * 3600
SECONDARY_WINDOW_S = 7 * 86400

# The refusals of the token endpoint (codes as Codex classifies them).
REUSED = "refresh_token_reused"
INVALIDATED = "refresh_token_invalidated"
EXPIRED = "refresh_token_expired"
REFUSAL_TEXT = {
    REUSED: "Your refresh token has already been used to generate a new access token. "
    "Please try signing in again.",
    INVALIDATED: "Your refresh token has been invalidated. Please try signing in again.",
    EXPIRED: "Your refresh token has expired. Please try signing in again.",
}

DEFAULT_CONFIG: dict[str, Any] = {
    "expires_in": 864000,  # access token lifetime, seconds (about 10 days, as the real one)
    "token_fail_status": None,  # answer token requests with this status (500, 503, ...)
    "token_fail_times": None,  # ...only this many times (None: while set)
    "token_delay_ms": 0,
    "code_ttl_s": 600,
    "usage_fail_status": None,
    "usage_fail_times": None,
    "usage_limit": 30,  # usage answers per account per trailing window
    "usage_window_s": 3600,
    "usage_delay_ms": 0,  # sleep before answering wham/usage (benchmarks)
    "require_account_header": True,  # wham/usage and responses need ChatGPT-Account-Id
    "responses_delay_ms": 0,  # sleep before answering a Responses API request
    "hold_responses": False,  # park each Responses request until /_admin/release lets it go
}


def sha8(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking JWT (RS256 header, random signature): clients only decode it."""
    header = {"alg": "RS256", "typ": "JWT", "kid": "fake"}
    parts = [json.dumps(header).encode(), json.dumps(claims).encode(), secrets.token_bytes(64)]
    return ".".join(b64url(p) for p in parts)


class Fail(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON, str -> text, bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay_s: float = 0.0
    log: dict[str, Any] = field(default_factory=dict)


def fail(status: int, body: Any, **headers: str) -> Fail:
    return Fail(Reply(status, body, dict(headers)))


def oauth_error(status: int, code: str, message: str) -> Fail:
    """The token endpoint's error document (an OpenAI-style ``error`` object)."""
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return fail(status, body)


def refusal(code: str) -> Fail:
    return oauth_error(401, code, REFUSAL_TEXT[code])


@dataclass
class Account:
    account_id: str  # chatgpt_account_id (a workspace); the ChatGPT-Account-Id header
    user_id: str
    email: str
    plan_type: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Lineage:
    id: str
    account_id: str
    created: float
    revoked: bool = False
    live_refresh: str | None = None
    refresh_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "lineage_id": self.id,
            "account_id": self.account_id,
            "revoked": self.revoked,
            "live_refresh_sha8": sha8(self.live_refresh) if self.live_refresh else None,
            "refresh_count": self.refresh_count,
        }


@dataclass
class AccessToken:
    lineage_id: str
    expires_at: float


@dataclass
class RefreshToken:
    lineage_id: str
    spent: bool = False


@dataclass
class AuthCode:
    account_id: str
    challenge: str
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass
class UsageSettings:
    primary: float | None = 0.0  # used_percent
    secondary: float | None = 0.0
    primary_window_s: int = PRIMARY_WINDOW_S
    secondary_window_s: int = SECONDARY_WINDOW_S
    primary_reset_at: int | None = None  # epoch seconds; default now + the window
    secondary_reset_at: int | None = None
    limit_reached_type: str | None = None  # rate_limit_reached_type
    credits: dict[str, Any] = field(
        default_factory=lambda: {"has_credits": False, "unlimited": False, "balance": None}
    )
    document: dict[str, Any] | None = None  # answered verbatim when set


@dataclass
class ResponseSettings:
    mode: str = "ok"
    resets_in_seconds: int = 3600
    text: str = "Hello from the fake ChatGPT."


class FakeState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config: dict[str, Any] = dict(DEFAULT_CONFIG)
        self.accounts: dict[str, Account] = {}
        self.next_login: str | None = None
        self.codes: dict[str, AuthCode] = {}
        self.lineages: dict[str, Lineage] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.usage: dict[str, UsageSettings] = {}
        self.usage_hits: dict[str, collections.deque[float]] = {}
        self.response_settings: dict[str, ResponseSettings] = {}
        self.log: list[dict[str, Any]] = []
        self.stats: collections.Counter[str] = collections.Counter()
        self.held: list[dict[str, Any]] = []  # Responses requests parked by hold_responses
        self.release = threading.Semaphore(0)

    # ----- helpers (lock held) -----

    def _account(self, account_id: Any) -> Account:
        account = self.accounts.get(str(account_id))
        if account is None:
            raise fail(404, {"error": f"no such account: {account_id}"})
        return account

    def _use_failure(self, status_key: str, times_key: str) -> int | None:
        status = self.config.get(status_key)
        if not status:
            return None
        times = self.config.get(times_key)
        if times is not None:
            if times <= 0:
                return None
            self.config[times_key] = times - 1
        return int(status)

    def _auth_claims(self, account: Account) -> dict[str, Any]:
        return {
            "chatgpt_account_id": account.account_id,
            "chatgpt_plan_type": account.plan_type,
            "chatgpt_user_id": account.user_id,
            "user_id": account.user_id,
        }

    def _issue(self, lineage: Lineage) -> dict[str, Any]:
        account = self.accounts[lineage.account_id]
        now = int(time.time())
        expires_in = int(self.config["expires_in"])
        access = jwt(
            {
                "iss": ISSUER,
                "aud": ["https://api.openai.com/v1"],
                "client_id": CLIENT_ID,
                "iat": now,
                "exp": now + expires_in,
                "jti": uuidlib.uuid4().hex,
                "scp": ["openid", "profile", "email", "offline_access"],
                AUTH_CLAIM: self._auth_claims(account),
                PROFILE_CLAIM: {"email": account.email, "email_verified": True},
            }
        )
        id_token = jwt(
            {
                "iss": ISSUER,
                "aud": [CLIENT_ID],
                "iat": now,
                "exp": now + 3600,
                "sub": f"auth0|{account.user_id}",
                "email": account.email,
                "email_verified": True,
                AUTH_CLAIM: self._auth_claims(account),
            }
        )
        refresh = "rt_" + secrets.token_urlsafe(48)
        self.access[access] = AccessToken(lineage.id, now + expires_in)
        self.refresh[refresh] = RefreshToken(lineage.id)
        lineage.live_refresh = refresh
        return {
            "id_token": id_token,
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": expires_in,
            "token_type": "Bearer",
            "scope": "openid profile email offline_access",
        }

    def _bearer(self, headers: Any) -> tuple[str, Lineage, Account]:
        auth = headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise fail(401, {"detail": "Unauthorized"})
        log = {"token_sha8": sha8(token)}
        record = self.access.get(token)
        lineage = self.lineages.get(record.lineage_id) if record else None
        if record is None or lineage is None or lineage.revoked:
            body = {
                "error": {
                    "message": "Your authentication token has been invalidated.",
                    "type": "invalid_request_error",
                    "code": "token_invalidated",
                }
            }
            raise Fail(Reply(401, body, log=log))
        log["account_id"] = lineage.account_id
        if record.expires_at <= time.time():
            body = {
                "error": {
                    "message": "Provided authentication token is expired.",
                    "type": "invalid_request_error",
                    "code": "token_expired",
                }
            }
            raise Fail(Reply(401, body, log=log))
        account = self.accounts[lineage.account_id]
        if self.config["require_account_header"]:
            sent = headers.get("ChatGPT-Account-Id")
            if sent != account.account_id:
                body = {"detail": f"ChatGPT-Account-Id {sent!r} does not match the token"}
                raise Fail(Reply(403, body, log=log))
        return token, lineage, account

    # ----- authorize -----

    def _check_authorize(self, p: dict[str, str]) -> str | None:
        if p.get("client_id") != CLIENT_ID:
            return f"unknown client_id: {p.get('client_id')!r}"
        if p.get("response_type") != "code":
            return "response_type must be 'code'"
        parts = urlsplit(p.get("redirect_uri", ""))
        if not (
            parts.scheme == "http"
            and parts.hostname in ("localhost", "127.0.0.1")
            and parts.path == "/auth/callback"
        ):
            return f"redirect_uri not allowed: {p.get('redirect_uri')!r}"
        if "openid" not in p.get("scope", "").split():
            return "scope must include openid"
        if p.get("code_challenge_method") != "S256":
            return "code_challenge_method must be S256"
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", p.get("code_challenge", "")):
            return "code_challenge must be a base64url S256 digest (43 characters)"
        if not p.get("state"):
            return "missing state"
        return None

    def authorize(self, p: dict[str, str]) -> Reply:
        with self.lock:
            reason = self._check_authorize(p)
            if reason:
                return Reply(400, f"invalid authorization request: {reason}\n")
            account = self.accounts.get(self.next_login or "")
            if account is None:
                account = next(iter(self.accounts.values()), None)
            if account is None:
                return Reply(400, "invalid authorization request: no account to log in as\n")
            code = "ac_" + secrets.token_urlsafe(32)
            self.codes[code] = AuthCode(
                account.account_id,
                p["code_challenge"],
                p["redirect_uri"],
                time.time() + float(self.config["code_ttl_s"]),
            )
        query = urlencode({"code": code, "state": p["state"]})
        location = f"{p['redirect_uri']}?{query}"
        return Reply(302, "", {"Location": location}, log={"account_id": account.account_id})

    # ----- token -----

    def token(self, body: dict[str, Any]) -> Reply:
        log: dict[str, Any] = {
            "grant_type": body.get("grant_type"),
            "fields": sorted(body),
            "scope": body.get("scope"),
            "refresh_reason": body.get("refresh_reason"),
        }
        with self.lock:
            delay = float(self.config["token_delay_ms"]) / 1000.0
            try:
                reply = self._token(body, log)
            except Fail as exc:
                reply = exc.reply
        reply.delay_s = delay
        reply.log = {**log, **reply.log}
        return reply

    def _token(self, body: dict[str, Any], log: dict[str, Any]) -> Reply:
        status = self._use_failure("token_fail_status", "token_fail_times")
        if status is not None:
            if status >= 500:
                raise fail(
                    status, {"error": {"message": "Internal server error", "type": "server_error"}}
                )
            raise oauth_error(status, "invalid_request", "configured failure")
        if body.get("client_id") != CLIENT_ID:
            raise oauth_error(401, "invalid_client", "Invalid client_id")
        grant = body.get("grant_type")
        if grant == "authorization_code":
            return self._exchange(body, log)
        if grant == "refresh_token":
            return self._refresh(body, log)
        raise oauth_error(400, "unsupported_grant_type", f"unsupported grant_type {grant!r}")

    def _exchange(self, body: dict[str, Any], log: dict[str, Any]) -> Reply:
        for name in ("code", "redirect_uri", "code_verifier"):
            if not body.get(name):
                raise oauth_error(400, "invalid_request", f"missing parameter: {name}")
        grant = self.codes.get(str(body["code"]))
        if grant is None or grant.used or grant.expires_at <= time.time():
            raise oauth_error(400, "invalid_grant", "Invalid authorization code")
        log["account_id"] = grant.account_id
        if body["redirect_uri"] != grant.redirect_uri:
            raise oauth_error(400, "invalid_grant", "redirect_uri does not match the authorization")
        if s256(str(body["code_verifier"])) != grant.challenge:
            raise oauth_error(400, "invalid_grant", "code_verifier does not match code_challenge")
        grant.used = True
        lineage = Lineage(uuidlib.uuid4().hex, grant.account_id, time.time())
        self.lineages[lineage.id] = lineage
        answer = self._issue(lineage)
        log["token_sha8"] = sha8(answer["refresh_token"])
        return Reply(200, answer)

    def _refresh(self, body: dict[str, Any], log: dict[str, Any]) -> Reply:
        token = body.get("refresh_token")
        if not token:
            raise oauth_error(400, "invalid_request", "missing parameter: refresh_token")
        log["token_sha8"] = sha8(str(token))
        record = self.refresh.get(str(token))
        if record is None:
            raise refusal(INVALIDATED)
        lineage = self.lineages[record.lineage_id]
        log["account_id"] = lineage.account_id
        if lineage.revoked:
            raise refusal(INVALIDATED)
        if record.spent:
            lineage.revoked = True  # reuse of a rotated-out token: the whole chain dies
            lineage.live_refresh = None
            raise refusal(REUSED)
        record.spent = True
        lineage.refresh_count += 1
        return Reply(200, self._issue(lineage))

    # ----- usage -----

    def _usage_of(self, account_id: str) -> UsageSettings:
        return self.usage.setdefault(account_id, UsageSettings())

    def _windows(self, s: UsageSettings) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        now = int(time.time())

        def window(used: float | None, length: int, reset_at: int | None) -> dict[str, Any] | None:
            if used is None:
                return None
            at = reset_at if reset_at is not None else now + length
            return {
                "used_percent": used,
                "limit_window_seconds": length,
                "reset_after_seconds": max(0, at - now),
                "reset_at": at,
            }

        return (
            window(s.primary, s.primary_window_s, s.primary_reset_at),
            window(s.secondary, s.secondary_window_s, s.secondary_reset_at),
        )

    def wham_usage(self, headers: Any) -> Reply:
        with self.lock:
            try:
                reply = self._wham_usage(headers)
            except Fail as exc:
                reply = exc.reply
            reply.delay_s = float(self.config["usage_delay_ms"]) / 1000.0
            return reply

    def _wham_usage(self, headers: Any) -> Reply:
        status = self._use_failure("usage_fail_status", "usage_fail_times")
        if status is not None:
            raise fail(status, {"detail": "configured failure"})
        token, lineage, account = self._bearer(headers)
        log = {"token_sha8": sha8(token), "account_id": account.account_id}
        now = time.time()
        hits = self.usage_hits.setdefault(account.account_id, collections.deque())
        while hits and hits[0] <= now - float(self.config["usage_window_s"]):
            hits.popleft()
        if len(hits) >= int(self.config["usage_limit"]):
            return Reply(429, {"detail": "Too Many Requests"}, {"retry-after": "60"}, log=log)
        hits.append(now)
        s = self._usage_of(account.account_id)
        if s.document is not None:
            return Reply(200, copy.deepcopy(s.document), log=log)
        primary, secondary = self._windows(s)
        reached = s.limit_reached_type is not None
        doc = {
            "plan_type": account.plan_type,
            "rate_limit": {
                "allowed": not reached,
                "limit_reached": reached,
                "primary_window": primary,
                "secondary_window": secondary,
            },
            "credits": copy.deepcopy(s.credits),
            "rate_limit_reached_type": s.limit_reached_type,
        }
        return Reply(200, doc, log=log)

    # ----- workspace routing discovery -----

    def accounts_check(self, headers: Any) -> Reply:
        with self.lock:
            try:
                return self._accounts_check(headers)
            except Fail as exc:
                return exc.reply

    def _accounts_check(self, headers: Any) -> Reply:
        """``GET /backend-api/wham/accounts/check``: the workspaces the bearer may use. The
        interactive Codex (``account/read``) picks the entry whose ``id`` is its
        ``chatgpt_account_id`` and needs ``workspace_backend_origin`` and
        ``account_routing_override`` (one of ``NO_CONSTRAINT``, ``us``, ``us_cr``) on it; the
        origin ``NO_CONSTRAINT`` means "no workspace backend of its own", so Codex stays on its
        configured ``chatgpt_base_url``. Shape read in Codex's public source,
        ``codex-rs/app-server/src/request_processors/account_processor/workspace_routing.rs``
        (``read_account``, ``resolve_routing``) and the backend client's ``AccountEntry``."""
        token, _lineage, account = self._bearer(headers)
        entry = {
            "id": account.account_id,
            "plan_type": account.plan_type,
            "workspace_backend_origin": "https://chatgpt.com",
            "account_routing_override": "NO_CONSTRAINT",
        }
        log = {"token_sha8": sha8(token), "account_id": account.account_id}
        return Reply(200, {"accounts": [entry], "account_ordering": [account.account_id]}, log=log)

    # ----- responses -----

    def codex_headers(self, account: Account) -> dict[str, str]:
        s = self._usage_of(account.account_id)
        primary, secondary = self._windows(s)
        out: dict[str, str] = {}
        for name, w in (("primary", primary), ("secondary", secondary)):
            if w is None:
                continue
            out[f"x-codex-{name}-used-percent"] = repr(float(w["used_percent"]))
            out[f"x-codex-{name}-window-minutes"] = str(int(w["limit_window_seconds"]) // 60)
            out[f"x-codex-{name}-reset-at"] = str(w["reset_at"])
        return out

    def responses(self, headers: Any, raw: bytes) -> Reply:
        with self.lock:
            hold = bool(self.config["hold_responses"])
            if hold:
                auth = (headers.get("Authorization") or "").partition(" ")[2].strip()
                self.held.append({"token_sha8": sha8(auth), "t": time.time()})
        if hold and not self.release.acquire(timeout=60):
            return Reply(503, {"detail": "held too long"})
        reply = self._responses(headers, raw)
        reply.delay_s = float(self.config["responses_delay_ms"]) / 1000.0
        return reply

    def _responses(self, headers: Any, raw: bytes) -> Reply:
        with self.lock:
            try:
                token, _, account = self._bearer(headers)
            except Fail as exc:
                return exc.reply
            log = {
                "token_sha8": sha8(token),
                "account_id": account.account_id,
                "originator": headers.get("originator"),
                "session_id": headers.get("session_id"),
            }
            try:
                log["model"] = json.loads(raw or b"{}").get("model")
            except ValueError:
                return Reply(400, {"detail": "body is not JSON"}, log=log)
            settings = self.response_settings.setdefault(account.account_id, ResponseSettings())
            extra = self.codex_headers(account)
            if settings.mode == "unauthorized":
                body = {
                    "error": {
                        "message": "Provided authentication token is expired.",
                        "type": "invalid_request_error",
                        "code": "token_expired",
                    }
                }
                return Reply(401, body, extra, log=log)
            if settings.mode == "limit":
                resets_in = int(settings.resets_in_seconds)
                body = {
                    "error": {
                        "type": "usage_limit_reached",
                        "message": "The usage limit has been reached",
                        "plan_type": account.plan_type,
                        "resets_at": int(time.time()) + resets_in,
                        "resets_in_seconds": resets_in,
                    }
                }
                return Reply(429, body, extra, log=log)
            if settings.mode == "throttle":
                body = {
                    "error": {
                        "type": "rate_limit_exceeded",
                        "message": "Rate limit reached. Please try again later.",
                    }
                }
                return Reply(429, body, {**extra, "retry-after": "1"}, log=log)
            stream = sse_stream(settings.text)
        return Reply(200, stream, extra, "text/event-stream", log=log)

    # ----- admin -----

    def admin(self, method: str, name: str, body: dict[str, Any], query: dict[str, str]) -> Reply:
        with self.lock:
            try:
                return Reply(200, self._admin(method, name, body, query))
            except Fail as exc:
                return exc.reply

    def _admin(self, method: str, name: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        handler = getattr(self, "_admin_" + name.replace("-", "_"), None)
        if handler is None:
            raise fail(404, {"error": f"no admin endpoint {name!r}"})
        return handler(method, b, q)

    def _admin_accounts(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        if method != "POST":
            return [a.to_json() for a in self.accounts.values()]
        plan = b.get("plan_type", "plus")
        if plan not in PLAN_TYPES:
            raise fail(400, {"error": f"plan_type must be one of {PLAN_TYPES}"})
        user = b.get("user_id") or "user-" + secrets.token_hex(8)
        account = Account(
            b.get("account_id") or str(uuidlib.uuid4()),
            user,
            b.get("email") or f"{user}@example.com",
            plan,
        )
        self.accounts[account.account_id] = account
        return account.to_json()

    def _admin_mint(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        account = self._account(b.get("account_id"))
        lineage = Lineage(uuidlib.uuid4().hex, account.account_id, time.time())
        self.lineages[lineage.id] = lineage
        answer = self._issue(lineage)
        if b.get("expires_in") is not None:
            self.access[answer["access_token"]].expires_at = time.time() + float(b["expires_in"])
        return answer

    def _admin_config(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        unknown = set(b) - set(DEFAULT_CONFIG)
        if unknown:
            raise fail(400, {"error": f"unknown settings: {sorted(unknown)}"})
        self.config.update(b)
        return dict(self.config)

    def _admin_usage(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        s = self._usage_of(self._account(b.get("account_id")).account_id)
        settings = {k: v for k, v in b.items() if k != "account_id"}
        unknown = [k for k in settings if not hasattr(s, k)]
        if unknown:
            raise fail(400, {"error": f"unknown usage settings {unknown}"})
        for key, value in settings.items():
            setattr(s, key, value)
        return dict(s.__dict__)

    def _admin_responses(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        account = self._account(b.get("account_id"))
        mode = b.get("mode", "ok")
        if mode not in RESPONSE_MODES:
            raise fail(400, {"error": f"mode must be one of {RESPONSE_MODES}"})
        s = self.response_settings.setdefault(account.account_id, ResponseSettings())
        s.mode = mode
        if b.get("resets_in_seconds") is not None:
            s.resets_in_seconds = int(b["resets_in_seconds"])
        if b.get("text") is not None:
            s.text = str(b["text"])
        return dict(s.__dict__)

    def _admin_next_login(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        self.next_login = b.get("account_id")
        return {"next_login": self.next_login}

    def _admin_log(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        kind = q.get("kind")
        return [e for e in self.log if kind is None or e["kind"] == kind]

    def _admin_stats(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        return dict(self.stats)

    def _admin_reset_log(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        self.log.clear()
        self.stats.clear()
        return {}

    def _admin_reset_throttle(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        if b.get("account_id"):
            self.usage_hits.pop(str(b["account_id"]), None)
        else:
            self.usage_hits.clear()
        return {}

    def _admin_held(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        return list(self.held)

    def _admin_release(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        for _ in range(int(b.get("count", 1))):
            self.release.release()
        return {}

    def _admin_lineage(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        return self._lineage(q)

    def _admin_revoke(self, method: str, b: dict[str, Any], q: dict[str, str]) -> Any:
        n = 0
        for lineage in self.lineages.values():
            if lineage.account_id == b.get("account_id") and not lineage.revoked:
                lineage.revoked, lineage.live_refresh = True, None
                n += 1
        return {"revoked": n}

    def _lineage(self, q: dict[str, str]) -> dict[str, Any]:
        lineage: Lineage | None = None
        if q.get("refresh_token"):
            record = self.refresh.get(q["refresh_token"])
            lineage = self.lineages.get(record.lineage_id) if record else None
        elif q.get("access_token"):
            access = self.access.get(q["access_token"])
            lineage = self.lineages.get(access.lineage_id) if access else None
        elif q.get("account_id"):
            mine = [x for x in self.lineages.values() if x.account_id == q["account_id"]]
            if mine:
                out = mine[-1].to_json()
                out["lineages"] = [x.to_json() for x in mine]
                return out
        if lineage is None:
            raise fail(404, {"error": "no such lineage"})
        return lineage.to_json()


def sse_stream(text: str) -> bytes:
    """A minimal successful Responses stream: created, one message item, completed."""
    rid = "resp_" + secrets.token_hex(8)
    item = {
        "type": "message",
        "role": "assistant",
        "id": "msg_" + secrets.token_hex(8),
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    events = [
        {"type": "response.created", "response": {"id": rid}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
        {
            "type": "response.output_text.delta",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "delta": text,
        },
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": {"id": rid, "usage": usage}},
    ]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


STATE = FakeState()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A real server's answer leaves whole: without this, headers and body go in two sends and
    # the second waits for the client's delayed ACK (40 ms on Linux) on every answer.
    disable_nagle_algorithm = True
    server_version = "FakeChatGPT/1"
    verbose = False

    def log_message(self, fmt: str, *args: Any) -> None:
        if self.verbose:
            sys.stderr.write("fake_chatgpt: " + fmt % args + "\n")

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._chunked()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _send(self, kind: str, reply: Reply) -> None:
        if reply.delay_s:
            time.sleep(reply.delay_s)
        body = reply.body
        ctype = reply.content_type
        if isinstance(body, (dict, list)):
            data, ctype = json.dumps(body).encode(), ctype or "application/json"
        elif isinstance(body, str):
            data, ctype = body.encode(), ctype or "text/plain; charset=utf-8"
        elif isinstance(body, bytes):
            data = body
        else:
            data = b""
        if kind != "admin":
            with STATE.lock:
                STATE.stats[kind] += 1
                STATE.log.append(
                    {
                        "kind": kind,
                        "method": self.command,
                        "path": urlsplit(self.path).path,
                        "status": reply.status,
                        "t": time.time(),
                        "headers": self._shown_headers(),
                        **reply.log,
                    }
                )
        self.send_response(reply.status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _shown_headers(self) -> dict[str, str]:
        """The request's headers for the log, secrets replaced by their fingerprint."""
        out = {}
        for k, v in self.headers.items():
            secret = k.lower() in ("authorization", "cookie")
            out[k.lower()] = f"<sha8 {sha8(v.partition(' ')[2] or v)}>" if secret else v
        return out

    def _form_or_json(self, raw: bytes) -> dict[str, Any]:
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            try:
                doc = json.loads(raw or b"{}")
            except ValueError:
                return {}
            return doc if isinstance(doc, dict) else {}
        return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        raw = self._body() if method == "POST" else b""
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if path.startswith("/_admin/"):
            try:
                body = json.loads(raw or b"{}") if method == "POST" else {}
            except ValueError:
                body = {}
            self._send("admin", STATE.admin(method, path[len("/_admin/") :], body, query))
        elif path == "/oauth/authorize" and method == "GET":
            self._send("authorize", STATE.authorize(query))
        elif path == "/oauth/token" and method == "POST":
            body = self._form_or_json(raw)
            kind = {"authorization_code": "token_code", "refresh_token": "token_refresh"}
            self._send(kind.get(str(body.get("grant_type")), "token_other"), STATE.token(body))
        elif path in ("/backend-api/wham/usage", "/api/codex/usage") and method == "GET":
            self._send("usage", STATE.wham_usage(self.headers))
        elif path == "/backend-api/wham/accounts/check" and method == "GET":
            self._send("accounts_check", STATE.accounts_check(self.headers))
        elif path in ("/backend-api/codex/responses", "/v1/responses") and method == "POST":
            self._send("responses", STATE.responses(self.headers, raw))
        else:
            self._send("not_found", Reply(404, {"detail": "Not Found"}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_chatgpt")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    Handler.verbose = args.verbose
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    if args.watch_stdin:

        def watch() -> None:
            sys.stdin.buffer.read()
            server.shutdown()

        threading.Thread(target=watch, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
