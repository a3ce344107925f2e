"""The account store: round trip, schema, corruption, permissions, concurrent writers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acct.base.errors import CorruptFile, NotFound, UsageError
from acct.base.models import Account, Holder, Tokens
from acct.base.paths import Paths
from acct.services.store import Accounts, Store, dumps, loads


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(Paths.from_env({"HOME": str(tmp_path), "ACCT_HOME": str(tmp_path / "acct")}))


def sample(name: str = "work") -> Account:
    return Account(
        name=name,
        uuid="u-1",
        email="w@example.com",
        org_uuid="o-1",
        plan="max",
        tokens=Tokens("sk-ant-oat01-a", "sk-ant-ort01-r", 1_900_000_000, ("user:inference",)),
        holder=Holder("claude-code", "/h/.claude/.credentials.json", "abcd1234", 5),
    )


def test_round_trip_and_modes(store: Store) -> None:
    with store.transaction() as accounts:
        accounts.add(sample())
    got = store.read().get("work")
    assert got == sample().copy(id=got.id, added_at=got.added_at)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700


def test_account_repr_hides_secrets() -> None:
    text = repr(sample())
    assert "sk-ant" not in text


_TOKENS = "version = 1\n[[accounts]]\nname='a'\nid='1'\n[accounts.tokens]\naccess='x'\n"


@pytest.mark.parametrize(
    "content, problem",
    [
        ("version = 1\n[[accounts]\n", "invalid TOML"),
        ("[[accounts]]\nname='x'\nid='1'\n", "no schema 'version'"),
        ("version = 99\n", "newer"),
        ("version = 1\naccounts = 3\n", "not an array"),
        ("version = 1\n[[accounts]]\nid='1'\n", "missing 'name'"),
        ("version = 1\n[[accounts]]\nname='a'\nid='1'\n[[accounts]]\nname='a'\nid='2'\n", "twice"),
        ("version = 1\n[[accounts]]\nname='a'\nid='1'\nenabled='yes'\n", "wrong type"),
        ("version = 0\n", "schema version 0 is not one acct ever wrote"),
        ("version = -3\n", "schema version -3"),
        (
            "version = 1\n[[accounts]]\nname='a'\nid='1'\n[[accounts]]\nname='b'\nid='1'\n",
            "the id '1' appears twice",
        ),
        (
            "version = 1\n[[accounts]]\nname='has space'\nid='1'\n",
            "invalid account name 'has space'",
        ),
        ("version = 1\n[[accounts]]\nname='-x'\nid='1'\n", "invalid account name '-x'"),
        ("version = 1\n[[accounts]]\nname='a'\nid=''\n", "empty 'id'"),
        (_TOKENS + "expires_at = inf\n", "'expires_at' is not a usable time (inf)"),
        (_TOKENS + "expires_at = nan\n", "'expires_at' is not a usable time (nan)"),
        (_TOKENS + "expires_at = 1e300\n", "'expires_at' is not a usable time"),
        (_TOKENS + "expires_at = 1\nobtained_at = -inf\n", "'obtained_at' is not a usable time"),
        (
            "version = 1\n[[accounts]]\nname='a'\nid='1'\nadded_at = inf\n",
            "'added_at' is not a usable time",
        ),
    ],
)
def test_corrupt_store_is_refused_and_left_untouched(
    store: Store, content: str, problem: str
) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(content)
    before = store.path.read_bytes()
    with pytest.raises(CorruptFile) as e:
        store.read()
    assert problem in e.value.message
    assert str(store.path) in e.value.message
    assert "\n" not in e.value.message
    with pytest.raises(CorruptFile), store.transaction() as accounts:
        accounts.add(sample())
    assert store.path.read_bytes() == before


def test_names_validated_and_unique(store: Store) -> None:
    with store.transaction() as accounts:
        accounts.add(sample("a"))
        with pytest.raises(UsageError):
            accounts.add(sample("a"))
        for bad in ("", "has space", "-flag", "a/b"):
            with pytest.raises(UsageError):
                accounts.add(sample(bad))
        assert accounts.unique_name("a") == "a-2"
    with pytest.raises(NotFound) as e:
        store.read().get("nope")
    assert "a" in e.value.message


def test_unchanged_transaction_does_not_rewrite(store: Store) -> None:
    with store.transaction() as accounts:
        accounts.add(sample())
    before = os.stat(store.path).st_mtime_ns
    with store.transaction():
        pass
    assert os.stat(store.path).st_mtime_ns == before


def test_concurrent_writers_lose_nothing(store: Store, tmp_path: Path) -> None:
    """Eight processes each add ten accounts under the store lock: all eighty survive."""
    code = (
        "import sys\n"
        "from acct.base.paths import Paths; from acct.services.store import Store; from acct.base.models import Account\n"  # noqa: E501
        f"s = Store(Paths.from_env({{'HOME': {str(tmp_path)!r}, 'ACCT_HOME': {str(tmp_path / 'acct')!r}}}))\n"
        "for i in range(10):\n"
        "    with s.transaction() as a: a.add(Account(name=f'p{sys.argv[1]}-{i}'))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(8)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert len(store.read()) == 80


names = st.from_regex(r"[a-z0-9][a-z0-9@._+-]{0,20}", fullmatch=True)
secrets = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    name=names,
    email=st.none() | names,
    access=secrets,
    refresh=st.none() | secrets,
    expires=st.integers(min_value=0, max_value=2**40),
    obtained=st.none() | st.integers(min_value=0, max_value=2**40),
    enabled=st.booleans(),
)
def test_serialization_round_trips(
    name, email, access, refresh, expires, obtained, enabled
) -> None:  # type: ignore[no-untyped-def]
    tokens = Tokens(access, refresh, expires, ("a", "b"), obtained_at=obtained)
    acc = Account(name=name, email=email, tokens=tokens, enabled=enabled)
    back = loads(dumps(Accounts([acc])), Path("x")).get(name)
    assert back == acc


_WITH_UNKNOWN_KEYS = """\
version = 1
written_by = "acct 9.9"

[[accounts]]
id = "abc"
name = "work"
kind = "oauth"
colour = "blue"
future = { nested = [1, 2], when = 1979-05-27T07:32:00Z }

[accounts.tokens]
access = "sk-ant-oat01-a"
refresh = "sk-ant-ort01-r"
expires_at = 1900000000
scopes = ["user:inference"]
family = "f-1"

[accounts.holder]
target = "claude-code"
path = "/h/.claude/.credentials.json"
fingerprint = "abcd1234"
since = 5
pid = 42
"""


def test_unknown_keys_survive_a_write(store: Store) -> None:
    """Keys a newer acct wrote are kept: an older acct must not drop them on its next write."""
    store.path.parent.mkdir(parents=True)
    store.path.write_text(_WITH_UNKNOWN_KEYS)
    with store.transaction() as accounts:
        accounts.put(accounts.get("work").copy(enabled=False))
    import tomllib

    doc = tomllib.loads(store.path.read_text())
    assert doc["written_by"] == "acct 9.9"
    [acc] = doc["accounts"]
    assert acc["enabled"] is False and acc["colour"] == "blue"
    assert acc["future"]["nested"] == [1, 2] and acc["future"]["when"].year == 1979
    assert acc["tokens"]["family"] == "f-1" and acc["holder"]["pid"] == 42
    assert "extra" not in acc and "extra" not in acc["tokens"]


def test_a_store_without_obtained_at_loads_and_one_with_it_round_trips(store: Store) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(
        "version = 1\n[[accounts]]\nname='a'\nid='1'\n[accounts.tokens]\naccess='x'\nexpires_at=5\n"
    )
    assert store.read().get("a").tokens == Tokens("x", None, 5, (), None)
    with store.transaction() as accounts:
        a = accounts.get("a")
        accounts.put(a.copy(tokens=Tokens("y", "r", 6, ("s",), obtained_at=1_800_000_000)))
    assert store.read().get("a").tokens == Tokens("y", "r", 6, ("s",), obtained_at=1_800_000_000)
