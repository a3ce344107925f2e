"""`acct login`: the browser flow (loopback callback or a pasted code) as a real child process."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from acct.base.models import Holder
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic


class LoginProcess:
    """`acct login ...` running in the background, its stdin a pipe kept open for pastes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "acct", "login", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=env["HOME"],
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        self.url_seen = ""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def url(self) -> str:
        """The authorize URL, read from stderr as soon as it is printed."""
        while True:
            line = self._lines.get(timeout=30)
            assert line is not None, "acct login ended before printing a URL:\n" + "".join(
                self.stderr_lines
            )
            if line.startswith("http"):
                self.url_seen = line.strip()
                return self.url_seen

    def wait_for_line(self, text: str) -> None:
        """Read stderr until a line containing ``text`` (the process keeps running)."""
        while True:
            line = self._lines.get(timeout=30)
            assert line is not None, f"acct login ended before printing {text!r}:\n" + "".join(
                self.stderr_lines
            )
            if text in line:
                return

    def paste(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout=timeout)
        self.proc.stdin.close()
        while self._lines.get(timeout=10) is not None:
            pass
        return code, out, "".join(self.stderr_lines)


BAD_PASTE = "acct: that is not CODE#STATE from this login; paste it again"


def authorize(url: str) -> httpx.Response:
    """Play the browser at the login page: one GET, no redirects followed."""
    response = httpx.get(url, follow_redirects=False, timeout=30)
    assert response.status_code in (200, 302), response.text
    return response


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def stored(ctx: Ctx) -> list:
    return list(ctx.store.read())


def test_login_via_loopback_stores_the_account(
    fake: FakeAnthropic, env, ctx: Ctx, acct: AcctRunner
) -> None:
    fake.add_account(email="work@example.com", plan="claude_max")
    login = LoginProcess(env, "--no-browser")
    url = login.url()
    params = query_of(url)
    assert params["code"] == "true" and params["code_challenge_method"] == "S256"
    assert params["redirect_uri"].startswith("http://localhost:") and params[
        "redirect_uri"
    ].endswith("/callback")
    location = authorize(url).headers["location"]
    page = httpx.get(location, timeout=30)
    assert page.status_code == 200 and "login complete" in page.text
    code, out, err = login.finish()
    assert code == 0, err
    assert out.strip() == "logged in work@example.com (max)"
    assert "paste" in err.lower()

    [acc] = stored(ctx)
    assert (acc.name, acc.email, acc.plan, acc.kind) == (
        "work@example.com",
        "work@example.com",
        "max",
        "oauth",
    )
    assert acc.tier == "default_claude_max_20x" and acc.uuid and acc.org_uuid
    assert acc.tokens and acc.tokens.refresh and "user:inference" in acc.tokens.scopes
    assert not fake.lineage(refresh_token=acc.tokens.refresh)["revoked"]
    store = ctx.paths.accounts_file
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700

    listing = acct("list", "--json")
    if listing.returncode == 0:
        assert "work@example.com" in listing.stdout and "max" in listing.stdout
    assert_no_secrets([out, err, page.text, listing.stdout, listing.stderr], store_secrets(ctx))


def test_login_by_pasting_code_and_state(fake: FakeAnthropic, env, ctx: Ctx) -> None:
    fake.add_account(email="paste@example.com", plan="claude_pro")
    login = LoginProcess(env, "--manual", "--json")
    url = login.url()
    assert query_of(url)["redirect_uri"] == "https://platform.claude.com/oauth/code/callback"
    page = authorize(url)
    pasted = page.headers["x-fake-code"]
    assert pasted in page.text and "#" in pasted
    login.paste(pasted)
    code, out, err = login.finish()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "login" and doc["created"] is True
    assert doc["account"]["email"] == "paste@example.com" and doc["account"]["plan"] == "pro"
    [acc] = stored(ctx)
    assert doc["account"]["fingerprint"] == acc.fingerprint
    assert_no_secrets([out, err], store_secrets(ctx) | {pasted.split("#")[0]})


def test_login_by_pasting_the_redirect_url(fake: FakeAnthropic, env, ctx: Ctx) -> None:
    fake.add_account(email="remote@example.com")
    login = LoginProcess(env, "--no-browser")
    location = authorize(login.url()).headers["location"]
    login.paste(location)  # the browser could not reach this machine; the user copies the address
    code, _, err = login.finish()
    assert code == 0, err
    assert [a.email for a in stored(ctx)] == ["remote@example.com"]


def test_a_callback_with_the_wrong_state_is_ignored_and_the_login_goes_on(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    """Any local program can call the loopback port: a stray answer must not end the login."""
    fake.add_account(email="x@example.com")
    login = LoginProcess(env, "--no-browser")
    location = authorize(login.url()).headers["location"]
    parts = urlsplit(location)
    for query in (
        {**query_of(location), "state": "someone-else"},
        {"code": "x", "state": "y"},
        {"code": "x"},
        {"error": "access_denied", "state": "y"},
    ):
        page = httpx.get(urlunsplit(parts._replace(query=urlencode(query))), timeout=30)
        assert (
            page.status_code == 400 and "ignored" in page.text and "Nothing was stored" in page.text
        )
    assert login.proc.poll() is None and fake.stats()["token_code"] == 0
    assert httpx.get(location, timeout=30).status_code == 200
    code, _, err = login.finish()
    assert code == 0, err
    assert [a.email for a in stored(ctx)] == ["x@example.com"]


def test_a_login_error_from_the_callback_is_printed_without_control_characters(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    login = LoginProcess(env, "--no-browser")
    state = query_of(login.url())["state"]
    error = "access_denied\x1b]0;owned\x07\x1b[2J"
    port = urlsplit(query_of(login.url_seen)["redirect_uri"]).port
    page = httpx.get(
        f"http://127.0.0.1:{port}/callback?" + urlencode({"error": error, "state": state}),
        timeout=30,
    )
    assert page.status_code == 400
    code, _, err = login.finish()
    assert code == 4 and "not approved (access_denied]0;owned[2J)" in err
    assert "\x1b" not in err and "\x07" not in err
    assert not ctx.paths.accounts_file.exists()


def test_a_pasted_code_with_the_wrong_state_is_asked_again(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    fake.add_account(email="x@example.com")
    login = LoginProcess(env, "--manual")
    pasted = authorize(login.url()).headers["x-fake-code"]
    login.paste(pasted.split("#")[0] + "#not-our-state")
    login.wait_for_line(BAD_PASTE)
    assert login.proc.poll() is None and fake.stats()["token_code"] == 0
    login.paste(pasted)
    code, _, err = login.finish()
    assert code == 0, err
    assert err.count(BAD_PASTE) == 1
    assert [a.email for a in stored(ctx)] == ["x@example.com"]
    assert fake.stats()["token_code"] == 1


def test_a_paste_with_the_right_state_whose_exchange_fails_ends_the_login(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    fake.add_account(email="x@example.com")
    login = LoginProcess(env, "--manual", "--timeout", "60")
    state = query_of(login.url())["state"]
    login.paste(f"not-a-code-the-server-gave#{state}")
    code, _, err = login.finish()
    assert code == 4 and BAD_PASTE not in err
    assert "the login code was refused" in err and "nothing was stored" in err
    assert fake.stats()["token_code"] == 1
    assert not ctx.paths.accounts_file.exists()


def test_login_times_out_with_nothing_written(fake: FakeAnthropic, env, ctx: Ctx) -> None:
    login = LoginProcess(env, "--no-browser", "--timeout", "1")
    login.url()
    code, _, err = login.finish()
    assert code == 1
    assert "no login answer within 1s" in err and "nothing was stored" in err
    assert not ctx.paths.accounts_file.exists()


def test_ctrl_c_ends_login_with_130_and_nothing_written(fake: FakeAnthropic, env, ctx: Ctx) -> None:
    login = LoginProcess(env, "--no-browser")
    login.url()
    login.proc.send_signal(signal.SIGINT)
    code, _, err = login.finish()
    assert code == 130, err
    assert "interrupted" in err and "nothing was stored" in err
    assert not ctx.paths.accounts_file.exists()


def _login_loopback(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    login = LoginProcess(env, "--no-browser", *args)
    location = authorize(login.url()).headers["location"]
    httpx.get(location, timeout=30)
    return login.finish()


def test_logging_in_twice_keeps_one_account(fake: FakeAnthropic, env, ctx: Ctx) -> None:
    fake.add_account(email="twice@example.com")
    code, _, err = _login_loopback(env)
    assert code == 0, err
    [first] = stored(ctx)
    code, out, err = _login_loopback(env, "othername", "--json")
    assert code == 0, err
    [second] = stored(ctx)
    doc = json.loads(out)
    assert doc["created"] is False and doc["account"]["name"] == "twice@example.com"
    assert "updated it rather than adding 'othername'" in err
    assert second.id == first.id and second.name == first.name
    assert second.tokens and first.tokens and second.tokens.refresh != first.tokens.refresh


def test_a_new_login_clears_needs_login_and_custody(
    fake: FakeAnthropic, env, ctx: Ctx, home: Path
) -> None:
    acc = seed_account(fake, ctx, "work", email="work@example.com")
    fake.next_login(acc.uuid)
    with ctx.store.transaction() as accounts:
        held = Holder("claude-code", str(home / ".claude/.credentials.json"), "abcd1234", 1)
        accounts.put(accounts.get("work").copy(needs_login=True, holder=held))
    code, out, err = _login_loopback(env, "work")
    assert code == 0, err
    assert out.strip() == "logged in work (work@example.com, max)"
    [after] = stored(ctx)
    assert after.id == acc.id and not after.needs_login and after.holder is None


def test_a_new_login_lifts_the_old_lineages_poll_backoff_and_login_bench(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    acc = seed_account(fake, ctx, "work", email="work@example.com")
    fake.next_login(acc.uuid)
    now = time.time()
    ctx.state.put_usage_error(acc.id, "auth", "refused", backoff_until=now + 3600)
    ctx.state.bench(acc.id, now + 3600, kind="auth", reason="its login was refused")
    ctx.state.bench(acc.id, now + 7200, kind="quota", reason="5-hour limit")
    code, _, err = _login_loopback(env, "work")
    assert code == 0, err
    record = ctx.state.usage(acc.id)
    assert record is not None and record.backoff_until is None and record.error is None
    bench = ctx.state.benches().get(acc.id)
    # A quota bench describes the account, not its login: it stays. (Benches are one per account,
    # and the later quota bench replaced the auth one; check an auth bench alone is lifted.)
    assert bench is not None and bench.kind == "quota"
    ctx.state.bench(acc.id, now + 3600, kind="auth", reason="its login was refused")
    fake.next_login(acc.uuid)
    code, _, err = _login_loopback(env, "work")
    assert code == 0, err
    assert acc.id not in ctx.state.benches()


def test_the_email_name_taken_by_another_identity_gets_a_unique_name(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    seed_account(fake, ctx, "same@example.com", email="other@example.com")
    newcomer = fake.add_account(email="same@example.com")
    fake.next_login(newcomer["uuid"])
    code, out, err = _login_loopback(env)
    assert code == 0, err
    assert out.strip() == "logged in same@example.com-2 (same@example.com, max)"
    assert sorted(a.name for a in stored(ctx)) == ["same@example.com", "same@example.com-2"]


def test_profile_403_degrades_to_the_token_answer_identity(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    account = fake.add_account(email="setup@example.com", plan="claude_max")
    fake.configure(profile_fail_status=403)
    code, out, err = _login_loopback(env)
    assert code == 0, err
    assert out.strip() == "logged in setup@example.com (plan unknown)"
    assert "403" in err
    [acc] = stored(ctx)
    assert acc.uuid == account["uuid"] and acc.org_uuid == account["org_uuid"] and acc.plan is None
    assert not acc.needs_login


def test_api_key_login_from_stdin(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    key = fake.api_key(fake.add_account(email="k@example.com")["uuid"])
    proc = acct("login", "ci", "--api-key", "--json", input=key + "\n")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["created"] is True and doc["account"]["kind"] == "api_key"
    [acc] = stored(ctx)
    assert (acc.name, acc.kind, acc.api_key) == ("ci", "api_key", key)
    listing = acct("list", "--json")
    if listing.returncode == 0:
        assert "api_key" in listing.stdout
    assert_no_secrets([proc.stdout, proc.stderr, listing.stdout, listing.stderr], {key})


def test_api_key_without_the_usual_prefix_warns(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    proc = acct("login", "odd", "--api-key", input="some-other-key\n")
    assert proc.returncode == 0, proc.stderr
    assert "does not start with sk-ant-api" in proc.stderr
    assert "some-other-key" not in proc.stdout + proc.stderr
    assert stored(ctx)[0].kind == "api_key"


def test_api_key_needs_a_name(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    proc = acct("login", "--api-key", input="sk-ant-api03-xyz\n")
    assert proc.returncode == 2
    assert not ctx.paths.accounts_file.exists()


def test_manual_login_with_closed_input_fails_cleanly(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    proc = acct("login", "--manual", "--timeout", "30")
    assert proc.returncode == 2 and "no code was pasted" in proc.stderr
    assert not ctx.paths.accounts_file.exists()


def test_login_url_is_one_flushed_line(fake: FakeAnthropic, env) -> None:
    env = {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}
    login = LoginProcess(env, "--no-browser", "--timeout", "30")
    url = login.url()  # read while the process still waits: it was flushed, not buffered
    assert " " not in url and url.startswith(fake.authorize_url + "?")
    login.proc.send_signal(signal.SIGINT)
    login.finish()


@pytest.mark.parametrize("flag", ["--no-browser", "--manual"])
def test_no_browser_is_opened(fake: FakeAnthropic, env, tmp_path: Path, flag: str) -> None:
    marker = tmp_path / "opened"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {marker}\n')
    browser.chmod(0o755)
    login = LoginProcess({**env, "BROWSER": str(browser)}, flag, "--timeout", "1")
    login.url()
    login.finish()
    assert not marker.exists()


def test_the_browser_is_opened_by_default(fake: FakeAnthropic, env, tmp_path: Path) -> None:
    marker = tmp_path / "opened"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {marker}\n')
    browser.chmod(0o755)
    login = LoginProcess({**env, "BROWSER": str(browser)}, "--timeout", "2")
    url = login.url()
    login.finish()
    assert marker.read_text().strip() == url
    assert os.stat(marker).st_size > 0


# --- an idle connection to the callback port (browsers open speculative ones) ----------------


def _idle_connection(url: str) -> socket.socket:
    """Connect to the loopback callback and send nothing, as a browser's pre-connect does."""
    port = urlsplit(query_of(url)["redirect_uri"]).port
    assert port
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _ended(login: LoginProcess, within: float = 30) -> int | None:
    """The exit status, or None (after killing it) when the login still runs: it hung."""
    try:
        return login.proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        login.proc.kill()
        login.proc.wait()
        return None


def test_an_idle_connection_to_the_callback_port_does_not_block_the_login(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    fake.add_account(email="chrome@example.com")
    login = LoginProcess(env, "--no-browser", "--timeout", "60")
    url = login.url()
    with _idle_connection(url), _idle_connection(url):
        location = authorize(url).headers["location"]
        try:
            page = httpx.get(location, timeout=15)
        finally:
            status = _ended(login)
        assert page.status_code == 200 and "login complete" in page.text
        assert status == 0, "".join(login.stderr_lines)
    assert [a.email for a in stored(ctx)] == ["chrome@example.com"]


def test_login_timeout_fires_while_an_idle_connection_is_open(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    login = LoginProcess(env, "--no-browser", "--timeout", "1")
    with _idle_connection(login.url()):
        status = _ended(login)
    assert status == 1, "acct login did not end at its --timeout while a connection sat idle"
    assert "no login answer within 1s" in "".join(login.stderr_lines)
    assert not ctx.paths.accounts_file.exists()


def test_ctrl_c_ends_login_while_an_idle_connection_is_open(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    login = LoginProcess(env, "--no-browser")
    with _idle_connection(login.url()):
        time.sleep(0.3)  # let the server take the connection in
        login.proc.send_signal(signal.SIGINT)
        status = _ended(login)
    assert status == 130, "acct login did not end on Ctrl-C while a connection sat idle"
    assert "interrupted" in "".join(login.stderr_lines)
    assert not ctx.paths.accounts_file.exists()


# --- what is checked before the browser flow, and naming ---------------------------------------


def test_a_pasted_code_without_its_state_is_asked_again_until_the_timeout(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    fake.add_account(email="x@example.com")
    login = LoginProcess(env, "--manual", "--timeout", "3")
    code_only = authorize(login.url()).headers["x-fake-code"].split("#")[0]
    login.paste(code_only)
    login.paste("not even a code")
    code, _, err = login.finish()
    assert code == 1 and err.count(BAD_PASTE) == 2
    assert "no login answer within 3s; nothing was stored" in err
    assert not ctx.paths.accounts_file.exists()
    assert fake.stats()["token_code"] == 0
    assert code_only not in err


def test_a_pasted_redirect_url_without_its_state_is_asked_again(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    fake.add_account(email="x@example.com")
    login = LoginProcess(env, "--no-browser")
    location = authorize(login.url()).headers["location"]
    parts = urlsplit(location)
    login.paste(urlunsplit(parts._replace(query=urlencode({"code": query_of(location)["code"]}))))
    login.wait_for_line(BAD_PASTE)
    assert login.proc.poll() is None and fake.stats()["token_code"] == 0
    login.paste(location)
    code, _, err = login.finish()
    assert code == 0, err
    assert [a.email for a in stored(ctx)] == ["x@example.com"]


def test_login_on_a_corrupt_store_fails_before_the_browser_flow(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    path = ctx.paths.accounts_file
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_text("version = 1\n[[accounts]\n")
    proc = acct("login", "--no-browser", "--timeout", "30")
    assert proc.returncode == 1
    assert "http" not in proc.stderr and str(path) in proc.stderr
    assert fake.log("authorize") == [] and path.read_text() == "version = 1\n[[accounts]\n"


def test_login_with_the_name_of_another_account_is_stored_under_its_email(
    fake: FakeAnthropic, env, ctx: Ctx
) -> None:
    """`acct login work` where the browser logged in someone else: `work` stays as it was."""
    work = seed_account(fake, ctx, "work", email="work@example.com")
    newcomer = fake.add_account(email="new@example.com")
    fake.next_login(newcomer["uuid"])
    code, out, err = _login_loopback(env, "work")
    assert code == 0, err
    assert out.strip() == "logged in new@example.com (max)"
    assert "'work' is the account work@example.com, but this login is new@example.com" in err
    assert "stored it as 'new@example.com' and left 'work' unchanged" in err
    accounts = ctx.store.read()
    assert accounts.get("work") == work
    assert accounts.get("new@example.com").uuid == newcomer["uuid"]


def test_a_new_login_keeps_a_rate_limit_backoff(fake: FakeAnthropic, env, ctx: Ctx) -> None:
    """The usage endpoint throttles per account: a new login does not lift a 429 back-off."""
    acc = seed_account(fake, ctx, "work", email="work@example.com")
    fake.next_login(acc.uuid)
    until = time.time() + 3600
    ctx.state.put_usage_error(acc.id, "rate_limited", "429", backoff_until=until)
    code, _, err = _login_loopback(env, "work")
    assert code == 0, err
    record = ctx.state.usage(acc.id)
    assert record is not None and record.error == "rate_limited" and record.backoff_until == until
