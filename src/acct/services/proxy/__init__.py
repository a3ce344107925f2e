"""A loopback proxy in front of the Messages API that reads every answer's rate-limit headers.

Every ``/v1/messages`` answer carries the account's live usage in ``anthropic-ratelimit-unified-*``
headers. ``acct exec`` points Claude Code at this proxy (``ANTHROPIC_BASE_URL``); the
proxy forwards each request unchanged to the real upstream (the user's own
``ANTHROPIC_BASE_URL`` when one was set, so proxies chain), streams the answer back as it arrives
and reports what the headers say. That gives acct live usage without polling the throttled usage
endpoint, and tells it that a request was refused for quota even when the tool's words go to a
terminal acct cannot read.

The proxy sees the tool's credentials in transit and keeps none: an observation names the
credential by fingerprint, nothing is logged, and errors name exception types, never values.

The package, by concern: :mod:`.headers` (what an answer says), :mod:`.route` (where Claude Code
sends its requests), :mod:`.upstream` (the connection, made as Claude Code makes it),
:mod:`.server` (the forwarding server) and :mod:`.watch` (an exec session's view).
"""

from __future__ import annotations

from acct.services.proxy.headers import (
    CLAIM_WINDOWS,
    Observation,
    QuotaSignal,
    credential_of,
    parse_headers,
)
from acct.services.proxy.route import (
    ASSUME_FIRST_PARTY,
    DEFAULT_UPSTREAM,
    FIRST_PARTY_HOST,
    MANAGED_SETTINGS,
    OTHER_PROVIDERS,
    ROUTE_VARIABLES,
    Route,
    claude_route,
    settings_files,
    upstream_for,
)
from acct.services.proxy.server import HOP_BY_HOP, Callback, Proxy
from acct.services.proxy.upstream import Unusable, no_proxy_hosts, proxy_for, reason, tls_context
from acct.services.proxy.watch import PROMPT_EVERY, Watch, start_watch

__all__ = [
    "ASSUME_FIRST_PARTY",
    "CLAIM_WINDOWS",
    "DEFAULT_UPSTREAM",
    "FIRST_PARTY_HOST",
    "HOP_BY_HOP",
    "MANAGED_SETTINGS",
    "OTHER_PROVIDERS",
    "PROMPT_EVERY",
    "ROUTE_VARIABLES",
    "Callback",
    "Observation",
    "Proxy",
    "QuotaSignal",
    "Route",
    "Unusable",
    "Watch",
    "claude_route",
    "credential_of",
    "no_proxy_hosts",
    "parse_headers",
    "proxy_for",
    "reason",
    "settings_files",
    "start_watch",
    "tls_context",
    "upstream_for",
]
