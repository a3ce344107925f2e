"""Custody pool-wide: lend under the row lock, release only by the holder, one refresher."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from acct.base.errors import AcctError, HeldByTarget, LineageMoved, NeedsLogin
from acct.base.models import Tokens
from acct.services import oauth
from acct.services.context import Ctx
from acct.services.oauth.client import TokenAnswer
from acct.services.pool import accounts, custody
from tests.fake_anthropic.client import FakeAnthropic
from tests.pool.helpers import (
    add_account,
    init_machine,
    made_up_tokens,
    minted_tokens,
    open_machine,
)
from tests.pool.machines import Machine, released_at_the_gate
from tests.pool_server import PgServer

PATH = "/home/x/.claude/.credentials.json"


def test_two_machines_lending_one_account_at_the_same_instant_exactly_one_wins(
    machine_env, two_machines: tuple[Machine, Machine]
) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    with open_machine(env) as pool:
        acc = add_account(pool, "work", made_up_tokens())
    winners: dict[str, int] = {}
    with psycopg.connect(env["ACCT_POOL"], autocommit=True) as control:
        for trial in range(100):
            gate = 1000 + trial
            control.execute("SELECT pg_advisory_lock(%s)", (gate,))
            for m in two_machines:
                m.send(f"claim {gate} {acc.id}")
            released_at_the_gate(control, gate, 2)
            answers = {m.host: m.ask_line() for m in two_machines}
            won = [h for h, a in answers.items() if a == "won"]
            assert len(won) == 1, f"trial {trial}: {answers}"
            loser = next(a for h, a in answers.items() if h not in won)
            assert loser.startswith("held held "), f"trial {trial}: {answers}"
            held = control.execute(
                "SELECT host_id FROM custody WHERE account_id = %s", (acc.id,)
            ).fetchall()
            assert held == [(won[0],)]
            winners[won[0]] = winners.get(won[0], 0) + 1
            control.execute("DELETE FROM custody WHERE account_id = %s", (acc.id,))
    assert sum(winners.values()) == 100


def test_two_machines_refreshing_one_account_at_once_spend_its_token_once(
    machine_env, two_machines: tuple[Machine, Machine], fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    who = fake.add_account(email="work@example.com", plan="claude_max")
    with open_machine(env) as pool:
        acc = add_account(pool, "work", minted_tokens(fake.mint(who["uuid"])))
        with psycopg.connect(env["ACCT_POOL"], autocommit=True) as control:
            for trial in range(20):
                seen = accounts.get(pool.conn, pool.key, acc.id).lineage
                gate = 5000 + trial
                control.execute("SELECT pg_advisory_lock(%s)", (gate,))
                for m in two_machines:
                    m.send(f"refresh {gate} {acc.id} {seen} {fake.token_url}")
                released_at_the_gate(control, gate, 2)
                answers = sorted(m.ask_line() for m in two_machines)
                assert answers == ["sent", "skipped"], f"trial {trial}: {answers}"
        stored = accounts.get(pool.conn, pool.key, acc.id).account.tokens
    assert stored is not None and stored.refresh is not None
    lineage = fake.lineage(refresh_token=stored.refresh)
    assert not lineage["revoked"]
    assert lineage["refresh_count"] == 20


def test_claim_records_this_machine_before_any_file_is_written(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    with open_machine(env) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        lent = custody.claim(pool, acc.id, target="claude-code", path=PATH,
                             expect=tokens.lineage_fingerprint)  # fmt: skip
        assert lent.account.tokens == tokens
        assert lent.custody is not None
        assert (lent.custody.host_id, lent.custody.path) == ("laptop", PATH)
        assert lent.custody.lineage == tokens.lineage_fingerprint
        with pytest.raises(HeldByTarget, match="on machine laptop"):
            custody.claim(pool, acc.id, target="pi", path="/elsewhere")


def test_a_pick_made_on_a_stale_lineage_is_refused(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    with open_machine(env) as pool:
        acc = add_account(pool, "work", made_up_tokens())
        with pytest.raises(custody.LineageMoved):
            custody.claim(pool, acc.id, target="claude-code", path=PATH, expect="0badc0de")
        assert accounts.get(pool.conn, pool.key, acc.id).custody is None


def test_release_takes_back_the_tokens_the_tool_rotated(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    with open_machine(env) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        custody.claim(pool, acc.id, target="claude-code", path=PATH)
        rotated = made_up_tokens()
        back = custody.release(pool, acc.id, lineage=tokens.lineage_fingerprint, harvested=rotated)
        assert back.custody is None
        assert back.account.tokens == rotated
        assert back.lineage == rotated.lineage_fingerprint


def test_a_machine_whose_lineage_was_reclaimed_cannot_release_it(machine_env) -> None:  # type: ignore[no-untyped-def]
    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    with open_machine(laptop) as pool, open_machine(desk) as other:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        custody.claim(pool, acc.id, target="claude-code", path=PATH)
        with pytest.raises(custody.CustodyLost):  # not desk's to release
            custody.release(other, acc.id, lineage=tokens.lineage_fingerprint)
        custody.reclaim(other, "laptop")  # `acct pool reclaim laptop`, run on desk
        with pytest.raises(custody.CustodyLost, match="the pool reclaimed it"):
            custody.release(
                pool, acc.id, lineage=tokens.lineage_fingerprint, harvested=made_up_tokens()
            )
        with pytest.raises(custody.CustodyLost, match="reclaimed it: no copy pushed"):
            custody.push(pool, acc.id, made_up_tokens(), lineage=tokens.lineage_fingerprint)


def test_a_custody_taken_back_otherwise_is_not_called_a_reclaim(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    with open_machine(env) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        custody.claim(pool, acc.id, target="claude-code", path=PATH)
        with pool.conn.transaction():  # taken back by another process of this machine
            pool.conn.execute(b"DELETE FROM custody WHERE account_id = %s", (acc.id,))
        for attempt in (
            lambda: custody.release(pool, acc.id, lineage=tokens.lineage_fingerprint),
            lambda: custody.push(
                pool, acc.id, made_up_tokens(), lineage=tokens.lineage_fingerprint
            ),
        ):
            with pytest.raises(custody.CustodyLost) as e:
                attempt()
            assert "reclaimed" not in e.value.message and "taken back" in e.value.message
        assert accounts.get(pool.conn, pool.key, acc.id).account.tokens == tokens


def _answer(t: Tokens) -> TokenAnswer:
    return TokenAnswer(t.access, t.refresh, t.expires_at, t.scopes, obtained_at=t.obtained_at)


def _refresh(env: dict[str, str], account_id: str, send: Any) -> oauth.RefreshResult:
    """acct's own refresh of a pool account (as `acct refresh` runs it), with ``send`` for the
    token endpoint."""
    return oauth.refresh_result(Ctx(env=env), account_id, margin=10**9, send=send)


def test_refresh_is_refused_while_a_file_holds_the_lineage(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    spent: list[Tokens] = []
    with open_machine(env) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        custody.claim(pool, acc.id, target="claude-code", path=PATH)
    with pytest.raises(HeldByTarget):
        _refresh(env, acc.id, lambda ctx, a, t, timeout: spent.append(t))
    assert spent == []


def test_refresh_of_an_account_that_needs_login_sends_nothing(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    with open_machine(env) as pool:
        acc = add_account(pool, "work", made_up_tokens(), needs_login=True)
    with pytest.raises(NeedsLogin):
        _refresh(env, acc.id, lambda ctx, a, t, timeout: pytest.fail("sent"))


def test_refreshed_tokens_the_pool_could_not_store_wait_on_the_machine_until_it_is_back(
    machine_env, pg: PgServer
) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    new = made_up_tokens()
    with open_machine(env) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)

    def send_then_lose_the_pool(ctx: Ctx, a: Any, t: Tokens, *, timeout: float) -> TokenAnswer:
        pg.halt()  # the token endpoint answered; the pool is gone before it stores them
        return _answer(new)

    try:
        with pytest.raises(AcctError, match="were saved to .* the store could not take them"):
            _refresh(env, acc.id, send_then_lose_the_pool)
    finally:
        pg.resume()
    assert oauth.recover_refreshes(Ctx(env=env)) == ["work"]
    with open_machine(env) as pool:
        back = accounts.get(pool.conn, pool.key, acc.id)
    assert back.account.tokens is not None and back.account.tokens.refresh == new.refresh
    assert not back.account.needs_login and back.custody is None


def test_a_reclaimed_machine_is_refused_and_the_pool_takes_its_last_pushed_tokens(
    machine_env,
) -> None:  # type: ignore[no-untyped-def]
    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    with open_machine(laptop) as pool, open_machine(desk) as other:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        idle = add_account(pool, "idle", made_up_tokens())
        lent = tokens.lineage_fingerprint
        custody.claim(pool, acc.id, target="claude-code", path=PATH)
        custody.claim(pool, idle.id, target="pi", path="/home/x/.pi/agent/auth.json")
        rotated = made_up_tokens()
        custody.push(pool, acc.id, rotated, lineage=lent)
        assert accounts.get(other.conn, other.key, acc.id).account.tokens == tokens  # a copy only
        done = custody.reclaim(other, "laptop")
        assert sorted((r.account, r.took_pushed) for r in done) == [("idle", False), ("work", True)]
        back = accounts.get(other.conn, other.key, acc.id)
        assert back.custody is None and back.account.tokens is not None
        assert back.account.tokens.access == rotated.access
        assert back.account.tokens.refresh == rotated.refresh
        assert accounts.get(other.conn, other.key, idle.id).account.needs_login
        with pytest.raises(custody.CustodyLost):
            custody.push(pool, acc.id, made_up_tokens(), lineage=lent)
        with pytest.raises(custody.CustodyLost):
            custody.release(pool, acc.id, lineage=lent, harvested=made_up_tokens())
        assert accounts.get(other.conn, other.key, acc.id).account.tokens == back.account.tokens


def test_reclaim_does_not_take_a_pushed_copy_the_tool_may_have_refreshed_since(
    machine_env,
) -> None:  # type: ignore[no-untyped-def]
    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    with open_machine(laptop) as pool, open_machine(desk) as other:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        custody.claim(pool, acc.id, target="claude-code", path=PATH)
        near_expiry = replace(made_up_tokens(), expires_at=int(time.time()) + 120)
        custody.push(pool, acc.id, near_expiry, lineage=tokens.lineage_fingerprint)
        assert [(r.account, r.took_pushed) for r in custody.reclaim(other, "laptop")] == [
            ("work", False)
        ]
        back = accounts.get(other.conn, other.key, acc.id).account
        assert back.needs_login and back.tokens == tokens


def test_a_machine_back_after_being_reclaimed_learns_it_at_its_next_heartbeat(
    machine_env,
) -> None:  # type: ignore[no-untyped-def]
    from acct.services.pool import sessions

    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    with open_machine(laptop) as pool, open_machine(desk) as other:
        kept, lost = made_up_tokens(), made_up_tokens()
        a = add_account(pool, "kept", kept)
        b = add_account(pool, "lost", lost)
        custody.claim(pool, a.id, target="claude-code", path=PATH)
        custody.claim(pool, b.id, target="pi", path="/home/x/.pi/agent/auth.json")
        sessions.start(pool, "s1", pid=123, target="claude-code", path=PATH, account_id=a.id)
        lent = {a.id: kept.lineage_fingerprint, b.id: lost.lineage_fingerprint}
        assert sessions.heartbeat(pool, "s1", lent) == set()
        assert [s.host_id for s in sessions.live(other)] == ["laptop"]
        custody.reclaim(other, "laptop", account_id=b.id)
        assert sessions.heartbeat(pool, "s1", lent) == {b.id}
        sessions.end(pool, "s1")
        assert sessions.live(other) == []


def test_a_refresh_whose_lineage_moved_before_its_request_is_refused_and_marks_nothing(
    machine_env,
) -> None:  # type: ignore[no-untyped-def]
    """The mark is committed as the request goes out; if the row no longer holds the lineage
    then (stored by another machine meanwhile, or lent), nothing is marked and nothing sent."""
    env = machine_env("laptop")
    init_machine(env)
    with open_machine(env) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        with pytest.raises(LineageMoved, match="nothing was sent"):
            custody.mark_refresh(pool, acc.id, "0ldl1ne", 5.0)
        custody.claim(pool, acc.id, target="claude-code", path=PATH)
        with pytest.raises(LineageMoved, match="lent to a file"):
            custody.mark_refresh(pool, acc.id, tokens.lineage_fingerprint, 5.0)
        row = pool.conn.execute(
            "SELECT refreshing_lineage FROM accounts WHERE id = %s", (acc.id,)
        ).fetchone()
    assert row == (None,)


def test_only_the_refresh_that_left_a_mark_can_say_it_never_sent(machine_env) -> None:  # type: ignore[no-untyped-def]
    """A refresh killed before its request left (its courier's journal says so) takes back
    what its mark left: the mark itself, or the "needs login" another machine made of it. Only
    its own, by its nonce: an earlier refresh of the same lineage may have spent it."""
    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    with open_machine(laptop) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        lineage = tokens.lineage_fingerprint
        custody.mark_refresh(pool, acc.id, lineage, 5.0, "first")  # its process is gone
        assert not custody.unsent_refresh(pool, acc.id, lineage, "second", 5.0)
        assert not custody.unsent_refresh(pool, acc.id, lineage, "", 5.0)
    with open_machine(desk) as other:
        with pytest.raises(NeedsLogin, match="cut off"):
            custody.mark_refresh(other, acc.id, lineage, 5.0, "desk's")
        assert accounts.get(other.conn, other.key, acc.id).account.needs_login
        # Nor does a refresh start on a row marked "needs login" meanwhile.
        with pytest.raises(NeedsLogin, match="nothing was sent"):
            custody.mark_refresh(other, acc.id, lineage, 5.0, "later")
    with open_machine(laptop) as pool:
        assert not custody.unsent_refresh(pool, acc.id, lineage, "second", 5.0)
        assert accounts.get(pool.conn, pool.key, acc.id).account.needs_login
        assert custody.unsent_refresh(pool, acc.id, lineage, "first", 5.0)
        assert not accounts.get(pool.conn, pool.key, acc.id).account.needs_login
        # Its own mark, not yet cut off, just goes.
        custody.mark_refresh(pool, acc.id, lineage, 5.0, "third")
        assert custody.unsent_refresh(pool, acc.id, lineage, "third", 5.0)
        row = pool.conn.execute(
            "SELECT refreshing_lineage, needs_login FROM accounts WHERE id = %s", (acc.id,)
        ).fetchone()
        events = pool.conn.execute(
            "SELECT event FROM history WHERE account_id = %s AND event LIKE 'refresh_%%' "
            "ORDER BY id",
            (acc.id,),
        ).fetchall()
    assert row == (None, False)
    assert [e for (e,) in events] == ["refresh_cut_off", "refresh_unsent", "refresh_unsent"]
