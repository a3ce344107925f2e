"""Alerts reach a local webhook receiver with the documented JSON (and the ntfy, Slack and
Discord shapes), once per event, never with a token, and nothing when disabled. A failing
webhook fails no command."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, exec_env, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every POST (path, JSON body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                received.append((self.path, json.loads(self.rfile.read(size))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, path: str = "/hook") -> list[str]:
        return [body["event"] for p, body in self.posts if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


def configure(ctx: Ctx, text: str) -> None:
    ctx.paths.config_dir.mkdir(parents=True, exist_ok=True)
    ctx.paths.config_file.write_text("usage_min_age = 0\n" + text)


def hooks(receiver: Receiver) -> str:
    u = receiver.url
    return (
        f'notify = [{{url = "{u}/hook"}}, {{url = "{u}/ntfy/acct-topic", format = "ntfy"}}, '
        f'{{url = "{u}/slack", format = "slack"}}, {{url = "{u}/discord", format = "discord"}}]\n'
    )


def test_rotation_alert_reaches_every_webhook_shape(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    configure(ctx, hooks(receiver) + "notify_utilization = [99]\n")
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    assert a.uuid
    reset = int(time.time()) + 2 * 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    run = AcctRunner(exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl"))
    p = run("exec", "--account", "a", "--", "claude", "-p", "work")
    assert p.returncode == 0 and "switching to b" in p.stderr, p.stderr

    rotation = [b for path, b in receiver.posts if path == "/hook" and b["event"] == "rotation"]
    assert len(rotation) == 1
    doc = rotation[0]
    assert doc["version"] == 1 and doc["kind"] == "alert" and doc["account"] == "a"
    assert doc["title"] == "acct: switched from a to b"
    assert doc["detail"] == {"from": "a", "to": "b", "reason": "quota"}
    assert isinstance(doc["at_epoch"], int) and "T" in doc["at"]
    # a crossed 99% of its 5-hour window (the usage check confirmed the limit).
    assert receiver.events().count("utilization") == 1
    ntfy = [b for path, b in receiver.posts if path == "/ntfy/"]
    assert ntfy and all(b["topic"] == "acct-topic" and b["title"] and b["message"] for b in ntfy)
    assert any(
        "switched from a to b" in b["text"] for path, b in receiver.posts if path == "/slack"
    )
    discord = [b for path, b in receiver.posts if path == "/discord"]
    assert any("switched from a to b" in b["content"] for b in discord)
    assert all(b["username"] == "acct" for b in discord)
    bodies = [json.dumps(b) for _, b in receiver.posts]
    assert_no_secrets(bodies + [p.stdout, p.stderr], store_secrets(ctx))


def test_utilization_crossing_is_told_once_per_window(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, receiver: Receiver
) -> None:
    configure(ctx, f'notify = [{{url = "{receiver.url}/hook"}}]\nnotify_utilization = [50, 80]\n')
    work = seed_account(fake, ctx, "work", five_hour=60, seven_day=10)
    acct("list", "--usage", check=True)
    acct("list", "--usage", check=True)
    assert receiver.events() == ["utilization"]
    assert receiver.posts[0][1]["detail"]["threshold"] == 50
    assert "work crossed 50% of its 5-hour window" in receiver.posts[0][1]["message"]
    assert work.uuid
    fake.set_usage(work.uuid, five_hour=85)
    acct("list", "--usage", check=True)
    assert receiver.events() == ["utilization", "utilization"]
    assert receiver.posts[1][1]["detail"]["threshold"] == 80


def test_every_account_refused_and_a_dead_login_are_told(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, receiver: Receiver
) -> None:
    configure(ctx, f'notify = [{{url = "{receiver.url}/hook"}}]\nnotify_utilization = []\n')
    seed_account(fake, ctx, "full", five_hour=100, seven_day=20)
    dead = seed_account(fake, ctx, "dead")
    assert dead.uuid
    fake.revoke(dead.uuid)
    assert acct("refresh", "dead").returncode == 4
    assert receiver.events() == ["login_died"]
    assert "acct login dead" in receiver.posts[0][1]["message"]
    acct("list", "--usage", check=True)
    assert receiver.events() == ["login_died", "all_refused"]
    refused = receiver.posts[1][1]
    assert refused["detail"]["back_account"] == "full" and "full is back" in refused["message"]
    acct("list", "--usage", check=True)
    assert receiver.events() == ["login_died", "all_refused"]  # said once


def test_usage_endpoint_refusing_for_an_hour_is_told(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, receiver: Receiver
) -> None:
    configure(ctx, f'notify = [{{url = "{receiver.url}/hook"}}]\nnotify_utilization = []\n')
    work = seed_account(fake, ctx, "work", five_hour=10)
    fake.configure(usage_fail_status=500)
    acct("list", "--usage", check=True)
    assert receiver.events() == []  # refused, but not for an hour yet
    # The first refusal was seen an hour ago (what the memo says is all that counts).
    ctx.state.swap_memo(f"usage:{work.id}", lambda old: json.dumps([time.time() - 3700, False]))
    ctx.state.put_usage_error(work.id, "server_error", "500", backoff_until=None)
    acct("list", "--usage", check=True)
    assert receiver.events() == ["usage_refused"]
    assert "failed for 61 minutes" in receiver.posts[0][1]["message"]


def test_nothing_is_sent_without_notify(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, receiver: Receiver
) -> None:
    configure(ctx, "notify_utilization = [1]\n")
    seed_account(fake, ctx, "full", five_hour=100)
    acct("list", "--usage", check=True)
    assert receiver.posts == []


def test_a_failing_webhook_fails_no_command_and_warns_once(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret_path = "/services/T000/B000/XXXXsecretXXXX"
    configure(
        ctx,
        f'notify = [{{url = "http://127.0.0.1:{port}{secret_path}", format = "slack"}}]\n'
        "notify_utilization = [10, 20]\n",
    )
    seed_account(fake, ctx, "a", five_hour=50, seven_day=50)
    proc = acct("list", "--usage")
    assert proc.returncode == 0
    assert proc.stderr.count("notification to 127.0.0.1 failed") == 1, proc.stderr
    assert "secret" not in proc.stderr


def test_desktop_notifications_use_notify_send(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], tmp_path: Path
) -> None:
    bin_dir = tmp_path / "desk"
    bin_dir.mkdir()
    said = tmp_path / "said.txt"
    script = bin_dir / "notify-send"
    script.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {said}\necho >> {said}\n')
    script.chmod(0o755)
    configure(ctx, 'notify = ["desktop"]\nnotify_utilization = [50]\n')
    seed_account(fake, ctx, "work", five_hour=70)
    run = AcctRunner({**env, "PATH": f"{bin_dir}:{env['PATH']}"})
    run("list", "--usage", check=True)
    lines = said.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("--app-name=acct|acct: work is at 70%")
