"""Anthropic accounts (Claude Code, OpenCode, Pi): the :class:`~acct.services.providers.base.
Provider` around :mod:`acct.services.oauth` (login, refresh, profile) and the usage endpoint.

The usage request and its parsing live here; :mod:`acct.services.usage` (the shared cache, the
claims, the back-offs) asks the account's provider for the one request it sends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from acct.base.endpoints import MANUAL_REDIRECT_URI, OAUTH_BETA
from acct.base.errors import AuthError, NetworkError, ProtocolError, RateLimited
from acct.base.models import Account, ProviderName, Tokens, Usage, Window
from acct.base.timefmt import epoch_seconds
from acct.domain.classify import Patterns
from acct.services import oauth
from acct.services.answers import retry_after
from acct.services.context import Ctx
from acct.services.providers.base import Answer, Identity, LoginPlan

if TYPE_CHECKING:
    import httpx


class UsageTimeout(NetworkError):
    code = "timeout"


class UsageServerError(NetworkError):
    code = "server_error"


class UsageForbidden(AuthError):
    """403: the token may not read usage (a setup token has ``user:inference`` only)."""

    code = "forbidden"


# --- parsing ----------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _epoch(value: Any) -> float | None:
    """``resets_at`` as epoch seconds: ISO-8601 text (the usual form) or a number."""
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None
        try:
            return dt.timestamp()
        except (OverflowError, OSError, ValueError):
            return None
    n = _number(value)
    if n is None or n <= 0:
        return None
    return epoch_seconds(n)


def _window(value: Any, key: str = "utilization") -> Window | None:
    if not isinstance(value, Mapping):
        return None
    w = Window(_number(value.get(key)), _epoch(value.get("resets_at")))
    return None if w.utilization is None and w.resets_at is None else w


def _scope_label(limit: Mapping[str, Any]) -> str | None:
    scope = limit.get("scope")
    model = scope.get("model") if isinstance(scope, Mapping) else None
    label = model.get("display_name") if isinstance(model, Mapping) else None
    return label if isinstance(label, str) and label else None


def parse_usage(doc: Any) -> Usage:
    """Read a usage answer. Fields may be null or absent; some answers carry only
    ``limits[]``, where ``session`` is the 5-hour window, ``weekly_all`` the 7-day one and
    ``weekly_scoped`` a per-model weekly cap.

    Raises :class:`ProtocolError` for anything that is not a usage answer; never anything else.
    """
    if not isinstance(doc, Mapping):
        raise ProtocolError("the usage answer is not a JSON object")
    if not any(k in doc for k in ("five_hour", "seven_day", "limits")):
        raise ProtocolError("the usage answer has neither five_hour, seven_day nor limits")
    five_hour = _window(doc.get("five_hour"))
    seven_day = _window(doc.get("seven_day"))
    scoped: dict[str, tuple[str, float | None, float | None]] = {}
    limits = doc.get("limits")
    for limit in limits if isinstance(limits, list) else ():
        if not isinstance(limit, Mapping):
            continue
        kind = limit.get("kind")
        w = _window(limit, "percent")
        if kind == "session" and five_hour is None:
            five_hour = w
        elif kind == "weekly_all" and seven_day is None:
            seven_day = w
        elif kind == "weekly_scoped" and w is not None and (label := _scope_label(limit)):
            scoped.setdefault(label.casefold(), (label, w.utilization, w.resets_at))
    for key, label in (("seven_day_opus", "Opus"), ("seven_day_sonnet", "Sonnet")):
        w = _window(doc.get(key))
        if w is not None and w.utilization is not None:
            scoped.setdefault(label.casefold(), (label, w.utilization, w.resets_at))
    extra = doc.get("extra_usage")
    enabled = extra.get("is_enabled") if isinstance(extra, Mapping) else None
    return Usage(
        five_hour=five_hour,
        seven_day=seven_day,
        scoped=tuple(scoped.values()),
        extra_usage_enabled=enabled if isinstance(enabled, bool) else None,
    )


# --- one request ------------------------------------------------------------------------------


def _get(client: httpx.Client, url: str, access: str) -> httpx.Response:
    import httpx

    headers = {"authorization": f"Bearer {access}", "anthropic-beta": OAUTH_BETA}
    try:
        return client.get(url, headers=headers)
    except httpx.TimeoutException:
        raise UsageTimeout("the usage request timed out") from None
    except httpx.HTTPError as e:
        raise NetworkError(f"cannot reach the usage endpoint ({type(e).__name__})") from None


def _answer(response: httpx.Response) -> Usage:
    status = response.status_code
    if status == 429:
        raise RateLimited(
            "the usage endpoint is rate-limited",
            retry_after=retry_after(response.headers.get("retry-after")),
        )
    if status == 401:
        raise AuthError("the access token was refused", hint="run `acct login` if this persists")
    if status == 403:
        raise UsageForbidden("this token may not read usage (a setup token?)")
    if status >= 500:
        raise UsageServerError(f"the usage endpoint answered {status}")
    if status != 200:
        raise ProtocolError(f"the usage endpoint answered {status}")
    try:
        doc = response.json()
    except ValueError:
        raise ProtocolError("the usage answer is not JSON") from None
    return parse_usage(doc)


# --- the provider ---------------------------------------------------------------------------------


class Anthropic:
    name: ProviderName = "anthropic"
    title = "Claude"
    patterns = Patterns()  # each target brings its own words (Claude Code, OpenCode, Pi differ)
    login_command = "acct login"
    login = LoginPlan(port=0, callback_path="/callback", manual_redirect=MANUAL_REDIRECT_URI)

    def authorize_url(
        self, ctx: Ctx, redirect_uri: str, challenge: str, state: str, login_hint: str | None
    ) -> str:
        return oauth.authorize_url(ctx.endpoints, redirect_uri, challenge, state, login_hint)

    def exchange_code(
        self, ctx: Ctx, code: str, state: str, verifier: str, redirect_uri: str
    ) -> oauth.TokenAnswer:
        return oauth.exchange_code(ctx, code, state, verifier, redirect_uri)

    def identity(self, ctx: Ctx, answer: Answer) -> tuple[Identity, list[str]]:
        """The profile of a fresh login, degraded to the token answer's identity when the
        profile cannot be read."""
        assert isinstance(answer, oauth.TokenAnswer)
        notes: list[str] = []
        try:
            p = oauth.fetch_profile(ctx, answer.access)
            return Identity(
                p.uuid, p.email, p.display_name, p.org_uuid, p.org_name, p.plan, p.tier
            ), notes
        except oauth.ProfileForbidden:
            notes.append("the profile is not available to this token (403): plan unknown")
        except (NetworkError, RateLimited, ProtocolError, AuthError) as e:
            notes.append(f"could not read the profile ({e.message}): plan unknown")
        return Identity(
            answer.account_uuid, answer.email, None, answer.org_uuid, answer.org_name
        ), notes

    def whose(self, ctx: Ctx, tokens: Tokens) -> Identity:
        p = oauth.fetch_profile(ctx, tokens.access)
        return Identity(p.uuid, p.email, p.display_name, p.org_uuid, p.org_name, p.plan, p.tier)

    def send_refresh(
        self, ctx: Ctx, acc: Account, tokens: Tokens, *, timeout: float
    ) -> oauth.TokenAnswer:
        return oauth.send_refresh(ctx, acc, tokens, timeout=timeout)

    def fetch_usage(self, ctx: Ctx, client: httpx.Client, account: Account, access: str) -> Usage:
        return _answer(_get(client, ctx.endpoints.usage_url, access))


ANTHROPIC = Anthropic()
