"""Pi: ``${PI_CODING_AGENT_DIR:-~/.pi/agent}/auth.json``, entry ``anthropic``.

Pi refreshes under the proper-lockfile directory ``auth.json.lock`` next to the file (stale after
30 s); acct takes the same lock. ``settings.json`` next to it decides whether Pi retries a 429
for hours or exits at once. Anthropic bills this harness's OAuth traffic as extra usage.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from acct.base.errors import CorruptFile
from acct.base.fsio import atomic_write, dir_lock, read_json_object, real_path, write_json
from acct.base.paths import Paths
from acct.domain.classify import Patterns
from acct.domain.resume import PI_COMMANDS, pi_resume_args
from acct.services.targets.base import (
    Check,
    ProviderEntryTarget,
    env_dir,
    home_of,
    merge_json,
)
from acct.services.targets.route import (
    ANTHROPIC_API,
    ToolRoute,
    Unreadable,
    dig,
    loopback_bypass,
    read_settings,
)

PATTERNS = Patterns(
    quota=(r'429 \{[^\n]*"rate_limit_error"',),
    throttle=(r"not your usage limit",),
    # A refused refresh: 1.6.0 says so (then a stack trace), 0.73.1 only finds no key left.
    login=(r"OAuth refresh failed for anthropic:", r"No API key for provider: anthropic"),
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
        "so acct cannot rotate it without the usage proxy (--no-proxy)",
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


# Pi (0.73 and 1.x) reads the Anthropic base URL from ``models.json`` only (no variable); an
# extension's ``registerProvider`` outranks that file, and ``-e FILE`` loads one for one run
# (also under ``--no-extensions``). acct's extension reads the proxy's address from this
# variable and does nothing without it.
BASE_URL_VAR = "ACCT_PI_BASE_URL"
EXTENSION = f"""\
// Written by acct: for one `acct exec` run, send Pi's Anthropic requests to acct's usage proxy.
export default function (pi) {{
  const baseUrl = process.env.{BASE_URL_VAR};
  if (baseUrl) pi.registerProvider("anthropic", {{ baseUrl }});
}}
"""
# Pi's subcommands (`pi auth ...`) read their own words: no extension goes before them.
SUBCOMMANDS = PI_COMMANDS


def models_file(env: Mapping[str, str]) -> Path:
    return agent_dir(env) / "models.json"


def pi_route(env: Mapping[str, str]) -> ToolRoute:
    """Where Pi sends Anthropic requests: ``models.json`` ``providers.anthropic.baseUrl``, or
    Anthropic's API."""
    path = models_file(env)
    try:
        doc = read_settings(path)
    except Unreadable as e:
        return ToolRoute(ANTHROPIC_API, unreadable=e.path)
    value = dig(doc, "providers", "anthropic", "baseUrl")
    if isinstance(value, str) and value.strip():
        return ToolRoute(value.strip(), str(path))
    return ToolRoute(ANTHROPIC_API)


def extension_file(env: Mapping[str, str]) -> Path:
    """acct's Pi extension, kept in acct's state directory (rewritten when it differs)."""
    path = Paths.from_env(env).state_dir / "pi" / "acct-base-url.mjs"
    try:
        current = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        current = None
    if current != EXTENSION:
        atomic_write(path, EXTENSION, mode=0o644)
    return path


class Pi(ProviderEntryTarget):
    name = "pi"
    commands: tuple[str, ...] = ("pi",)
    refresh_margin = 0.0  # Pi refreshes once the stored expiry has passed
    patterns = PATTERNS
    extra_usage_billing = True
    fallback_env: tuple[str, ...] = ("ANTHROPIC_OAUTH_TOKEN", "ANTHROPIC_API_KEY")

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

    def route(self, env: Mapping[str, str], cwd: Path) -> ToolRoute:
        return pi_route(env)

    def proxy_env(self, base_url: str, env: Mapping[str, str]) -> dict[str, str]:
        return {BASE_URL_VAR: base_url, **loopback_bypass(env)}

    def proxy_argv(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """``pi -e <acct's extension> ...``. Left as it is: a subcommand's words, and a command
        that is not Pi itself (a wrapper run with ``--target pi``: its words are its own)."""
        words = list(argv)
        if not words or os.path.basename(words[0]) not in self.commands:
            return words
        if len(words) > 1 and words[1] in SUBCOMMANDS:
            return words
        return [*words[:1], "-e", str(extension_file(env)), *words[1:]]
