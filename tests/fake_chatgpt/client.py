"""`FakeChatGPT`: start the fake ChatGPT server as a subprocess and drive its admin endpoints.

    with FakeChatGPT() as fake:
        account = fake.add_account(email="work@example.com", plan_type="plus")
        tokens = fake.mint(account["account_id"])
        env = {**os.environ, **fake.env()}   # points acct at the fake

Standard library only (urllib), like tests/fake_anthropic/client.py.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from tests.fake_process import REPO_ROOT, FakeProcess

from .server import sha8


class FakeChatGPTError(RuntimeError):
    """An admin call failed, or the server did not start."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class FakeChatGPT(FakeProcess):
    """Handle on one fake ChatGPT server process."""

    module = "tests.fake_chatgpt"
    label = "fake ChatGPT"
    error = FakeChatGPTError

    # ----- addresses -----

    @property
    def api_base(self) -> str:
        return self.base_url + "/backend-api"

    def env(self) -> dict[str, str]:
        """Environment variables that point acct at this fake."""
        return {"ACCT_CHATGPT_AUTH_BASE": self.base_url, "ACCT_CHATGPT_API_BASE": self.api_base}

    def codex_config(self, provider: str = "acct") -> list[str]:
        """`codex` arguments that send its turns and backend calls to this fake (measured on
        0.171.0: a custom provider with requires_openai_auth sends the ChatGPT token)."""
        provider_table = (
            f'{{name="{provider}",base_url="{self.api_base}/codex",'
            'wire_api="responses",requires_openai_auth=true}'
        )
        return [
            "-c",
            f'chatgpt_base_url="{self.api_base}/"',
            "-c",
            f"model_provider={provider}",
            "-c",
            f"model_providers.{provider}={provider_table}",
        ]

    def codex_env(self) -> dict[str, str]:
        """Environment that moves the Codex CLI's token refresh to this fake."""
        return {"CODEX_REFRESH_TOKEN_URL_OVERRIDE": self.base_url + "/oauth/token"}

    # ----- admin endpoints -----

    def add_account(
        self,
        email: str | None = None,
        *,
        account_id: str | None = None,
        user_id: str | None = None,
        plan_type: str = "plus",
    ) -> dict[str, Any]:
        """Create (or replace) an account: {account_id, user_id, email, plan_type}."""
        body = {
            "email": email,
            "account_id": account_id,
            "user_id": user_id,
            "plan_type": plan_type,
        }
        return cast(
            dict[str, Any], self._admin("POST", "accounts", {k: v for k, v in body.items() if v})
        )

    def accounts(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._admin("GET", "accounts"))

    def mint(self, account_id: str, expires_in: int | None = None) -> dict[str, Any]:
        """A fresh lineage: {id_token, access_token, refresh_token, expires_in, ...}."""
        body: dict[str, Any] = {"account_id": account_id}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return cast(dict[str, Any], self._admin("POST", "mint", body))

    def auth_json(self, account_id: str, expires_in: int | None = None) -> dict[str, Any]:
        """A Codex ``auth.json`` document holding a fresh lineage of the account."""
        t = self.mint(account_id, expires_in)
        return {
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": None,
            "tokens": {
                "id_token": t["id_token"],
                "access_token": t["access_token"],
                "refresh_token": t["refresh_token"],
                "account_id": account_id,
            },
            "last_refresh": "2026-12-01T00:00:00Z",
        }

    def configure(self, **settings: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self._admin("POST", "config", settings))

    def set_usage(self, account_id: str, **settings: Any) -> dict[str, Any]:
        """primary, secondary (used_percent or None), primary_window_s, secondary_window_s,
        primary_reset_at, secondary_reset_at (epoch s), limit_reached_type, credits, document."""
        return cast(
            dict[str, Any], self._admin("POST", "usage", {"account_id": account_id, **settings})
        )

    def set_responses(
        self,
        account_id: str,
        mode: str,
        *,
        resets_in_seconds: int | None = None,
        text: str | None = None,
    ) -> dict[str, Any]:
        """How the Responses API answers the account: ok, limit, throttle, unauthorized."""
        body = {
            "account_id": account_id,
            "mode": mode,
            "resets_in_seconds": resets_in_seconds,
            "text": text,
        }
        return cast(dict[str, Any], self._admin("POST", "responses", body))

    def held(self) -> list[dict[str, Any]]:
        """Responses requests parked by ``hold_responses`` so far: [{token_sha8, t}]."""
        return cast(list[dict[str, Any]], self._admin("GET", "held"))

    def release(self, count: int = 1) -> None:
        """Let ``count`` parked (or future) Responses requests go on."""
        self._admin("POST", "release", {"count": count})

    def wait_held(self, n: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until ``n`` requests have been parked; the parked requests."""
        deadline = time.monotonic() + timeout
        while True:
            held = self.held()
            if len(held) >= n:
                return held
            if time.monotonic() > deadline:
                raise FakeChatGPTError(f"only {len(held)} Responses requests arrived, not {n}")
            time.sleep(0.05)

    def next_login(self, account_id: str | None) -> None:
        self._admin("POST", "next-login", {"account_id": account_id})

    def open_authorize(self, url: str) -> dict[str, Any]:
        """Act as the user's browser on an authorize URL (whatever its host), without following
        the redirect: {status, location, code, state} (or {status, body} when refused)."""
        parts = urlsplit(url)
        target = f"{self.base_url}/oauth/authorize" + ("?" + parts.query if parts.query else "")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            response = opener.open(target, timeout=30)
            status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, exc.headers, exc.read()
        if status != 302:
            return {"status": status, "body": body.decode("utf-8", "replace")}
        location = headers["Location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        return {
            "status": status,
            "location": location,
            "code": query.get("code"),
            "state": query.get("state"),
        }

    def log(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Requests seen: {kind, path, method, status, t, headers, token_sha8?, account_id?}.
        kind: authorize, token_code, token_refresh, token_other, usage, accounts_check, responses,
        not_found."""
        return cast(list[dict[str, Any]], self._admin("GET", "log", query={"kind": kind}))

    def stats(self) -> dict[str, int]:
        return cast(dict[str, int], self._admin("GET", "stats"))

    def lineage(
        self,
        account_id: str | None = None,
        refresh_token: str | None = None,
        access_token: str | None = None,
    ) -> dict[str, Any]:
        """{"revoked", "live_refresh_sha8", "refresh_count", ...}, by token or account."""
        query = {
            "account_id": account_id,
            "refresh_token": refresh_token,
            "access_token": access_token,
        }
        return cast(dict[str, Any], self._admin("GET", "lineage", query=query))

    def revoke(self, account_id: str) -> int:
        return int(self._admin("POST", "revoke", {"account_id": account_id})["revoked"])

    def reset_log(self) -> None:
        self._admin("POST", "reset-log")

    def reset_throttle(self, account_id: str | None = None) -> None:
        self._admin("POST", "reset-throttle", {"account_id": account_id})

    @staticmethod
    def sha8(token: str) -> str:
        return sha8(token)


__all__ = ["REPO_ROOT", "FakeChatGPT", "FakeChatGPTError"]
