"""OpenCode: ``${XDG_DATA_HOME:-~/.local/share}/opencode/auth.json``, entry ``anthropic``.

OpenCode has no lock around this file. Its Claude login works only through the
``opencode-anthropic-auth`` plugin, which refreshes when the access token has expired and races
itself doing so: acct hands it a fresh access token. Anthropic bills this harness's OAuth
traffic as extra usage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from acct.base.errors import CorruptFile
from acct.base.fsio import dir_lock, read_json_object, real_path, write_json
from acct.domain.classify import Patterns
from acct.domain.resume import opencode_resume_args
from acct.services.targets.base import Check, ProviderEntryTarget, env_dir, home_of

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


def has_plugin(doc: Mapping[str, object], plugin: str = PLUGIN) -> bool:
    plugins = doc.get("plugin")
    return isinstance(plugins, list) and any(
        isinstance(p, str) and (p == plugin or p.startswith(plugin + "@")) for p in plugins
    )


def plugin_check(env: Mapping[str, str], fix: bool) -> list[Check]:
    path = config_file(env)
    try:
        doc = read_json_object(path, what="OpenCode config") or {}
    except CorruptFile as e:
        return [Check("opencode", "plugin", False, e.message)]
    if has_plugin(doc):
        return [Check("opencode", "plugin", True, f"plugin {PLUGIN} is enabled", path=str(path))]
    check = Check(
        "opencode",
        "plugin",
        False,
        f"without the plugin {PLUGIN} OpenCode cannot use a Claude login",
        path=str(path),
        fix=f'add "{PLUGIN}" to "plugin"',
    )
    plugins = doc.get("plugin")
    if fix and (plugins is None or isinstance(plugins, list)):
        with dir_lock(Path(str(real_path(path)) + ".lock"), what="OpenCode's config"):
            doc = read_json_object(path, what="OpenCode config") or {}
            current = doc.get("plugin")
            doc["plugin"] = [*(current if isinstance(current, list) else []), PLUGIN]
            write_json(path, doc)
        check.ok, check.fixed = True, True
        check.done = f'added "{PLUGIN}" to "plugin"'
    return [check]


class OpenCode(ProviderEntryTarget):
    name = "opencode"
    commands = ("opencode",)
    refresh_margin = 0.0  # the plugin refreshes only once the access token has expired
    patterns = PATTERNS
    extra_usage_billing = True
    overriding_env = ("OPENCODE_AUTH_CONTENT",)

    def tool_dir(self, env: Mapping[str, str]) -> Path:
        return data_dir(env)

    def doctor_checks(self, env: Mapping[str, str], fix: bool) -> list[Check]:
        return plugin_check(env, fix)

    def path(self, env: Mapping[str, str]) -> Path:
        return data_dir(env) / "auth.json"

    def resume_args(self, argv: Sequence[str], continuation_prompt: str) -> list[str]:
        """``opencode run --continue <prompt>``; the interactive TUI gets ``--continue`` alone."""
        return opencode_resume_args(argv, continuation_prompt)
