"""Where a tool sends its Messages requests, and how to point it at acct's proxy for one run.

Each target answers two questions for ``acct exec``:

- :meth:`route` (``JsonTarget.route``): the base URL the tool would use without acct, read from
  the same settings the tool reads (its environment, its config files), and what set it. The
  usage proxy forwards to this URL's origin, so a user's own gateway stays in the chain.
- :meth:`proxy_env` / :meth:`proxy_argv`: what makes the tool send to the proxy instead, for
  this run only; nothing in the user's files changes.

The proxy's address keeps the tool's own path (``http://127.0.0.1:PORT`` + the path of the
tool's base URL), so every request reaches the proxy with exactly the path the tool would have
sent upstream, and the proxy sends it to the upstream's origin unchanged. See docs/tools.md for
what was measured on each tool.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ANTHROPIC_API = "https://api.anthropic.com"


@dataclass(frozen=True)
class ToolRoute:
    """Where a tool sends its Messages requests when acct does not step in."""

    base_url: str  # the tool's base URL: scheme://host[:port][/path]
    source: str | None = None  # what set it (a variable or a file); None: the tool's default
    unreadable: Path | None = None  # a settings file that does not parse: the route is unknown
    beyond: str | None = None  # a setting that outranks acct's overlay: the proxy must stay out

    @property
    def upstream(self) -> str:
        """The origin the proxy forwards to (``https://api.anthropic.com``)."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def path(self) -> str:
        """The path the tool puts before ``/messages`` (``/v1`` for OpenCode), no trailing slash."""
        return urlsplit(self.base_url).path.rstrip("/")

    @property
    def usable(self) -> bool:
        """Whether acct knows the route well enough to put its proxy on it."""
        parts = urlsplit(self.base_url)
        return (
            self.unreadable is None
            and self.beyond is None
            and parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and not parts.query
            and not parts.fragment
        )

    def via(self, proxy_url: str) -> str:
        """The base URL that sends the tool's requests to ``proxy_url`` with the same paths."""
        return proxy_url.rstrip("/") + self.path


def loopback_bypass(env: Mapping[str, str]) -> dict[str, str]:
    """``NO_PROXY``/``no_proxy`` with 127.0.0.1 added, when an HTTP proxy is set: the tool must
    reach acct's proxy directly, not through the user's (both names: readers differ)."""
    if not any(env.get(k) for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")):
        return {}
    hosts: list[str] = []
    for name in ("no_proxy", "NO_PROXY"):
        for host in re.split(r"[,\s]+", env.get(name) or ""):
            if host and host not in hosts:
                hosts.append(host)
    joined = ",".join(hosts if "127.0.0.1" in hosts else [*hosts, "127.0.0.1"])
    if env.get("NO_PROXY") == joined and env.get("no_proxy") == joined:
        return {}
    return {"NO_PROXY": joined, "no_proxy": joined}


_JSONC_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.DOTALL)
_TRAILING_COMMA = re.compile(r'"(?:\\.|[^"\\])*"|,(?=\s*[}\]])')


def loads_jsonc(text: str) -> object:
    """JSON with comments and trailing commas (OpenCode's ``.jsonc``); ValueError when bad."""

    def strings_only(m: re.Match[str]) -> str:
        return m.group(0) if m.group(0).startswith('"') else ""

    return json.loads(_TRAILING_COMMA.sub(strings_only, _JSONC_TOKEN.sub(strings_only, text)))


class Unreadable(Exception):
    """A settings file exists but cannot be read as the tool reads it."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


def read_settings(path: Path, *, jsonc: bool = False) -> dict[str, object] | None:
    """A JSON object file; None when absent, :class:`Unreadable` when it does not parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        raise Unreadable(path) from None
    try:
        doc = loads_jsonc(text) if jsonc else json.loads(text)
    except ValueError:
        raise Unreadable(path) from None
    if not isinstance(doc, dict):
        raise Unreadable(path)
    return doc


def dig(doc: Mapping[str, object] | None, *keys: str) -> object:
    """``doc[k1][k2]...``, or None where a level is missing or not an object."""
    cur: object = doc
    for k in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(k)
    return cur


def git_root(start: Path) -> Path | None:
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def upward(start: Path, stop: Path | None) -> list[Path]:
    """``start`` and its parents up to ``stop`` (included; the filesystem root without one),
    nearest first."""
    out: list[Path] = []
    for d in (start, *start.parents):
        out.append(d)
        if stop is not None and d == stop:
            break
    return out


__all__ = [
    "ANTHROPIC_API",
    "ToolRoute",
    "Unreadable",
    "dig",
    "git_root",
    "loads_jsonc",
    "loopback_bypass",
    "read_settings",
    "upward",
]
