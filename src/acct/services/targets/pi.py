"""Pi: ``${PI_CODING_AGENT_DIR:-~/.pi/agent}/auth.json``, entry ``anthropic``.

Pi refreshes under the proper-lockfile directory ``auth.json.lock`` next to the file (stale after
30 s); acct takes the same lock. ``settings.json`` next to it decides whether Pi retries a 429
for hours or exits at once. Anthropic bills this harness's OAuth traffic as extra usage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from acct.base.fsio import real_path
from acct.domain.resume import pi_resume_args
from acct.services.targets.base import Patterns, ProviderEntryTarget, env_dir, home_of


PATTERNS = Patterns(
    quota=(r'429 \{[^\n]*"rate_limit_error"',),
    throttle=(r"not your usage limit",),
    auth=(r"401 \{", r"Invalid bearer token", r"authentication_error"),
)


def agent_dir(env: Mapping[str, str]) -> Path:
    return env_dir(env, "PI_CODING_AGENT_DIR") or home_of(env) / ".pi" / "agent"


def settings_file(env: Mapping[str, str]) -> Path:
    return agent_dir(env) / "settings.json"


class Pi(ProviderEntryTarget):
    name = "pi"
    commands = ("pi",)
    refresh_margin = 0.0  # Pi refreshes once the stored expiry has passed
    patterns = PATTERNS
    extra_usage_billing = True

    def path(self, env: Mapping[str, str]) -> Path:
        return agent_dir(env) / "auth.json"

    def lock_dir(self, env: Mapping[str, str], path: Path) -> Path | None:
        # proper-lockfile resolves symlinks before it appends ".lock".
        return Path(str(real_path(path)) + ".lock")

    def resume_args(self, argv: Sequence[str], continuation_prompt: str) -> list[str]:
        """``pi --continue ...``; the messages become the continuation prompt (``@file`` kept)."""
        return pi_resume_args(argv, continuation_prompt)
