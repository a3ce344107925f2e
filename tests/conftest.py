"""Shared fixtures: a temporary HOME, a real fake Anthropic server, and acct run as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from acct.base.models import Account, Tokens
from acct.services.context import Ctx
from tests.fake_anthropic.client import FakeAnthropic
from tests.fake_tool import install

# Property tests have no deadline: Hypothesis fails an example that takes over 200 ms, and on a
# loaded machine a pure example sometimes does (a garbage collection, another process on the
# core), after which the replay passes and the test fails as "flaky". No timed assertions.
settings.register_profile("acct", deadline=None)
settings.load_profile("acct")

REPO = Path(__file__).resolve().parent.parent

# Variables that would leak the developer's real accounts into a test, or change what acct reads.
_SCRUB_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "ACCT_", "XDG_", "PI_", "OPENCODE_", "CODEX_")


def clean_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env.update(
        HOME=str(home),
        COLUMNS="200",
        LINES="50",
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("TERM_PROGRAM", None)
    if extra:
        env.update(extra)
    return env


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir(mode=0o755)
    return h


@pytest.fixture
def env(home: Path, fake: FakeAnthropic) -> dict[str, str]:
    return clean_env(home, fake.env())


# Endpoints on a loopback port nothing listens on: a test that must not need HTTP fails at once
# (connection refused) if it makes a request, and never reaches a real host.
OFFLINE = "http://127.0.0.1:9"


@pytest.fixture
def offline_env(home: Path) -> dict[str, str]:
    """The environment of a test that needs no HTTP: no fake server is started for it. A
    module overrides ``env`` with it (``def env(offline_env): return offline_env``) so ``ctx``
    and ``acct`` follow."""
    return clean_env(
        home,
        {
            "ACCT_API_BASE": OFFLINE,
            "ACCT_TOKEN_URL": f"{OFFLINE}/v1/oauth/token",
            "ACCT_AUTHORIZE_URL": f"{OFFLINE}/oauth/authorize",
        },
    )


@pytest.fixture
def ctx(env: dict[str, str]) -> Ctx:
    return Ctx(env=env)


@dataclass
class AcctRunner:
    env: dict[str, str]
    calls: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        check: bool = False,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(self.env)
        if env:
            full_env.update(env)
        proc = subprocess.run(
            [sys.executable, "-m", "acct", *args],
            input=input,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            cwd=cwd or full_env["HOME"],
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        self.calls.append(proc)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"acct {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc


@pytest.fixture
def acct(env: dict[str, str]) -> AcctRunner:
    return AcctRunner(env)


def seed_account(
    fake: FakeAnthropic,
    ctx: Ctx,
    name: str,
    *,
    email: str | None = None,
    plan: str = "claude_max",
    five_hour: float | None = None,
    seven_day: float | None = None,
    expires_in: int | None = None,
    scopes: list[str] | None = None,
) -> Account:
    """Create an account on the fake, mint it a lineage, and store it as `acct login` would."""
    email = email or f"{name}@example.com"
    fa = fake.add_account(email=email, plan=plan)
    if five_hour is not None or seven_day is not None:
        fake.set_usage(fa["uuid"], five_hour=five_hour or 0.0, seven_day=seven_day or 0.0)
    tok = fake.mint(fa["uuid"], scopes=scopes, expires_in=expires_in)
    from acct.base.models import PLAN_BY_ORG_TYPE

    acc = Account(
        name=name,
        uuid=fa["uuid"],
        email=email,
        display_name=fa.get("display_name"),
        org_uuid=fa.get("org_uuid"),
        org_name=fa.get("org_name"),
        plan=PLAN_BY_ORG_TYPE.get(plan, plan),
        tier=fa.get("rate_limit_tier"),
        tokens=Tokens(
            access=tok["access_token"],
            refresh=tok.get("refresh_token"),
            expires_at=int(time.time()) + int(tok.get("expires_in", 28800)),
            scopes=tuple(tok.get("scope", "").split()),
        ),
    )
    with ctx.store.transaction() as accounts:
        accounts.add(acc)
    return acc


def seed_chatgpt(
    fake_gpt: Any,
    ctx: Ctx,
    name: str,
    *,
    email: str | None = None,
    plan_type: str = "plus",
    expires_in: int | None = None,
) -> Account:
    """Create a ChatGPT account on the fake ChatGPT server, mint it a lineage, and store it as
    `acct login --provider chatgpt` would."""
    from acct.services.providers.chatgpt import parse_token_answer

    email = email or f"{name}@example.com"
    fa = fake_gpt.add_account(email=email, plan_type=plan_type)
    answer = parse_token_answer(fake_gpt.mint(fa["account_id"], expires_in))
    acc = Account(
        name=name,
        provider="chatgpt",
        uuid=answer.claims.user_id,
        email=email,
        org_uuid=answer.claims.account_id,
        plan=plan_type,
        # as a login some time ago: a forced refresh is sent (a fresh one would be skipped)
        tokens=replace(
            answer.tokens(),
            obtained_at=None,
            expires_at=answer.expires_at if expires_in is None else int(time.time()) + expires_in,
        ),
    )
    with ctx.store.transaction() as accounts:
        accounts.add(acc)
    return acc


def store_secrets(ctx: Ctx) -> set[str]:
    """Every token and key the store holds now."""
    out: set[str] = set()
    for a in ctx.store.read():
        if a.api_key:
            out.add(a.api_key)
        if a.tokens:
            out.update(x for x in (a.tokens.access, a.tokens.refresh, a.id_token) if x)
    return out


def assert_no_secrets(texts: list[str] | str, secrets: set[str]) -> None:
    if isinstance(texts, str):
        texts = [texts]
    for text in texts:
        for s in secrets:
            assert s not in text, f"a secret (…{s[-6:]}) leaked into output"
        for prefix in ("sk-ant-oat", "sk-ant-ort", "sk-ant-api"):
            assert prefix not in text, f"something token-shaped ({prefix}…) leaked into output"


# --- acct exec with the fake tools ------------------------------------------------------


def tool_settings(home: Path, base_url: str) -> None:
    """OpenCode's ``opencode.json`` and Pi's ``models.json`` with ``base_url`` as their
    Anthropic base URL, as a user of a gateway would have them (the route acct chains to)."""
    for path, doc in (
        (
            home / ".config" / "opencode" / "opencode.json",
            {"provider": {"anthropic": {"options": {"baseURL": base_url + "/v1"}}}},
        ),
        (
            home / ".pi" / "agent" / "models.json",
            {"providers": {"anthropic": {"baseUrl": base_url}}},
        ),
    ):
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(doc))


def exec_env(
    env: dict[str, str], fake: FakeAnthropic, tmp_path: Path, tool_log: Path
) -> dict[str, str]:
    """The environment with the fake tools first on PATH, talking to the fake server.

    Claude Code (and the fake tools without acct's proxy) find it through ANTHROPIC_BASE_URL;
    OpenCode and Pi, as the real ones, through their own settings (see tool_settings)."""
    bin_dir = install(tmp_path / "bin")
    tool_settings(Path(env["HOME"]), fake.base_url)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        ANTHROPIC_BASE_URL=fake.base_url,
        FAKE_TOOL_LOG=str(tool_log),
    )
    return env


@pytest.fixture
def tool_log(tmp_path: Path) -> Path:
    """Where the fake tools log what they did (one JSON object a line)."""
    return tmp_path / "tool.jsonl"


@pytest.fixture
def xenv(
    env: dict[str, str], fake: FakeAnthropic, tmp_path: Path, tool_log: Path
) -> dict[str, str]:
    return exec_env(env, fake, tmp_path, tool_log)


@pytest.fixture
def run(xenv: dict[str, str]) -> AcctRunner:
    """acct as a real process, with the fake tools on PATH."""
    return AcctRunner(xenv)


@dataclass
class Silent:
    """A port on 127.0.0.1 that accepts connections and never says a word: a TLS handshake
    with it never ends. ``accepted``: how many connections came."""

    port: int
    accepted: int = 0


@pytest.fixture
def silent() -> Iterator[Silent]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.settimeout(0.1)
        server = Silent(s.getsockname()[1])
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    held.append(s.accept()[0])
                except TimeoutError:
                    continue
                server.accepted += 1

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        try:
            yield server
        finally:
            stop.set()
            t.join()
            for c in held:
                c.close()
