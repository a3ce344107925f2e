"""A loopback proxy in front of the Messages API that reads every answer's rate-limit headers.

Every ``/v1/messages`` answer carries the account's live usage in ``anthropic-ratelimit-unified-*``
headers. ``acct exec`` points the tool at this proxy for one run (Claude Code through
``ANTHROPIC_BASE_URL``, OpenCode, Pi and Codex through their targets' overlays); the proxy forwards
each request unchanged to the real upstream (the base URL the tool's own settings name, so proxies
chain), streams the answer back as it arrives and reports what the headers say. That gives acct
live usage without polling the throttled usage endpoint, and tells it that a request was refused
for quota even when the tool's words go to a terminal acct cannot read.

The proxy sees the tool's credentials in transit and keeps none: an observation names the
credential by fingerprint, nothing is logged, and errors name exception types, never values.

On a quota refusal of a request that carries the session's own credential, the proxy sends the
same request again on the next account (:mod:`.failover`) and the tool only sees the answer.

Why no refresh-token lineage ends up with two holders, whatever the proxy does:

- The proxy never writes a credentials file and never moves a lineage: the tool's file keeps
  the lineage acct lent it, and the tool goes on refreshing it as its only holder
  (Claude Code, OpenCode's plugin and Pi alike: each refreshes into its own file). The proxy
  only reads that file, to recognise the successor access token the tool refreshed into.
- The tokens it puts into requests are *access* tokens. An access token is not a lineage:
  presenting it spends nothing and rotates nothing.
- It takes them only from accounts whose lineage acct's store holds (no holder recorded), and
  refreshes them only through :func:`acct.services.oauth.ensure_fresh`: under the account's
  lock, re-reading the store first, refusing an account lent to any file. So a refresh by the
  proxy and a refresh by another acct process, or by a tool holding the lineage, never meet.
- Once another process lends such an account to a file, the next request sees its holder and
  stops using it (and its cached access token) at once.

The package, by concern: :mod:`.headers` (what an answer says), :mod:`.route` (where Claude Code
sends its requests), :mod:`.upstream` (the connection, made as Claude Code makes it),
:mod:`.server` (the forwarding server), :mod:`.cancel` (an exchange ends with its client),
:mod:`.failover` (the next account, in flight) and :mod:`.watch` (an exec session's view).
"""

from __future__ import annotations

from acct.services.proxy.failover import Failover, Plan, Switch, rewrite_user_id
from acct.services.proxy.headers import (
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
    "DEFAULT_UPSTREAM",
    "FIRST_PARTY_HOST",
    "HOP_BY_HOP",
    "MANAGED_SETTINGS",
    "OTHER_PROVIDERS",
    "PROMPT_EVERY",
    "ROUTE_VARIABLES",
    "Callback",
    "Failover",
    "Observation",
    "Plan",
    "Proxy",
    "QuotaSignal",
    "Route",
    "Switch",
    "Unusable",
    "Watch",
    "claude_route",
    "credential_of",
    "no_proxy_hosts",
    "parse_headers",
    "proxy_for",
    "reason",
    "rewrite_user_id",
    "settings_files",
    "start_watch",
    "tls_context",
    "upstream_for",
]
