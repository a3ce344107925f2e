"""Pi: ``${PI_CODING_AGENT_DIR:-~/.pi/agent}/auth.json``, entry ``anthropic``.

Pi refreshes under the proper-lockfile directory ``auth.json.lock`` next to the file (stale after
30 s); acct takes the same lock. ``settings.json`` next to it decides whether Pi retries a 429
for hours or exits at once. Anthropic bills this harness's OAuth traffic as extra usage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from acct.base.errors import CorruptFile
from acct.base.fsio import dir_lock, read_json_object, real_path, write_json
from acct.domain.classify import Patterns
from acct.domain.resume import pi_resume_args
from acct.services.targets.base import (
    Check,
    ProviderEntryTarget,
    env_dir,
    home_of,
    merge_json,
)

PATTERNS = Patterns(
    quota=(r'429 \{[^\n]*"rate_limit_error"',),
    throttle=(r"not your usage limit",),
    auth=(r"401 \{", r"Invalid bearer token", r"authentication_error"),
)


def agent_dir(env: Mapping[str, str]) -> Path:
    return env_dir(env, "PI_CODING_AGENT_DIR") or home_of(env) / ".pi" / "agent"


def settings_file(env: Mapping[str, str]) -> Path:
    return agent_dir(env) / "settings.json"


# Pi retries a 429 at two levels: the agent (`retry.enabled`, on by default) and the provider.
NO_RETRY: dict[str, object] = {"retry": {"enabled": False, "provider": {"maxRetries": 0}}}


def retry_off(doc: Mapping[str, object]) -> bool:
    """Whether Pi's settings make it exit on a 429 instead of sleeping through ``retry-after``."""
    retry = doc.get("retry")
    if not isinstance(retry, dict) or retry.get("enabled") is not False:
        return False
    provider = retry.get("provider")
    return isinstance(provider, dict) and provider.get("maxRetries") == 0


def retry_check(env: Mapping[str, str], fix: bool) -> list[Check]:
    path = settings_file(env)
    try:
        doc = read_json_object(path, what="Pi settings") or {}
    except CorruptFile as e:
        return [Check("pi", "retry", False, e.message)]
    if retry_off(doc):
        return [
            Check(
                "pi",
                "retry",
                True,
                "Pi exits on a 429 (retry.enabled=false, retry.provider.maxRetries=0)",
                path=str(path),
            )
        ]
    check = Check(
        "pi",
        "retry",
        False,
        "Pi retries a 429 for as long as the server says (hours on a quota limit), "
        "so acct cannot rotate",
        path=str(path),
        fix="set retry.enabled=false and retry.provider.maxRetries=0",
    )
    if fix:
        with dir_lock(Path(str(real_path(path)) + ".lock"), what="Pi's settings"):
            doc = read_json_object(path, what="Pi settings") or {}
            write_json(path, merge_json(doc, NO_RETRY))
        check.ok, check.fixed = True, True
        check.done = "set retry.enabled=false and retry.provider.maxRetries=0"
    return [check]


class Pi(ProviderEntryTarget):
    name = "pi"
    commands = ("pi",)
    refresh_margin = 0.0  # Pi refreshes once the stored expiry has passed
    patterns = PATTERNS
    extra_usage_billing = True
    fallback_env = ("ANTHROPIC_OAUTH_TOKEN", "ANTHROPIC_API_KEY")

    def tool_dir(self, env: Mapping[str, str]) -> Path:
        return agent_dir(env)

    def doctor_checks(self, env: Mapping[str, str], fix: bool) -> list[Check]:
        return retry_check(env, fix)

    def path(self, env: Mapping[str, str]) -> Path:
        return agent_dir(env) / "auth.json"

    def lock_dir(self, env: Mapping[str, str], path: Path) -> Path | None:
        # proper-lockfile resolves symlinks before it appends ".lock".
        return Path(str(real_path(path)) + ".lock")

    def resume_args(self, argv: Sequence[str], continuation_prompt: str) -> list[str]:
        """``pi --continue ...``; the messages become the continuation prompt (``@file`` kept)."""
        return pi_resume_args(argv, continuation_prompt)
