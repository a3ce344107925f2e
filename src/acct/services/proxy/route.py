"""Where Claude Code sends its API requests: its environment with its settings' ``env`` blocks."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from acct.base.errors import AcctError
from acct.base.inputs import read_json_object

FIRST_PARTY_HOST = "api.anthropic.com"
DEFAULT_UPSTREAM = f"https://{FIRST_PARTY_HOST}"
# Claude Code's own switch (read in 2.1.x): treat ANTHROPIC_BASE_URL as Anthropic's API.
ASSUME_FIRST_PARTY = "_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL"


def upstream_for(env: Mapping[str, str]) -> str:
    """Where the tool would have sent its requests: the user's own base URL, or Anthropic's."""
    return (env.get("ANTHROPIC_BASE_URL") or "").strip().rstrip("/") or DEFAULT_UPSTREAM


# Claude Code applies the ``env`` block of its settings files over the process environment. These
# variables there decide where its API requests go or how their connection is made: acct cannot
# be sure of the route then.
ROUTE_VARIABLES = frozenset(
    {
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_BEDROCK_BASE_URL",
        "ANTHROPIC_VERTEX_BASE_URL",
        "ANTHROPIC_FOUNDRY_BASE_URL",
        "CLAUDE_CODE_USE_BEDROCK",
        "CLAUDE_CODE_USE_VERTEX",
        "CLAUDE_CODE_USE_FOUNDRY",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "NODE_EXTRA_CA_CERTS",
        "NODE_TLS_REJECT_UNAUTHORIZED",
        "CLAUDE_CODE_CERT_STORE",
        "CLAUDE_CODE_CLIENT_CERT",
        "CLAUDE_CODE_CLIENT_KEY",
        "CLAUDE_CODE_CLIENT_KEY_PASSPHRASE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
# Providers whose requests do not follow ANTHROPIC_BASE_URL at all.
OTHER_PROVIDERS = {
    "CLAUDE_CODE_USE_BEDROCK": "Amazon Bedrock",
    "CLAUDE_CODE_USE_VERTEX": "Google Vertex AI",
    "CLAUDE_CODE_USE_FOUNDRY": "Microsoft Foundry",
}
MANAGED_SETTINGS = {
    "darwin": Path("/Library/Application Support/ClaudeCode/managed-settings.json"),
    "win32": Path("C:/Program Files/ClaudeCode/managed-settings.json"),
}.get(sys.platform, Path("/etc/claude-code/managed-settings.json"))


@dataclass(frozen=True)
class Route:
    """How Claude Code will send its API requests, as far as its environment and settings tell."""

    env: dict[str, str]  # the process environment with the settings' ``env`` blocks applied
    set_by_settings: tuple[tuple[Path, str], ...] = ()  # (settings file, variable) on the route
    provider: str | None = None  # another provider than Anthropic's API (Bedrock, Vertex...)
    unreadable: Path | None = None  # a settings file acct could not read: the route is unknown

    @property
    def base_url_from_settings(self) -> bool:
        return any(var == "ANTHROPIC_BASE_URL" for _, var in self.set_by_settings)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def settings_files(
    env: Mapping[str, str], cwd: Path, managed: Path = MANAGED_SETTINGS
) -> list[Path]:
    """Claude Code's settings files, lowest precedence first: user, project, local, managed."""
    config = env.get("CLAUDE_CONFIG_DIR") or os.path.join(env.get("HOME") or "~", ".claude")
    user = Path(config).expanduser() / "settings.json"
    project = cwd / ".claude"
    return [user, project / "settings.json", project / "settings.local.json", managed]


def _settings_env(path: Path) -> dict[str, str] | None:
    """The ``env`` block of one settings file ({} when it has none or does not exist); None
    when it cannot be read as JSON."""
    try:
        doc = read_json_object(path, what="Claude Code settings")
    except AcctError:  # unparseable, not a regular file, unreadable
        return None
    if doc is None:
        return {}
    block = doc.get("env", {})
    if not isinstance(block, dict):
        return None
    return {str(k): str(v) for k, v in block.items() if v is not None}


def claude_route(
    env: Mapping[str, str], cwd: Path | None = None, *, managed: Path = MANAGED_SETTINGS
) -> Route:
    """Claude Code's route when started with environment ``env`` in ``cwd`` (this process's)."""
    if cwd is None:
        try:
            cwd = Path.cwd()
        except OSError:
            cwd = Path(".")
    merged = dict(env)
    touched: list[tuple[Path, str]] = []
    unreadable: Path | None = None
    for path in settings_files(env, cwd, managed):
        block = _settings_env(path)
        if block is None:
            unreadable = unreadable or path
            continue
        merged.update(block)
        touched += [(path, k) for k in block if k in ROUTE_VARIABLES]
    provider = next((n for var, n in OTHER_PROVIDERS.items() if _truthy(merged.get(var))), None)
    return Route(merged, tuple(touched), provider, unreadable)
