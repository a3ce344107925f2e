"""No token ever shows: every command is run, and everything it prints or leaves behind is scanned.

The run list must name every command acct has, so a new command cannot skip the scan.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acct.base.models import Account
from acct.cli import COMMAND_MODULES
from acct.services.context import Ctx
from tests.conftest import (
    AcctRunner,
    assert_no_secrets,
    clean_env,
    seed_account,
    store_secrets,
)
from tests.fake_anthropic.client import FakeAnthropic
from tests.fake_chatgpt.client import FakeChatGPT
from tests.fake_tool import install
from tests.test_alerts import Receiver
from tests.test_login import LoginProcess
from tests.test_metrics import free_port, wait_for

API_KEY = "sk-ant-api03-" + "k" * 40


def login_manual(env: dict[str, str], fake: FakeAnthropic) -> subprocess.CompletedProcess[str]:
    """`acct login --manual`: read the URL from stderr, play the browser, paste CODE#STATE."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "acct", "login", "--manual", "--json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=env["HOME"],
    )
    assert proc.stderr is not None and proc.stdin is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("http"):
            break
    answer = fake.open_authorize(line.strip(), follow_redirect=False)
    out, err = proc.communicate(answer["paste"] + "\n", timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(seen) + err)


def test_no_command_prints_or_leaves_a_token(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, acct: AcctRunner, tmp_path: Path
) -> None:
    env.update(
        PATH=f"{install(tmp_path / 'bin')}{os.pathsep}{env['PATH']}",
        ANTHROPIC_BASE_URL=fake.base_url,
        # A token in the environment that exec must strip (and must not echo).
        CLAUDE_CODE_OAUTH_TOKEN="sk-ant-oat01-" + "e" * 40,
    )
    fake.next_login(fake.add_account(email="new@example.com")["uuid"])
    work = seed_account(fake, ctx, "work", five_hour=20, seven_day=10)
    seed_account(fake, ctx, "side", five_hour=50, seven_day=60)
    # Every observability output too: the metrics textfile, what alerts post in each format
    # and what they hand the desktop's notify-send (its argv, logged by a stand-in).
    receiver = Receiver()
    textfile = tmp_path / "metrics" / "acct.prom"
    textfile.parent.mkdir()
    desktop_log = tmp_path / "notify-send.log"
    notify_send = tmp_path / "bin" / "notify-send"
    notify_send.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(desktop_log)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv) + '\\n')\n"
    )
    notify_send.chmod(0o755)
    hooks = [f'{{url = "{receiver.url}/hook"}}', f'{{url = "{receiver.url}/n/t", format = "ntfy"}}']
    hooks += [f'{{url = "{receiver.url}/{f}", format = "{f}"}}' for f in ("slack", "discord")]
    ctx.paths.config_dir.mkdir(parents=True, exist_ok=True)
    ctx.paths.config_file.write_text(
        f'metrics_textfile = "{textfile}"\nnotify_utilization = [1]\n'
        f'notify = ["desktop", {", ".join(hooks)}]\n'
    )

    secrets: set[str] = {API_KEY, env["CLAUDE_CODE_OAUTH_TOKEN"]}
    outputs: list[str] = []
    ran: set[str] = set()

    def run(*args: str, input: str | None = None, ok: bool = True) -> None:
        proc = acct(*args, input=input)
        if ok:
            assert proc.returncode == 0, f"acct {' '.join(args)}: {proc.stderr}"
        outputs.extend((proc.stdout, proc.stderr))
        secrets.update(store_secrets(ctx))
        ran.add(args[0])

    proc = login_manual(env, fake)
    assert proc.returncode == 0, proc.stderr
    outputs.extend((proc.stdout, proc.stderr))
    ran.add("login")
    secrets.update(store_secrets(ctx))

    run("login", "--api-key", "key", input=API_KEY + "\n")
    run("list")
    run("ls", "--json")
    run("list", "--usage", "--json")
    run("refresh", "work", "--json")
    run("refresh", "side")
    run("use", "side")
    run("status")
    run("status", "--json")
    run("exec", "--explain", "--", "claude", "-p", "hi")
    outputs.extend(proxied_run_with_metrics_port(fake, work, acct))
    ran.add("exec")
    secrets.update(store_secrets(ctx))
    run("import", "claude-code", "--json", ok=False)  # already known: fine either way
    run("doctor", "--json", ok=False)  # exits 1 while a problem (e.g. Pi's retry) remains
    run("doctor", ok=False)
    run("prompt")
    run("prompt", "--format", "{account} {5h} {7d} {reset}")
    run("shell-init", "bash")
    run("completion", "bash")
    run("rename", "side", "side2")
    run("disable", "side2")
    run("enable", "side2")
    run("remove", "side2", "--yes")
    run("list", "--json")
    run("capacity", ok=False)  # 0, 10 or 20: the verdict
    run("capacity", "--json", "--refresh", ok=False)
    run("stats")
    run("stats", "--json", "--by", "model")
    run("metrics")
    run("metrics", "--openmetrics")
    run("watch", "--once")
    run("pool", "status", ok=False)  # no pool set: says how (the pool's own tests scan a real one)
    run("pool", "status", "--json", ok=False)
    run("exec", "--metrics-port", "0", "--", "claude", "-p", "hi", ok=False)  # 0 is refused
    receiver.stop()
    outputs.extend(json.dumps(body) for _, body in receiver.posts)
    assert receiver.posts, "the alerts must have said something for the scan to mean anything"
    assert {path for path, _ in receiver.posts} >= {"/hook", "/n/", "/slack", "/discord"}
    assert desktop_log.exists(), "the desktop must have been told something too"
    outputs.append(desktop_log.read_text())
    assert textfile.exists()
    outputs.append(textfile.read_text())

    assert ran >= set(COMMAND_MODULES), f"commands never scanned: {set(COMMAND_MODULES) - ran}"
    assert len(secrets) > 6, "the scan must know the tokens it looks for"
    assert_no_secrets(outputs, secrets)

    # What acct leaves on disk outside its store: state database, prompt files, config.
    paths = ctx.paths
    for root in (paths.state_dir, paths.config_dir):
        for f in root.rglob("*") if root.exists() else []:
            if f.is_file():
                text = f.read_bytes().decode("utf-8", "replace")
                assert_no_secrets(text, secrets)


def proxied_run_with_metrics_port(
    fake: FakeAnthropic, work: Account, acct: AcctRunner
) -> list[str]:
    """A run through the usage proxy that switches from ``work`` (at its limit) in flight, so
    that tokens, a rotation and its alerts exist; ``/metrics`` is read while it runs. Returns
    what was printed and served."""
    import httpx

    assert work.uuid is not None
    fake.set_messages(work.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    port = free_port()
    gate = Path(acct.env["HOME"]) / "gate"
    session = subprocess.Popen(
        [sys.executable, "-m", "acct", "exec", "--account", "work", "--metrics-port", str(port)]
        + ["--", "claude", "-p", "hi"],
        env={**acct.env, "FAKE_TOOL_GATE": str(gate)},
        cwd=acct.env["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def scrape() -> str | None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            except httpx.HTTPError:
                return None
            return r.text if r.status_code == 200 and "acct_tokens_total{" in r.text else None

        served = wait_for(scrape, "the session's /metrics with the answer's tokens")
    finally:
        gate.touch()
        out, err = session.communicate(timeout=120)
    fake.set_messages(work.uuid, "ok")
    assert session.returncode == 0, err
    assert "Hello from " in out and "work@example.com" not in out  # another account answered
    return [out, err, served]


@pytest.mark.parametrize("command", [["list", "--json"], ["status", "--json"]])
def test_json_documents_carry_fingerprints_not_tokens(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, command: list[str]
) -> None:
    acc = seed_account(fake, ctx, "work")
    proc = acct(*command)
    assert proc.returncode == 0, proc.stderr
    assert_no_secrets(proc.stdout, store_secrets(ctx))
    if command[0] == "list":
        assert acc.fingerprint in proc.stdout


JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}")  # a JWT (an id_token, a ChatGPT access token)


def test_no_chatgpt_flow_prints_or_leaves_a_token_or_the_id_token(
    fake: FakeAnthropic, ctx: Ctx, home: Path, tmp_path: Path
) -> None:
    with FakeChatGPT() as gpt:
        port = free_port()
        env = clean_env(home, {**fake.env(), **gpt.env(), "ACCT_CHATGPT_LOGIN_PORT": str(port)})
        acct = AcctRunner(env)
        seed_account(fake, ctx, "claude", five_hour=20, seven_day=10)
        secrets: set[str] = set()
        outputs: list[str] = []

        def run(*args: str, ok: bool = True) -> None:
            proc = acct(*args)
            if ok:
                assert proc.returncode == 0, f"acct {' '.join(args)}: {proc.stderr}"
            outputs.extend((proc.stdout, proc.stderr))
            secrets.update(store_secrets(ctx))

        # a login by paste
        who = gpt.add_account(email="gpt@example.com", plan_type="pro")
        gpt.next_login(who["account_id"])
        login = LoginProcess(env, "--provider", "chatgpt", "--manual", "--json")
        login.paste(gpt.open_authorize(login.url())["location"])
        code, out, err = login.finish()
        assert code == 0, err
        outputs.extend((out, err))
        secrets.update(store_secrets(ctx))
        # an import of what Codex holds
        other = gpt.add_account(email="codex@example.com")
        doc = gpt.auth_json(other["account_id"])
        secrets.update(v for v in doc["tokens"].values() if isinstance(v, str) and len(v) > 20)
        auth = home / ".codex" / "auth.json"
        auth.parent.mkdir(mode=0o700)
        auth.write_text(json.dumps(doc))
        run("import", "codex", "--json")
        gpt_name = json.loads(out)["account"]["name"]
        for args in (
            ("list",),
            ("list", "--usage", "--json"),
            ("refresh", gpt_name, "--json"),
            ("use", gpt_name, "-t", "pi-chatgpt", "--json"),
            ("use", "codex", "--json"),
            ("status",),
            ("status", "--json"),
            ("prompt", "--target", "codex"),
            ("rename", gpt_name, "gpt2"),
            ("list", "--json"),
        ):
            run(*args)
        run("doctor", ok=False)
        run("doctor", "--json", ok=False)
        run("remove", "gpt2", "--yes")
        run("refresh", "codex", ok=False)  # lent to Codex: refused, and says so without a token

    id_tokens = {s for s in secrets if s.count(".") == 2}
    assert len(id_tokens) >= 2, "the scan must know the id_tokens it looks for"
    assert_no_secrets(outputs, secrets)
    for text in outputs:
        assert not JWT.search(text), "something JWT-shaped leaked into output"
    paths = ctx.paths
    for root in (paths.state_dir, paths.config_dir):
        for f in root.rglob("*") if root.exists() else []:
            if f.is_file():
                text = f.read_bytes().decode("utf-8", "replace")
                assert_no_secrets(text, secrets)
                assert not JWT.search(text), f"{f} holds something JWT-shaped"
