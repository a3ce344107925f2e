"""OpenCode: ``${XDG_DATA_HOME:-~/.local/share}/opencode/auth.json``, entry ``anthropic``.

OpenCode has no lock around this file. Its Claude login works only through the
``opencode-anthropic-auth`` plugin, which refreshes when the access token has expired and races
itself doing so: acct hands it a fresh access token. Anthropic bills this harness's OAuth
traffic as extra usage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from acct.domain.resume import opencode_resume_args
from acct.services.targets.base import Patterns, ProviderEntryTarget, env_dir, home_of

PLUGIN = "opencode-anthropic-auth"


PATTERNS = Patterns(
    quota=(r"would exceed your account's rate limit",),
    throttle=(r"not your usage limit",),
    auth=(
        r"Invalid bearer token",
        r"Token refresh failed: 4\d\d",
        r"Anthropic API key is missing",
        r"authentication_error",
        r"\b401 Unauthorized",
        r"status code 401",
    ),
)


def data_dir(env: Mapping[str, str]) -> Path:
    return (env_dir(env, "XDG_DATA_HOME") or home_of(env) / ".local" / "share") / "opencode"


def config_file(env: Mapping[str, str]) -> Path:
    """``opencode.json``, where the ``plugin`` list lives."""
    return (
        (env_dir(env, "XDG_CONFIG_HOME") or home_of(env) / ".config") / "opencode" / "opencode.json"
    )


class OpenCode(ProviderEntryTarget):
    name = "opencode"
    commands = ("opencode",)
    refresh_margin = 0.0  # the plugin refreshes only once the access token has expired
    patterns = PATTERNS
    extra_usage_billing = True

    def path(self, env: Mapping[str, str]) -> Path:
        return data_dir(env) / "auth.json"

    def resume_args(self, argv: Sequence[str], continuation_prompt: str) -> list[str]:
        """``opencode run --continue <prompt>``; the interactive TUI gets ``--continue`` alone."""
        return opencode_resume_args(argv, continuation_prompt)
