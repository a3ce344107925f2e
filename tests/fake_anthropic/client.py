"""`FakeAnthropic`: start the fake server as a subprocess and drive its admin endpoints.

    with FakeAnthropic() as fake:
        account = fake.add_account(email="work@example.com", plan="claude_max")
        tokens = fake.mint(account["uuid"])
        env = {**os.environ, **fake.env()}   # points acct at the fake

Standard library only (urllib), so it works wherever the tests run.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from tests.fake_process import REPO_ROOT, FakeProcess

from .server import CLAUDE_CODE_SCOPES, CLIENT_ID, sha8


class FakeAnthropicError(RuntimeError):
    """An admin call failed, or the server did not start."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _when(value: datetime | float | str | None) -> str | float | None:
    """A reset time for the admin API: datetimes become ISO-8601, the rest passes through."""
    return value.isoformat() if isinstance(value, datetime) else value


class FakeAnthropic(FakeProcess):
    """Handle on one fake Anthropic server process."""

    module = "tests.fake_anthropic"
    label = "fake Anthropic"
    error = FakeAnthropicError

    def __init__(self, *, latency_ms: int = 0, verbose: bool = False) -> None:
        super().__init__(verbose=verbose)
        self._latency_ms = latency_ms

    def extra_args(self) -> list[str]:
        return ["--latency-ms", str(self._latency_ms)] if self._latency_ms else []

    # ----- addresses -----

    @property
    def token_url(self) -> str:
        return self.base_url + "/v1/oauth/token"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/oauth/authorize"

    def env(self) -> dict[str, str]:
        """Environment variables that point acct at this fake."""
        return {
            "ACCT_API_BASE": self.base_url,
            "ACCT_TOKEN_URL": self.token_url,
            "ACCT_AUTHORIZE_URL": self.authorize_url,
        }

    # ----- admin endpoints -----

    def add_account(
        self,
        email: str | None = None,
        *,
        uuid: str | None = None,
        plan: str = "claude_max",
        display_name: str | None = None,
        org_uuid: str | None = None,
        org_name: str | None = None,
        rate_limit_tier: str | None = None,
    ) -> dict[str, Any]:
        """Create (or replace, same uuid) an account; missing fields are generated.

        `plan` is the organization_type: claude_max, claude_pro, claude_team, claude_enterprise.
        Returns {uuid, email, display_name, org_uuid, org_name, organization_type, rate_limit_tier}.
        """
        body = {
            "uuid": uuid,
            "email": email,
            "organization_type": plan,
            "display_name": display_name,
            "org_uuid": org_uuid,
            "org_name": org_name,
            "rate_limit_tier": rate_limit_tier,
        }
        fields = {k: v for k, v in body.items() if v is not None}
        return cast(dict[str, Any], self._admin("POST", "accounts", fields))

    def accounts(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._admin("GET", "accounts"))

    def mint(
        self,
        uuid: str,
        scopes: list[str] | tuple[str, ...] | None = None,
        expires_in: int | None = None,
    ) -> dict[str, Any]:
        """A fresh lineage for the account, as the token endpoint would answer it.

        scopes default to Claude Code's; ["user:inference"] gives a setup token.
        expires_in may be 0 or negative for an access token that is already expired.
        """
        body: dict[str, Any] = {"uuid": uuid}
        if scopes is not None:
            body["scopes"] = list(scopes)
        if expires_in is not None:
            body["expires_in"] = expires_in
        return cast(dict[str, Any], self._admin("POST", "mint", body))

    def mint_setup_token(self, uuid: str) -> str:
        """An access token with only user:inference, like `claude setup-token` prints."""
        return str(
            self.mint(uuid, scopes=["user:inference"], expires_in=365 * 86400)["access_token"]
        )

    def api_key(self, uuid: str) -> str:
        """An `sk-ant-api03-` key for the account, accepted by /v1/messages as x-api-key."""
        return str(self._admin("POST", "api-key", {"uuid": uuid})["api_key"])

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change run-time settings (see DEFAULT_CONFIG in server.py); returns all of them."""
        return cast(dict[str, Any], self._admin("POST", "config", settings))

    def config(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._admin("GET", "config"))

    def set_usage(self, uuid: str, **settings: Any) -> dict[str, Any]:
        """Set what /api/oauth/usage answers for the account (percent 0-100).

        Keys left out keep their value; None means null:
          five_hour, seven_day                      utilization in percent
          five_hour_resets_at, seven_day_resets_at  datetime, ISO-8601 string or epoch seconds
          variant                                   "full", "limits_only" or "nulls"
          seven_day_opus, seven_day_sonnet, seven_day_oauth_apps   percent or None
          weekly_scoped                             {"Opus": 100}: extra weekly_scoped limits
          extra_usage                               dict answered as extra_usage
          document                                  dict answered verbatim instead
        """
        body = {k: _when(v) if k.endswith("_resets_at") else v for k, v in settings.items()}
        return cast(dict[str, Any], self._admin("POST", "usage", {"uuid": uuid, **body}))

    def set_messages(
        self,
        uuid: str,
        mode: str,
        reset_epoch: int | None = None,
        claim: str | None = None,
        lift_at_reset: bool | None = None,
        *,
        cache_creation_tokens: int | None = None,
        cache_read_tokens: int | None = None,
    ) -> dict[str, Any]:
        """How /v1/messages answers the account: ok, quota, throttle, unauthorized, overage;
        and the cache tokens its answers' usage reports. ``lift_at_reset``: a quota refusal
        ends once ``reset_epoch`` has passed."""
        body: dict[str, Any] = {"uuid": uuid, "mode": mode, "reset_epoch": reset_epoch}
        if claim is not None:
            body["claim"] = claim
        if lift_at_reset is not None:
            body["lift_at_reset"] = lift_at_reset
        if cache_creation_tokens is not None:
            body["cache_creation_tokens"] = cache_creation_tokens
        if cache_read_tokens is not None:
            body["cache_read_tokens"] = cache_read_tokens
        return cast(dict[str, Any], self._admin("POST", "messages", body))

    def next_login(self, uuid: str | None) -> None:
        """The account the next browser login approves as (None: back to the default)."""
        self._admin("POST", "next-login", {"uuid": uuid})

    def authorize_code(self, **params: Any) -> dict[str, Any]:
        """Run the authorize step without a browser; returns {code, state, account_uuid}.

        Takes the authorize query parameters (client_id, redirect_uri, scope, state,
        code_challenge, ...); code=true, response_type=code, S256 and the client id default.
        """
        body = {
            "code": "true",
            "client_id": CLIENT_ID,
            "response_type": "code",
            "scope": " ".join(CLAUDE_CODE_SCOPES),
            "code_challenge_method": "S256",
            **params,
        }
        return cast(dict[str, Any], self._admin("POST", "authorize-code", body))

    def open_authorize(self, url: str, *, follow_redirect: bool = True) -> dict[str, Any]:
        """Act as the user's browser on an authorize URL (whatever its host).

        Returns {"status", "code", "state"}; for the manual flow also "paste" (CODE#STATE);
        for a loopback redirect also "location" and, when `follow_redirect`, the status and
        body the loopback callback answered ("callback_status", "callback_body").
        """
        parts = urlsplit(url)
        target = self.authorize_url + ("?" + parts.query if parts.query else "")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            response = opener.open(target, timeout=30)
            status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, exc.headers, exc.read()
        result: dict[str, Any] = {"status": status}
        if status == 200:
            paste = headers.get("X-Fake-Code", "")
            code, _, state = paste.partition("#")
            result.update(paste=paste, code=code, state=state)
        elif status == 302:
            location = headers["Location"]
            query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            result.update(location=location, code=query.get("code"), state=query.get("state"))
            if follow_redirect:
                try:
                    with urllib.request.urlopen(location, timeout=30) as callback:
                        result.update(
                            callback_status=callback.status, callback_body=callback.read()
                        )
                except urllib.error.HTTPError as exc:
                    result.update(callback_status=exc.code, callback_body=exc.read())
        else:
            raise FakeAnthropicError(f"authorize refused: {status} {body.decode(errors='replace')}")
        return result

    def log(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Requests seen: {kind, path, method, status, t, grant_type?, account_uuid?, token_sha8?}.

        kind: authorize, token_code, token_refresh, token_other, usage, profile, messages,
        count_tokens, not_found.
        """
        return cast(list[dict[str, Any]], self._admin("GET", "log", query={"kind": kind}))

    def stats(self) -> dict[str, int]:
        """Request counts per kind (token_refresh, token_code, usage, profile, messages, ...)."""
        return cast(dict[str, int], self._admin("GET", "stats"))

    def lineage(
        self,
        uuid: str | None = None,
        refresh_token: str | None = None,
        access_token: str | None = None,
    ) -> dict[str, Any]:
        """{"revoked", "live_refresh_sha8", "refresh_count", ...} of a lineage.

        By token: the lineage that token belongs to. By uuid: the account's newest lineage,
        with all of its lineages under "lineages".
        """
        query = {"uuid": uuid, "refresh_token": refresh_token, "access_token": access_token}
        return cast(dict[str, Any], self._admin("GET", "lineage", query=query))

    def issued(self) -> set[str]:
        """Every access and refresh token the fake ever issued."""
        got = cast(dict[str, list[str]], self._admin("GET", "issued"))
        return set(got["access"]) | set(got["refresh"])

    def revoke(self, uuid: str | None = None, *, refresh_token: str | None = None) -> int:
        """Revoke every lineage of the account (or the lineage of one refresh token)."""
        body = {"refresh_token": refresh_token} if refresh_token else {"uuid": uuid}
        return int(self._admin("POST", "revoke", body)["revoked"])

    def reset_log(self) -> None:
        """Forget the request log and the stats."""
        self._admin("POST", "reset-log")

    def reset_throttle(self, uuid: str | None = None) -> None:
        """Forget recent usage requests (of one account, or all) so usage answers again."""
        self._admin("POST", "reset-throttle", {"uuid": uuid})

    @staticmethod
    def sha8(token: str) -> str:
        """The fingerprint the log uses for a token."""
        return sha8(token)


def start_fake(**kwargs: Any) -> FakeAnthropic:
    """Start a fake outside a `with` block; call .stop() when done."""
    return FakeAnthropic(**kwargs).start()


__all__ = ["REPO_ROOT", "FakeAnthropic", "FakeAnthropicError", "start_fake"]
