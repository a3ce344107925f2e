"""Providers: whose subscription an account is (Anthropic, ChatGPT), one implementation each
behind :class:`~acct.services.providers.base.Provider`.

Code that refreshes a login or reads usage asks the account's provider (:func:`of`) instead of
branching on it; the refresh functions here are :mod:`acct.services.oauth`'s (one lock, one
room, one rescue for every provider) with the account's provider sending the request.
"""

from __future__ import annotations

from typing import Any

from acct.base.errors import UsageError
from acct.base.models import PROVIDERS, Account, Tokens
from acct.services import oauth
from acct.services.context import Ctx
from acct.services.oauth.refresh import Refreshed, RefreshResult
from acct.services.providers.anthropic import ANTHROPIC
from acct.services.providers.base import Answer, Identity, LoginPlan, Provider
from acct.services.providers.chatgpt import CHATGPT

REGISTRY: dict[str, Provider] = {p.name: p for p in (ANTHROPIC, CHATGPT)}
assert tuple(REGISTRY) == PROVIDERS


def get(name: str) -> Provider:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown provider {name!r} (providers: {', '.join(PROVIDERS)})") from None


def of(account: Account) -> Provider:
    """The provider an account's login belongs to."""
    return REGISTRY[account.provider]


def send_refresh(ctx: Ctx, acc: Account, tokens: Tokens, *, timeout: float) -> Refreshed:
    """Spend the refresh token at the account's own provider."""
    return of(acc).send_refresh(ctx, acc, tokens, timeout=timeout)


def refresh_result(ctx: Ctx, account_id: str, **kw: Any) -> RefreshResult:
    """:func:`acct.services.oauth.refresh_result` for an account of any provider."""
    return oauth.refresh_result(ctx, account_id, send=send_refresh, **kw)


def refresh(ctx: Ctx, account_id: str, **kw: Any) -> Account:
    """:func:`acct.services.oauth.refresh` for an account of any provider."""
    return oauth.refresh(ctx, account_id, send=send_refresh, **kw)


def ensure_fresh(ctx: Ctx, account_id: str, margin: float, **kw: Any) -> Account:
    """:func:`acct.services.oauth.ensure_fresh` for an account of any provider."""
    return oauth.ensure_fresh(ctx, account_id, margin, send=send_refresh, **kw)


def recover_refreshes(ctx: Ctx) -> list[str]:
    """:func:`acct.services.oauth.recover_refreshes`, each journaled answer parsed by its
    account's provider."""
    return oauth.recover_refreshes(ctx, send=send_refresh)


def refresh_unstored(
    ctx: Ctx, tokens: Tokens, *, what: str, provider: str = "anthropic", **kw: Any
) -> Refreshed:
    """Spend a refresh token the store does not hold (a tool's file) at ``provider``."""
    p = get(provider)
    return oauth.refresh_unstored(
        ctx, tokens, what=what, send=p.send_refresh, provider=p.name, **kw
    )


__all__ = [
    "REGISTRY",
    "Answer",
    "Identity",
    "LoginPlan",
    "Provider",
    "ensure_fresh",
    "get",
    "of",
    "recover_refreshes",
    "refresh",
    "refresh_result",
    "refresh_unstored",
    "send_refresh",
]
