"""The upstream connection, made as Claude Code makes it: its HTTP proxy rules and its trust."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl


class Unusable(Exception):
    """The upstream connection cannot be set up; the message is safe to show (no values)."""


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of ``names`` that is set (lowercase first, as Claude Code reads them)."""
    for name in names:
        if env.get(name) is not None:
            return name, env[name]
    return None


def no_proxy_hosts(env: Mapping[str, str]) -> list[str]:
    """The union of ``no_proxy`` and ``NO_PROXY`` (comma or space separated), in order."""
    hosts: list[str] = []
    for name in ("no_proxy", "NO_PROXY"):
        for host in re.split(r"[,\s]+", env.get(name) or ""):
            if host and host not in hosts:
                hosts.append(host)
    return hosts


def _bypassed(host: str, port: int, entries: list[str]) -> bool:
    host = host.lower().strip("[]")
    for entry in entries:
        if entry == "*":
            return True
        name, want = entry.lower(), ""
        if re.search(r":\d+$", name):
            name, _, want = name.rpartition(":")
        if want and int(want) != port:
            continue
        name = name.lstrip("*").lstrip(".").strip("[]")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The HTTP proxy Claude Code would use for ``url``: ``https_proxy``/``HTTPS_PROXY`` (then
    the HTTP ones) for https, ``http_proxy``/``HTTP_PROXY`` for http, none for a host in
    ``no_proxy``/``NO_PROXY``. ``ALL_PROXY`` is not read (Node does not)."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    names = ("http_proxy", "HTTP_PROXY")
    found = _first(env, *(("https_proxy", "HTTPS_PROXY", *names) if https else names))
    if found is None or not found[1].strip():
        return None
    name, proxy = found[0], found[1].strip()
    if _bypassed(parts.hostname or "", parts.port or (443 if https else 80), no_proxy_hosts(env)):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    scheme = urlsplit(proxy).scheme.lower()
    if scheme not in ("http", "https"):
        raise Unusable(f"{name} names a {scheme} proxy; only HTTP(S) proxies are supported")
    return proxy


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """The trust Claude Code gives its connections: its bundled roots (certifi here) and the
    system's store (as ``CLAUDE_CODE_CERT_STORE`` selects), ``SSL_CERT_FILE``/``SSL_CERT_DIR``,
    ``NODE_EXTRA_CA_CERTS``; the client certificate of ``CLAUDE_CODE_CLIENT_CERT``/``_KEY``.
    An extra CA file that cannot be read is skipped, as Node skips it."""
    import ssl

    import certifi

    stores = {s.strip().lower() for s in (env.get("CLAUDE_CODE_CERT_STORE") or "").split(",")}
    stores = stores - {""} or {"bundled", "system"}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if "system" in stores:
        context.load_default_certs()
    extras = [("cafile", env.get("SSL_CERT_FILE")), ("capath", env.get("SSL_CERT_DIR"))]
    extras.append(("cafile", env.get("NODE_EXTRA_CA_CERTS")))
    if "bundled" in stores:
        extras.append(("cafile", certifi.where()))
    for kind, where in extras:
        if where:
            with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                context.load_verify_locations(**{kind: where})
    if (env.get("NODE_TLS_REJECT_UNAUTHORIZED") or "").strip() == "0":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = env.get("CLAUDE_CODE_CLIENT_CERT")
    if cert:
        try:
            context.load_cert_chain(
                cert,
                env.get("CLAUDE_CODE_CLIENT_KEY") or None,
                env.get("CLAUDE_CODE_CLIENT_KEY_PASSPHRASE") or None,
            )
        except (OSError, ssl.SSLError, ValueError) as e:
            raise Unusable(
                "cannot load the client certificate of CLAUDE_CODE_CLIENT_CERT "
                f"({type(e).__name__})"
            ) from None
    return context


def reason(error: BaseException) -> str:
    """Why a request could not be forwarded, in words safe to show: the TLS cause when there is
    one, otherwise the exception's type (its text may hold a URL with a password)."""
    import ssl

    if isinstance(error, Unusable):
        return str(error)
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return f"TLS error: {seen.reason or type(seen).__name__}"
        seen = seen.__cause__ or seen.__context__
    return type(error).__name__
