"""ChatGPT accounts beside Claude accounts in one store, through acct as a real process: login
(loopback and paste), import from Codex, list, use, status, doctor, refresh, remove, rename.
The fake Anthropic and the fake ChatGPT servers run together."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from acct.services.context import Ctx
from tests.conftest import (
    AcctRunner,
    assert_no_secrets,
    clean_env,
    seed_account,
    seed_chatgpt,
    store_secrets,
)
from tests.fake_anthropic.client import FakeAnthropic
from tests.fake_chatgpt.client import FakeChatGPT
from tests.test_login import LoginProcess, query_of


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def gpt() -> Iterator[FakeChatGPT]:
    with FakeChatGPT() as server:
        yield server


@pytest.fixture
def login_port() -> int:
    return free_port()


@pytest.fixture
def env(home: Path, fake: FakeAnthropic, gpt: FakeChatGPT, login_port: int) -> dict[str, str]:
    return clean_env(home, {**fake.env(), **gpt.env(), "ACCT_CHATGPT_LOGIN_PORT": str(login_port)})


def outputs(acct: AcctRunner) -> list[str]:
    return [p.stdout + p.stderr for p in acct.calls]


def codex_file(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".codex" / "auth.json"


# --- login --------------------------------------------------------------------------------------


def test_chatgpt_login_via_loopback_stores_a_chatgpt_account_beside_claude(
    fake: FakeAnthropic, gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, login_port: int
) -> None:
    seed_account(fake, ctx, "claude")
    who = gpt.add_account(email="gpt@example.com", plan_type="pro")
    gpt.next_login(who["account_id"])
    login = LoginProcess(env, "--provider", "chatgpt", "--no-browser", "--json")
    url = login.url()
    q = query_of(url)
    assert q["redirect_uri"] == f"http://localhost:{login_port}/auth/callback"
    got = gpt.open_authorize(url)
    assert got["status"] == 302
    answer = httpx.get(got["location"], timeout=30)
    assert answer.status_code == 200
    code, out, err = login.finish()
    assert code == 0, err
    doc = json.loads(out)["account"]
    assert doc["provider"] == "chatgpt" and doc["email"] == "gpt@example.com"
    assert doc["plan"] == "pro"
    acc = ctx.store.read().get(doc["name"])
    assert acc.provider == "chatgpt" and acc.org_uuid == who["account_id"]
    assert acc.uuid == who["user_id"] and acc.id_token
    assert ctx.store.read().get("claude").provider == "anthropic"
    assert_no_secrets([out, err], store_secrets(ctx))


def test_chatgpt_login_by_pasting_the_redirect_address(
    gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx
) -> None:
    who = gpt.add_account(email="paste@example.com")
    gpt.next_login(who["account_id"])
    login = LoginProcess(env, "--provider", "chatgpt", "--manual")
    url = login.url()
    login.wait_for_line("paste the address your browser is sent to")
    got = gpt.open_authorize(url)
    login.paste(got["location"])
    code, out, err = login.finish()
    assert code == 0, err
    (acc,) = list(ctx.store.read())
    assert acc.provider == "chatgpt" and acc.email == "paste@example.com"
    assert_no_secrets([out, err], store_secrets(ctx))


def test_chatgpt_login_when_its_port_is_taken_is_one_clear_line(
    gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner, login_port: int
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", login_port))
        s.listen(1)
        r = acct("login", "--provider", "chatgpt", "--no-browser", input="")
    assert r.returncode != 0
    assert f"port {login_port} on 127.0.0.1 is taken" in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("acct: ")]) == 1
    assert list(ctx.store.read()) == [] and gpt.log("authorize") == []


def test_an_unknown_provider_is_refused(acct: AcctRunner, ctx: Ctx) -> None:
    r = acct("login", "--provider", "gemini", input="")
    assert r.returncode != 0 and "unknown provider 'gemini'" in r.stderr


# --- import -------------------------------------------------------------------------------------


def write_auth(env: dict[str, str], doc: dict[str, object]) -> Path:
    path = codex_file(env)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def test_import_codex_takes_the_login_with_its_identity_and_the_file_stays_its_holder(
    gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    who = gpt.add_account(email="imp@example.com", plan_type="plus")
    doc = gpt.auth_json(who["account_id"])
    path = write_auth(env, doc)
    before = path.read_bytes()
    r = acct("import", "codex", check=True)
    acc = ctx.store.read().get("imp")
    assert acc.provider == "chatgpt" and acc.org_uuid == who["account_id"]
    assert acc.email == "imp@example.com" and acc.plan == "plus"
    assert acc.id_token == doc["tokens"]["id_token"]  # type: ignore[index]
    assert acc.holder is not None and acc.holder.target == "codex"
    assert path.read_bytes() == before  # the file keeps its login: it is the live holder
    assert gpt.log("token_refresh") == []
    assert_no_secrets(outputs(acct), store_secrets(ctx))
    assert "imp" in r.stdout


def test_import_codex_is_refused_when_codex_keeps_its_login_in_the_keyring(
    gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    who = gpt.add_account(email="key@example.com")
    path = write_auth(env, gpt.auth_json(who["account_id"]))
    (path.parent / "config.toml").write_text('cli_auth_credentials_store = "keyring"\n')
    r = acct("import", "codex")
    assert r.returncode != 0 and "'keyring' store" in r.stderr
    assert list(ctx.store.read()) == []


# --- the everyday commands, ChatGPT beside Claude ------------------------------------------------


def test_list_use_status_refresh_rename_remove_with_both_providers(
    fake: FakeAnthropic, gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "claude", five_hour=10.0, seven_day=20.0)
    chat = seed_chatgpt(gpt, ctx, "chat")
    gpt.set_usage(str(chat.org_uuid), primary=30.0, secondary=40.0)

    listed = acct("list", "--usage", "--json", check=True)
    rows = {r["name"]: r for r in json.loads(listed.stdout)["accounts"]}
    assert rows["chat"]["provider"] == "chatgpt"
    assert rows["chat"]["usage"]["five_hour"]["utilization"] == 30.0
    assert rows["chat"]["usage"]["seven_day"]["utilization"] == 40.0
    assert rows["claude"]["usage"]["five_hour"]["utilization"] == 10.0
    table = acct("list", check=True).stdout
    assert "chat" in table and "claude" in table

    used = acct("use", "chat", "--json", check=True)
    assert json.loads(used.stdout)["targets"][0]["target"] == "codex"
    written = json.loads(codex_file(env).read_text())
    assert written["tokens"]["account_id"] == chat.org_uuid
    assert stat.S_IMODE(codex_file(env).stat().st_mode) == 0o600
    wrong = acct("use", "claude", "-t", "codex")
    assert wrong.returncode != 0 and "codex needs a ChatGPT login" in wrong.stderr

    status = acct("status", "--json", check=True)
    targets = {t["target"]: t for t in json.loads(status.stdout)["targets"]}
    assert targets["codex"]["account"] == "chat"

    doctor = acct("doctor")
    assert "codex" in doctor.stdout

    # lent to Codex: Codex refreshes it, acct does not
    held = acct("refresh", "chat")
    assert held.returncode != 0 and "lent to codex" in held.stderr
    assert gpt.log("token_refresh") == []

    acct("rename", "chat", "gpt", check=True)
    assert ctx.store.read().get("gpt").provider == "chatgpt"
    acct("remove", "gpt", "--yes", check=True)
    assert [a.name for a in ctx.store.read()] == ["claude"]
    assert_no_secrets(outputs(acct), store_secrets(ctx) | {chat.id_token or "x"})


def test_refresh_of_a_chatgpt_account_in_the_store_rotates_at_the_chatgpt_endpoint(
    fake: FakeAnthropic, gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "claude")
    chat = seed_chatgpt(gpt, ctx, "chat")
    r = acct("refresh", "chat", check=True)
    assert "chat: refreshed" in r.stdout
    assert len(gpt.log("token_refresh")) == 1 and fake.log("token") == []
    after = ctx.store.read().get("chat")
    assert after.tokens is not None and chat.tokens is not None
    assert after.tokens.refresh != chat.tokens.refresh
    assert gpt.lineage(refresh_token=after.tokens.refresh)["revoked"] is False
    assert_no_secrets(outputs(acct), store_secrets(ctx) | {chat.id_token or "x"})


def test_pi_holds_a_claude_and_a_chatgpt_account_at_once_in_separate_slots(
    fake: FakeAnthropic, gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "claude")
    chat = seed_chatgpt(gpt, ctx, "chat")
    acct("use", "claude", "-t", "pi", check=True)
    acct("use", "chat", "-t", "pi-chatgpt", check=True)
    path = Path(env["HOME"]) / ".pi" / "agent" / "auth.json"
    doc = json.loads(path.read_text())
    assert doc["anthropic"]["type"] == "oauth"
    assert doc["openai-codex"]["accountId"] == chat.org_uuid
    assert chat.tokens is not None and doc["openai-codex"]["refresh"] == chat.tokens.refresh
    stored = {a.name: a for a in ctx.store.read()}
    assert stored["claude"].holder and stored["claude"].holder.target == "pi"
    assert stored["chat"].holder and stored["chat"].holder.target == "pi-chatgpt"
    # writing one slot again leaves the other one alone
    acct("use", "claude", "-t", "pi", check=True)
    assert json.loads(path.read_text())["openai-codex"] == doc["openai-codex"]
    wrong = acct("use", "claude", "-t", "pi-chatgpt")
    assert wrong.returncode != 0 and "pi-chatgpt needs a ChatGPT login" in wrong.stderr
    status = acct("status", "--json", check=True)
    targets = {t["target"]: t for t in json.loads(status.stdout)["targets"]}
    assert targets["pi"]["account"] == "claude" and targets["pi-chatgpt"]["account"] == "chat"
    assert_no_secrets(outputs(acct), store_secrets(ctx))


def test_logging_a_stored_chatgpt_account_in_again_keeps_its_provider_without_the_flag(
    fake: FakeAnthropic, gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx
) -> None:
    chat = seed_chatgpt(gpt, ctx, "chat")
    gpt.next_login(chat.org_uuid)
    login = LoginProcess(env, "chat", "--no-browser", "--json")
    url = login.url()
    assert url.startswith(gpt.base_url + "/oauth/authorize?")
    got = gpt.open_authorize(url)
    assert httpx.get(got["location"], timeout=30).status_code == 200
    code, out, err = login.finish()
    assert code == 0, err
    assert json.loads(out)["created"] is False
    (acc,) = list(ctx.store.read())
    assert acc.name == "chat" and acc.provider == "chatgpt"
    assert acc.tokens is not None and chat.tokens is not None
    assert acc.tokens.refresh != chat.tokens.refresh and fake.log("authorize") == []
