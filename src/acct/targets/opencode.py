"""OpenCode: ``${XDG_DATA_HOME:-~/.local/share}/opencode/auth.json``, entry ``anthropic``.

OpenCode has no lock around this file. Its Claude login works only through the
``opencode-anthropic-auth`` plugin, which refreshes when the access token has expired and races
itself doing so: acct hands it a fresh access token. Anthropic bills this harness's OAuth
traffic as extra usage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from acct.targets.base import Patterns, ProviderEntryTarget, env_dir, has_flag, home_of, positionals

PLUGIN = "opencode-anthropic-auth"

_VALUE_OPTS = frozenset(
    {
        "--model",
        "-m",
        "--agent",
        "--session",
        "-s",
        "--file",
        "-f",
        "--format",
        "--title",
        "--attach",
        "--port",
        "--command",
        "--variant",
        "--log-level",
        "--hostname",
        "--prompt",
    }
)
_CONTINUE_OPTS = ("--continue", "-c", "--session", "-s")

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
        cmd, args = list(argv[:1]), list(argv[1:])
        if args[:1] != ["run"]:
            return cmd + (args if has_flag(args, *_CONTINUE_OPTS) else ["--continue", *args])
        rest = args[1:]
        pos = positionals(rest, _VALUE_OPTS)
        for i in reversed(pos):
            del rest[i]
        rest.append(continuation_prompt)
        if not has_flag(rest, *_CONTINUE_OPTS):
            rest.insert(0, "--continue")
        return cmd + ["run", *rest]
