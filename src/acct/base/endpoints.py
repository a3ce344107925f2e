"""Anthropic endpoints and OAuth constants, overridable from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from acct.base.errors import ConfigError, UsageError

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
SCOPES = (
    "org:create_api_key",
    "user:profile",
    "user:inference",
    "user:sessions:claude_code",
    "user:mcp_servers",
    "user:file_upload",
)
OAUTH_BETA = "oauth-2025-04-20"
MANUAL_REDIRECT_URI = "https://platform.claude.com/oauth/code/callback"


@dataclass(frozen=True)
class Endpoints:
    api_base: str = "https://api.anthropic.com"
    token_url: str = "https://platform.claude.com/v1/oauth/token"
    authorize_url: str = "https://claude.com/cai/oauth/authorize"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Endpoints:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            api_base=_url(env, "ACCT_API_BASE", d.api_base).rstrip("/"),
            token_url=_url(env, "ACCT_TOKEN_URL", d.token_url),
            authorize_url=_url(env, "ACCT_AUTHORIZE_URL", d.authorize_url),
        )

    @property
    def usage_url(self) -> str:
        return f"{self.api_base}/api/oauth/usage"

    @property
    def profile_url(self) -> str:
        return f"{self.api_base}/api/oauth/profile"


def _url(env: Mapping[str, str], var: str, default: str) -> str:
    """The URL ``var`` sets (or ``default``), checked now: an http(s) URL with a host and a
    port in range, so that a typo is one error naming the variable, not a failure deep in
    the HTTP client."""
    value = env.get(var) or default
    problem = url_problem(value) if value != default else None
    if problem:
        raise ConfigError(
            f"the environment variable {var} is not a usable URL ({problem}): {value!r}",
            hint=f"set {var} to an http:// or https:// URL, or unset it",
        )
    return value


def url_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an endpoint URL, or None."""
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        return "it has spaces, control or non-ASCII characters"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        text = str(e)
        return text[:1].lower() + text[1:]
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    return _client_problem(value)


# A host name of ASCII letters, digits and inner hyphens, without IDNA labels: the HTTP client
# takes it as it is, so it need not be imported (about 50 ms) to say so.
_PLAIN_HOST = re.compile(
    r"(?!.*xn--)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
)
_NUMERIC = re.compile(r"[0-9.]+")
_IPV4 = re.compile(
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
)


def _plainly_fine(host: str) -> bool:
    """True for a host the HTTP client surely takes: a dotted IPv4 address or a plain name."""
    if _NUMERIC.fullmatch(host):
        return _IPV4.fullmatch(host) is not None
    return _PLAIN_HOST.fullmatch(host) is not None


def _client_problem(value: str) -> str | None:
    """What the HTTP client itself refuses in ``value`` (a malformed IPv4 address or IDNA label)."""
    host = urlsplit(value).hostname or ""
    if _plainly_fine(host):
        return None
    import httpx

    try:
        httpx.Request("GET", value)
    except Exception as e:  # noqa: BLE001 - httpx.InvalidURL, idna's errors (UnicodeError)...
        text = " ".join(str(e).split())[:80] or type(e).__name__
        return text[:1].lower() + text[1:]
    return None


@dataclass(frozen=True)
class LoginPlan:
    """How a provider's browser login comes back: the loopback port (0: any free one; a fixed
    one may be moved by ``port_env`` for tests), the callback's path and host, and a redirect
    page for a paste-only login (None: the user pastes the address the browser was sent to)."""

    port: int
    callback_path: str
    host: str = "localhost"
    manual_redirect: str | None = None
    port_env: str | None = None

    def port_in(self, env: Mapping[str, str]) -> int:
        raw = env.get(self.port_env, "").strip() if self.port_env else ""
        if not raw:
            return self.port
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise UsageError(f"{self.port_env}={raw!r} is not a port number (1-65535)")
        return int(raw)
