"""The real Claude Code through acct's usage proxy (acct.services.proxy), chained to the fake Anthropic.

``claude_env`` already points ``ANTHROPIC_BASE_URL`` at the fake: that is the case of a user's
own base URL, which the proxy must forward to.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acct.base.models import Usage, Window
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets

pytestmark = pytest.mark.e2e


def cached(ctx: Ctx, *accounts, five_hour: float, seven_day: float) -> None:
    """Usage in the cache, polled a while ago: exec has no account to probe."""
    for acc in accounts:
        ctx.state.put_usage(
            acc.id, Usage(Window(five_hour, None), Window(seven_day, None)), now=time.time() - 120
        )


def test_claude_runs_through_the_proxy_and_its_answers_feed_the_cache(
    fake, ctx, run_acct, workdir
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    fake.reset_log()

    p = run_acct("exec", "--proxy", "--", "claude", "-p", "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    calls = fake.log("messages")
    assert [c["account_uuid"] for c in calls] == [a.uuid]
    assert calls[0]["stream"] is True  # the real client streamed its answer through the proxy
    rec = ctx.state.usage(a.id)
    assert (rec.usage.five_hour.utilization, rec.usage.seven_day.utilization) == (37.0, 12.0)
    assert fake.stats().get("usage", 0) == 0
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_a_quota_refusal_rotates_with_the_exact_reset(fake, ctx, run_acct, workdir) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, five_hour=10, seven_day=10)
    cached(ctx, b, five_hour=30, seven_day=30)
    reset = int(time.time()) + 2 * 3600 + 37  # not on a minute: the tool's words round it
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    fake.reset_log()

    p = run_acct("exec", "--", "claude", "-p", "write the report", cwd=workdir, timeout=180)

    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    assert [c["status"] for c in fake.log("messages")] == [429, 200]
    assert "→ switching to b" in p.stderr
    bench = ctx.state.benches().get(a.id)
    assert bench is not None and bench.kind == "quota" and bench.until == reset
    assert fake.stats().get("usage", 0) == 0
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_behind_a_tls_inspecting_proxy_claude_goes_through_acct_proxy(
    fake, ctx, claude_env_tls, tls_proxy, workdir
) -> None:
    """No base URL of the user's: the proxy forwards to api.anthropic.com itself, through the
    company's HTTPS proxy, trusting its CA as Claude Code does (NODE_EXTRA_CA_CERTS)."""
    env = dict(claude_env_tls)
    del env["ANTHROPIC_BASE_URL"]
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    fake.reset_log()

    p = AcctRunner(env)("exec", "--", "claude", "-p", "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    assert [c["status"] for c in fake.log("messages")] == [200]
    rec = ctx.state.usage(a.id)  # the proxy read the answer: it was on the path
    assert (rec.usage.five_hour.utilization, rec.usage.seven_day.utilization) == (37.0, 12.0)
    assert "api.anthropic.com:443" in tls_proxy.connects
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_a_base_url_in_claudes_settings_keeps_the_proxy_off_its_route(
    fake, ctx, claude_env, workdir
) -> None:
    """Claude Code applies its settings' env over the process's: a gateway set there wins over
    the proxy's address, so acct leaves the route alone (and claims no first-party API)."""
    env = dict(claude_env)
    settings = Path(env["HOME"]) / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": env.pop("ANTHROPIC_BASE_URL")}}))
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    fake.reset_log()

    p = AcctRunner(env)("exec", "--", "claude", "-p", "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    assert "without the usage proxy" in p.stderr and str(settings) in p.stderr
    assert [c["status"] for c in fake.log("messages")] == [200]
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 5  # not observed: not proxied


# --- in flight, under the real interactive Claude Code ------------------------------------------


def _trusting(env: dict[str, str], workdir: Path) -> None:
    """Claude Code's own state for a user who finished onboarding and trusts ``workdir``, so
    the interactive session opens straight on its prompt."""
    state = Path(env["HOME"]) / ".claude.json"
    doc = json.loads(state.read_text()) if state.exists() else {}
    doc.update(hasCompletedOnboarding=True, theme="dark", bypassPermissionsModeAccepted=True)
    doc.setdefault("projects", {})[str(workdir)] = {
        "hasTrustDialogAccepted": True,
        "hasCompletedProjectOnboarding": True,
    }
    state.write_text(json.dumps(doc))


class Tmux:
    """A terminal of its own (a private tmux server): the real interactive Claude Code draws
    its screen there and answers the terminal queries a bare pty would leave unanswered."""

    def __init__(self, tmp: Path, env: dict[str, str], cwd: Path, command: list[str]) -> None:
        self.sock = str(tmp / "tmux.sock")
        self.status = tmp / "status"
        self.env = env
        line = " ".join(shlex.quote(a) for a in command)
        script = f"{line}; echo $? > {shlex.quote(str(self.status))}; sleep 600"
        self._tmux("new-session", "-d", "-x", "140", "-y", "40", "-c", str(cwd), script)

    def _tmux(self, *args: str) -> str:
        p = subprocess.run(
            ["tmux", "-S", self.sock, "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return p.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-200")

    def wait_for(self, *texts: str, timeout: float = 120) -> str:
        """The screen once any of ``texts`` is on it."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if any(text in screen for text in texts):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"none of {texts!r} appeared on the screen:\n{screen}")
            time.sleep(0.25)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-l", text)
        time.sleep(0.5)
        self._tmux("send-keys", "Enter")

    def exit_status(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while not self.status.exists() or not self.status.read_text().strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"the session never ended:\n{self.screen()}")
            time.sleep(0.25)
        return int(self.status.read_text())

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-S", self.sock, "kill-server"], env=self.env, capture_output=True, timeout=30
        )


def test_interactive_claude_is_answered_by_the_next_account_in_the_same_session(
    fake, ctx, claude_env, run_acct, workdir, tmp_path
) -> None:
    """A at its limit, B healthy: the first prompt of an interactive session is answered by B
    without a restart or another keystroke; status names B meanwhile; after /exit A stays
    benched until its reset."""
    if shutil.which("tmux") is None:
        pytest.skip("e2e: tmux is not installed")
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, five_hour=10, seven_day=10)
    cached(ctx, b, five_hour=30, seven_day=30)
    reset = int(time.time()) + 3 * 3600 + 41
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    _trusting(claude_env, workdir)
    fake.reset_log()

    command = [sys.executable, "-m", "acct", "exec", "--account", "a", "--", "claude"]
    term = Tmux(tmp_path, claude_env, workdir, command)
    try:
        # The prompt is ready: 2.1.197 shows its shortcut hint, 2.1.332 its permission mode.
        term.wait_for("? for shortcuts", "shift+tab to cycle")
        term.type("say hello")
        # The answer's words (a cell of the screen may lag behind the redraw under load; the
        # fake's log below says which account answered).
        screen = term.wait_for("from b@example.com")
        status = run_acct("status", "--json", check=True)
        sessions = json.loads(status.stdout)["sessions"]
        assert [s["account"] for s in sessions] == ["b"]
        term.type("/exit")
        exit_status = term.exit_status()
        screen = term.screen()
    finally:
        term.close()
    assert exit_status == 0, screen
    calls = [(c["account_uuid"], c["status"]) for c in fake.log("messages")]
    assert (a.uuid, 429) in calls and (b.uuid, 200) in calls
    first_b = calls.index((b.uuid, 200))
    assert calls.index((a.uuid, 429)) < first_b
    assert all(uuid == b.uuid for uuid, _ in calls[first_b:])  # sticky on b
    # Claude Code's metadata.user_id names its account; the re-sent request names b's.
    named = [(c["account_uuid"], c.get("user_account")) for c in fake.log("messages")]
    assert all(sent == named_as for sent, named_as in named), named
    assert "hit your" not in screen and "limit reached" not in screen.lower()
    bench = ctx.state.benches().get(a.id)
    assert bench is not None and bench.kind == "quota" and bench.until == reset
    for acc in (a, b):
        assert not fake.lineage(acc.uuid)["revoked"]
    assert_no_secrets([screen, status.stdout], store_secrets(ctx))


def test_a_switch_while_claude_refreshes_its_own_login_revokes_no_chain(
    fake, ctx, run_acct, claude_env_tls, workdir
) -> None:
    """Claude Code refreshes a (its file holds a's lineage) and its next request, with the
    successor token, is refused for quota; acct refreshes b (the store holds b's lineage, about
    to expire) and answers from b. Two lineages, one holder each: neither chain is revoked."""
    from tests.e2e.test_claude_code_real import expire_at_server

    seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30, expires_in=600)
    a = expire_at_server(fake, ctx, "a")
    cached(ctx, a, five_hour=10, seven_day=10)
    cached(ctx, b, five_hour=30, seven_day=30)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    fake.reset_log()

    p = AcctRunner(claude_env_tls)(
        "exec", "--account", "a", "--", "claude", "-p", "hi", cwd=workdir, timeout=180
    )

    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    calls = [(c["account_uuid"], c["status"]) for c in fake.log("messages")]
    assert calls == [(a.uuid, 401), (a.uuid, 429), (b.uuid, 200)]
    refreshed = {r["token_sha8"]: r["status"] for r in fake.log("token_refresh")}
    assert refreshed == {fake.sha8(a.tokens.refresh): 200, fake.sha8(b.tokens.refresh): 200}
    for acc in ctx.store.read():
        lineage = fake.lineage(acc.uuid)
        assert not lineage["revoked"], acc.name
        assert lineage["live_refresh_sha8"] == fake.sha8(acc.tokens.refresh), acc.name
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))
