"""Anthropic endpoints and OAuth constants, overridable from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

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
            api_base=(env.get("ACCT_API_BASE") or d.api_base).rstrip("/"),
            token_url=env.get("ACCT_TOKEN_URL") or d.token_url,
            authorize_url=env.get("ACCT_AUTHORIZE_URL") or d.authorize_url,
        )

    @property
    def usage_url(self) -> str:
        return f"{self.api_base}/api/oauth/usage"

    @property
    def profile_url(self) -> str:
        return f"{self.api_base}/api/oauth/profile"
