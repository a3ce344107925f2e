"""The account choice: table-driven cases per policy, and properties over random pools."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acct.base.models import Account, Holder, Tokens, Usage, UsageRecord, Window
from acct.domain.pick import pick

NOW = 1_800_000_000.0
H = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class B:
    until: float
    kind: str = "quota"
    reason: str = "limit"


def acc(name: str, **kw: object) -> Account:
    kind = kw.pop("kind", "oauth")
    a = Account(name=name, id=f"id-{name}", kind=kind)  # type: ignore[arg-type]
    if kind == "oauth":
        a.tokens = Tokens("sk-ant-oat01-x", "sk-ant-ort01-x", int(NOW + 8 * H), ("user:inference",))
    else:
        a.api_key = "sk-ant-api03-x"
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def rec(
    name: str, five: float | None, week: float | None, week_reset: float | None = None
) -> UsageRecord:
    u = Usage(
        five_hour=Window(five, NOW + 2 * H),
        seven_day=Window(week, NOW + week_reset if week_reset is not None else NOW + 3 * DAY),
    )
    return UsageRecord(f"id-{name}", u, fetched_at=NOW - 60)


def choose(accounts, records=(), benches=None, policy="headroom", last_used=None, exclude=()):
    return pick(
        accounts,
        {r.account_id: r for r in records},
        benches or {},
        NOW,
        policy,
        last_used=last_used or {},
        exclude=exclude,
    )


CASES = [
    # (id, accounts, records, benches, policy, last_used, expected)
    ("headroom lowest peak", ["a", "b"], [("a", 50, 10), ("b", 20, 30)], {}, "headroom", {}, "b"),
    (
        "headroom peak uses the 7-day too",
        ["a", "b"],
        [("a", 10, 60), ("b", 40, 40)],
        {},
        "headroom",
        {},
        "b",
    ),
    (
        "headroom tie: soonest weekly reset",
        ["a", "b"],
        [("a", 30, 30, 5 * DAY), ("b", 30, 30, 1 * DAY)],
        {},
        "headroom",
        {},
        "b",
    ),
    (
        "headroom tie: least recently used",
        ["a", "b"],
        [("a", 30, 30), ("b", 30, 30)],
        {},
        "headroom",
        {"id-a": NOW - 10, "id-b": NOW - 1000},
        "b",
    ),
    (
        "headroom skips a benched one",
        ["a", "b"],
        [("a", 0, 0), ("b", 90, 90)],
        {"id-a": B(NOW + H)},
        "headroom",
        {},
        "b",
    ),
    (
        "an expired bench does not count",
        ["a", "b"],
        [("a", 0, 0), ("b", 50, 50)],
        {"id-a": B(NOW - 1)},
        "headroom",
        {},
        "a",
    ),
    (
        "a full window ranks last",
        ["a", "b"],
        [("a", 100, 10), ("b", 99, 99)],
        {},
        "headroom",
        {},
        "b",
    ),
    ("unknown usage ranks as fresh", ["a", "b"], [("a", 5, 5)], {}, "headroom", {}, "b"),
    (
        "round-robin: least recently used",
        ["a", "b"],
        [("a", 0, 0), ("b", 90, 90)],
        {},
        "round-robin",
        {"id-a": NOW - 5, "id-b": NOW - 50},
        "b",
    ),
    ("round-robin: never used first", ["a", "b"], [], {}, "round-robin", {"id-a": NOW - 5}, "b"),
    (
        "drain: soonest weekly reset",
        ["a", "b"],
        [("a", 10, 10, 6 * DAY), ("b", 80, 80, 2 * DAY)],
        {},
        "drain",
        {},
        "b",
    ),
    (
        # a: 6 days into the week at 50 % (36 points behind); b: 1 day in at 40 % (26 ahead)
        "pace: furthest behind its line",
        ["a", "b"],
        [("a", 0, 50, 1 * DAY), ("b", 0, 40, 6 * DAY)],
        {},
        "pace",
        {},
        "a",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_policy_table(case) -> None:
    _, names, records, benches, policy, last_used, expected = case
    accounts = [acc(n) for n in names]
    records = [rec(*r) for r in records]
    choice = choose(accounts, records, benches, policy, last_used)
    assert choice.account is not None and choice.account.name == expected, choice.ranking


def test_never_picks_disabled_needs_login_or_excluded() -> None:
    accounts = [acc("off", enabled=False), acc("dead", needs_login=True), acc("tried"), acc("ok")]
    records = [rec("off", 0, 0), rec("dead", 0, 0), rec("tried", 0, 0), rec("ok", 90, 90)]
    choice = choose(accounts, records, exclude={"id-tried"})
    assert choice.account.name == "ok"
    why = {r.name: r.why for r in choice.ranking}
    assert why["off"] == "disabled"
    assert "login" in why["dead"]
    assert "tried" in why["tried"]


def test_api_key_only_when_nothing_else() -> None:
    accounts = [acc("key", kind="api_key"), acc("sub")]
    choice = choose(accounts, [rec("sub", 99, 99)])
    assert choice.account.name == "sub"
    choice = choose(accounts, [rec("sub", 0, 0)], benches={"id-sub": B(NOW + H)})
    assert choice.account.name == "key"


def test_nothing_eligible_explains_every_account() -> None:
    accounts = [acc("a"), acc("b", enabled=False)]
    choice = choose(accounts, benches={"id-a": B(NOW + 2 * H, reason="5-hour limit")})
    assert choice.account is None
    assert "a benched (quota) for 2h00m" in choice.reason and "b disabled" in choice.reason


def test_probe_names_unpolled_eligible_accounts() -> None:
    accounts = [acc("a"), acc("b"), acc("c", enabled=False)]
    choice = choose(accounts, [rec("a", 10, 10)])
    assert choice.probe == ("id-b",)
    assert choice.account.name == "b"


def test_stale_window_counts_as_reset() -> None:
    a, b = acc("a"), acc("b")
    stale = UsageRecord(
        "id-a", Usage(Window(100, NOW - 10), Window(10, NOW + DAY)), fetched_at=NOW - 9 * H
    )
    choice = choose([a, b], [stale, rec("b", 40, 40)])
    assert choice.account.name == "a"


def test_account_lent_to_another_tool_file_is_skipped_and_explained() -> None:
    here = ("claude-code", "/home/u/.claude/.credentials.json")
    lent = Holder("pi", "/home/u/.pi/agent/auth.json", "fp", int(NOW))
    mine = Holder(*here, "fp", int(NOW))
    accounts = [acc("pi-one", holder=lent), acc("in-use", holder=mine), acc("free")]
    records = [rec("pi-one", 0, 0), rec("in-use", 50, 50), rec("free", 60, 60)]
    choice = pick(accounts, {r.account_id: r for r in records}, {}, NOW, last_used={}, here=here)
    assert choice.account.name == "in-use"  # lent to this very file: the one in use
    why = {r.name: r for r in choice.ranking}
    assert not why["pi-one"].eligible
    assert why["pi-one"].why == "lent to pi (/home/u/.pi/agent/auth.json)"
    # Another file's account is skipped even when nothing else can run.
    alone = pick(accounts[:1], {}, {}, NOW, last_used={}, here=here)
    assert alone.account is None and "lent to pi" in alone.reason


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        choose([acc("a")], policy="random")


# ----- properties ---------------------------------------------------------------------------

_flags = st.fixed_dictionaries(
    {
        "enabled": st.booleans(),
        "needs_login": st.booleans(),
        "benched": st.booleans(),
        "api_key": st.booleans(),
        "five": st.none() | st.floats(0, 120),
        "week": st.none() | st.floats(0, 120),
        "reset": st.floats(0, 7 * DAY),
        "last": st.floats(0, 10 * DAY),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    pool=st.lists(_flags, min_size=0, max_size=6),
    policy=st.sampled_from(["headroom", "pace", "round-robin", "drain"]),
)
def test_property_never_picks_an_ineligible_account_and_is_deterministic(pool, policy) -> None:
    accounts, records, benches, last_used = [], {}, {}, {}
    for i, f in enumerate(pool):
        a = acc(
            f"n{i}",
            kind="api_key" if f["api_key"] else "oauth",
            enabled=f["enabled"],
            needs_login=f["needs_login"],
        )
        accounts.append(a)
        if f["five"] is not None or f["week"] is not None:
            records[a.id] = UsageRecord(
                a.id,
                Usage(Window(f["five"], NOW + H), Window(f["week"], NOW + f["reset"])),
                fetched_at=NOW,
            )
        if f["benched"]:
            benches[a.id] = B(NOW + H)
        last_used[a.id] = NOW - f["last"]
    first = pick(accounts, records, benches, NOW, policy, last_used=last_used)
    again = pick(list(reversed(accounts)), records, benches, NOW, policy, last_used=last_used)
    assert (first.account and first.account.name) == (again.account and again.account.name)
    assert first.ranking == again.ranking
    eligible = [a for a in accounts if a.enabled and not a.needs_login and a.id not in benches]
    if first.account is None:
        assert not eligible
    else:
        chosen = first.account
        assert chosen.enabled and not chosen.needs_login and chosen.id not in benches
        if not chosen.is_oauth:
            assert all(not a.is_oauth for a in eligible)
