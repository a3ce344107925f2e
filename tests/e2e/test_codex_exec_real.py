"""``acct exec -- codex`` with the real Codex CLI (npm ``@openai/codex``, pinned) against the fake
ChatGPT server: the chosen login is sent, a limit is handled at the exit (``--no-proxy``: the
next account runs ``codex exec … resume --last``) and in flight (through acct's usage proxy,
which Codex reaches by the ``-c`` provider acct gives it), and a refresh Codex makes during the
run is harvested without revoking any chain."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from acct.base.models import Account, Tokens
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, clean_env
from tests.e2e.conftest import offline_env
from tests.e2e.npm_clients import ClientUnavailable, ensure_installed
from tests.e2e.test_codex_real import CODEX
from tests.fake_chatgpt.client import FakeChatGPT

pytestmark = pytest.mark.e2e

TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def codex_bin() -> Path:
    try:
        return ensure_installed(CODEX)
    except ClientUnavailable as exc:
        pytest.skip(f"e2e: {CODEX.spec} is not available: {exc}")


@pytest.fixture
def fake() -> Iterator[FakeChatGPT]:
    with FakeChatGPT() as server:
        yield server


@pytest.fixture
def cenv(tmp_path: Path, fake: FakeChatGPT, dead_proxy: str, codex_bin: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home, {**offline_env(dead_proxy), **fake.codex_env(), **fake.env()})
    env["PATH"] = os.pathsep.join([str(codex_bin.parent), env.get("PATH", "")])
    return env


@pytest.fixture
def ctx(cenv: dict[str, str]) -> Ctx:
    return Ctx(env=cenv)


@pytest.fixture
def run(cenv: dict[str, str]) -> AcctRunner:
    return AcctRunner(cenv)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def seed(fake: FakeChatGPT, ctx: Ctx, name: str, **mint: int) -> Account:
    fa = fake.add_account(email=f"{name}@example.com", plan_type="plus")
    t = fake.mint(fa["account_id"], **mint)
    acc = Account(
        name=name,
        provider="chatgpt",
        uuid=fa["user_id"],
        org_uuid=fa["account_id"],
        email=fa["email"],
        plan="plus",
        tokens=Tokens(
            access=t["access_token"],
            refresh=t["refresh_token"],
            expires_at=int(time.time()) + int(t.get("expires_in", 864000)),
            extra={"id_token": t["id_token"], "account_id": fa["account_id"]},
        ),
    )
    with ctx.store.transaction() as accounts:
        accounts.add(acc)
    return acc


def at_limit(fake: FakeChatGPT, acc: Account, resets_in: int = 3600) -> int:
    reset = int(time.time()) + resets_in
    fake.set_usage(str(acc.org_uuid), primary=100, primary_reset_at=reset)
    fake.set_responses(str(acc.org_uuid), "limit", resets_in_seconds=resets_in)
    return reset


def backend(fake: FakeChatGPT) -> list[str]:
    """The options every run gives: Codex's backend calls to the fake, a model, no git check."""
    return ["-c", f'chatgpt_base_url="{fake.api_base}/"', "-c", "model=gpt-5.5"]


def direct(fake: FakeChatGPT) -> list[str]:
    """Without the proxy: the provider the user would give to reach the fake itself."""
    return [*fake.codex_config(), "-c", "model=gpt-5.5"]


def turns(fake: FakeChatGPT) -> list[tuple[str, str, int]]:
    return [(e["token_sha8"], e.get("account_id", ""), e["status"]) for e in fake.log("responses")]


def sha(fake: FakeChatGPT, acc: Account) -> str:
    assert acc.tokens is not None
    return fake.sha8(acc.tokens.access)


def history(fake: FakeChatGPT) -> list[str]:
    return [
        json.loads(e["headers"]["x-codex-turn-metadata"])["history_initialization"]
        for e in fake.log("responses")
    ]


def no_leaks(ctx: Ctx, run: AcctRunner) -> None:
    secrets: set[str] = set()
    for a in ctx.store.read():
        if a.tokens:
            secrets |= {a.tokens.access, a.tokens.refresh or "", a.id_token or ""} - {""}
    assert_no_secrets([p.stdout + p.stderr for p in run.calls], secrets)


def test_acct_exec_codex_sends_the_chosen_accounts_login(fake, ctx, run, workdir) -> None:
    seed(fake, ctx, "busy")
    a = seed(fake, ctx, "a")
    argv = ["codex", "exec", *direct(fake), "--skip-git-repo-check", "say hi"]
    p = run("exec", "--no-proxy", "--account", "a", "--", *argv, cwd=workdir, timeout=TIMEOUT_S)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Hello from the fake ChatGPT." in p.stdout
    assert turns(fake) == [(sha(fake, a), str(a.org_uuid), 200)]
    no_leaks(ctx, run)


def test_acct_exec_codex_at_its_limit_finishes_on_the_next_with_exec_resume(
    fake, ctx, run, workdir
) -> None:
    a, b = seed(fake, ctx, "a"), seed(fake, ctx, "b")
    reset = at_limit(fake, a, 2 * 3600)
    argv = ["codex", "exec", *direct(fake), "--skip-git-repo-check", "write the report"]
    p = run("exec", "--no-proxy", "--account", "a", "--", *argv, cwd=workdir, timeout=TIMEOUT_S)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "You\u2019ve hit your usage limit" in p.stderr  # Codex's own words, then acct's
    assert "switching to b" in p.stderr
    assert "Hello from the fake ChatGPT." in p.stdout
    assert turns(fake) == [
        (sha(fake, a), str(a.org_uuid), 429),
        (sha(fake, b), str(b.org_uuid), 200),
    ]
    # the resumed run is Codex's resume of the same session, with acct's continuation prompt
    logged = fake.log("responses")
    assert len({e["headers"]["session-id"] for e in logged}) == 1
    assert history(fake) == ["new", "cold_resume"]
    bench = ctx.state.benches().get(a.id)
    # Codex names the reset to the minute ("try again at 9:49 AM.")
    assert bench is not None and bench.kind == "quota" and abs(bench.until - reset) <= 60
    no_leaks(ctx, run)


def test_acct_exec_codex_through_the_proxy_fails_over_in_flight(fake, ctx, run, workdir) -> None:
    a, b = seed(fake, ctx, "a"), seed(fake, ctx, "b")
    reset = at_limit(fake, a)
    argv = ["codex", "exec", *backend(fake), "--skip-git-repo-check", "write the report"]
    p = run("exec", "--account", "a", "--", *argv, cwd=workdir, timeout=TIMEOUT_S)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Hello from the fake ChatGPT." in p.stdout
    assert "You\u2019ve hit your usage limit" not in p.stderr  # Codex never saw the refusal
    assert "switching to b in flight" in p.stderr
    # A's bearer and workspace were refused; the same turn went on with B's bearer and B's
    # chatgpt-account-id (the fake answers 403 to a workspace that is not the token's)
    assert turns(fake) == [
        (sha(fake, a), str(a.org_uuid), 429),
        (sha(fake, b), str(b.org_uuid), 200),
    ]
    assert history(fake) == ["new", "new"]  # one run: nothing was resumed
    bench = ctx.state.benches().get(a.id)
    # until the resets_at of the refusal's body (the fake counts it from A's turn)
    assert (
        bench is not None and bench.kind == "quota" and reset <= bench.until <= time.time() + 3600
    )
    # B's answer carried its x-codex-* headers: its usage is in the cache without a poll
    assert fake.log("usage") == [] and b.id in ctx.state.all_usage()
    no_leaks(ctx, run)


def test_a_refresh_by_codex_during_the_run_is_harvested(fake, ctx, run, workdir) -> None:
    a = seed(fake, ctx, "a", expires_in=-10)  # Codex gets a 401, refreshes, retries
    assert a.tokens is not None
    argv = ["codex", "exec", *backend(fake), "--skip-git-repo-check", "say hi"]
    p = run("exec", "--", *argv, cwd=workdir, timeout=TIMEOUT_S)
    assert p.returncode == 0, p.stderr[-3000:]
    lineage = fake.lineage(refresh_token=a.tokens.refresh)
    assert lineage["revoked"] is False and lineage["refresh_count"] == 1
    stored = ctx.store.read().get("a")
    assert stored.tokens is not None and stored.id_token
    assert fake.sha8(stored.tokens.refresh or "") == lineage["live_refresh_sha8"]
    # the next run lends what was harvested: it works without another refresh
    again = run("exec", "--", *argv, cwd=workdir, timeout=TIMEOUT_S)
    assert again.returncode == 0, again.stderr[-3000:]
    lineage = fake.lineage(refresh_token=a.tokens.refresh)
    assert lineage["revoked"] is False and lineage["refresh_count"] == 1
    assert all(r["status"] == 200 for r in fake.log("token_refresh"))
    no_leaks(ctx, run)
