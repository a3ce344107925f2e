"""Fixtures for the end-to-end tier: the real coding tools from npm against the fake Anthropic.

The tools are installed once per cache (see npm_clients.py); where npm or its registry is not
reachable the whole tier is skipped. Every run is kept off the internet: the fake serves
``/v1/messages`` through ``ANTHROPIC_BASE_URL`` and all other HTTPS traffic goes to a proxy
address nothing listens on, so a token URL or profile request fails at once instead of
reaching the real service. Tests that need the tool's token refresh use ``claude_env_tls``
instead: an HTTPS proxy with a throw-away CA that hands the fixed Anthropic hosts to the fake.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AcctRunner
from tests.e2e.mitm import Certs, ProxyUnavailable, TlsProxy, make_certs
from tests.e2e.npm_clients import (
    CLAUDE_CODE_NEW,
    CLAUDE_CODE_OLD,
    OPENCODE,
    OPENCODE_PLUGIN_MAIN,
    PI_NEW,
    PI_OLD,
    ClientUnavailable,
    NpmClient,
    cache_root,
    ensure_installed,
    node_dir,
)
from tests.fake_anthropic.client import FakeAnthropic

# Claude Code without auto-update, telemetry or other calls home.
CLAUDE_QUIET = {
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
}
PI_QUIET = {"PI_OFFLINE": "1", "PI_TELEMETRY": "0"}
# OpenCode without updates, the models.dev fetch, and the scans and plugins a test does not need.
OPENCODE_QUIET = {
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_CLAUDE_CODE": "1",
    "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
    "OPENCODE_EXPERIMENTAL_DISABLE_FILEWATCHER": "1",
}
# Each tool's newest release, and the release before it as a second row.
CLAUDE_ROWS = [CLAUDE_CODE_NEW, CLAUDE_CODE_OLD]
PI_ROWS = [PI_NEW, PI_OLD]


def refresh_spends(fake: FakeAnthropic) -> list[tuple[int, str]]:
    """The tool's refreshes as (status, refresh token sha8), leaving out an attempt the fake
    refused that the same token then passed: Claude Code 2.1.332 first asks for more scopes than
    the fake's grant holds (``invalid_scope``, nothing spent), then refreshes as before."""
    log = [(r["status"], r["token_sha8"]) for r in fake.log("token_refresh")]
    return [
        (status, sha)
        for i, (status, sha) in enumerate(log)
        if not (status == 400 and (200, sha) in log[i + 1 :])
    ]


def dead_login_words(client: NpmClient) -> str:
    """What Claude Code prints when its refresh got invalid_grant (2.1.332 changed it)."""
    if client.version == CLAUDE_CODE_OLD.version:
        return "Not logged in"
    return "Failed to authenticate: OAuth session expired and could not be refreshed"


def _installed(client: NpmClient) -> Path:
    try:
        return ensure_installed(client)
    except ClientUnavailable as exc:
        pytest.skip(f"e2e: {client.spec} is not available: {exc}")


@pytest.fixture(scope="session", params=CLAUDE_ROWS, ids=[c.version for c in CLAUDE_ROWS])
def claude_client(request: pytest.FixtureRequest) -> NpmClient:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def claude_code_bin(claude_client: NpmClient) -> Path:
    """The real Claude Code binary, pinned (the tier is skipped where it cannot be installed)."""
    return _installed(claude_client)


@pytest.fixture(scope="session", params=PI_ROWS, ids=[c.version for c in PI_ROWS])
def pi_client(request: pytest.FixtureRequest) -> NpmClient:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def pi_bin(pi_client: NpmClient) -> Path:
    """The real Pi binary, pinned (skipped where it cannot be installed)."""
    return _installed(pi_client)


@pytest.fixture(scope="session")
def opencode_bin() -> Path:
    """The real OpenCode binary with the Claude plugin next to it (skipped where unavailable)."""
    return _installed(OPENCODE)


def _path_with(client: NpmClient, bin_dir: Path, env: dict[str, str]) -> str:
    """PATH with the test's bin directory first, then the Node the client needs (if any)."""
    nd = node_dir(client, cache_root())
    extra = [str(bin_dir)] + ([str(nd)] if nd is not None else [])
    return os.pathsep.join([*extra, env.get("PATH", "")])


@pytest.fixture(scope="session")
def dead_proxy() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` where the port is bound but never listens: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def offline_env(proxy: str) -> dict[str, str]:
    """Send everything but loopback to `proxy` (loopback must bypass it, or the tool hangs retrying)."""
    return {
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "https_proxy": proxy,
        "http_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    return d


@pytest.fixture
def claude_env(
    env: dict[str, str],
    fake: FakeAnthropic,
    bin_dir: Path,
    claude_code_bin: Path,
    claude_client: NpmClient,
    dead_proxy: str,
) -> dict[str, str]:
    """The test's environment with the real `claude` first on PATH, talking to the fake."""
    (bin_dir / "claude").symlink_to(claude_code_bin)
    env.update(
        PATH=_path_with(claude_client, bin_dir, env),
        ANTHROPIC_BASE_URL=fake.base_url,
        **CLAUDE_QUIET,
        **offline_env(dead_proxy),
    )
    return env


@pytest.fixture
def pi_env(
    env: dict[str, str],
    fake: FakeAnthropic,
    bin_dir: Path,
    pi_bin: Path,
    pi_client: NpmClient,
    dead_proxy: str,
) -> dict[str, str]:
    """The test's environment with the real `pi` first on PATH, its Anthropic provider at the fake.

    ``models.json`` moves the provider's base URL; ``settings.json`` turns Pi's 429
    retries off, so it exits on a limit instead of sleeping for the retry-after.
    """
    (bin_dir / "pi").symlink_to(pi_bin)
    pi_dir = Path(env["HOME"]) / ".pi" / "agent"
    pi_dir.mkdir(parents=True, mode=0o700)
    (pi_dir / "models.json").write_text(
        json.dumps({"providers": {"anthropic": {"baseUrl": fake.base_url}}})
    )
    (pi_dir / "settings.json").write_text(
        json.dumps({"retry": {"enabled": False, "provider": {"maxRetries": 0}}})
    )
    env.update(
        PATH=_path_with(pi_client, bin_dir, env),
        **PI_QUIET,
        **offline_env(dead_proxy),
    )
    return env


@pytest.fixture
def opencode_env(
    env: dict[str, str],
    fake: FakeAnthropic,
    bin_dir: Path,
    opencode_bin: Path,
    dead_proxy: str,
) -> dict[str, str]:
    """The test's environment with the real `opencode` first on PATH, its Anthropic provider at
    the fake (``opencode.json``), the Claude plugin enabled by its file:// URL.

    OpenCode installs ``@opencode-ai/plugin`` into its config directory on first start (from
    npm, retrying for minutes when npm cannot be reached): a lock file that already lists it
    tells it the install was done.
    """
    (bin_dir / "opencode").symlink_to(opencode_bin)
    config = Path(env["HOME"]) / ".config" / "opencode"
    (config / "node_modules").mkdir(parents=True)
    lock = {"packages": {"": {"dependencies": {"@opencode-ai/plugin": OPENCODE.version}}}}
    (config / "package-lock.json").write_text(json.dumps(lock))
    plugin = (OPENCODE.prefix(cache_root()) / OPENCODE_PLUGIN_MAIN).as_uri()
    doc = {
        "plugin": [plugin],
        "provider": {"anthropic": {"options": {"baseURL": fake.base_url + "/v1"}}},
    }
    (config / "opencode.json").write_text(json.dumps(doc))
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        **OPENCODE_QUIET,
        **offline_env(dead_proxy),
    )
    return env


@pytest.fixture
def run_acct_opencode(opencode_env: dict[str, str]) -> AcctRunner:
    """``acct ...`` as a real process in the environment where `opencode` is the real one."""
    return AcctRunner(opencode_env)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The directory the tool runs in (its sessions are filed under it)."""
    d = tmp_path / "project"
    d.mkdir()
    return d


@pytest.fixture
def run_acct(claude_env: dict[str, str]) -> AcctRunner:
    """``acct ...`` as a real process in the environment where `claude` is the real one."""
    return AcctRunner(claude_env)


@pytest.fixture
def run_acct_pi(pi_env: dict[str, str]) -> AcctRunner:
    """``acct ...`` as a real process in the environment where `pi` is the real one."""
    return AcctRunner(pi_env)


@pytest.fixture(scope="session")
def proxy_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    try:
        return make_certs(tmp_path_factory.mktemp("certs"))
    except ProxyUnavailable as exc:
        pytest.skip(f"e2e: no HTTPS proxy for the tools' fixed hosts: {exc}")


@pytest.fixture
def tls_proxy(fake: FakeAnthropic, proxy_certs: Certs) -> Iterator[TlsProxy]:
    proxy = TlsProxy(fake.port, proxy_certs).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def claude_env_tls(claude_env: dict[str, str], tls_proxy: TlsProxy) -> dict[str, str]:
    """`claude_env` where the token, profile and usage URLs reach the fake through `tls_proxy`."""
    claude_env.update(tls_proxy.env())
    return claude_env
