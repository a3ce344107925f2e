"""Machines' accounts into the pool, deduplicated by identity, never two live lineages."""

from __future__ import annotations

from acct.base.models import Account, Holder
from acct.services.pool import accounts, merge
from tests.pool.helpers import init_machine, made_up_tokens, open_machine


def test_joining_machines_merge_accounts_by_identity_and_never_keep_two_lineages(
    machine_env,
) -> None:  # type: ignore[no-untyped-def]
    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    t_work, t_team = made_up_tokens(), made_up_tokens()
    held = Holder("claude-code", "/home/l/.claude/.credentials.json", t_work.lineage_fingerprint, 1)
    work = Account(name="work", uuid="u-work", org_uuid="o1", tokens=t_work, holder=held)
    team = Account(name="team", uuid="u-team", org_uuid="o2", tokens=t_team)
    with open_machine(laptop) as pool:
        first = merge.merge(pool, [work, team])
    assert [m.outcome for m in first] == ["added", "added"]
    # desk has the same team login (copied once: same lineage), its own login of work (another
    # lineage), a second organisation of the same person, and an account named "team" too.
    desk_work = Account(name="work", uuid="u-work", org_uuid="o1", tokens=made_up_tokens())
    desk_team = Account(name="t", uuid="u-team", org_uuid="o2", tokens=t_team)
    other_org = Account(name="work", uuid="u-work", org_uuid="o9", tokens=made_up_tokens())
    api = Account(name="team", kind="api_key", api_key="sk-ant-api03-" + "x" * 40)
    with open_machine(desk) as pool:
        second = merge.merge(pool, [desk_work, desk_team, other_org, api])
        rows = {p.account.name: p for p in accounts.all_accounts(pool.conn, pool.key)}
    assert [(m.outcome, m.pool_id) for m in second[:2]] == [
        ("other_lineage", work.id),
        ("same", team.id),
    ]
    assert [(m.outcome, m.name) for m in second[2:]] == [("added", "work-2"), ("added", "team-2")]
    assert sorted(rows) == ["team", "team-2", "work", "work-2"]
    # The pool kept laptop's lineage of work, with laptop's file as its holder.
    assert rows["work"].account.tokens == t_work
    custody = rows["work"].custody
    assert custody is not None and (custody.host_id, custody.lineage) == (
        "laptop",
        t_work.lineage_fingerprint,
    )
    assert rows["team-2"].account.api_key == api.api_key
