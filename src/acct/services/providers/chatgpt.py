"""ChatGPT accounts (the Codex CLI's provider): endpoints, PKCE login, refresh, usage.

Nothing here prints, stores or locks: these functions talk to the servers and map every
failure to an acct error (``base/errors.py``). Spending a refresh token is the dangerous act
(tokens rotate and are single-use; presenting a spent one revokes the whole chain), so the
caller runs :func:`refresh` under the account's lock, exactly as for Anthropic accounts.

Endpoints default to the real ones and move for tests with ``ACCT_CHATGPT_AUTH_BASE``
(``https://auth.openai.com``) and ``ACCT_CHATGPT_API_BASE`` (``https://chatgpt.com/backend-api``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from acct.base import wire
from acct.base.errors import (
    AuthError,
    NeedsLogin,
    NetworkError,
    ProtocolError,
)
from acct.base.models import Account, ProviderName, Tokens, Usage
from acct.domain.chatgpt import (
    PATTERNS,
    IdClaims,
    LabelledUsage,
    parse_id_claims,
    parse_wham_usage,
)
from acct.services.answers import json_of, transient
from acct.services.context import Ctx
from acct.services.providers.base import Answer as BaseAnswer
from acct.services.providers.base import Identity, LoginPlan

if TYPE_CHECKING:
    import httpx

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"  # the Codex CLI's public client
# What Codex 0.171.0 sends to /oauth/authorize (its loopback server listens on 1455 only).
SCOPES = (
    "openid",
    "profile",
    "email",
    "offline_access",
    "api.connectors.read",
    "api.connectors.invoke",
)
LOGIN_PORT = 1455
REDIRECT_URI = f"http://localhost:{LOGIN_PORT}/auth/callback"
HTTP_TIMEOUT = 20.0
DEFAULT_EXPIRES_IN = 3600  # assumed when an answer names no lifetime and the JWT has no exp

# The token endpoint's codes for a refresh token that can never work again.
DEAD_LINEAGE = frozenset(
    {"refresh_token_reused", "refresh_token_invalidated", "refresh_token_expired", "invalid_grant"}
)


class Unanswered(NetworkError):
    """The request may have reached the server, but its answer was lost (timeout, broken
    connection). For a refresh this matters: the server may have rotated the lineage, so the
    refresh token in hand may be spent. Re-read whoever holds the lineage before retrying."""

    code = "unanswered"


@dataclass(frozen=True)
class ChatGPTEndpoints:
    auth_base: str = "https://auth.openai.com"
    api_base: str = "https://chatgpt.com/backend-api"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChatGPTEndpoints:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            auth_base=(env.get("ACCT_CHATGPT_AUTH_BASE") or d.auth_base).rstrip("/"),
            api_base=(env.get("ACCT_CHATGPT_API_BASE") or d.api_base).rstrip("/"),
        )

    @property
    def authorize_url(self) -> str:
        return f"{self.auth_base}/oauth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.auth_base}/oauth/token"

    @property
    def usage_url(self) -> str:
        return f"{self.api_base}/wham/usage"

    @property
    def responses_url(self) -> str:
        """Where the Codex CLI sends its turns (its provider ``base_url`` + ``/responses``)."""
        return f"{self.api_base}/codex/responses"


def authorize_url(
    endpoints: ChatGPTEndpoints,
    challenge: str,
    state: str,
    *,
    redirect_uri: str = REDIRECT_URI,
) -> str:
    """The browser's login URL, with the parameters Codex sends. ``state`` must be a random
    value of its own (never the PKCE verifier): the callback's ``state`` is checked against it."""
    if not challenge or not state:
        raise ValueError("authorize_url needs a PKCE challenge and a state")
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": " ".join(SCOPES),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
        "state": state,
        "originator": "codex_cli_rs",
    }
    return f"{endpoints.authorize_url}?{urlencode(params)}"


# --- token answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatGPTTokens:
    """One answer of the token endpoint: the three tokens and who they belong to."""

    id_token: str = field(repr=False)
    access: str = field(repr=False)
    refresh: str | None = field(repr=False)
    expires_at: int
    obtained_at: int
    claims: IdClaims = field(default_factory=IdClaims)

    @property
    def account_id(self) -> str | None:
        return self.claims.account_id

    def tokens(self, previous: Tokens | None = None) -> Tokens:
        """acct's :class:`Tokens`; the id_token rides in ``extra`` (a Codex file needs it).
        An answer without a refresh token keeps the previous one."""
        extra: dict[str, Any] = dict(previous.extra) if previous else {}
        extra["id_token"] = self.id_token
        if self.account_id:
            extra["account_id"] = self.account_id
        keep = previous.refresh if previous else None
        return Tokens(
            self.access,
            self.refresh or keep,
            self.expires_at,
            (),
            self.obtained_at,
            extra=extra,
        )


def _str(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) and value else None


def parse_token_answer(
    doc: Any, *, previous_id_token: str | None = None, now: float | None = None
) -> ChatGPTTokens:
    """A token answer. A refresh answer without an id_token keeps the previous one."""
    if not isinstance(doc, Mapping) or not _str(doc, "access_token"):
        raise ProtocolError("the ChatGPT token endpoint answered without an access token")
    now = time.time() if now is None else now
    id_token = _str(doc, "id_token") or previous_id_token
    if not id_token:
        raise ProtocolError("the ChatGPT token endpoint answered without an id_token")
    access = str(doc["access_token"])
    expires_in = doc.get("expires_in")
    if not isinstance(expires_in, bool) and isinstance(expires_in, int | float):
        expires_at = int(now + expires_in)
    else:
        expires_at = parse_id_claims(access).expires_at or int(now + DEFAULT_EXPIRES_IN)
    return ChatGPTTokens(
        id_token=id_token,
        access=access,
        refresh=_str(doc, "refresh_token"),
        expires_at=expires_at,
        obtained_at=int(now),
        claims=parse_id_claims(id_token),
    )


# --- errors -------------------------------------------------------------------------------------


def error_code(response: httpx.Response) -> str | None:
    """The machine code of an error answer: ``error.code`` (OpenAI style), else ``error`` (OAuth
    style), else ``error.type``."""
    try:
        doc = response.json()
    except ValueError:
        return None
    if not isinstance(doc, Mapping):
        return None
    err = doc.get("error")
    if isinstance(err, str):
        return err
    if isinstance(err, Mapping):
        for key in ("code", "type"):
            if isinstance(err.get(key), str) and err[key]:
                return str(err[key])
    return None


def _client(client: httpx.Client | None, timeout: float) -> httpx.Client:
    if client is not None:
        return client
    import httpx

    # A refresh's request goes through its courier, which reads the proxy settings itself.
    courier = wire.transport()
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        trust_env=courier is None,
        transport=courier,
    )


def _send(
    client: httpx.Client | None,
    method: str,
    url: str,
    what: str,
    timeout: float,
    **kwargs: Any,
) -> httpx.Response:
    """One request. Failures before anything was sent become :class:`NetworkError`; after the
    request may have been sent, :class:`Unanswered` (a lost refresh answer may have rotated)."""
    import httpx

    own = client is None
    c = _client(client, timeout)
    try:
        # A refresh in flight is recorded as the request goes on the wire.
        return c.request(method, url, extensions={"trace": wire.trace}, **kwargs)
    except (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.ProxyError,  # the proxy refused the tunnel: nothing reached the endpoint
        httpx.UnsupportedProtocol,
        httpx.LocalProtocolError,
    ) as e:
        raise NetworkError(f"cannot reach {what} ({type(e).__name__}); nothing was sent") from None
    except httpx.TimeoutException:
        raise Unanswered(f"{what} did not answer within {timeout:g}s") from None
    except httpx.HTTPError as e:
        raise Unanswered(f"the connection to {what} broke ({type(e).__name__})") from None
    finally:
        if own:
            c.close()


# --- code exchange and refresh --------------------------------------------------------------------


def exchange_code(
    endpoints: ChatGPTEndpoints,
    code: str,
    verifier: str,
    *,
    redirect_uri: str = REDIRECT_URI,
    client: httpx.Client | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> ChatGPTTokens:
    """Trade an authorization code for the first tokens of a new lineage (form-encoded, as
    OAuth wants it; ``redirect_uri`` must be the one sent to authorize)."""
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
    }
    response = _send(
        client, "POST", endpoints.token_url, "the ChatGPT token endpoint", timeout, data=body
    )
    failure = transient(response, "the ChatGPT token endpoint")
    if failure:
        raise failure
    if response.status_code != 200:
        code_ = error_code(response) or f"status {response.status_code}"
        if code_ == "invalid_client":
            raise AuthError(
                "the ChatGPT token endpoint does not accept the Codex client id (invalid_client)"
            )
        raise AuthError(
            f"the login code was refused ({code_}): it may have expired or been used already; "
            "nothing was stored",
            hint="run `acct login --provider chatgpt` again",
        )
    return parse_token_answer(json_of(response, "the ChatGPT token endpoint"))


def refresh(
    endpoints: ChatGPTEndpoints,
    tokens: Tokens,
    *,
    account: str = "this account",
    client: httpx.Client | None = None,
    timeout: float = 60.0,
) -> ChatGPTTokens:
    """Spend the refresh token once (JSON body, as Codex 0.171.0 sends it). Run it under the
    account's lock. A dead lineage (reused, revoked, expired) raises :class:`NeedsLogin`; 5xx,
    429 and timeouts raise :class:`NetworkError`/:class:`RateLimited` (try again later: if the
    request was sent the lineage may have rotated, so the caller re-reads before retrying)."""
    if not tokens.refresh:
        raise NeedsLogin(
            f"{account} has no refresh token", hint="run `acct login --provider chatgpt`"
        )
    body = {
        "client_id": CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": tokens.refresh,
    }
    try:
        response = _send(
            client, "POST", endpoints.token_url, "the ChatGPT token endpoint", timeout, json=body
        )
    except Unanswered as e:
        raise Unanswered(
            f"{e.message}: the refresh token of {account} may be spent already",
            hint="re-read the login before refreshing again",
        ) from None
    failure = transient(response, "the ChatGPT token endpoint")
    if failure:
        raise failure
    if response.status_code != 200:
        code = error_code(response) or f"status {response.status_code}"
        if code in DEAD_LINEAGE or response.status_code == 401:
            raise NeedsLogin(
                f"{account}'s ChatGPT login is no longer valid ({code})",
                hint="run `acct login --provider chatgpt`",
            )
        if code == "invalid_client":
            raise AuthError(
                "the ChatGPT token endpoint does not accept the Codex client id (invalid_client)"
            )
        raise ProtocolError(f"the ChatGPT token endpoint refused the refresh ({code})")
    previous = tokens.extra.get("id_token")
    return parse_token_answer(
        json_of(response, "the ChatGPT token endpoint"),
        previous_id_token=previous if isinstance(previous, str) else None,
    )


# --- usage ----------------------------------------------------------------------------------------


def fetch_usage(
    endpoints: ChatGPTEndpoints,
    access: str,
    account_id: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = HTTP_TIMEOUT,
    now: float | None = None,
) -> LabelledUsage:
    """``GET wham/usage`` with the bearer token and ``ChatGPT-Account-Id``. A 429 is the
    endpoint's throttle (:class:`RateLimited`), never a statement about the account's quota."""
    headers = {"authorization": f"Bearer {access}", "chatgpt-account-id": account_id}
    response = _send(
        client, "GET", endpoints.usage_url, "the ChatGPT usage endpoint", timeout, headers=headers
    )
    failure = transient(response, "the ChatGPT usage endpoint")
    if failure:
        raise failure
    if response.status_code == 401:
        raise AuthError("the ChatGPT access token was refused", hint="refresh the account's login")
    if response.status_code != 200:
        raise ProtocolError(f"the ChatGPT usage endpoint answered {response.status_code}")
    try:
        return parse_wham_usage(
            json_of(response, "the ChatGPT usage endpoint"), time.time() if now is None else now
        )
    except ValueError as e:
        raise ProtocolError(f"the ChatGPT usage answer is not understood: {e}") from None


# --- the provider ---------------------------------------------------------------------------------


def _endpoints(ctx: Ctx) -> ChatGPTEndpoints:
    return ChatGPTEndpoints.from_env(ctx.env)


def account_id_of(account: Account) -> str | None:
    """The ``ChatGPT-Account-Id`` of an account: its workspace (``org_uuid``), else the one
    its tokens name."""
    if account.org_uuid:
        return account.org_uuid
    extra = account.tokens.extra if account.tokens else {}
    value = extra.get("account_id")
    if isinstance(value, str) and value:
        return value
    return parse_id_claims(account.id_token).account_id


def identity_of(id_token: str | None) -> Identity:
    """Who an id_token says its login is (claims read without a signature check: for display
    and matching, never for granting anything)."""
    claims = parse_id_claims(id_token)
    return Identity(
        uuid=claims.user_id,
        email=claims.email,
        org_uuid=claims.account_id,
        plan=claims.plan_type,
    )


class ChatGPT:
    name: ProviderName = "chatgpt"
    title = "ChatGPT"
    patterns = PATTERNS
    login_command = "acct login --provider chatgpt"
    # The Codex client's only registered redirect: http://localhost:1455/auth/callback.
    # (ACCT_CHATGPT_LOGIN_PORT moves it, for tests: the real server accepts 1455 only).
    login = LoginPlan(
        port=LOGIN_PORT, callback_path="/auth/callback", port_env="ACCT_CHATGPT_LOGIN_PORT"
    )

    def authorize_url(
        self, ctx: Ctx, redirect_uri: str, challenge: str, state: str, login_hint: str | None
    ) -> str:
        return authorize_url(_endpoints(ctx), challenge, state, redirect_uri=redirect_uri)

    def exchange_code(
        self, ctx: Ctx, code: str, state: str, verifier: str, redirect_uri: str
    ) -> ChatGPTTokens:
        return exchange_code(_endpoints(ctx), code, verifier, redirect_uri=redirect_uri)

    def identity(self, ctx: Ctx, answer: BaseAnswer) -> tuple[Identity, list[str]]:
        id_token = answer.tokens().extra.get("id_token")
        who = identity_of(id_token if isinstance(id_token, str) else None)
        notes = [] if who.uuid else ["the id_token names no ChatGPT user: identity unknown"]
        return who, notes

    def whose(self, ctx: Ctx, tokens: Tokens) -> Identity:
        """The file's id_token names its login (Codex writes the one its login answer gave),
        and the server vouches for the workspace: the usage endpoint answers the file's access
        token for the workspace named in ``ChatGPT-Account-Id`` only when the token is that
        workspace's (unsigned-as-read claims alone would let any local process name an account
        of its choosing). The user within a shared workspace is the id_token's word. A login
        without an id_token (Pi's ``openai-codex`` entry keeps none) is named by the claims of
        its access token, the very token the server then has to accept."""
        from acct.services.oauth import TokenRefused

        id_token = tokens.extra.get("id_token")
        who = identity_of(id_token if isinstance(id_token, str) and id_token else tokens.access)
        given = tokens.extra.get("account_id")
        workspace = given if isinstance(given, str) and given else who.org_uuid
        if not who.uuid or not workspace:
            raise ProtocolError("the file's ChatGPT login names no ChatGPT user and workspace")
        if who.org_uuid and workspace != who.org_uuid:
            raise ProtocolError("the file's ChatGPT login names two workspaces")
        try:
            fetch_usage(_endpoints(ctx), tokens.access, workspace)
        except AuthError:
            raise TokenRefused("the ChatGPT usage endpoint refused this access token") from None
        return replace(who, org_uuid=workspace)

    def send_refresh(
        self, ctx: Ctx, acc: Account, tokens: Tokens, *, timeout: float
    ) -> ChatGPTTokens:
        from acct.services.oauth import RefreshUnanswered
        from acct.services.oauth.refresh import mark_needs_login

        if acc.provider != "chatgpt":
            raise ProtocolError(
                f"account {acc.name!r} is a {acc.provider} login: the ChatGPT token endpoint "
                "cannot refresh it; nothing was sent"
            )
        try:
            return refresh(
                _endpoints(ctx), tokens, account=f"account {acc.name!r}", timeout=timeout
            )
        except NeedsLogin as e:
            if acc.id:
                mark_needs_login(ctx, acc.id, tokens)
            raise NeedsLogin(e.message, hint=f"acct login --provider chatgpt {acc.name}") from None
        except Unanswered as e:
            raise RefreshUnanswered(e.message, hint=e.hint) from None

    def fetch_usage(self, ctx: Ctx, client: httpx.Client, account: Account, access: str) -> Usage:
        workspace = account_id_of(account)
        if not workspace:
            raise ProtocolError(f"account {account.name!r} names no ChatGPT workspace")
        return fetch_usage(_endpoints(ctx), access, workspace, client=client).as_usage()


CHATGPT = ChatGPT()
