"""Install the real coding tools from npm, pinned, into a cache shared by test runs.

Each client goes to ``${XDG_CACHE_HOME:-~/.cache}/acct-tests/npm/<name>-<version>`` and is
reused while its binary still prints its version. The install runs under a file lock, so
parallel pytest-xdist workers install once and the others wait for it.

Where the tool cannot be had (no npm, no registry) ``ensure_installed`` raises
`ClientUnavailable`, which the fixtures turn into a skip of the tier.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

INSTALL_TIMEOUT_S = 180.0
VERSION_TIMEOUT_S = 30.0


class ClientUnavailable(RuntimeError):
    """The client cannot be installed here; the message says why."""


@dataclass(frozen=True)
class NpmClient:
    name: str  # directory name in the cache
    package: str  # npm package
    version: str  # pinned version
    bin: str  # command name in node_modules/.bin
    extra: tuple[str, ...] = ()  # more packages (``name@version``) installed next to it
    node: NpmClient | None = None  # the Node runtime it needs (first on PATH), None: the system's

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def specs(self) -> tuple[str, ...]:
        return (self.spec, *self.extra)

    def prefix(self, root: Path) -> Path:
        return root / f"{self.name}-{self.version}"

    def binary(self, root: Path) -> Path:
        return self.prefix(root) / "node_modules" / ".bin" / self.bin


def _arm() -> bool:
    import platform

    return platform.machine().lower() in ("aarch64", "arm64")


# Node 22 for the newest releases (Claude Code 2.1.332 asks for >= 22, Pi 1.6.0 for >= 22.19 and
# fails on 20): the prebuilt binary npm ships as a package of its own, no install script needed.
NODE_22 = NpmClient("node", f"node-linux-{'arm64' if _arm() else 'x64'}", "22.23.5", "node")
CLAUDE_CODE_NEW = NpmClient(
    "claude-code", "@anthropic-ai/claude-code", "2.1.332", "claude", node=NODE_22
)
CLAUDE_CODE_OLD = NpmClient("claude-code", "@anthropic-ai/claude-code", "2.1.197", "claude")
PI_NEW = NpmClient("pi", "@earendil-works/pi-coding-agent", "1.6.0", "pi", node=NODE_22)
PI_OLD = NpmClient("pi", "@mariozechner/pi-coding-agent", "0.73.1", "pi")
# OpenCode ships one binary; its Claude login needs the plugin, installed alongside (its
# entry in opencode.json is then a file:// URL: OpenCode would otherwise fetch it from npm).
OPENCODE = NpmClient(
    "opencode", "opencode-ai", "1.18.33", "opencode", extra=("opencode-anthropic-auth@0.0.13",)
)
OPENCODE_PLUGIN_MAIN = Path("node_modules") / "opencode-anthropic-auth" / "index.mjs"
CLAUDE_CODE = CLAUDE_CODE_OLD  # the second row's, as before
PI = PI_OLD


def node_dir(client: NpmClient, root: Path) -> Path | None:
    """The directory of the Node binary ``client`` runs on (first on its PATH), or None."""
    if client.node is None:
        return None
    return client.prefix(root) / "node_modules" / client.node.package / "bin"


def client_env(client: NpmClient, root: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with the client's Node first on PATH (unchanged for one on the system's)."""
    nd = node_dir(client, root)
    if nd is None:
        return env
    return {**env, "PATH": f"{nd}{os.pathsep}{env.get('PATH', '')}"}


def cache_root(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "acct-tests" / "npm"


def _quiet_env() -> dict[str, str]:
    """npm without update checks, audits or funding notices; the tools without phoning home."""
    env = dict(os.environ)
    env.update(
        npm_config_update_notifier="false",
        npm_config_audit="false",
        npm_config_fund="false",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1",
        PI_OFFLINE="1",
        PI_TELEMETRY="0",
    )
    return env


def installed_version(client: NpmClient, root: Path) -> str | None:
    """What ``<bin> --version`` prints, when the cached binary runs and is the pinned version."""
    binary = client.binary(root)
    if not binary.exists():
        return None
    try:
        proc = subprocess.run(
            [str(binary), "--version"],
            check=False,
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            env=client_env(client, root, _quiet_env()),
            cwd=client.prefix(root),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or client.version not in text:
        return None
    return text


def _npm_install(client: NpmClient, prefix: Path, timeout: float) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ClientUnavailable("npm is not installed")
    if prefix.exists():
        shutil.rmtree(prefix)
    prefix.mkdir(parents=True)
    node = () if client.node is None else (client.node.spec,)
    cmd = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), *client.specs, *node]
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=_quiet_env(),
            cwd=prefix,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(prefix, ignore_errors=True)
        raise ClientUnavailable(
            f"`npm install {' '.join(client.specs)}` did not finish in {timeout:.0f} s "
            "(registry unreachable?)"
        ) from None
    if proc.returncode != 0:
        shutil.rmtree(prefix, ignore_errors=True)
        raise ClientUnavailable(
            f"`npm install {client.spec}` failed ({proc.returncode}): {_npm_error(proc.stderr)}"
        )


def _npm_error(stderr: str) -> str:
    """The gist of npm's error output: its first few ``npm error`` lines without the stack."""
    lines = [
        ln.removeprefix("npm error").strip()
        for ln in stderr.splitlines()
        if ln.startswith("npm error")
    ]
    gist = [ln for ln in lines if ln and not ln.startswith(("at ", "{", "}"))]
    return " | ".join(gist[:4]) or stderr.strip()[-300:]


def _run_postinstall(client: NpmClient, prefix: Path) -> None:
    """Run the package's postinstall where npm left it out (npm may skip install scripts).

    Claude Code's postinstall puts the platform's native binary over a placeholder; without it
    the placeholder only prints instructions.
    """
    package_dir = prefix / "node_modules" / client.package
    script = package_dir / "install.cjs"
    node = shutil.which("node")
    if node is None or not script.exists():
        return
    subprocess.run(
        [node, str(script)],
        capture_output=True,
        timeout=VERSION_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        env=_quiet_env(),
        cwd=package_dir,
        check=False,
    )


def ensure_installed(
    client: NpmClient, root: Path | None = None, *, timeout: float = INSTALL_TIMEOUT_S
) -> Path:
    """The path of the client's binary, installing it first when the cache lacks it.

    Raises `ClientUnavailable` when npm or the registry is not there. Raises `RuntimeError`
    when the install succeeded but the binary does not run: that is a real breakage.
    """
    root = cache_root() if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / f"{client.name}-{client.version}.lock"))
    try:
        with lock.acquire(timeout=timeout + 120):
            if installed_version(client, root) is not None:
                return client.binary(root)
            _npm_install(client, client.prefix(root), timeout)
            if installed_version(client, root) is None:
                _run_postinstall(client, client.prefix(root))
            if installed_version(client, root) is None:
                raise RuntimeError(
                    f"{client.spec} installed into {client.prefix(root)}, "
                    f"but `{client.bin} --version` does not print {client.version}"
                )
            return client.binary(root)
    except Timeout:
        raise ClientUnavailable(f"another process holds {lock.lock_file} (installing?)") from None


__all__ = [
    "CLAUDE_CODE",
    "CLAUDE_CODE_NEW",
    "CLAUDE_CODE_OLD",
    "NODE_22",
    "OPENCODE",
    "OPENCODE_PLUGIN_MAIN",
    "PI",
    "PI_NEW",
    "PI_OLD",
    "ClientUnavailable",
    "NpmClient",
    "cache_root",
    "client_env",
    "ensure_installed",
    "installed_version",
    "node_dir",
]
