"""Anthropic OAuth, by concern:

- :mod:`~acct.services.oauth.client`: PKCE, the authorize URL, the token endpoint, the profile;
- :mod:`~acct.services.oauth.refresh`: spending a refresh token and always keeping its answer;
- :mod:`~acct.services.oauth.flight`: refreshes in flight and the signals held back meanwhile;
- :mod:`~acct.services.oauth.loopback`: the browser login (loopback redirect or a paste).

Storing a fresh login is account bookkeeping: :func:`acct.app.accounts.store_login`. This
package's namespace is the API the rest of acct uses (``oauth.refresh(...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from acct.services.oauth.client import (
    DEFAULT_EXPIRES_IN,
    HTTP_TIMEOUT,
    ClientRejected,
    Pkce,
    Profile,
    ProfileForbidden,
    TokenAnswer,
    TokenRefused,
    authorize_url,
    exchange_code,
    fetch_profile,
    new_pkce,
    new_state,
    parse_profile,
    parse_token_answer,
    s256,
)
from acct.services.oauth.flight import finish_refreshes, refresh_in_flight, signals_held
from acct.services.oauth.refresh import (
    CONNECT_TIMEOUT,
    RECENT_REFRESH,
    REFRESH_TIMEOUT,
    STORE_WAIT,
    RefreshResult,
    RefreshUnanswered,
    Sender,
    ensure_fresh,
    flight_path,
    mark_needs_login,
    recover_refreshes,
    refresh,
    refresh_result,
    refresh_unstored,
    refresh_worst_case,
    rescue_path,
    send_refresh,
)

if TYPE_CHECKING:
    from acct.services.oauth.loopback import (
        LOGIN_TIMEOUT,
        CodeAnswer,
        LoginPrompt,
        login_flow,
        parse_pasted,
        printable,
    )

# The browser login's names, imported on first use: its loopback server (http.server and
# friends) is for `acct login` only, not for every run that merely lends or refreshes a token.
_LOGIN = ("LOGIN_TIMEOUT", "CodeAnswer", "LoginPrompt", "login_flow", "parse_pasted", "printable")


def __getattr__(name: str) -> Any:
    if name not in _LOGIN:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from acct.services.oauth import loopback

    value = getattr(loopback, name)
    globals()[name] = value
    return value


__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_EXPIRES_IN",
    "HTTP_TIMEOUT",
    "LOGIN_TIMEOUT",
    "RECENT_REFRESH",
    "REFRESH_TIMEOUT",
    "STORE_WAIT",
    "ClientRejected",
    "CodeAnswer",
    "LoginPrompt",
    "Pkce",
    "Profile",
    "ProfileForbidden",
    "RefreshResult",
    "RefreshUnanswered",
    "Sender",
    "TokenAnswer",
    "TokenRefused",
    "authorize_url",
    "ensure_fresh",
    "exchange_code",
    "fetch_profile",
    "finish_refreshes",
    "login_flow",
    "mark_needs_login",
    "new_pkce",
    "new_state",
    "parse_pasted",
    "parse_profile",
    "parse_token_answer",
    "printable",
    "refresh",
    "refresh_in_flight",
    "refresh_result",
    "refresh_unstored",
    "refresh_worst_case",
    "recover_refreshes",
    "flight_path",
    "rescue_path",
    "s256",
    "send_refresh",
    "signals_held",
]
