"""The pool's acceptance trials (issue 10): machines that are separate HOMEs with their own
ACCT_HOST_ID, running acct as real processes against one real PostgreSQL and the fake Anthropic
server that revokes a whole chain when a spent refresh token comes back.

The evidence is the fake's (lineages revoked, usage requests logged, tokens issued) and the
pool's rows read with the key, never what acct says about itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from acct.base.models import Tokens
from acct.services.pool import accounts, custody
from tests.fake_anthropic.client import FakeAnthropic
from tests.fake_anthropic.server import CLIENT_ID
from tests.pool.trials import (
    PoolMachine,
    dump_leaks,
    lineage_problems,
    make_machines,
    revoked_chains,
    seed_pool,
)
from tests.pool_server import PgServer

PATH = "/home/x/.claude/.credentials.json"


def _refresh_at(fake: FakeAnthropic, tokens: Tokens) -> Tokens:
    body = {"grant_type": "refresh_token", "refresh_token": tokens.refresh, "client_id": CLIENT_ID}
    doc = httpx.post(fake.token_url, json=body, timeout=10).raise_for_status().json()
    now = int(time.time())
    return Tokens(doc["access_token"], doc["refresh_token"], now + int(doc["expires_in"]),
                  tokens.scopes, now)  # fmt: skip


@pytest.fixture
def machines(machine_env, fake: FakeAnthropic, tmp_path: Path) -> list[PoolMachine]:  # type: ignore[no-untyped-def]
    return make_machines(machine_env, fake, tmp_path, ("laptop", "desk", "ci"))


# --- the evidence itself can fail ----------------------------------------------------------


def test_the_evidence_sees_a_login_copied_to_a_second_machine_and_a_revoked_chain(
    machines: list[PoolMachine], fake: FakeAnthropic
) -> None:
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work"])
    assert lineage_problems(fake, machines, seeded) == []
    with laptop.pool() as pool:
        tokens = accounts.get(pool.conn, pool.key, seeded[0].id).account.tokens
    assert tokens is not None
    copy = desk.home / ".claude" / ".credentials.json"
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps({"claudeAiOauth": {"refreshToken": tokens.refresh}}))
    assert lineage_problems(fake, machines, seeded) != []
    _refresh_at(fake, tokens)
    with pytest.raises(httpx.HTTPStatusError):
        _refresh_at(fake, tokens)  # the spent token again: the fake revokes the chain
    assert revoked_chains(fake, [seeded[0].uuid]) != []


# --- 5. a dump of the database holds none of the tokens the fake issued -----------------------


def test_pg_dump_holds_none_of_the_tokens_the_fake_issued(
    machines: list[PoolMachine], fake: FakeAnthropic, pg: PgServer
) -> None:
    """Every place a token goes in the pool: an account's row, a refresh's result, a lent
    lineage's pushed copy, a harvest at release; and the history of all of it."""
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work", "personal", "team"])
    with laptop.pool() as pool:
        for s in seeded:
            seen = accounts.get(pool.conn, pool.key, s.id).lineage
            custody.refresh(pool, s.id, seen=seen, send=lambda t: _refresh_at(fake, t))
    with desk.pool() as pool:
        lent = custody.claim(pool, seeded[0].id, target="claude-code", path=PATH)
        assert lent.account.tokens is not None
        rotated = _refresh_at(fake, lent.account.tokens)
        custody.push(pool, seeded[0].id, rotated, lineage=lent.lineage or "")
        custody.release(pool, seeded[0].id, lineage=lent.lineage or "", harvested=rotated)
        custody.claim(pool, seeded[1].id, target="claude-code", path=PATH)
    assert len(fake.issued()) >= 2 * (3 + 3 + 1)
    assert dump_leaks(pg, laptop.env["ACCT_POOL"], fake) == []
    assert revoked_chains(fake, [s.uuid for s in seeded]) == []
