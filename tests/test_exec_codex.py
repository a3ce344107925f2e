"""``acct exec -- codex``: acct as a real process, the fake Codex CLI (tests/fake_codex.py) as
its real child, the fake ChatGPT server for tokens, usage and turns.

Both ways a limit is handled: at the exit (``--no-proxy``: Codex ends on the limit, acct benches
the account and runs ``codex exec … resume --last <continuation>`` on the next one) and in
flight (the proxy sends the refused turn again with the next account's bearer and
``chatgpt-account-id``; Codex never sees the refusal)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from acct.base.config import DEFAULT_CONTINUATION_PROMPT
from acct.base.errors import EXIT_ALL_LIMITED
from acct.base.models import Account, Tokens
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, clean_env
from tests.fake_chatgpt.client import FakeChatGPT
from tests.fake_codex import install
from tests.test_exec import bench_of, events


@pytest.fixture
def fake() -> Iterator[FakeChatGPT]:
    with FakeChatGPT() as server:
        yield server


@pytest.fixture
def tool_log(tmp_path: Path) -> Path:
    return tmp_path / "tool.jsonl"


@pytest.fixture
def cenv(tmp_path: Path, fake: FakeChatGPT, tool_log: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    install(bin_dir)
    return clean_env(
        home,
        {
            **fake.env(),
            **fake.codex_env(),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "FAKE_TOOL_LOG": str(tool_log),
            "TZ": "UTC",
        },
    )


@pytest.fixture
def ctx(cenv: dict[str, str]) -> Ctx:
    return Ctx(env=cenv)


@pytest.fixture
def run(cenv: dict[str, str]) -> AcctRunner:
    return AcctRunner(cenv)


def seed(fake: FakeChatGPT, ctx: Ctx, name: str, *, plan: str = "plus") -> Account:
    """A ChatGPT account on the fake with a fresh lineage, stored as `acct login` stores it."""
    fa = fake.add_account(email=f"{name}@example.com", plan_type=plan)
    t = fake.mint(fa["account_id"])
    acc = Account(
        name=name,
        provider="chatgpt",
        uuid=fa["user_id"],
        org_uuid=fa["account_id"],
        email=fa["email"],
        plan=plan,
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
    """The account's 5-hour window is full: its turns get the 429 usage_limit_reached and its
    x-codex-* headers (and wham/usage) say 100%."""
    reset = int(time.time()) + resets_in
    fake.set_usage(str(acc.org_uuid), primary=100, primary_reset_at=reset)
    fake.set_responses(str(acc.org_uuid), "limit", resets_in_seconds=resets_in)
    return reset


def turns(fake: FakeChatGPT) -> list[tuple[str, str]]:
    """(token fingerprint, chatgpt-account-id the fake matched it to) of every turn."""
    return [(e["token_sha8"], e.get("account_id", "")) for e in fake.log("responses")]


def sent(fake: FakeChatGPT, acc: Account) -> tuple[str, str]:
    assert acc.tokens is not None
    return fake.sha8(acc.tokens.access), str(acc.org_uuid)


def no_leaks(ctx: Ctx, run: AcctRunner) -> None:
    secrets = set()
    for a in ctx.store.read():
        if a.tokens:
            secrets |= {a.tokens.access, a.tokens.refresh or "", a.id_token or ""} - {""}
    assert_no_secrets([p.stdout + p.stderr for p in run.calls], secrets)


def test_codex_exec_sends_the_chosen_accounts_login(fake, ctx, run, tool_log) -> None:
    a = seed(fake, ctx, "a")
    p = run("exec", "--no-proxy", "--", "codex", "exec", *fake.codex_config(), "say hi")
    assert p.returncode == 0, p.stderr
    assert "Hello from the fake ChatGPT." in p.stdout
    assert turns(fake) == [sent(fake, a)]
    no_leaks(ctx, run)


def test_at_its_limit_codex_resumes_on_the_next_account_with_exec_resume(
    fake, ctx, run, tool_log
) -> None:
    a, b = seed(fake, ctx, "a"), seed(fake, ctx, "b")
    reset = at_limit(fake, a, 2 * 3600)
    cfg = fake.codex_config()
    p = run("exec", "--no-proxy", "--account", "a", "--", "codex", "exec", *cfg, "write it")
    assert p.returncode == 0, p.stderr
    assert "Hello from the fake ChatGPT." in p.stdout
    assert "You\u2019ve hit your usage limit" in p.stderr  # the first run's words passed through
    # Codex's sessions belong to the account they began on: the resumed run names the
    # interrupted session's id (``--last`` would not find it on b)
    first, resumed = (e["id"] for e in events(tool_log, "session"))
    assert first == resumed
    assert [s["argv"] for s in events(tool_log, "start")] == [
        ["codex", "exec", *cfg, "write it"],
        ["codex", "exec", *cfg, "resume", first, DEFAULT_CONTINUATION_PROMPT],
    ]
    assert turns(fake) == [sent(fake, a), sent(fake, b)]
    bench = bench_of(ctx, "a")
    # the reset Codex named (to the minute) decides the bench
    assert bench is not None and bench.kind == "quota" and abs(bench.until - reset) <= 60
    assert bench_of(ctx, "b") is None
    assert "a hit its" in p.stderr and "switching to b" in p.stderr
    no_leaks(ctx, run)


def test_through_the_proxy_a_limit_fails_over_in_flight(fake, ctx, run, tool_log) -> None:
    a, b = seed(fake, ctx, "a"), seed(fake, ctx, "b")
    reset = at_limit(fake, a)
    p = run("exec", "--account", "a", "--", "codex", "exec", "write it")
    assert p.returncode == 0, p.stderr
    assert "Hello from the fake ChatGPT." in p.stdout
    assert "You\u2019ve hit your usage limit" not in p.stderr  # Codex never saw the refusal
    starts = events(tool_log, "start")
    assert len(starts) == 1  # one run: the switch happened inside it
    argv = starts[0]["argv"]
    assert argv[:3] == ["codex", "-c", "model_provider=acct"] and argv[-2:] == ["exec", "write it"]
    assert 'base_url="http://127.0.0.1:' in argv[4] and '/backend-api/codex"' in argv[4]
    # A's bearer and workspace first, then B's bearer with B's chatgpt-account-id (the fake
    # refuses a token whose workspace header is another's)
    assert turns(fake) == [sent(fake, a), sent(fake, b)]
    bench = bench_of(ctx, "a")
    # until the resets_at of the refusal's body (the fake counts it from A's turn)
    assert bench is not None and bench.kind == "quota"
    assert reset <= bench.until <= time.time() + 3600
    assert "a hit its 5-hour limit" in p.stderr and "switching to b in flight" in p.stderr
    # the x-codex-* headers of B's answer are B's live usage
    usage = ctx.state.all_usage()
    assert b.id in usage
    no_leaks(ctx, run)


def test_through_the_proxy_with_no_account_left_codex_ends_on_the_limit(
    fake, ctx, run, tool_log
) -> None:
    a = seed(fake, ctx, "a")
    at_limit(fake, a)
    p = run("exec", "--", "codex", "exec", "write it")
    assert p.returncode == EXIT_ALL_LIMITED, p.stderr
    assert "You\u2019ve hit your usage limit" in p.stderr  # the refusal reached Codex
    assert "no other account can take over" in p.stderr
    assert "every account is rate-limited" in p.stderr
    assert len(events(tool_log, "start")) == 1
    bench = bench_of(ctx, "a")
    assert bench is not None and bench.kind == "quota"


def test_a_refresh_by_codex_during_the_run_is_harvested(fake, ctx, run, tool_log) -> None:
    a = seed(fake, ctx, "a")
    assert a.tokens is not None
    p = run("exec", "--", "codex", "exec", "say hi", env={"FAKE_CODEX_REFRESH": "1"})
    assert p.returncode == 0, p.stderr
    assert [e["status"] for e in events(tool_log, "refresh")] == [200]
    lineage = fake.lineage(refresh_token=a.tokens.refresh)
    assert lineage["revoked"] is False and lineage["refresh_count"] == 1
    harvested = ctx.store.read().get("a")
    # the store keeps the lineage Codex refreshed into (the file stays its holder)
    assert harvested.tokens is not None and harvested.tokens.refresh != a.tokens.refresh
    assert fake.sha8(harvested.tokens.refresh or "") == lineage["live_refresh_sha8"]
    # the next run gets the harvested lineage and refreshes it again: nothing is revoked
    again = run("exec", "--", "codex", "exec", "say hi", env={"FAKE_CODEX_REFRESH": "1"})
    assert again.returncode == 0, again.stderr
    lineage = fake.lineage(refresh_token=a.tokens.refresh)
    assert lineage["revoked"] is False and lineage["refresh_count"] == 2
    no_leaks(ctx, run)


def spend(fake: FakeChatGPT, refresh_token: str) -> None:
    """Use a refresh token once, as another holder would (its successor is dropped)."""
    body = json.dumps(
        {
            "client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
    ).encode()
    req = urllib.request.Request(fake.base_url + "/oauth/token", body, method="POST")
    req.add_header("content-type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as r:
        assert r.status == 200


def test_a_refused_refresh_marks_the_login_dead_and_goes_on_with_the_next(
    fake, ctx, run, tool_log
) -> None:
    a, b = seed(fake, ctx, "a"), seed(fake, ctx, "b")
    assert a.tokens is not None and a.tokens.refresh is not None
    spend(fake, a.tokens.refresh)
    p = run(
        "exec",
        "--account",
        "a",
        "--",
        "codex",
        "exec",
        "say hi",
        env={"FAKE_CODEX_REFRESH": "1"},
    )
    assert p.returncode == 0, p.stderr
    assert "refresh token was already used" in p.stderr
    assert ctx.store.read().get("a").needs_login
    assert "a needs a new login" in p.stderr and "switching to b" in p.stderr
    assert fake.lineage(refresh_token=b.tokens.refresh)["revoked"] is False  # type: ignore[union-attr]


def test_a_throttle_is_not_a_limit_and_does_not_rotate(fake, ctx, run, tool_log) -> None:
    a, _ = seed(fake, ctx, "a"), seed(fake, ctx, "b")
    fake.set_responses(str(a.org_uuid), "throttle")
    p = run(
        "exec", "--no-proxy", "--account", "a", "--", "codex", "exec", *fake.codex_config(), "x"
    )
    assert p.returncode == 1
    assert "throttled by the server" in p.stderr
    assert len(events(tool_log, "start")) == 1
    assert bench_of(ctx, "a") is None


def test_codex_api_key_and_access_token_are_removed_for_the_run(fake, ctx, run, tool_log) -> None:
    a = seed(fake, ctx, "a")
    p = run(
        "exec",
        "--",
        "codex",
        "exec",
        "say hi",
        env={"CODEX_API_KEY": "sk-proj-not-this-one", "CODEX_ACCESS_TOKEN": "not-this-either"},
    )
    assert p.returncode == 0, p.stderr
    assert "CODEX_API_KEY is set; removed for this run" in p.stderr
    assert "CODEX_ACCESS_TOKEN is set; removed for this run" in p.stderr
    assert turns(fake) == [sent(fake, a)]


def test_a_forged_id_token_in_codexs_file_does_not_poison_the_account(fake, ctx, cenv) -> None:
    """The file names account a in its id_token but carries another workspace's lineage: the
    usage endpoint refuses that token for a's workspace, so nothing is taken into a."""
    from acct.services import custody
    from acct.services.targets.codex import Codex

    a = seed(fake, ctx, "a")
    custody.lend(ctx, a.id, "codex", cenv, move=False)
    other = fake.add_account(plan_type="plus")
    stranger = fake.mint(other["account_id"])
    path = Codex().path(cenv)
    doc = json.loads(path.read_text())
    doc["tokens"].update(
        access_token=stranger["access_token"], refresh_token=stranger["refresh_token"]
    )
    path.write_text(json.dumps(doc))  # a's id_token and account_id, the stranger's lineage
    result = custody.harvest(ctx, "codex", cenv)
    assert result.status == "unverified", result
    kept = ctx.store.read().get("a")
    assert kept.tokens is not None and a.tokens is not None
    assert kept.tokens.refresh == a.tokens.refresh  # the stranger's lineage was not taken
