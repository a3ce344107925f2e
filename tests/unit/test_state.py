"""The shared state database: usage cache rules that other processes rely on."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from acct.base.errors import CorruptFile
from acct.base.models import Usage, Window
from acct.base.paths import Paths
from acct.services.state import State


def make(tmp_path: Path) -> State:
    return State(Paths.from_env({"HOME": str(tmp_path), "ACCT_HOME": str(tmp_path / "acct")}))


def test_database_is_private(tmp_path: Path) -> None:
    st = make(tmp_path)
    st.record("hello")
    assert stat.S_IMODE(os.stat(st.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(st.path.parent).st_mode) == 0o700


def test_usage_seen_in_api_answers_keeps_the_usage_endpoint_backoff(tmp_path: Path) -> None:
    st = make(tmp_path)
    st.put_usage("a", Usage(Window(10.0, 2000.0), Window(20.0, 9000.0)), now=1000.0)
    st.put_usage_error("a", "rate_limited", "429", backoff_until=5000.0, now=1100.0)
    st.put_observed_usage("a", Usage(Window(55.0, 2000.0), Window(21.0, 9000.0)), now=1200.0)
    rec = st.usage("a")
    assert rec is not None and rec.usage is not None and rec.usage.five_hour is not None
    assert rec.usage.five_hour.utilization == 55.0 and rec.fetched_at == 1200.0
    assert rec.backoff_until == 5000.0 and rec.error == "rate_limited"
    # A poll that succeeds clears the back-off, as before.
    st.put_usage("a", Usage(Window(56.0, 2000.0), None), now=6000.0)
    rec = st.usage("a")
    assert rec is not None and rec.backoff_until is None and rec.error is None


def test_a_poll_claim_is_refused_while_fresh_backing_off_or_leased(tmp_path: Path) -> None:
    st = make(tmp_path)
    assert st.claim_poll("a", min_age=180, lease=30, now=0.0)
    assert not st.claim_poll("a", min_age=180, lease=30, now=10.0), "leased to the first claimer"
    st.put_usage("a", Usage(), now=20.0)
    assert not st.claim_poll("a", min_age=180, lease=30, now=100.0), "fresh values"
    st.put_usage_error("a", "rate_limited", "429", backoff_until=1000.0, now=300.0)
    assert not st.claim_poll("a", min_age=180, lease=30, now=500.0), "backing off"
    assert st.claim_poll("a", min_age=180, lease=30, now=1001.0)


def test_an_observation_older_than_the_cached_poll_does_not_overwrite_it(tmp_path: Path) -> None:
    st = make(tmp_path)
    st.put_usage("a", Usage(Window(70.0, 2000.0), None), now=1500.0)
    st.put_observed_usage("a", Usage(Window(40.0, 2000.0), None), now=1200.0)
    rec = st.usage("a")
    assert rec is not None and rec.usage is not None and rec.usage.five_hour is not None
    assert rec.usage.five_hour.utilization == 70.0 and rec.fetched_at == 1500.0
    # A newer one, or one for an account without values yet, is taken.
    st.put_observed_usage("a", Usage(Window(75.0, 2000.0), None), now=1600.0)
    st.claim_poll("b", min_age=180, lease=30, now=1000.0)
    st.put_observed_usage("b", Usage(Window(5.0, 2000.0), None), now=900.0)
    a, b = st.usage("a"), st.usage("b")
    assert a is not None and a.usage is not None and a.usage.five_hour is not None
    assert a.usage.five_hour.utilization == 75.0 and a.fetched_at == 1600.0
    assert b is not None and b.usage is not None and b.fetched_at == 900.0


def test_an_unreadable_database_is_not_called_only_a_cache(tmp_path: Path) -> None:
    st = make(tmp_path)
    st.path.parent.mkdir(parents=True)
    st.path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptFile) as caught:
        st.sessions()
    text = f"{caught.value.message} {caught.value.hint}"
    assert "only caches" not in text
    assert "acct exec" in text and "end every" in text
