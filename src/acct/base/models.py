"""Plain data: accounts, tokens, custody and usage. No I/O here."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Kind = Literal["oauth", "api_key"]
# Whose login an account is: Anthropic (Claude Code, OpenCode, Pi) or ChatGPT (the Codex CLI).
ProviderName = Literal["anthropic", "chatgpt"]
PROVIDERS: tuple[ProviderName, ...] = ("anthropic", "chatgpt")

PLAN_BY_ORG_TYPE = {
    "claude_max": "max",
    "claude_pro": "pro",
    "claude_team": "team",
    "claude_enterprise": "enterprise",
}


def fingerprint(secret: str | None) -> str:
    """A short, non-reversible name for a secret: the first 8 hex digits of its SHA-256."""
    if not secret:
        return "-"
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


def new_id() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True)
class Tokens:
    access: str = field(repr=False)
    refresh: str | None = field(repr=False)
    expires_at: int  # epoch seconds
    scopes: tuple[str, ...] = ()
    # Epoch seconds when acct got these from the token endpoint (None: unknown, e.g. taken from a
    # tool's file). A forced refresh right after another process's refresh sends nothing.
    obtained_at: int | None = None
    # Keys of the stored ``tokens`` table this acct does not know, written back unchanged.
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def obtained_since(self, moment: float) -> bool:
        """Whether these tokens came from the token endpoint at or after ``moment``."""
        return self.obtained_at is not None and self.obtained_at >= moment

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    def fresh_for(self, margin: float, now: float | None = None) -> bool:
        return bool(self.access) and self.seconds_left(now) > margin

    @property
    def is_blank(self) -> bool:
        """Claude Code blanks its file on ``invalid_grant``: empty tokens, expiry 0."""
        return not self.access and not self.refresh

    @property
    def is_setup_token(self) -> bool:
        """``claude setup-token`` tokens carry ``user:inference`` alone and no refresh token."""
        return bool(self.scopes) and set(self.scopes) == {"user:inference"}

    @property
    def lineage_fingerprint(self) -> str:
        """What identifies the lineage's current link: the refresh token, else the access token."""
        return fingerprint(self.refresh or self.access)


@dataclass(frozen=True)
class Holder:
    """Custody: the account's refresh-token lineage is lent to a tool's file.

    While a holder is recorded, the file is the only live holder of the lineage and acct must not
    spend the refresh token it has in its store (it may be spent already).
    """

    target: str
    path: str
    fingerprint: str  # lineage fingerprint of what acct wrote (or found, for an import)
    since: int
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Account:
    """One login. For a ChatGPT account ``uuid`` is the ``chatgpt_user_id``, ``org_uuid`` the
    ``chatgpt_account_id`` (the workspace) and the id_token rides in ``tokens.extra``."""

    name: str
    kind: Kind = "oauth"
    provider: ProviderName = "anthropic"
    id: str = field(default_factory=new_id)
    uuid: str | None = None
    email: str | None = None
    display_name: str | None = None
    org_uuid: str | None = None
    org_name: str | None = None
    plan: str | None = None  # max | pro | team | enterprise
    tier: str | None = None  # rate_limit_tier, e.g. default_claude_max_20x
    tokens: Tokens | None = None
    api_key: str | None = field(default=None, repr=False)
    enabled: bool = True
    needs_login: bool = False
    added_at: int = field(default_factory=lambda: int(time.time()))
    last_used_at: int = 0
    holder: Holder | None = None
    # Keys of the stored account this acct does not know (a newer acct wrote them): kept as they are.
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str:
        if self.kind == "api_key":
            return fingerprint(self.api_key)
        return fingerprint(self.tokens.access if self.tokens else None)

    @property
    def is_oauth(self) -> bool:
        return self.kind == "oauth"

    @property
    def id_token(self) -> str | None:
        """A ChatGPT login's id_token (kept with the tokens; a secret like them)."""
        value = self.tokens.extra.get("id_token") if self.tokens else None
        return value if isinstance(value, str) and value else None

    def same_identity(self, uuid: str | None, org_uuid: str | None) -> bool:
        """One account per (account uuid, organization): one email can own several plans."""
        if not uuid or self.uuid != uuid:
            return False
        return not (org_uuid and self.org_uuid and org_uuid != self.org_uuid)

    def copy(self, **changes: Any) -> Account:
        return replace(self, **changes)


@dataclass(frozen=True)
class Window:
    """One quota window. ``utilization`` is percent (0-100, may exceed 100)."""

    utilization: float | None
    resets_at: float | None  # epoch seconds


def live_utilization(window: Window | None, now: float) -> float | None:
    """A window's utilization as of ``now``: 0 once its reset time has passed (the cached value
    is stale then)."""
    if window is None or window.utilization is None:
        return None
    if window.resets_at is not None and window.resets_at <= now:
        return 0.0
    return window.utilization


@dataclass(frozen=True)
class Usage:
    five_hour: Window | None = None
    seven_day: Window | None = None
    # Per-model weekly caps and similar extras: (label, percent, resets_at)
    scoped: tuple[tuple[str, float | None, float | None], ...] = ()
    extra_usage_enabled: bool | None = None
    # What the two columns really are when a provider's windows have other lengths:
    # (("five_hour", "5-hour"), ("seven_day", "7-day")). Empty: Anthropic's 5-hour and 7-day.
    labels: tuple[tuple[str, str], ...] = ()

    def label(self, slot: str, default: str) -> str:
        return dict(self.labels).get(slot, default)

    @property
    def peak(self) -> float | None:
        """The highest known utilization over the 5-hour and 7-day windows."""
        vals = [
            w.utilization
            for w in (self.five_hour, self.seven_day)
            if w and w.utilization is not None
        ]
        return max(vals) if vals else None


@dataclass(frozen=True)
class UsageRecord:
    """What the shared cache knows about one account's usage."""

    account_id: str
    usage: Usage | None = None  # last good values
    fetched_at: float | None = None  # when the last good values came
    attempted_at: float | None = None
    error: str | None = None  # code of the last failed poll, cleared by a success
    error_message: str | None = None
    backoff_until: float | None = None
    failures: int = 0
