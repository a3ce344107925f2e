"""The usage budget and benches, pool-wide."""

from __future__ import annotations

import psycopg

from acct.base.models import Usage, Window
from acct.services.pool.usage import PoolUsage
from tests.pool.helpers import add_account, init_machine, made_up_tokens, open_machine
from tests.pool.machines import Machine, released_at_the_gate


def test_two_machines_asking_to_poll_one_account_at_once_one_polls(
    machine_env, two_machines: tuple[Machine, Machine]
) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    with open_machine(env) as pool:
        acc = add_account(pool, "work", made_up_tokens())
    with psycopg.connect(env["ACCT_POOL"], autocommit=True) as control:
        for trial in range(30):
            gate = 9000 + trial
            control.execute("SELECT pg_advisory_lock(%s)", (gate,))
            for m in two_machines:
                m.send(f"poll {gate} {acc.id}")
            released_at_the_gate(control, gate, 2)
            answers = sorted(m.ask_line() for m in two_machines)
            assert answers == ["claimed", "no"], f"trial {trial}: {answers}"
            control.execute("DELETE FROM poll_claims")
            control.execute("UPDATE usage SET fetched_at = NULL")


def test_fresh_usage_from_another_machine_means_no_poll(machine_env) -> None:  # type: ignore[no-untyped-def]
    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    with open_machine(laptop) as a, open_machine(desk) as b:
        acc = add_account(a, "work", made_up_tokens())
        ua, ub = PoolUsage(a), PoolUsage(b)
        assert ua.claim_poll(acc.id, min_age=180, lease=30)
        assert not ub.claim_poll(acc.id, min_age=180, lease=30)  # laptop's lease
        usage = Usage(five_hour=Window(37.0, None), seven_day=Window(12.0, None))
        ua.put_usage(acc.id, usage)
        assert not ub.claim_poll(acc.id, min_age=180, lease=30)  # fresh figures
        seen = ub.usage(acc.id)
        assert seen is not None and seen.usage == usage
        record = ub.put_usage_error(acc.id, "rate_limited", "429", backoff_until=None)
        assert record.failures == 1 and record.usage == usage  # last good values kept


def test_a_bench_set_on_one_machine_is_in_the_others_next_pick(machine_env) -> None:  # type: ignore[no-untyped-def]
    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    with open_machine(laptop) as a, open_machine(desk) as b:
        acc = add_account(a, "work", made_up_tokens())
        PoolUsage(a).bench(acc.id, 4102444800.0, kind="quota", reason="5-hour limit")
        benches = PoolUsage(b).benches()
        assert list(benches) == [acc.id]
        assert benches[acc.id].kind == "quota" and benches[acc.id].reason == "5-hour limit"
        PoolUsage(b).unbench(acc.id)
        assert PoolUsage(a).benches() == {}
