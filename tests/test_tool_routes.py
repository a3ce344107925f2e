"""Each target's route (where the tool sends its requests) and the overlay that puts acct's
usage proxy in front of it for one run, without changing the user's files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from acct.base.models import Usage, Window
from acct.services.context import Ctx
from acct.services.targets import get_target
from acct.services.targets.opencode import opencode_route
from acct.services.targets.pi import BASE_URL_VAR, EXTENSION, pi_route
from acct.services.targets.route import ToolRoute, loads_jsonc, loopback_bypass
from tests.conftest import AcctRunner, assert_no_secrets, exec_env, seed_account, store_secrets
from tests.test_exec import events


def write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def oc_doc(url: str) -> dict[str, object]:
    return {"provider": {"anthropic": {"options": {"baseURL": url}}}}


# --- the routes, read as each tool reads them ---------------------------------------------------


def test_a_route_keeps_the_tools_path_and_forwards_to_its_origin() -> None:
    r = ToolRoute("https://gw.example:8443/anthropic/v1/")
    assert r.upstream == "https://gw.example:8443"
    assert r.path == "/anthropic/v1"
    assert r.via("http://127.0.0.1:5000") == "http://127.0.0.1:5000/anthropic/v1"
    assert r.usable
    assert not ToolRoute("ftp://gw.example/v1").usable
    assert not ToolRoute("https://gw.example/v1?key=x").usable


def test_opencode_defaults_to_anthropics_v1_and_env_comes_below_config(tmp_path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "w"
    cwd.mkdir(parents=True)
    env = {"HOME": str(home)}
    assert opencode_route(env, cwd, managed=tmp_path / "none").base_url == (
        "https://api.anthropic.com/v1"
    )
    env["ANTHROPIC_BASE_URL"] = "http://env.example/v1"
    r = opencode_route(env, cwd, managed=tmp_path / "none")
    assert (r.base_url, r.source) == ("http://env.example/v1", "ANTHROPIC_BASE_URL")
    glob = write(home / ".config/opencode/opencode.json", oc_doc("http://global.example/v1"))
    r = opencode_route(env, cwd, managed=tmp_path / "none")
    assert (r.base_url, r.source) == ("http://global.example/v1", str(glob))


def test_opencode_project_then_config_content_win_and_env_refs_resolve(tmp_path) -> None:
    home, repo = tmp_path / "home", tmp_path / "repo"
    cwd = repo / "sub"
    cwd.mkdir(parents=True)
    (repo / ".git").mkdir()
    write(home / ".config/opencode/opencode.json", oc_doc("http://global.example/v1"))
    write(
        repo / "opencode.jsonc",
        '{\n  // the team gateway\n  "provider": {"anthropic": {"options": '
        '{"baseURL": "{env:GW}/v1",}}},\n}\n',
    )
    env = {"HOME": str(home), "GW": "https://team.example"}
    r = opencode_route(env, cwd, managed=tmp_path / "none")
    assert (r.base_url, r.source) == ("https://team.example/v1", str(repo / "opencode.jsonc"))
    env["OPENCODE_CONFIG_CONTENT"] = json.dumps(oc_doc("http://inline.example/v1"))
    r = opencode_route(env, cwd, managed=tmp_path / "none")
    assert (r.base_url, r.source) == ("http://inline.example/v1", "OPENCODE_CONFIG_CONTENT")


def test_opencode_unreadable_or_managed_config_keeps_the_proxy_out(tmp_path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "w"
    cwd.mkdir(parents=True)
    env = {"HOME": str(home)}
    managed = tmp_path / "etc-opencode"
    write(managed / "opencode.json", oc_doc("https://corp.example/v1"))
    r = opencode_route(env, cwd, managed=managed)
    assert r.beyond is not None and str(managed / "opencode.json") in r.beyond
    assert not r.usable
    bad = write(home / ".config/opencode/opencode.json", "{not json")
    r = opencode_route(env, cwd, managed=tmp_path / "none")
    assert r.unreadable == bad and not r.usable


def test_opencode_overlay_merges_into_the_users_own_config_content() -> None:
    target = get_target("opencode")
    env = {"OPENCODE_CONFIG_CONTENT": json.dumps({"model": "anthropic/x", **oc_doc("http://u/v1")})}
    out = target.proxy_env("http://127.0.0.1:7/v1", env)
    doc = json.loads(out["OPENCODE_CONFIG_CONTENT"])
    assert doc["model"] == "anthropic/x"
    assert doc["provider"]["anthropic"]["options"]["baseURL"] == "http://127.0.0.1:7/v1"
    assert target.proxy_argv(["opencode", "run", "hi"], env) == ["opencode", "run", "hi"]


def test_pi_route_is_models_json_or_anthropic(tmp_path) -> None:
    env = {"HOME": str(tmp_path)}
    assert pi_route(env) == ToolRoute("https://api.anthropic.com")
    models = write(
        tmp_path / ".pi/agent/models.json", {"providers": {"anthropic": {"baseUrl": "http://gw"}}}
    )
    assert pi_route(env) == ToolRoute("http://gw", str(models))
    write(models, "[1, 2")
    assert pi_route(env).unreadable == models
    env["PI_CODING_AGENT_DIR"] = str(tmp_path / "elsewhere")
    assert pi_route(env) == ToolRoute("https://api.anthropic.com")


def test_pi_gets_accts_extension_before_its_words_but_not_before_a_subcommand(tmp_path) -> None:
    target = get_target("pi")
    env = {"HOME": str(tmp_path), "ACCT_HOME": str(tmp_path / "acct")}
    argv = target.proxy_argv(["/usr/bin/pi", "--continue", "-p", "hi"], env)
    assert argv[:2] == ["/usr/bin/pi", "-e"] and argv[3:] == ["--continue", "-p", "hi"]
    ext = Path(argv[2])
    assert ext.read_text() == EXTENSION and BASE_URL_VAR in EXTENSION
    assert target.proxy_argv(["pi", "auth", "login"], env) == ["pi", "auth", "login"]
    assert target.proxy_argv(["sh", "-c", "pi -p hi"], env) == ["sh", "-c", "pi -p hi"]
    assert target.proxy_env("http://127.0.0.1:9", {}) == {BASE_URL_VAR: "http://127.0.0.1:9"}


def test_loopback_bypasses_the_users_http_proxy_only_when_one_is_set() -> None:
    assert loopback_bypass({}) == {}
    out = loopback_bypass({"HTTPS_PROXY": "http://p:3128", "no_proxy": "corp.example"})
    assert out == {"NO_PROXY": "corp.example,127.0.0.1", "no_proxy": "corp.example,127.0.0.1"}


def test_jsonc_keeps_comment_marks_inside_strings() -> None:
    assert loads_jsonc('{"u": "http://x//y", /* c */ "l": [1,],}') == {
        "u": "http://x//y",
        "l": [1],
    }


# --- inside acct exec, with the fake tools (which read these overlays as the real ones do) ---


@pytest.fixture
def run(env, fake, tmp_path, tool_log) -> AcctRunner:
    return AcctRunner(exec_env(env, fake, tmp_path, tool_log))


def cached(ctx: Ctx, acc, five_hour: float) -> None:
    ctx.state.put_usage(
        acc.id, Usage(Window(five_hour, None), Window(five_hour, None)), now=time.time() - 120
    )


def test_opencode_runs_behind_the_proxy_which_chains_to_its_own_base_url(
    fake, ctx, run, tool_log
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    fake.set_usage(a.uuid, five_hour=37, seven_day=12)
    cached(ctx, a, 5)
    home = Path(run.env["HOME"])
    config = write(
        home / ".config/opencode/opencode.json",
        {"plugin": ["opencode-anthropic-auth"], **oc_doc(fake.base_url + "/v1")},
    )
    before = config.read_bytes()
    p = run("exec", "--", "opencode", "run", "hi", env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert p.returncode == 0 and "Hello from a@example.com" in p.stdout, p.stderr
    # The answer's headers reached the cache: the proxy was on the path to the user's base URL.
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 37.0
    assert fake.stats()["messages"] == 1 and fake.stats().get("usage", 0) == 0
    assert config.read_bytes() == before
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_pi_runs_behind_the_proxy_which_chains_to_models_json(fake, ctx, run, tool_log) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    fake.set_usage(a.uuid, five_hour=37, seven_day=12)
    cached(ctx, a, 5)
    models = write(
        Path(run.env["HOME"]) / ".pi/agent/models.json",
        {"providers": {"anthropic": {"baseUrl": fake.base_url}}},
    )
    before = models.read_bytes()
    p = run("exec", "--", "pi", "-p", "hi", env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert p.returncode == 0 and "Hello from a@example.com" in p.stdout, p.stderr
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 37.0
    (start,) = events(tool_log, "start")
    assert start["argv"] == ["pi", "-p", "hi"] and len(start["extensions"]) == 1
    assert models.read_bytes() == before


@pytest.mark.parametrize("argv", [["opencode", "run", "hi"], ["pi", "-p", "hi"]])
def test_no_proxy_runs_opencode_and_pi_as_they_are(fake, ctx, run, tool_log, argv) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    fake.set_usage(a.uuid, five_hour=37, seven_day=12)
    cached(ctx, a, 5)
    p = run("exec", "--no-proxy", "--", *argv)
    assert p.returncode == 0, p.stderr
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 5, "no proxy: nothing observed"
    assert [e["extensions"] for e in events(tool_log, "start")] == [[]]
    assert "OPENCODE_CONFIG_CONTENT" not in p.stderr


def test_an_opencode_route_acct_cannot_read_runs_it_without_the_proxy_in_one_line(
    fake, ctx, run
) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    write(Path(run.env["HOME"]) / ".config/opencode/opencode.json", "{broken")
    p = run("exec", "--", "opencode", "run", "hi")
    notes = [ln for ln in p.stderr.splitlines() if "usage proxy" in ln]
    assert len(notes) == 1 and "opencode.json" in notes[0], p.stderr


SLEEPERS = pytest.mark.parametrize(
    "argv", [["opencode", "run", "hi"], ["pi", "-p", "hi"]], ids=["opencode", "pi"]
)
# The fake tool sleeps this long on a 429, as the real OpenCode and Pi 0.73 sleep for the
# retry-after (hours on a quota refusal): a refusal that reaches it would stall the run.
ASLEEP = {"FAKE_TOOL_WAIT_ON_429": "600"}


def a_at_its_limit(fake, ctx, *, b_too: bool = False):
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    now = int(time.time())
    resets = {a.id: now + 2 * 3600, b.id: now + 3 * 3600}
    for acc in (a, b) if b_too else (a,):
        fake.set_messages(acc.uuid, "quota", reset_epoch=resets[acc.id], claim="five_hour")
        fake.set_usage(acc.uuid, five_hour=100, five_hour_resets_at=resets[acc.id])
    cached(ctx, a, 10)
    cached(ctx, b, 30)
    fake.reset_log()
    return a, b, resets


def limit_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "limit" in ln and ln.startswith("acct: ")]


@SLEEPERS
def test_opencode_and_pi_at_a_limit_get_bs_answer_in_the_same_run(
    fake, ctx, run, tool_log, argv
) -> None:
    """A's refusal is sent again on B in flight: the tool, which would sleep on the refusal for
    hours, gets B's answer to the same request, and the run is neither ended nor resumed."""
    a, b, resets = a_at_its_limit(fake, ctx)
    p = run("exec", "--account", "a", "--", *argv, env=ASLEEP, timeout=60)
    assert p.returncode == 0 and "Hello from b@example.com" in p.stdout, p.stderr
    calls = fake.log("messages")
    assert [(c["account_uuid"], c["status"]) for c in calls] == [(a.uuid, 429), (b.uuid, 200)]
    assert calls[0]["body_sha8"] == calls[1]["body_sha8"]  # the same request, byte for byte
    assert len(events(tool_log, "start")) == 1  # not ended, not resumed
    assert events(tool_log, "waiting_on_429") == [] and events(tool_log, "signal") == []
    assert "ending the run" not in p.stderr
    (line,) = limit_lines(p.stderr)  # one line says it all
    assert line.startswith("acct: a hit its 5-hour limit (resets ")
    assert line.endswith("→ switching to b in flight")
    bench = ctx.state.benches().get(a.id)
    assert bench is not None and bench.kind == "quota" and bench.until == resets[a.id]
    assert ctx.state.benches().get(b.id) is None
    stored = ctx.store.read()
    assert stored.get("b").holder is None  # b's lineage never left the store
    assert stored.get("a").holder is not None  # the tool's file keeps a
    rotate = [h for h in ctx.state.history() if h["event"] == "rotate"]
    assert [(r["account_id"], r["to"], r.get("in_flight")) for r in rotate] == [(a.id, b.id, True)]
    for acc in (a, b):
        assert not fake.lineage(acc.uuid)["revoked"], acc.name
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


@SLEEPERS
def test_a_tool_that_runs_on_after_an_in_flight_switch_is_not_ended_for_as_refusal(
    fake, ctx, run, tool_log, argv
) -> None:
    """A's refusal stays the last word for the run's first account, but it never reached the
    tool: the run goes on well past the refusal grace on b, and ends by itself."""
    from acct.app.exec_session import REFUSAL_GRACE_S

    a, b, _ = a_at_its_limit(fake, ctx)
    knobs = {**ASLEEP, "FAKE_TOOL_SLEEP": str(REFUSAL_GRACE_S * 4)}
    p = run("exec", "--account", "a", "--", *argv, env=knobs, timeout=60)
    assert p.returncode == 0 and "Hello from b@example.com" in p.stdout, p.stderr
    assert "ending the run" not in p.stderr
    assert events(tool_log, "signal") == [] and len(events(tool_log, "start")) == 1
    assert events(tool_log, "end")[-1]["status"] == 0
    assert [(c["account_uuid"], c["status"]) for c in fake.log("messages")] == [
        (a.uuid, 429),
        (b.uuid, 200),
    ]


@SLEEPERS
def test_opencode_and_pi_that_refresh_their_own_token_are_still_failed_over_and_no_chain_dies(
    fake, ctx, run, tool_log, argv
) -> None:
    """The tool spends a's refresh token (its file holds a) and asks with the successor access
    token, which the proxy reads back from the tool's file as the session's own; b's token is
    acct's, refreshed under b's lock while the store holds it."""
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30, expires_in=600)
    cached(ctx, a, 10)
    cached(ctx, b, 30)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    fake.reset_log()
    knobs = {**ASLEEP, "FAKE_TOOL_REFRESH": "1", "FAKE_TOOL_AGAIN": "1"}
    p = run("exec", "--account", "a", "--", *argv, env=knobs, timeout=60)
    assert p.returncode == 0 and "Hello from b@example.com" in p.stdout, p.stderr
    calls = fake.log("messages")
    assert [(c["account_uuid"], c["status"]) for c in calls] == [
        (a.uuid, 429),
        (b.uuid, 200),
        (b.uuid, 200),  # sticky: the tool's next request goes straight to b
    ]
    assert calls[0]["token_sha8"] != fake.sha8(a.tokens.access)  # the tool's successor token
    assert len(events(tool_log, "start")) == 1
    assert fake.lineage(a.uuid)["refresh_count"] >= 1  # the tool refreshed a
    assert fake.lineage(b.uuid)["refresh_count"] == 1  # acct refreshed b once
    refreshes = fake.log("token_refresh")
    assert refreshes and all(r["status"] == 200 for r in refreshes)
    for acc in ctx.store.read():
        assert not fake.lineage(acc.uuid)["revoked"], acc.name
        assert fake.lineage(acc.uuid)["live_refresh_sha8"] == fake.sha8(acc.tokens.refresh)
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


@SLEEPERS
def test_opencode_and_pi_after_an_in_flight_switch_status_and_the_prompt_name_b(
    fake, ctx, run, tool_log, tmp_path, argv
) -> None:
    from tests.test_proxy_failover import _answered, _gated

    a_at_its_limit(fake, ctx)
    env = dict(run.env)
    gate = tmp_path / "gate"
    proc = _gated(env, gate, "--account", "a", "--", *argv, **ASLEEP)
    try:
        _answered(env, proc)
        status = run("status", "--json", check=True)
        doc = json.loads(status.stdout)
        assert [(s["account"], s["target"]) for s in doc["sessions"]] == [("b", argv[0])]
        prompt = json.loads(ctx.paths.prompt_state_file.read_text())
        assert prompt["targets"][argv[0]]["account"] == "b"
        assert len(events(tool_log, "start")) == 1  # the run a began, now on b
        assert events(tool_log, "waiting_on_429") == []
        gate.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Hello from b@example.com" in out, err
    assert_no_secrets([out, err, status.stdout], store_secrets(ctx))


@SLEEPERS
def test_when_every_account_is_refused_a_sleeping_tool_is_still_ended(
    fake, ctx, run, tool_log, argv
) -> None:
    """The fallback: no account can take over in flight, the last refusal reaches the tool,
    which would sleep on it; acct ends the run and says every account is limited."""
    a, b, resets = a_at_its_limit(fake, ctx, b_too=True)
    p = run("exec", "--account", "a", "--", *argv, env=ASLEEP, timeout=60)
    assert p.returncode == 5, p.stderr
    assert [(c["account_uuid"], c["status"]) for c in fake.log("messages")] == [
        (a.uuid, 429),
        (b.uuid, 429),
    ]
    assert "no other account can take over" in p.stderr
    assert "b's limit reached the tool, which would wait for it; ending the run" in p.stderr
    assert "every account is rate-limited" in p.stderr
    assert len(events(tool_log, "waiting_on_429")) == 1
    assert [e["signum"] for e in events(tool_log, "signal")] == [15]
    assert len(events(tool_log, "start")) == 1
    for acc in (a, b):
        bench = ctx.state.benches().get(acc.id)
        assert bench is not None and bench.until == resets[acc.id], acc.name


@SLEEPERS
def test_with_wait_a_sleeping_tools_refused_request_is_held_not_ended(
    fake, ctx, run, tool_log, argv
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    cached(ctx, a, 10)
    reset = int(time.time()) + 10  # after the tool's first request, however slow the start
    fake.set_messages(a.uuid, "quota", reset_epoch=reset, lift_at_reset=True)
    fake.reset_log()
    p = run("exec", "--wait", "--", *argv, env=ASLEEP, timeout=90)
    assert p.returncode == 0 and "Hello from a@example.com" in p.stdout, p.stderr
    assert "holding the request until a's reset" in p.stderr
    assert "ending the run" not in p.stderr
    assert [(c["account_uuid"], c["status"]) for c in fake.log("messages")] == [
        (a.uuid, 429),
        (a.uuid, 200),
    ]
    assert fake.log("messages")[1]["t"] >= reset
    assert events(tool_log, "waiting_on_429") == [] and len(events(tool_log, "start")) == 1


def test_a_plain_throttle_is_never_a_reason_to_end_the_tools_run(fake, ctx, run, tool_log) -> None:
    """A throttle's 429 carries no unified headers: the proxy sees no refusal for quota, and the
    tool is left to wait and report it by itself."""
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    fake.set_messages(a.uuid, "throttle")
    p = run("exec", "--no-rotate", "--", "pi", "-p", "hi", env={"FAKE_TOOL_WAIT_ON_429": "2"})
    assert p.returncode == 1
    assert "ending the run" not in p.stderr
    assert len(events(tool_log, "waiting_on_429")) == 1
    assert events(tool_log, "end")[-1]["status"] == 1  # it ended by itself, not by a signal
