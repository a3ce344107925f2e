"""Token and cost accounting of the real Claude Code's traffic through acct's usage proxy.

The fake reports each answer's ``usage`` in its stream (``message_start`` and the cumulative
``message_delta``) and keeps what it sent in its log: that log, not numbers written here, is
what ``acct stats --json`` must add up, per account and per model, and price by the shipped table.
The fake encodes its answers by the request's Accept-Encoding (as a CDN in front of the API
does), so the coding the real client offers is part of the test.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pytest

from acct.base.models import Usage, Window
from acct.domain.pricing import shipped
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic

pytestmark = pytest.mark.e2e

# The usage keys of an answer, and the names `acct stats --json` gives them.
TOKENS = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_creation_input_tokens": "cache_creation",
    "cache_read_input_tokens": "cache_read",
}
# Two accounts, each run on a model of its own; cache counts that differ per account.
RUNS = (
    ("a", "claude-sonnet-4-5", 1200, 34000),
    ("b", "claude-opus-4-5", 700, 5000),
)


def sums(entries: Iterable[dict[str, Any]], key: str) -> dict[str, dict[str, int]]:
    """The fake's reported usage added up per ``key`` of its log entries."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TOKENS.values(), 0))
    for entry in entries:
        for field, name in TOKENS.items():
            out[entry[key]][name] += entry["usage"][field]
    return dict(out)


def stats(run: AcctRunner, by: str) -> dict[str, dict[str, Any]]:
    doc = json.loads(run("stats", "--json", "--by", by, check=True).stdout)
    assert doc["prices_date"] == shipped().date
    return {g["key"]: g for g in doc["groups"]}


def counted(group: dict[str, Any]) -> dict[str, int]:
    return {name: group["tokens"][name] for name in TOKENS.values()}


def test_stats_shows_the_tokens_the_fake_reported_per_account_and_model_and_their_cost(
    fake: FakeAnthropic, ctx, run_acct: AcctRunner, workdir
) -> None:
    fake.configure(encode_answers=True)
    accounts = {}
    for name, _model, cache_write, cache_read in RUNS:
        acc = seed_account(fake, ctx, name, five_hour=10, seven_day=10)
        assert acc.uuid is not None
        fake.set_messages(
            acc.uuid, "ok", cache_creation_tokens=cache_write, cache_read_tokens=cache_read
        )
        # Usage in the cache, polled a while ago: exec has no account to probe.
        ctx.state.put_usage(
            acc.id, Usage(Window(10, None), Window(10, None)), now=time.time() - 120
        )
        accounts[name] = acc
    fake.reset_log()

    outputs = []
    for name, model, _, _ in RUNS:
        p = run_acct(
            "exec",
            "--account",
            name,
            "--",
            "claude",
            "--model",
            model,
            "-p",
            "write the report",
            cwd=workdir,
            timeout=180,
        )
        assert p.returncode == 0, p.stderr
        assert f"Hello from {name}@example.com" in p.stdout
        outputs += [p.stdout, p.stderr]

    answers = [e for e in fake.log("messages") if e["status"] == 200]
    assert {e["account_uuid"] for e in answers} == {acc.uuid for acc in accounts.values()}
    names = {acc.uuid: name for name, acc in accounts.items()}
    want_accounts = {names[uuid]: tokens for uuid, tokens in sums(answers, "account_uuid").items()}
    want_models = sums(answers, "answer_model")
    assert set(want_models) >= {model for _, model, _, _ in RUNS}

    by_account = stats(run_acct, "account")
    assert {name: counted(by_account[name]) for name in want_accounts} == want_accounts
    for name in want_accounts:
        mine = [e for e in answers if names[e["account_uuid"]] == name]
        assert by_account[name]["requests"] == len(mine)

    by_model = stats(run_acct, "model")
    assert {model: counted(by_model[model]) for model in want_models} == want_models
    others = {k: g for k, g in by_model.items() if k not in want_models}
    assert all(g["tokens"]["total"] == 0 for g in others.values()), others  # refusals only
    prices = shipped()
    for model, tokens in want_models.items():
        cost_args = {_COST_ARGS[f]: tokens[n] for f, n in TOKENS.items()}
        cost = prices.cost(model, **cost_args)
        assert cost is not None and cost > 0, model
        assert by_model[model]["cost_usd"] == pytest.approx(cost, abs=1e-6)
        assert by_model[model]["unpriced_tokens"] == 0
    # The real client offers br and zstd, which the meter cannot read; the proxy asked upstream
    # for codings it reads, of those the client offered.
    assert all(e["accept_encoding"] == "gzip, deflate" for e in answers), answers
    assert all(e["content_encoding"] == "gzip" for e in answers), answers
    assert_no_secrets(outputs, store_secrets(ctx))


# The usage keys as PriceTable.cost takes them.
_COST_ARGS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_creation_input_tokens": "cache_creation_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
}
