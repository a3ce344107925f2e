"""Token accounting: the answer meter reads `usage` from the fake's real SSE and JSON answers,
record_answer_usage stores it, and `acct stats` adds it up and prices it."""

from __future__ import annotations

import gzip
import json
import random
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from acct.base.models import Account
from acct.domain.answers import AnswerMeter, AnswerUsage
from acct.domain.pricing import shipped, table
from acct.services.accounting import metered, record_answer_usage
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic

# The four token counts of an answer's usage (it also says cache lifetimes and service tier).
COUNTS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
MESSAGES = [{"role": "user", "content": "say hello to the accounting tests, please"}]


def ask(
    fake: FakeAnthropic, acc: Account, *, stream: bool, model: str = "claude-sonnet-4-5"
) -> httpx.Response:
    assert acc.tokens is not None
    body = {"model": model, "max_tokens": 64, "messages": MESSAGES, "stream": stream}
    return httpx.post(
        f"{fake.base_url}/v1/messages",
        json=body,
        headers={"authorization": f"Bearer {acc.tokens.access}"},
        timeout=10,
    )


def expected(fake: FakeAnthropic, acc: Account, **cache: int) -> dict[str, Any]:
    """What the fake's plain JSON answer says, the reference for the streamed one."""
    doc = ask(fake, acc, stream=False).json()
    return {"model": doc["model"], **{k: doc["usage"][k] for k in COUNTS}}


def feed(meter: AnswerMeter, data: bytes, sizes: list[int]) -> AnswerUsage | None:
    at = 0
    for n in sizes:
        meter.feed(data[at : at + n])
        at += n
    meter.feed(data[at:])
    return meter.result()


def as_dict(u: AnswerUsage | None) -> dict[str, Any]:
    assert u is not None
    return {
        "model": u.model,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    }


@pytest.fixture
def worker(fake: FakeAnthropic, ctx: Ctx) -> Account:
    acc = seed_account(fake, ctx, "work")
    assert acc.uuid
    fake.set_messages(acc.uuid, "ok", cache_creation_tokens=1200, cache_read_tokens=34000)
    return acc


def test_meter_reads_the_streamed_usage_however_it_is_cut(
    fake: FakeAnthropic, worker: Account
) -> None:
    want = expected(fake, worker)
    assert want["cache_read_input_tokens"] == 34000 and want["output_tokens"] > 1
    sse = ask(fake, worker, stream=True)
    assert sse.headers["content-type"].startswith("text/event-stream")
    raw = sse.content
    assert b"message_delta" in raw
    rng = random.Random(8)
    for sizes in ([], [1] * len(raw), [rng.randint(1, 40) for _ in range(len(raw) // 10)]):
        got = feed(AnswerMeter(sse.headers["content-type"]), raw, sizes)
        assert as_dict(got) == want


def test_meter_reads_json_and_compressed_answers(fake: FakeAnthropic, worker: Account) -> None:
    want = expected(fake, worker)
    plain = ask(fake, worker, stream=False)
    assert as_dict(feed(AnswerMeter("application/json"), plain.content, [7, 7])) == want
    raw = ask(fake, worker, stream=True).content
    gz = gzip.compress(raw)
    assert as_dict(feed(AnswerMeter("text/event-stream", "gzip"), gz, [5] * 40)) == want
    deflated = zlib.compress(raw)
    assert as_dict(feed(AnswerMeter("text/event-stream", "deflate"), deflated, [3])) == want


def test_meter_says_nothing_for_answers_without_usage() -> None:
    error = json.dumps({"type": "error", "error": {"type": "rate_limit_error"}}).encode()
    assert feed(AnswerMeter("application/json"), error, []) is None
    assert feed(AnswerMeter("text/event-stream", "br"), b"\x00\x01garbage", []) is None
    assert feed(AnswerMeter("text/html"), b"data: {}", []) is None
    broken = b'data: {"type":"message_start","message":{"usage": BROKEN\n\n'
    assert feed(AnswerMeter("text/event-stream"), broken, []) is None
    huge = b"data: " + b"x" * (3 << 20) + b"\n\n"
    start = b'data: {"type":"message_start","message":{"model":"m","usage":{"input_tokens":5}}}\n'
    assert (
        as_dict(feed(AnswerMeter("text/event-stream"), huge + start, [4096] * 900))["input_tokens"]
        == 5
    )


def test_metered_passes_bytes_through_and_reports_once(
    fake: FakeAnthropic, worker: Account
) -> None:
    assert worker.tokens is not None
    seen: list[AnswerUsage | None] = []
    body = {"model": "claude-opus-4-5", "max_tokens": 9, "messages": MESSAGES, "stream": True}
    with httpx.Client(timeout=10) as client:
        request = client.build_request(
            "POST",
            f"{fake.base_url}/v1/messages",
            json=body,
            headers={"authorization": f"Bearer {worker.tokens.access}"},
        )
        response = client.send(request, stream=True)
        relayed = b"".join(metered(response, seen.append))
        response.close()
    assert b"event: message_stop" in relayed
    assert len(seen) == 1 and seen[0] is not None and seen[0].model == "claude-opus-4-5"


def test_stats_adds_up_tokens_per_account_and_model_and_prices_them(
    fake: FakeAnthropic, ctx: Ctx, worker: Account, acct: AcctRunner
) -> None:
    home = seed_account(fake, ctx, "home")
    want = expected(fake, worker)
    raw = ask(fake, worker, stream=True).content
    usage = feed(AnswerMeter("text/event-stream"), raw, [64] * 100)
    for _ in range(3):
        record_answer_usage(ctx, worker.id, "claude-code", "s1", None, usage)
    haiku = AnswerUsage("claude-haiku-4-5-20251001", input_tokens=1000, output_tokens=2000)
    record_answer_usage(ctx.state, home.id, "claude-code", "s2", None, haiku)
    record_answer_usage(ctx, home.id, "claude-code", "s2", "claude-sonnet-4-5", None)  # a refusal
    record_answer_usage(ctx, home.id, "pi", None, None, AnswerUsage("mystery-1", 10, 10))
    # Old traffic stays out of a 7-day window.
    record_answer_usage(ctx, home.id, "claude-code", "s0", None, haiku, now=time.time() - 9 * 86400)

    proc = acct("stats", "--json", "--by", "model")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "stats" and doc["prices_date"] == shipped().date
    models = {g["key"]: g for g in doc["groups"]}
    sonnet = models["claude-sonnet-4-5"]
    assert sonnet["requests"] == 4
    assert sonnet["tokens"]["input"] == 3 * want["input_tokens"]
    assert sonnet["tokens"]["output"] == 3 * want["output_tokens"]
    assert sonnet["tokens"]["cache_creation"] == 3 * 1200
    assert sonnet["tokens"]["cache_read"] == 3 * 34000
    per_answer = (
        want["input_tokens"] * 3.0 + want["output_tokens"] * 15.0 + 1200 * 3.75 + 34000 * 0.30
    ) / 1e6
    assert sonnet["cost_usd"] == pytest.approx(3 * per_answer, abs=1e-6)
    assert models["claude-haiku-4-5-20251001"]["cost_usd"] == pytest.approx(
        (1000 * 1.0 + 2000 * 5.0) / 1e6
    )
    assert models["mystery-1"]["unpriced_tokens"] == 20 and models["mystery-1"]["cost_usd"] == 0
    assert doc["total"]["requests"] == 6

    by_account = json.loads(acct("stats", "--json", check=True).stdout)
    accounts = {g["key"]: g for g in by_account["groups"]}
    assert accounts["work"]["requests"] == 3 and accounts["home"]["requests"] == 3
    everything = json.loads(acct("stats", "--json", "--since", "30d", check=True).stdout)
    assert everything["total"]["requests"] == 7
    tools = json.loads(acct("stats", "--json", "--by", "tool", check=True).stdout)
    assert {g["key"] for g in tools["groups"]} == {"claude-code", "pi"}

    text = acct("stats", check=True)
    assert f"API prices of {shipped().date}" in text.stdout.splitlines()[0]
    assert "work" in text.stdout and "$" in text.stdout
    assert_no_secrets([c.stdout + c.stderr for c in acct.calls], store_secrets(ctx))


def test_stats_counts_rotations_and_limits(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    work = seed_account(fake, ctx, "work")
    ctx.state.record("bench", account_id=work.id, target="claude-code", kind="quota", reason="x")
    ctx.state.record("bench", account_id=work.id, target="claude-code", kind="auth", reason="y")
    ctx.state.record("rotate", account_id=work.id, target="claude-code", to="z", reason="quota")
    doc = json.loads(acct("stats", "--json", "--by", "day", check=True).stdout)
    assert doc["total"]["rotations"] == 1 and doc["total"]["limits"] == 1
    assert len(doc["groups"]) == 1 and doc["groups"][0]["limits"] == 1


@pytest.mark.parametrize("args", [["--since", "yesterday"], ["--by", "colour"]])
def test_stats_refuses_bad_options(acct: AcctRunner, args: list[str]) -> None:
    proc = acct("stats", *args)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1


def test_config_pricing_overrides_the_table(tmp_path: Any) -> None:
    from acct.base.config import config_from_dict

    cfg = config_from_dict({"pricing": {"claude-sonnet-4-5": {"input": 1, "output": 1}}})
    t = table(cfg.pricing)
    assert t.cost("claude-sonnet-4-5-2025", input_tokens=1_000_000) == pytest.approx(1.0)
    assert t.cost("claude-sonnet-4-0", input_tokens=1_000_000) == pytest.approx(3.0)
    assert t.cost(None) is None


def test_a_relay_cut_short_still_reports_what_it_read(fake: FakeAnthropic, worker: Account) -> None:
    assert worker.tokens is not None
    seen: list[AnswerUsage | None] = []
    body = {"model": "claude-sonnet-4-5", "max_tokens": 9, "messages": MESSAGES, "stream": True}
    with httpx.Client(timeout=10) as client:
        request = client.build_request(
            "POST",
            f"{fake.base_url}/v1/messages",
            json=body,
            headers={"authorization": f"Bearer {worker.tokens.access}"},
        )
        response = client.send(request, stream=True)
        relay = metered(response, seen.append)
        first = next(relay)
        assert b"message_start" in first
        assert seen == []
        relay.close()  # the tool went away
        response.close()
    assert len(seen) == 1 and seen[0] is not None and seen[0].cache_read_tokens == 34000


def test_proxied_runs_are_counted_per_account_and_model(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, tmp_path: Path
) -> None:
    """Through the usage proxy, every answer's tokens land in `acct stats` under the account
    that answered, the tool and the model; nothing is counted for a run without the proxy."""
    from tests.conftest import exec_env

    work = seed_account(fake, ctx, "solo")
    model = expected(fake, work)["model"]
    run = AcctRunner(exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl"))

    def tokens() -> dict[str, Any]:
        doc = json.loads(run("stats", "--json", "--by", "model", check=True).stdout)
        groups = {g["key"]: g for g in doc["groups"]}
        assert set(groups) <= {model}
        return groups.get(model, {"requests": 0, "tokens": {"input": 0, "output": 0}})

    run("exec", "--no-proxy", "--account", "solo", "--", "claude", "-p", "hi", check=True)
    assert tokens()["requests"] == 0
    counts = []
    for _ in range(2):
        run("exec", "--account", "solo", "--", "claude", "-p", "hi", check=True)
        counts.append(tokens())
    one, two = counts
    assert (one["requests"], two["requests"]) == (1, 2)
    assert one["tokens"]["input"] > 0 and one["tokens"]["output"] > 0
    assert two["tokens"]["input"] == 2 * one["tokens"]["input"]
    assert two["tokens"]["output"] == 2 * one["tokens"]["output"]
    by_account = json.loads(run("stats", "--json", "--by", "account", check=True).stdout)
    assert [g["key"] for g in by_account["groups"]] == ["solo"]
    by_tool = json.loads(run("stats", "--json", "--by", "tool", check=True).stdout)
    assert [g["key"] for g in by_tool["groups"]] == ["claude-code"]


@pytest.mark.parametrize("stream", [True, False])
def test_answers_are_counted_when_the_tool_offers_br_and_zstd(
    fake: FakeAnthropic, worker: Account, stream: bool
) -> None:
    """Claude Code's client offers ``gzip, deflate, br, zstd``; an upstream answering in br or
    zstd left the meter blind (no tokens counted). The proxy offers upstream only the codings
    the meter reads, of those the tool offered; the tool still gets a body it decodes."""
    from acct.services.proxy import Proxy

    assert worker.tokens is not None
    fake.configure(encode_answers=True)
    offered = "gzip, deflate, br, zstd"
    body = {"model": "claude-sonnet-4-5", "max_tokens": 9, "messages": MESSAGES, "stream": stream}
    headers = {"authorization": f"Bearer {worker.tokens.access}", "accept-encoding": offered}
    direct = httpx.post(f"{fake.base_url}/v1/messages", json=body, headers=headers, timeout=10)
    assert direct.headers["content-encoding"] == "br"  # the fake would answer in br
    answered: list[AnswerUsage | None] = []
    with Proxy(fake.base_url, lambda obs: None) as proxy:
        proxy.on_answer = lambda credential, usage: answered.append(usage)
        r = httpx.post(f"{proxy.url}/v1/messages", json=body, headers=headers, timeout=10)
    assert r.status_code == 200
    assert ("message_stop" in r.text) if stream else (r.json()["type"] == "message")
    sent = fake.log("messages")[-1]
    assert len(answered) == 1
    assert as_dict(answered[0]) == {"model": sent["answer_model"], **sent["usage"]}
    assert sent["accept_encoding"] == "gzip, deflate" and sent["content_encoding"] == "gzip"
    assert r.headers["content-encoding"] == "gzip"  # one the tool offered, passed on as it came


@pytest.mark.parametrize(
    ("offered", "sent"),
    [
        (None, "identity"),
        ("gzip, deflate, br, zstd", "gzip, deflate"),
        ("br, zstd", "identity"),
        ("br;q=1, gzip;q=0.5", "gzip;q=0.5"),
        ("*", "gzip, deflate"),
        ("gzip;q=0, br", "identity"),
        ("br, identity;q=0", "br, identity;q=0"),  # nothing readable the tool takes: its own
    ],
)
def test_the_proxy_offers_upstream_only_codings_the_meter_reads(
    offered: str | None, sent: str
) -> None:
    from acct.domain.answers import readable_accept_encoding

    assert readable_accept_encoding(offered) == sent


def test_a_message_delta_with_null_or_missing_counts_keeps_the_start_counts() -> None:
    """The API's message_delta usage has nullable input and cache counts (and older answers
    carry output_tokens alone): they must not wipe what message_start said."""
    start = {
        "type": "message_start",
        "message": {
            "model": "claude-sonnet-4-5",
            "usage": {
                "input_tokens": 11,
                "cache_creation_input_tokens": 22,
                "cache_read_input_tokens": 33,
                "cache_creation": {"ephemeral_5m_input_tokens": 22, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 1,
                "service_tier": "standard",
            },
        },
    }
    deltas = [
        {"input_tokens": None, "cache_read_input_tokens": None, "output_tokens": 7},
        {"output_tokens": 9},
    ]
    for usage in deltas:
        delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}
        raw = b"".join(
            b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode())
            for e in (start, delta)
        )
        got = as_dict(feed(AnswerMeter("text/event-stream"), raw, [13] * 30))
        assert got == {
            "model": "claude-sonnet-4-5",
            "input_tokens": 11,
            "output_tokens": usage["output_tokens"],
            "cache_creation_input_tokens": 22,
            "cache_read_input_tokens": 33,
        }
