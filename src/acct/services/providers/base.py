"""What every provider (a kind of subscription login) offers acct: the :class:`Provider`
interface, and the plain data its implementations return.

A provider knows its own endpoints and formats: how a refresh token is spent, who a login
belongs to, how usage is read (polled, or from an answer's headers) and which words of its
tools mean a limit. Everything around those acts (locks, the store, custody, the usage cache,
back-offs) is the same for every provider and lives outside this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from acct.base.endpoints import LoginPlan
from acct.base.models import Account, ProviderName, Tokens, Usage
from acct.domain.classify import Patterns
from acct.services.context import Ctx

__all__ = ["Answer", "Identity", "LoginPlan", "Provider"]

if TYPE_CHECKING:
    import httpx


class Answer(Protocol):
    """A token endpoint's answer (a login or a refresh), as the store keeps it."""

    @property
    def access(self) -> str: ...

    def tokens(self, previous: Tokens | None = None) -> Tokens:
        """The stored form; keeps the previous refresh token when the answer carries none."""
        ...


@dataclass(frozen=True)
class Identity:
    """Who a login belongs to. For ChatGPT: ``uuid`` = chatgpt_user_id, ``org_uuid`` =
    chatgpt_account_id (the workspace ``ChatGPT-Account-Id`` names)."""

    uuid: str | None = None
    email: str | None = None
    display_name: str | None = None
    org_uuid: str | None = None
    org_name: str | None = None
    plan: str | None = None
    tier: str | None = None


class Provider(Protocol):
    name: ProviderName
    title: str  # "Claude" | "ChatGPT": how a person names the subscription
    patterns: Patterns  # the words of its tools that mean a limit, a throttle, a dead login
    login_command: (
        str  # what to run for a fresh login: "acct login" | "acct login --provider chatgpt"
    )
    login: LoginPlan

    def authorize_url(
        self, ctx: Ctx, redirect_uri: str, challenge: str, state: str, login_hint: str | None
    ) -> str:
        """The browser's login URL (PKCE S256 and a separate random ``state``)."""
        ...

    def exchange_code(
        self, ctx: Ctx, code: str, state: str, verifier: str, redirect_uri: str
    ) -> Answer:
        """Trade an authorization code for the first tokens of a new lineage."""
        ...

    def identity(self, ctx: Ctx, answer: Answer) -> tuple[Identity, list[str]]:
        """Who a fresh login is, and notes for the user when part of it is unknown."""
        ...

    def whose(self, ctx: Ctx, tokens: Tokens) -> Identity:
        """Who a login found in a tool's file belongs to. A token the server refuses raises
        :class:`~acct.services.oauth.TokenRefused`; no answer, another ``AcctError``."""
        ...

    def send_refresh(self, ctx: Ctx, acc: Account, tokens: Tokens, *, timeout: float) -> Answer:
        """Spend the refresh token once (the caller holds the account's lock). A dead lineage
        raises :class:`~acct.base.errors.NeedsLogin` (the account is marked), a lost answer a
        :class:`~acct.base.errors.NetworkError` saying so."""
        ...

    def fetch_usage(self, ctx: Ctx, client: httpx.Client, account: Account, access: str) -> Usage:
        """One usage request. A 429 is the endpoint's throttle (``RateLimited``), a refused
        token ``AuthError``; never a statement about the account's quota."""
        ...
