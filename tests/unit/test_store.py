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

from acct.errors import CorruptFile, NotFound, UsageError
from acct.models import Account, Holder, Tokens
from acct.paths import Paths
from acct.store import Accounts, Store, dumps, loads


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
    ],
)
def test_corrupt_store_is_refused_and_left_untouched(store: Store, content: str, problem: str) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(content)
    before = store.path.read_bytes()
    with pytest.raises(CorruptFile) as e:
        store.read()
    assert problem in e.value.message
    assert str(store.path) in e.value.message
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
        "from acct.paths import Paths; from acct.store import Store; from acct.models import Account\n"
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
    enabled=st.booleans(),
)
def test_serialization_round_trips(name, email, access, refresh, expires, enabled) -> None:  # type: ignore[no-untyped-def]
    acc = Account(name=name, email=email, tokens=Tokens(access, refresh, expires, ("a", "b")), enabled=enabled)
    back = loads(dumps(Accounts([acc])), Path("x")).get(name)
    assert back == acc
