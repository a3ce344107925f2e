"""In-flight failover through the usage proxy (acct.services.proxy.failover): a quota refusal is
answered by the next account in the same run, and nobody else's request is ever touched.

``acct exec`` runs for real around the fake tool, against the fake Anthropic server whose refresh
tokens are single-use (a reuse revokes the chain)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from acct.base.models import Usage, Window
from acct.services import custody
from acct.services.context import Ctx
from acct.services.proxy import Plan, Watch, rewrite_user_id
from acct.services.targets import get_target
from tests.conftest import assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic
from tests.test_exec import bench_of, events, no_leaks

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def cached(ctx: Ctx, *accounts: Any, five_hour: float = 5, seven_day: float = 5) -> None:
    """Usage in the cache, polled a while ago: exec has no account to probe."""
    for acc in accounts:
        ctx.state.put_usage(
            acc.id, Usage(Window(five_hour, None), Window(seven_day, None)), now=time.time() - 120
        )


def answers(fake: FakeAnthropic) -> list[tuple[str, int]]:
    """(account email, status) of every Messages request the fake answered, in order."""
    emails = {a["uuid"]: a["email"] for a in fake.accounts()}
    return [(emails.get(e.get("account_uuid"), "?"), e["status"]) for e in fake.log("messages")]


def switch_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "switching" in ln]


def alive(fake: FakeAnthropic, *accounts: Any) -> None:
    for acc in accounts:
        assert not fake.lineage(acc.uuid)["revoked"], acc.name


# --- the session's own requests -----------------------------------------------------------------


def test_a_quota_refusal_is_answered_by_the_next_account_in_flight(
    fake, ctx, run, tool_log
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b)
    reset = int(time.time()) + 2 * 3600 + 37
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.reset_log()

    p = run("exec", "--account", "a", "--", "claude", "-p", "write the report")

    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    assert "hit your" not in p.stdout  # the tool never saw the refusal
    assert len(events(tool_log, "start")) == 1  # no restart
    assert answers(fake) == [("a@example.com", 429), ("b@example.com", 200)]
    lines = switch_lines(p.stderr)
    assert len(lines) == 1 and lines[0].startswith("acct: a hit its 5-hour limit (resets ")
    assert lines[0].endswith("→ switching to b in flight")
    assert "during the run" not in p.stderr  # told once, by the switch
    bench = bench_of(ctx, "a")
    assert bench is not None and bench.kind == "quota" and bench.until == reset
    assert bench_of(ctx, "b") is None
    stored = ctx.store.read()
    assert stored.get("b").holder is None  # b's lineage never left the store
    assert stored.get("a").holder is not None  # the tool's file keeps a
    rotate = [h for h in ctx.state.history() if h["event"] == "rotate"]
    assert rotate and rotate[0]["account_id"] == a.id and rotate[0]["to"] == b.id
    alive(fake, a, b)
    no_leaks(ctx, run)


def test_the_re_sent_request_names_the_new_account_as_its_own_tool_would(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    fake.reset_log()
    p = run("exec", "--account", "a", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    calls = fake.log("messages")
    assert [c["user_account"] for c in calls] == [a.uuid, b.uuid]
    assert [c["token_sha8"] for c in calls] == [
        fake.sha8(a.tokens.access),
        fake.sha8(b.tokens.access),
    ]


def test_rewrite_user_id_changes_only_the_account_it_named() -> None:
    old, new = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    inner = json.dumps({"device_id": "d", "account_uuid": old, "session_id": "s"})
    body = json.dumps({"model": "m", "metadata": {"user_id": inner}, "note": old}).encode()
    out = json.loads(rewrite_user_id(body, old, new))
    assert json.loads(out["metadata"]["user_id"]) == {
        "device_id": "d",
        "account_uuid": new,
        "session_id": "s",
    }
    assert out["note"] == old  # only metadata.user_id names the account
    legacy = json.dumps({"metadata": {"user_id": f"user_abc_account_{old}_session_x"}}).encode()
    assert json.loads(rewrite_user_id(legacy, old, new))["metadata"]["user_id"] == (
        f"user_abc_account_{new}_session_x"
    )
    other = json.dumps({"metadata": {"user_id": inner}}).encode()
    assert rewrite_user_id(other, new, old) == other  # names another account: unchanged
    assert rewrite_user_id(b"not json " + old.encode(), old, new) == b"not json " + old.encode()


def test_after_a_switch_the_session_stays_on_the_new_account(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    fake.reset_log()
    p = run("exec", "--account", "a", "--", "claude", "-p", "hi", env={"FAKE_TOOL_AGAIN": "1"})
    assert p.returncode == 0, p.stderr
    assert answers(fake) == [
        ("a@example.com", 429),
        ("b@example.com", 200),
        ("b@example.com", 200),  # sticky: straight to b, a is not asked again
    ]
    assert len(switch_lines(p.stderr)) == 1


def _gated(xenv: dict[str, str], gate: Path, *args: str, **knobs: str) -> subprocess.Popen[str]:
    """``acct exec ARGS`` whose tool waits at ``gate`` after its first answer."""
    return subprocess.Popen(
        [sys.executable, "-m", "acct", "exec", *args],
        env={**xenv, "FAKE_TOOL_GATE": str(gate), **knobs},
        cwd=xenv["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answered(xenv: dict[str, str], proc: subprocess.Popen[str]) -> None:
    """Wait until the tool got its first answer and waits at its gate."""
    log = Path(xenv["FAKE_TOOL_LOG"])
    deadline = time.monotonic() + 60
    while not events(log, "waiting"):
        assert time.monotonic() < deadline and proc.poll() is None, "the tool never answered"
        time.sleep(0.05)


@pytest.mark.parametrize("switch_back", [False, True])
def test_switch_back_returns_to_the_first_account_once_it_reset(
    fake, ctx, xenv, tmp_path, switch_back
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    if switch_back:
        ctx.paths.config_file.parent.mkdir(parents=True, exist_ok=True)
        ctx.paths.config_file.write_text("switch_back = true\n")
    fake.reset_log()
    gate = tmp_path / "gate"
    proc = _gated(xenv, gate, "--account", "a", "--", "claude", "-p", "hi", FAKE_TOOL_AGAIN="1")
    try:
        _answered(xenv, proc)
        # a's window resets while the session runs on b.
        ctx.state.unbench(a.id)
        fake.set_messages(a.uuid, "ok")
        gate.touch()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    second = "a@example.com" if switch_back else "b@example.com"  # off by default: sticky
    assert answers(fake) == [("a@example.com", 429), ("b@example.com", 200), (second, 200)]
    assert ("switching back" in err) is switch_back


def test_a_plain_throttle_passes_through_and_benches_nothing(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b)
    fake.set_messages(a.uuid, "throttle")
    fake.reset_log()
    p = run("exec", "--account", "a", "--", "claude", "-p", "hi")
    assert "temporarily limiting requests" in p.stdout
    assert answers(fake) == [("a@example.com", 429)]
    assert bench_of(ctx, "a") is None and switch_lines(p.stderr) == []


def test_when_every_account_is_refused_the_last_refusal_reaches_the_tool(
    fake, ctx, run, tool_log
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b)
    now = int(time.time())
    for acc, reset in ((a, now + 3 * 3600), (b, now + 2 * 3600)):
        fake.set_messages(acc.uuid, "quota", reset_epoch=reset)
        fake.set_usage(acc.uuid, five_hour=100, five_hour_resets_at=reset)
    fake.reset_log()
    p = run("exec", "--account", "a", "--", "claude", "-p", "hi")
    assert p.returncode == 5, p.stderr
    assert answers(fake) == [("a@example.com", 429), ("b@example.com", 429)]
    assert "You've hit your session limit" in p.stdout  # b's refusal, unchanged
    assert "no other account can take over" in p.stderr
    assert bench_of(ctx, "a").until == now + 3 * 3600
    assert bench_of(ctx, "b").until == now + 2 * 3600
    assert len(events(tool_log, "start")) == 1


def test_with_wait_a_refused_request_is_held_until_the_reset(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    cached(ctx, a)
    reset = int(time.time()) + 10  # after the tool's first request, however slow the start
    fake.set_messages(a.uuid, "quota", reset_epoch=reset, lift_at_reset=True)
    fake.reset_log()
    p = run("exec", "--wait", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout and "hit your" not in p.stdout
    assert "holding the request until a's reset" in p.stderr
    assert answers(fake) == [("a@example.com", 429), ("a@example.com", 200)]
    assert fake.log("messages")[1]["t"] >= reset


def test_no_rotate_keeps_the_refusal_for_the_tool(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    fake.reset_log()
    p = run("exec", "--no-rotate", "--account", "a", "--", "claude", "-p", "hi")
    assert p.returncode == 1
    assert answers(fake) == [("a@example.com", 429)]


# --- custody -------------------------------------------------------------------------------------


def test_a_rotation_while_the_tool_refreshes_its_own_token_revokes_no_chain(fake, ctx, run) -> None:
    """The tool spends a's refresh token (its file holds a) while the proxy refreshes b's (the
    store holds b, about to expire): two lineages, one holder each, both alive."""
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30, expires_in=600)
    cached(ctx, a, b)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    fake.reset_log()
    p = run(
        "exec",
        "--account",
        "a",
        "--",
        "claude",
        "-p",
        "hi",
        env={"FAKE_TOOL_REFRESH": "1", "FAKE_TOOL_AGAIN": "1"},
    )
    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    # The tool's successor token was recognised as the session's own, and switched.
    assert answers(fake) == [("a@example.com", 429), ("b@example.com", 200), ("b@example.com", 200)]
    assert fake.lineage(a.uuid)["refresh_count"] >= 1  # the tool refreshed a
    assert fake.lineage(b.uuid)["refresh_count"] == 1  # acct refreshed b once, under its lock
    alive(fake, a, b)
    stored = ctx.store.read()
    for acc in stored:
        assert fake.lineage(acc.uuid)["live_refresh_sha8"] == fake.sha8(acc.tokens.refresh)
    refreshes = fake.log("token_refresh")
    assert refreshes and all(r["status"] == 200 for r in refreshes)
    no_leaks(ctx, run)


@pytest.fixture(params=["claude-code", "opencode", "pi"])
def session(fake, ctx, env, tmp_path, request):
    """a lent to the tool's file and a Watch with failover in front of the fake, as an
    ``acct exec`` session of that tool has it; b and c in the store."""
    name = request.param
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    c = seed_account(fake, ctx, "c", five_hour=40, seven_day=40)
    cached(ctx, a, b, c)
    custody.lend(ctx, a.id, name, env, move=False)
    target = get_target(name)
    here = (name, custody.holder_path(target.path(env)))
    said: list[str] = []
    plan = Plan(name, here, env, "headroom", announce=said.append)
    watch = Watch({**env, "ANTHROPIC_BASE_URL": fake.base_url}, plan=plan).start()
    watch.begin(ctx.store.read().get("a"))
    try:
        yield watch, {"a": a, "b": b, "c": c}, said
    finally:
        watch.stop()


def _post(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url + "/v1/messages?beta=true", json=BODY, headers=headers, timeout=30)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "anthropic-beta": "oauth-2025-04-20"}


def test_a_request_without_the_sessions_credential_is_never_re_sent(fake, ctx, session) -> None:
    watch, accs, said = session
    a, c = accs["a"], accs["c"]
    for acc in (a, c):
        fake.set_messages(acc.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    fake.reset_log()
    # Another local process with a token of its own: refused, and the refusal is its answer.
    other = _post(watch.url, _bearer(c.tokens.access))
    assert other.status_code == 429
    # A made-up token and an API key: passed on unchanged, never switched.
    assert _post(watch.url, _bearer("sk-ant-oat01-made-up")).status_code == 401
    key = fake.api_key(c.uuid)
    assert _post(watch.url, {"x-api-key": key}).status_code == 429
    assert answers(fake) == [("c@example.com", 429), ("?", 401), ("c@example.com", 429)]
    assert said == [] and bench_of(ctx, "c") is None
    # The session's own credential is switched.
    own = _post(watch.url, _bearer(ctx.store.read().get("a").tokens.access))
    assert own.status_code == 200 and "b@example.com" in own.text
    assert answers(fake)[-2:] == [("a@example.com", 429), ("b@example.com", 200)]


def test_only_a_refusal_no_account_took_over_counts_as_reaching_the_tool(
    fake, ctx, session
) -> None:
    """What ends a sleeping OpenCode or Pi run: a's refusal stays the last word for a after b
    answered it in flight, but the tool never got it; the one that no account could take over
    did reach it, until an allowed answer follows."""
    watch, accs, _ = session
    a, b, c = accs["a"], accs["b"], accs["c"]
    reset = int(time.time()) + 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    own = _bearer(ctx.store.read().get("a").tokens.access)
    assert _post(watch.url, own).status_code == 200
    watch.settle()
    assert watch.quota(a.id) is not None  # a's last word is its refusal...
    assert watch.reached(a.id) is None  # ...which the tool never received
    for acc in (b, c):
        fake.set_messages(acc.uuid, "quota", reset_epoch=reset + 60)
    assert _post(watch.url, own).status_code == 429
    got = watch.reached(a.id)
    assert got is not None and got[0] == c.id and got[1].reset_at == reset + 60
    fake.set_messages(c.uuid, "ok")
    assert _post(watch.url, own).status_code == 200
    assert watch.reached(a.id) is None


def test_an_account_lent_to_another_file_is_never_injected(
    fake, ctx, env, session, tmp_path
) -> None:
    watch, accs, _ = session
    a, b = accs["a"], accs["b"]
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    other = {**env, "PI_CODING_AGENT_DIR": str(tmp_path / "pi")}
    custody.lend(ctx, b.id, "pi", other, move=False)  # b's lineage now lives in Pi's file
    fake.reset_log()
    own = _post(watch.url, _bearer(ctx.store.read().get("a").tokens.access))
    assert own.status_code == 200 and "c@example.com" in own.text
    assert answers(fake) == [("a@example.com", 429), ("c@example.com", 200)]


def test_status_and_the_prompt_name_the_account_switched_to(fake, ctx, xenv, tmp_path) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    gate = tmp_path / "gate"
    proc = _gated(xenv, gate, "--account", "a", "--", "claude", "-p", "hi")
    try:
        _answered(xenv, proc)
        status = subprocess.run(
            [sys.executable, "-m", "acct", "status", "--json"],
            check=True,
            env=xenv,
            cwd=xenv["HOME"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        doc = json.loads(status.stdout)
        assert [s["account"] for s in doc["sessions"]] == ["b"]
        prompt = json.loads(ctx.paths.prompt_state_file.read_text())
        assert prompt["targets"]["claude-code"]["account"] == "b"
        gate.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert_no_secrets([out, err, status.stdout], store_secrets(ctx))


# --- the exit-based loop learns from the proxy ------------------------------------------------


def test_a_refusal_the_proxy_saw_benches_the_account_even_when_the_tool_exits_0(
    fake, ctx, run
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    cached(ctx, a)
    reset = int(time.time()) + 4 * 3600 + 11
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    # Interactive Claude Code waits on a limit; the user quits with /exit: status 0.
    p = run("exec", "--", "claude", "-p", "hi", env={"FAKE_TOOL_LIMIT_EXIT": "0"})
    assert p.returncode == 0, p.stderr
    bench = bench_of(ctx, "a")
    assert bench is not None and bench.until == reset
    said = [ln for ln in p.stderr.splitlines() if "seen by the usage proxy" in ln]
    assert said and said[-1].startswith("acct: a hit its 5-hour limit during the run (resets ")
    assert "benched" in said[-1]


def test_a_run_that_fails_after_a_switch_in_flight_is_not_taken_for_a_limit(
    fake, ctx, run, tool_log
) -> None:
    """The refusal was answered in flight; the tool failing later for its own reasons must not
    rotate the run (that would restart it on yet another account)."""
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    p = run("exec", "--account", "a", "--", "claude", "-p", "hi", env={"FAKE_TOOL_EXIT": "3"})
    assert p.returncode == 3, p.stderr
    assert len(events(tool_log, "start")) == 1
    assert len(switch_lines(p.stderr)) == 1  # the switch in flight, and no rotation after it
