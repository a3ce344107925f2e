"""ChatGPT accounts beside Claude accounts in one store, through acct as a real process: login
(loopback and paste), import from Codex, list, use, status, doctor, refresh, remove, rename.
The fake Anthropic and the fake ChatGPT servers run together."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from acct.services.context import Ctx
from acct.services.targets import get_target
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
from tests.fake_chatgpt.server import DEFAULT_CONFIG
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


def idle_auth(gpt: FakeChatGPT, env: dict[str, str], account_id: str) -> tuple[Path, dict]:
    """A Codex ``auth.json`` left idle: its access token (and the JWT's ``exp``) expired an hour
    ago; its refresh token is live."""
    gpt.configure(expires_in=-3600)
    try:
        doc = gpt.auth_json(account_id)
    finally:
        gpt.configure(expires_in=DEFAULT_CONFIG["expires_in"])
    return write_auth(env, doc), doc


def acct_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("acct: ")]


def test_an_idle_codex_login_with_an_expired_access_token_imports(
    gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    who = gpt.add_account(email="idle@example.com", plan_type="plus")
    path, doc = idle_auth(gpt, env, who["account_id"])
    old = doc["tokens"]
    gpt.reset_log()
    r = acct("import", "codex")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("added idle (plus) from codex")
    refreshes = gpt.log("token_refresh")
    assert len(refreshes) == 1  # renewed once, as Codex would after its 401
    assert refreshes[0]["token_sha8"] == gpt.sha8(old["refresh_token"])
    written = json.loads(path.read_text())
    tokens = written["tokens"]
    assert tokens["refresh_token"] != old["refresh_token"]  # the rotated pair is in the file
    assert tokens["access_token"] != old["access_token"]
    assert tokens["id_token"] and tokens["account_id"] == who["account_id"]
    assert written["auth_mode"] == "chatgpt" and written["last_refresh"] != doc["last_refresh"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    acc = ctx.store.read().get("idle")
    assert acc.provider == "chatgpt" and acc.org_uuid == who["account_id"]
    assert acc.tokens is not None and acc.tokens.refresh == tokens["refresh_token"]
    entry = get_target("codex").read(ctx.env)
    assert entry is not None and entry.tokens.fresh_for(3600)
    assert acc.holder is not None and acc.holder.target == "codex"
    assert acc.holder.fingerprint == entry.lineage_fingerprint  # the file is its one holder
    lineage = gpt.lineage(refresh_token=tokens["refresh_token"])
    assert lineage["revoked"] is False and lineage["refresh_count"] == 1
    assert_no_secrets(
        outputs(acct), store_secrets(ctx) | {old["refresh_token"], old["access_token"]}
    )


def test_an_idle_codex_login_whose_refresh_is_refused_is_one_line_and_leaves_the_file(
    gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    who = gpt.add_account(email="gone@example.com")
    path, doc = idle_auth(gpt, env, who["account_id"])
    gpt.revoke(who["account_id"])  # signed out elsewhere: the chain is dead
    before = path.read_bytes()
    gpt.reset_log()
    r = acct("import", "codex")
    assert r.returncode == 4, r.stderr
    (line,) = acct_lines(r.stderr)
    assert "signed out" in line and "expired" not in line
    assert "codex login" in r.stderr
    assert len(gpt.log("token_refresh")) == 1  # asked once, as Codex would; refused
    assert path.read_bytes() == before  # as Codex leaves it: not blanked
    assert list(ctx.store.read()) == []
    assert_no_secrets(
        outputs(acct), {doc["tokens"]["refresh_token"], doc["tokens"]["access_token"]}
    )


def test_an_idle_codex_login_is_not_renewed_while_codex_runs_on_it(
    gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner, tmp_path: Path
) -> None:
    who = gpt.add_account(email="busy@example.com")
    path, doc = idle_auth(gpt, env, who["account_id"])
    before = path.read_bytes()
    program = tmp_path / "bin" / "codex"  # the kernel names the process after it: "codex"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\necho ready\nread line\n")
    program.chmod(0o755)
    codex = subprocess.Popen([str(program)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        assert codex.stdout is not None and codex.stdout.readline() == b"ready\n"
        gpt.reset_log()
        r = acct("import", "codex")
    finally:
        codex.communicate(b"\n", timeout=30)
    assert r.returncode != 0
    (line,) = acct_lines(r.stderr)
    assert f"Codex is running on {path.parent} (pid {codex.pid})" in line
    assert gpt.log("token_refresh") == []  # nothing spent
    assert path.read_bytes() == before
    assert list(ctx.store.read()) == []
    again = acct("import", "codex")  # that Codex has exited
    assert again.returncode == 0, again.stderr
    assert len(gpt.log("token_refresh")) == 1
    assert_no_secrets(outputs(acct), store_secrets(ctx) | {doc["tokens"]["refresh_token"]})


def test_an_idle_pi_chatgpt_login_imports_named_by_its_access_token(
    gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    who = gpt.add_account(email="pi@example.com", plan_type="pro")
    gpt.configure(expires_in=-3600)
    try:
        t = gpt.mint(who["account_id"])
    finally:
        gpt.configure(expires_in=DEFAULT_CONFIG["expires_in"])
    path = Path(env["HOME"]) / ".pi" / "agent" / "auth.json"
    path.parent.mkdir(mode=0o700, parents=True)
    entry = {
        "type": "oauth",
        "access": t["access_token"],
        "refresh": t["refresh_token"],
        "expires": int(time.time() - 3600) * 1000,
        "accountId": who["account_id"],
    }  # Pi's openai-codex entry keeps no id_token
    path.write_text(json.dumps({"openai-codex": entry, "anthropic": {"type": "api", "key": "x"}}))
    path.chmod(0o600)
    gpt.reset_log()
    r = acct("import", "pi-chatgpt")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("added pi (pro) from pi-chatgpt")
    assert len(gpt.log("token_refresh")) == 1  # renewed under Pi's lock, as Pi would
    written = json.loads(path.read_text())
    assert written["anthropic"] == {"type": "api", "key": "x"}  # the other slot is kept
    now = written["openai-codex"]
    assert now["refresh"] != t["refresh_token"] and now["expires"] > time.time() * 1000
    acc = ctx.store.read().get("pi")
    assert acc.provider == "chatgpt" and acc.org_uuid == who["account_id"]
    assert acc.uuid == who["user_id"] and acc.email == "pi@example.com"
    assert acc.tokens is not None and acc.tokens.refresh == now["refresh"]
    assert acc.holder is not None and acc.holder.target == "pi-chatgpt"
    assert gpt.lineage(refresh_token=now["refresh"])["revoked"] is False
    assert_no_secrets(outputs(acct), store_secrets(ctx) | {t["refresh_token"]})


def test_use_over_an_idle_codex_login_renews_it_to_tell_a_live_one_from_a_signed_out_one(
    gpt: FakeChatGPT, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    chat = seed_chatgpt(gpt, ctx, "chat")
    other = gpt.add_account(email="other@example.com")
    path, doc = idle_auth(gpt, env, other["account_id"])
    gpt.reset_log()
    live = acct("use", "chat")
    assert live.returncode != 0 and "does not track (other@example.com" in live.stderr
    assert len(gpt.log("token_refresh")) == 1  # renewed in place to learn whose it is
    kept = json.loads(path.read_text())["tokens"]
    assert kept["account_id"] == other["account_id"]  # kept, with its rotated pair
    assert kept["refresh_token"] != doc["tokens"]["refresh_token"]
    assert gpt.lineage(refresh_token=kept["refresh_token"])["revoked"] is False

    idle_auth(gpt, env, other["account_id"])
    gpt.revoke(other["account_id"])  # this one is signed out
    gpt.reset_log()
    dead = acct("use", "chat")
    assert dead.returncode == 0, dead.stderr
    assert "signed out, so replacing it loses nothing" in dead.stderr
    assert len(gpt.log("token_refresh")) == 1
    assert json.loads(path.read_text())["tokens"]["account_id"] == chat.org_uuid
    assert_no_secrets(outputs(acct), store_secrets(ctx) | {kept["refresh_token"]})


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
