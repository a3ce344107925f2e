"""``acct exec -- codex`` with the real **interactive** Codex CLI (the TUI, npm ``@openai/codex``,
pinned) in a terminal of its own (tmux), against the fake ChatGPT server: a prompt typed in is
answered with the chosen account's login, and with that account at its limit the turn is
finished in flight on the next account through acct's usage proxy, with no keystroke from the
user. The TUI's start-up calls (the workspace routing discovery ``wham/accounts/check`` above
all) are answered by the fake; docs/codex.md says what was measured."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from acct.base.models import Account
from acct.services.context import Ctx
from tests.conftest import AcctRunner
from tests.e2e import test_codex_exec_real as cx
from tests.e2e.test_codex_exec_real import at_limit, backend, no_leaks, seed, sha, turns
from tests.e2e.test_proxy_real import Tmux
from tests.fake_chatgpt.client import FakeChatGPT

pytestmark = pytest.mark.e2e

# the fixtures of the `codex exec` tests: a fake, a temp HOME with the pinned Codex on PATH
codex_bin, fake, cenv, ctx, run, workdir = (
    cx.codex_bin,
    cx.fake,
    cx.cenv,
    cx.ctx,
    cx.run,
    cx.workdir,
)

ANSWER = "Hello from the fake ChatGPT."
READY = "Ask Codex to do anything"  # the composer's placeholder (0.171.0)
MIGRATION = "Use existing model"  # the "Meet <new model>" prompt a fresh CODEX_HOME gets


@pytest.fixture
def tui(tmp_path: Path, cenv: dict[str, str], workdir: Path) -> Iterator[list[Tmux]]:
    """Where a test starts its terminal; the tmux server is ended whatever happens."""
    if shutil.which("tmux") is None:
        pytest.skip("e2e: tmux is not installed")
    held: list[Tmux] = []
    yield held
    for term in held:
        term.close()


def start(tui: list[Tmux], tmp: Path, env: dict[str, str], cwd: Path, argv: list[str]) -> Tmux:
    term = Tmux(tmp, {**env, "TERM": "xterm-256color"}, cwd, argv)
    tui.append(term)
    return term


def to_the_composer(term: Tmux) -> None:
    """Past what a fresh Codex home shows first, answered with keys as a user would: the model
    migration prompt ("2. Use existing model") keeps the model given on the command line."""
    screen = term.wait_for(READY, MIGRATION, timeout=180)
    if MIGRATION in screen and READY not in screen:
        term._tmux("send-keys", "2")
        term.wait_for(READY, timeout=120)


def ask_and_quit(term: Tmux, prompt: str) -> tuple[str, int]:
    """Types ``prompt``, waits for the answer on the screen, then ``/quit``; the screen with the
    answer and acct's exit status."""
    to_the_composer(term)
    term.type(prompt)
    screen = term.wait_for(ANSWER, timeout=240)
    # the turn is over ("Worked for <1s"); not the composer's placeholder: acct's own line on
    # stderr ("switching to b in flight") may be drawn over it
    term.wait_for("Worked for", timeout=120)
    term.type("/quit")
    return screen, term.exit_status(timeout=120)


def not_revoked(fake: FakeChatGPT, *accounts: Account) -> None:
    for acc in accounts:
        assert acc.tokens is not None
        assert fake.lineage(refresh_token=acc.tokens.refresh)["revoked"] is False, acc.name


# Codex's own record that the user has seen the "Meet GPT-6 Sol" prompt for gpt-5.5 (its
# ``[notice] model_migrations`` table): without it a fresh CODEX_HOME opens on that prompt,
# sometimes after the composer was drawn, so a prompt typed at once could land in the popup.
SEEN_MIGRATION = ["-c", 'notice.model_migrations={"gpt-5.5"="gpt-6-sol"}']


def command(fake: FakeChatGPT, account: str) -> list[str]:
    acct = [sys.executable, "-m", "acct", "exec", "--account", account, "--"]
    return [*acct, "codex", *backend(fake), *SEEN_MIGRATION]


def test_interactive_codex_sends_the_chosen_accounts_login_and_shows_the_answer(
    fake, ctx: Ctx, cenv, run: AcctRunner, workdir, tmp_path, tui
) -> None:
    seed(fake, ctx, "busy")
    a = seed(fake, ctx, "a")
    term = start(tui, tmp_path, cenv, workdir, command(fake, "a"))
    screen, status = ask_and_quit(term, "say hi")
    assert ANSWER in screen
    assert status == 0, term.screen()
    # every turn of the session (the TUI may send more than one request for it) went out
    # with A's bearer and A's workspace, and was answered
    assert turns(fake) and set(turns(fake)) == {(sha(fake, a), str(a.org_uuid), 200)}
    # the workspace routing discovery the TUI runs first was A's too
    checks = fake.log("accounts_check")
    assert checks and {e["token_sha8"] for e in checks} == {sha(fake, a)}
    not_revoked(fake, a)
    no_leaks(ctx, run)


def test_interactive_codex_at_its_limit_is_answered_by_the_next_account_in_flight(
    fake, ctx: Ctx, cenv, run: AcctRunner, workdir, tmp_path, tui
) -> None:
    """A at its limit, B healthy: the first prompt is answered on B by the proxy's in-flight
    switch; the user types nothing but the prompt and /quit."""
    a, b = seed(fake, ctx, "a"), seed(fake, ctx, "b")
    reset = at_limit(fake, a)
    term = start(tui, tmp_path, cenv, workdir, command(fake, "a"))
    screen, status = ask_and_quit(term, "write the report")
    assert ANSWER in screen
    assert "usage limit" not in screen  # Codex never saw the refusal
    assert status == 0, term.screen()
    logged = turns(fake)
    # A's requests were refused, each once, before anything was answered (the TUI may send
    # more than one at once, and each is refused before the switch); the same requests went on
    # with B's bearer and B's chatgpt-account-id (the fake answers 403 to a workspace that is
    # not the token's), and the rest of the session stays on B
    on_a = (sha(fake, a), str(a.org_uuid), 429)
    k = logged.count(on_a)
    assert k >= 1 and logged[:k] == [on_a] * k, logged
    assert len(logged) >= 2 * k and set(logged[k:]) == {(sha(fake, b), str(b.org_uuid), 200)}
    bench = ctx.state.benches().get(a.id)
    assert (
        bench is not None and bench.kind == "quota" and reset <= bench.until <= time.time() + 3600
    )
    not_revoked(fake, a, b)
    no_leaks(ctx, run)
