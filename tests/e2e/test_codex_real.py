"""The real Codex CLI (npm ``@openai/codex``, pinned) against the fake ChatGPT server.

It checks the facts the ChatGPT foundations rest on (docs/codex.md): Codex uses the login the
codex target writes, sends it with ``ChatGPT-Account-Id`` to a provider that ``-c`` points at
the fake, ends on a limit with words acct classifies as quota, writes a refreshed pair back where
the target reads it without revoking the chain, and resumes with ``exec resume --last``. An
idle login ``acct import`` renewed in place is one Codex runs on as it is, and a running Codex
is seen by acct, which then spends nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acct.base.models import Account, Tokens
from acct.domain.classify import classify
from acct.services.targets.codex import Codex, codex_home, running_codex
from tests.conftest import AcctRunner, clean_env
from tests.e2e.conftest import offline_env
from tests.e2e.npm_clients import ClientUnavailable, NpmClient, ensure_installed
from tests.fake_chatgpt.client import FakeChatGPT
from tests.fake_chatgpt.server import DEFAULT_CONFIG

pytestmark = pytest.mark.e2e

CODEX = NpmClient("codex", "@openai/codex", "0.171.0", "codex")
RUN_TIMEOUT_S = 120.0


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
def cenv(tmp_path: Path, fake: FakeChatGPT, dead_proxy: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return clean_env(home, {**offline_env(dead_proxy), **fake.codex_env()})


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def lend(fake: FakeChatGPT, env: dict[str, str], account_id: str, **mint: Any) -> dict[str, Any]:
    """Write a fresh lineage of the account into Codex's file through the codex target."""
    t = fake.mint(account_id, **mint)
    tokens = Tokens(
        t["access_token"],
        t["refresh_token"],
        int(time.time()) + 3600,
        extra={"id_token": t["id_token"], "account_id": account_id},
    )
    Codex().write(env, Account(name=account_id, provider="chatgpt", tokens=tokens))
    return t


def run_codex(
    codex_bin: Path, fake: FakeChatGPT, env: dict[str, str], workdir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    argv = [str(codex_bin), *args]
    # The provider and backend options belong to `exec` (and stay there for `exec resume`).
    at = argv.index("exec") + 1
    argv[at:at] = [*fake.codex_config(), "-c", "model=gpt-5.5", "--skip-git-repo-check"]
    return subprocess.run(
        argv,
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_codex_sends_the_login_the_target_wrote(codex_bin, fake, cenv, workdir) -> None:
    a = fake.add_account(email="a@example.com", plan_type="plus")
    t = lend(fake, cenv, a["account_id"])
    proc = run_codex(codex_bin, fake, cenv, workdir, "exec", "say hi")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Hello from the fake ChatGPT." in proc.stdout
    turns = fake.log("responses")
    assert turns and {e["token_sha8"] for e in turns} == {fake.sha8(t["access_token"])}
    assert {e["headers"]["chatgpt-account-id"] for e in turns} == {a["account_id"]}
    assert turns[0]["headers"]["accept"] == "text/event-stream"


def test_codex_on_a_usage_limit_exits_1_with_quota_words(codex_bin, fake, cenv, workdir) -> None:
    a = fake.add_account(plan_type="plus")
    lend(fake, cenv, a["account_id"])
    fake.set_responses(a["account_id"], "limit", resets_in_seconds=3600)
    proc = run_codex(codex_bin, fake, cenv, workdir, "exec", "say hi")
    assert proc.returncode == 1
    ending = classify(Codex(), proc.returncode, proc.stdout + proc.stderr, time.time())
    assert ending.kind == "quota", proc.stderr[-1500:]
    assert len(fake.log("responses")) == 1  # a usage limit is not retried
    jsonl = run_codex(codex_bin, fake, cenv, workdir, "exec", "--json", "say hi")
    events = [json.loads(line) for line in jsonl.stdout.splitlines() if line.startswith("{")]
    assert jsonl.returncode == 1 and events[-1]["type"] == "turn.failed"
    assert classify(Codex(), 1, jsonl.stdout, time.time()).kind == "quota"


def test_codex_refresh_after_401_is_written_where_the_target_reads_it(
    codex_bin, fake, cenv, workdir
) -> None:
    a = fake.add_account(plan_type="pro")
    t = lend(fake, cenv, a["account_id"], expires_in=-10)
    proc = run_codex(codex_bin, fake, cenv, workdir, "exec", "say hi")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lineage = fake.lineage(refresh_token=t["refresh_token"])
    assert lineage["revoked"] is False and lineage["refresh_count"] == 1
    entry = Codex().read(cenv)
    assert entry is not None and entry.tokens.refresh != t["refresh_token"]
    assert fake.sha8(entry.tokens.refresh or "") == lineage["live_refresh_sha8"]
    assert entry.tokens.extra["account_id"] == a["account_id"]
    sent = fake.log("token_refresh")[0]
    assert sent["fields"] == ["client_id", "grant_type", "refresh_reason", "refresh_token"]


def test_codex_with_a_spent_refresh_token_ends_as_a_dead_login(
    codex_bin, fake, cenv, workdir
) -> None:
    a = fake.add_account(plan_type="plus")
    t = lend(fake, cenv, a["account_id"], expires_in=-10)
    before = Codex().path(cenv).read_text()
    fake_refresh = run_codex(codex_bin, fake, cenv, workdir, "exec", "say hi")  # spends it
    assert fake_refresh.returncode == 0
    Codex().path(cenv).write_text(before)  # the stale copy another holder kept
    proc = run_codex(codex_bin, fake, cenv, workdir, "exec", "say hi")
    assert proc.returncode == 1
    # the lineage is spent and Codex leaves its file as it was: only its words say so
    assert classify(Codex(), 1, proc.stderr, time.time()).kind == "login"
    assert fake.lineage(refresh_token=t["refresh_token"])["revoked"] is True
    assert Codex().path(cenv).read_text() == before  # Codex does not blank its file


def start_codex(
    codex_bin: Path, fake: FakeChatGPT, env: dict[str, str], workdir: Path, *args: str
) -> subprocess.Popen[str]:
    argv = [
        str(codex_bin),
        "exec",
        *fake.codex_config(),
        "-c",
        "model=gpt-5.5",
        "--skip-git-repo-check",
        *args,
    ]
    return subprocess.Popen(
        argv,
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_codex_rereads_its_file_on_401_and_takes_the_same_accounts_new_login(
    codex_bin, fake, cenv, workdir
) -> None:
    a = fake.add_account(plan_type="plus")
    first = lend(fake, cenv, a["account_id"])
    fake.configure(hold_responses=True)
    proc = start_codex(codex_bin, fake, cenv, workdir, "say hi")
    try:
        assert fake.wait_held(1)[0]["token_sha8"] == fake.sha8(first["access_token"])
        fake.revoke(a["account_id"])  # the running login dies...
        second = lend(fake, cenv, a["account_id"])  # ...and acct writes a new one meanwhile
        fake.release()
        held = fake.wait_held(2)
        assert held[1]["token_sha8"] == fake.sha8(second["access_token"])  # no refresh first
        fake.configure(hold_responses=False)
        fake.release(10)
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert fake.log("token_refresh") == []
    assert fake.lineage(refresh_token=second["refresh_token"])["revoked"] is False


def test_codex_ends_when_its_file_holds_another_account_at_a_401(
    codex_bin, fake, cenv, workdir
) -> None:
    a, b = fake.add_account(plan_type="plus"), fake.add_account(plan_type="plus")
    lend(fake, cenv, a["account_id"])
    fake.configure(hold_responses=True)
    proc = start_codex(codex_bin, fake, cenv, workdir, "say hi")
    try:
        fake.wait_held(1)
        fake.revoke(a["account_id"])
        other = lend(fake, cenv, b["account_id"])
        fake.configure(hold_responses=False)
        fake.release(10)
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert "signed in to another account" in err
    assert classify(Codex(), 1, err, time.time()).kind == "auth"
    # B was never sent nor refreshed: the run ended, B's lineage is untouched
    assert all(e.get("account_id") != b["account_id"] for e in fake.log("responses"))
    assert fake.lineage(refresh_token=other["refresh_token"])["refresh_count"] == 0


def test_resume_args_continue_the_same_session(codex_bin, fake, cenv, workdir) -> None:
    a = fake.add_account(plan_type="plus")
    lend(fake, cenv, a["account_id"])
    first = run_codex(codex_bin, fake, cenv, workdir, "exec", "first")
    assert first.returncode == 0, first.stderr[-2000:]
    argv = Codex().resume_args(["codex", "exec", "first"], "continue where you stopped")
    assert argv[1:] == ["exec", "resume", "--last", "continue where you stopped"]
    again = run_codex(codex_bin, fake, cenv, workdir, *argv[1:])
    assert again.returncode == 0, again.stderr[-2000:]
    turns = fake.log("responses")
    assert len({e["headers"]["session-id"] for e in turns}) == 1
    history = [
        json.loads(e["headers"]["x-codex-turn-metadata"])["history_initialization"] for e in turns
    ]
    assert history == ["new", "cold_resume"]


def idle_login(fake: FakeChatGPT, env: dict[str, str], account_id: str) -> dict[str, Any]:
    """Codex's file as an idle Codex leaves it: the access token expired an hour ago."""
    fake.configure(expires_in=-3600)
    try:
        doc = fake.auth_json(account_id)
    finally:
        fake.configure(expires_in=DEFAULT_CONFIG["expires_in"])
    path = Codex().path(env)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return doc


def test_codex_runs_on_the_idle_login_acct_import_renewed_without_refreshing_it_again(
    codex_bin, fake, cenv, workdir
) -> None:
    a = fake.add_account(email="idle@example.com", plan_type="plus")
    old = idle_login(fake, cenv, a["account_id"])["tokens"]
    fake.reset_log()
    imported = AcctRunner({**cenv, **fake.env()})("import", "codex")
    assert imported.returncode == 0, imported.stderr
    entry = Codex().read(cenv)
    assert entry is not None and entry.tokens.refresh != old["refresh_token"]
    proc = run_codex(codex_bin, fake, cenv, workdir, "exec", "say hi")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(fake.log("token_refresh")) == 1  # acct's: Codex took the renewed file as it is
    sent = {e["token_sha8"] for e in fake.log("responses")}
    assert sent == {fake.sha8(entry.tokens.access)}
    lineage = fake.lineage(refresh_token=entry.tokens.refresh)
    assert lineage["revoked"] is False and lineage["refresh_count"] == 1
    assert Codex().read(cenv) == entry  # the file still holds what the store records


def test_acct_import_sees_a_running_codex_and_spends_nothing(
    codex_bin, fake, cenv, workdir
) -> None:
    a = fake.add_account(plan_type="plus")
    lend(fake, cenv, a["account_id"])
    fake.configure(hold_responses=True)
    proc = start_codex(codex_bin, fake, cenv, workdir, "say hi")
    try:
        fake.wait_held(1)  # Codex runs, its turn held here
        idle_login(fake, cenv, a["account_id"])  # an expired login of the account meanwhile
        before = Codex().path(cenv).read_bytes()
        pids = running_codex(codex_home(cenv))
        assert pids, "the running Codex binary is not seen"
        fake.reset_log()
        refused = AcctRunner({**cenv, **fake.env()})("import", "codex")
        fake.configure(hold_responses=False)
        fake.release(10)
        proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert refused.returncode != 0 and "Codex is running on" in refused.stderr
    assert f"pid {pids[0]}" in refused.stderr
    assert fake.log("token_refresh") == []  # acct spent nothing
    assert Codex().path(cenv).read_bytes() == before
    assert running_codex(codex_home(cenv)) == []
