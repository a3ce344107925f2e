"""OpenCode: ``${XDG_DATA_HOME:-~/.local/share}/opencode/auth.json``, entry ``anthropic``.

OpenCode has no lock around this file. Its Claude login works only through the
``opencode-anthropic-auth`` plugin, which refreshes when the access token has expired and races
itself doing so: acct hands it a fresh access token. Anthropic bills this harness's OAuth
traffic as extra usage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from acct.base.errors import CorruptFile
from acct.base.fsio import dir_lock, read_json_object, real_path, write_json
from acct.domain.classify import Patterns
from acct.domain.resume import opencode_resume_args
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
    git_root,
    loads_jsonc,
    loopback_bypass,
    read_settings,
    upward,
)

PLUGIN = "opencode-anthropic-auth"


PATTERNS = Patterns(
    quota=(r"would exceed your account's rate limit",),
    throttle=(r"not your usage limit",),
    # The plugin's refresh was refused: the lineage in the file is spent (or the plugin raced
    # itself; exec then sees the file renewed and rests the account instead).
    login=(r"Token refresh failed: 4\d\d",),
    auth=(
        r"Invalid bearer token",
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


def names_plugin(entry: str, plugin: str = PLUGIN) -> bool:
    """Whether a ``plugin`` entry loads ``plugin``: its package name (``@version`` or not), or a
    path or URL of the package's directory or of a file in it
    (``file:///…/opencode-anthropic-auth/index.mjs``), as OpenCode 1.18 accepts them."""
    entry = entry.strip()
    if entry == plugin or entry.startswith(plugin + "@"):
        return True
    if not (entry.startswith(("file:", "/", "./", "../", "~", "http:", "https:"))):
        return False
    path = urlsplit(entry).path if "://" in entry or entry.startswith("file:") else entry
    parts = [unquote(p) for p in path.replace("\\", "/").split("/") if p]
    return any(p == plugin or p.startswith(plugin + "@") for p in parts)


def has_plugin(doc: Mapping[str, object], plugin: str = PLUGIN) -> bool:
    plugins = doc.get("plugin")
    return isinstance(plugins, list) and any(
        isinstance(p, str) and names_plugin(p, plugin) for p in plugins
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
            if not has_plugin(doc):  # read again under the lock: never a second entry
                doc["plugin"] = [*(current if isinstance(current, list) else []), PLUGIN]
                write_json(path, doc)
        check.ok, check.fixed = True, True
        check.done = f'added "{PLUGIN}" to "plugin"'
    return [check]


# OpenCode's Anthropic provider (@ai-sdk/anthropic): ``provider.anthropic.options.baseURL`` from
# the merged config, else ``ANTHROPIC_BASE_URL``, else this.
DEFAULT_BASE_URL = f"{ANTHROPIC_API}/v1"
CONFIG_CONTENT = "OPENCODE_CONFIG_CONTENT"
MANAGED_DIR = Path("/etc/opencode")
_BASE_URL_KEYS = ("provider", "anthropic", "options", "baseURL")
_ENV_REF = re.compile(r"\{env:([^}]+)\}")


def config_dir(env: Mapping[str, str]) -> Path:
    return config_file(env).parent


def _layers(env: Mapping[str, str], cwd: Path) -> list[tuple[str, Path | None]]:
    """OpenCode's config sources, lowest precedence first, as 1.18.33 merges them: the global
    files, ``OPENCODE_CONFIG``, the project's files (from the git root down to ``cwd``), the
    ``.opencode`` directories and ``OPENCODE_CONFIG_DIR``, then ``OPENCODE_CONFIG_CONTENT``
    (``(name, None)``). The managed directory comes after all of these: see ``route``."""
    home = config_dir(env)
    out: list[tuple[str, Path | None]] = [
        (str(home / n), home / n) for n in ("config.json", "opencode.json", "opencode.jsonc")
    ]
    if env.get("OPENCODE_CONFIG"):
        out.append((env["OPENCODE_CONFIG"], Path(env["OPENCODE_CONFIG"])))
    dirs = list(reversed(upward(cwd, git_root(cwd))))
    if not env.get("OPENCODE_DISABLE_PROJECT_CONFIG"):
        out += [(str(d / n), d / n) for d in dirs for n in ("opencode.json", "opencode.jsonc")]
    extra = [d / ".opencode" for d in dirs]
    if env.get("OPENCODE_CONFIG_DIR"):
        extra.append(Path(env["OPENCODE_CONFIG_DIR"]))
    out += [(str(d / n), d / n) for d in extra for n in ("opencode.json", "opencode.jsonc")]
    if env.get(CONFIG_CONTENT):
        out.append((CONFIG_CONTENT, None))
    return out


def _base_url_in(doc: Mapping[str, object] | None, env: Mapping[str, str]) -> str | None:
    value = dig(doc, *_BASE_URL_KEYS)
    if not isinstance(value, str) or not value.strip():
        return None
    return _ENV_REF.sub(lambda m: env.get(m.group(1), ""), value).strip()


def _content(env: Mapping[str, str]) -> dict[str, object] | None:
    """``OPENCODE_CONFIG_CONTENT`` as an object; ValueError when OpenCode could not read it."""
    text = env.get(CONFIG_CONTENT)
    if not text:
        return None
    doc = loads_jsonc(text)
    if not isinstance(doc, dict):
        raise ValueError(CONFIG_CONTENT)  # noqa: TRY004  (a config OpenCode cannot read)
    return doc


def opencode_route(env: Mapping[str, str], cwd: Path, managed: Path = MANAGED_DIR) -> ToolRoute:
    """Where OpenCode 1.18, started with ``env`` in ``cwd``, sends Anthropic requests."""
    url, source = DEFAULT_BASE_URL, None
    if (env.get("ANTHROPIC_BASE_URL") or "").strip():
        url, source = env["ANTHROPIC_BASE_URL"].strip(), "ANTHROPIC_BASE_URL"
    for name, path in _layers(env, cwd):
        try:
            doc = _content(env) if path is None else read_settings(path, jsonc=True)
        except Unreadable as e:
            return ToolRoute(url, source, unreadable=e.path)
        except ValueError:
            return ToolRoute(url, source, unreadable=Path(CONFIG_CONTENT))
        found = _base_url_in(doc, env)
        if found:
            url, source = found, name
    for n in ("opencode.json", "opencode.jsonc"):
        try:
            doc = read_settings(managed / n, jsonc=True)
        except Unreadable as e:
            return ToolRoute(url, source, unreadable=e.path)
        if _base_url_in(doc, env):
            return ToolRoute(url, source, beyond=f"{managed / n} sets the Anthropic base URL")
    return ToolRoute(url, source)


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

    def route(self, env: Mapping[str, str], cwd: Path) -> ToolRoute:
        return opencode_route(env, cwd)

    def proxy_env(self, base_url: str, env: Mapping[str, str]) -> dict[str, str]:
        """``OPENCODE_CONFIG_CONTENT`` with the Anthropic base URL laid over the user's own
        content (OpenCode merges it after every config file but its managed one)."""
        overlay: dict[str, object] = {"provider": {"anthropic": {"options": {"baseURL": base_url}}}}
        doc = merge_json(_content(env) or {}, overlay)
        return {CONFIG_CONTENT: json.dumps(doc, ensure_ascii=False), **loopback_bypass(env)}
