"""The usage cache, poll claims and benches, pool-wide: the same operations as the local
``State`` (``services.state``), so the usage poller and the picker can take either.

The usage endpoint allows about 30 requests per hour per account, for all machines together:
``claim_poll`` lets one process of one machine poll an account per minimum age (under the
usage row's lock), and a bench set on one machine is in every other machine's next pick.

Times are the database server's clock (``clock_timestamp()``) unless the caller passes ``now``:
machines' clocks differ, and a claim must mean the same on all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from acct.base.models import Usage, UsageRecord
from acct.services.pool import connect as pg
from acct.services.state import Bench, usage_from_json, usage_to_json

if TYPE_CHECKING:
    from acct.services.pool.core import Pool

_USAGE = (
    "SELECT account_id, usage_json::text, fetched_at, attempted_at, error, error_message, "
    "backoff_until, failures FROM usage"
)


def _now(pool: Pool, now: float | None) -> float:
    if now is not None:
        return now
    row = pool.conn.execute(b"SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


def _record(r: tuple[Any, ...]) -> UsageRecord:
    return UsageRecord(
        account_id=r[0],
        usage=usage_from_json(r[1]) if r[1] else None,
        fetched_at=r[2],
        attempted_at=r[3],
        error=r[4],
        error_message=r[5],
        backoff_until=r[6],
        failures=int(r[7] or 0),
    )


class PoolUsage:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.conn = pool.conn

    def usage(self, account_id: str) -> UsageRecord | None:
        with pg.errors(self.pool.where):
            row = self.conn.execute((_USAGE + " WHERE account_id = %s").encode(), (account_id,))
            found = row.fetchone()
        return _record(found) if found else None

    def all_usage(self) -> dict[str, UsageRecord]:
        with pg.errors(self.pool.where):
            rows = self.conn.execute(_USAGE.encode()).fetchall()
        return {r[0]: _record(r) for r in rows}

    def claim_poll(
        self, account_id: str, *, min_age: float, lease: float, now: float | None = None
    ) -> bool:
        """Whether this process may poll the account's usage now (see ``State.claim_poll``),
        decided for every process of every machine at once. Yes takes the lease."""
        with pg.errors(self.pool.where), self.conn.transaction():
            t = _now(self.pool, now)
            self.conn.execute(
                b"INSERT INTO usage (account_id) VALUES (%s) ON CONFLICT DO NOTHING", (account_id,)
            )
            row = self.conn.execute(
                b"SELECT u.fetched_at, u.backoff_until FROM usage u WHERE u.account_id = %s "
                b"FOR UPDATE",
                (account_id,),
            ).fetchone()
            assert row is not None
            fetched, backoff = row
            if (fetched is not None and t - fetched < min_age) or (
                backoff is not None and t < backoff
            ):
                return False
            claim = self.conn.execute(
                b"SELECT until FROM poll_claims WHERE account_id = %s", (account_id,)
            ).fetchone()
            if claim is not None and t < claim[0]:
                return False
            self.conn.execute(
                b"INSERT INTO poll_claims (account_id, host_id, claimed_at, until) "
                b"VALUES (%s, %s, %s, %s) ON CONFLICT (account_id) DO UPDATE SET "
                b"host_id = excluded.host_id, claimed_at = excluded.claimed_at, "
                b"until = excluded.until",
                (account_id, self.pool.host_id, t, t + lease),
            )
            self.conn.execute(
                b"UPDATE usage SET attempted_at = %s WHERE account_id = %s", (t, account_id)
            )
            return True

    def release_poll(self, account_id: str) -> None:
        with pg.errors(self.pool.where):
            self.conn.execute(b"DELETE FROM poll_claims WHERE account_id = %s", (account_id,))

    def put_usage(self, account_id: str, usage: Usage, *, now: float | None = None) -> None:
        with pg.errors(self.pool.where), self.conn.transaction():
            t = _now(self.pool, now)
            self.conn.execute(
                b"INSERT INTO usage (account_id, usage_json, fetched_at, attempted_at, failures) "
                b"VALUES (%s, %s::jsonb, %s, %s, 0) ON CONFLICT (account_id) DO UPDATE SET "
                b"usage_json = excluded.usage_json, fetched_at = excluded.fetched_at, "
                b"attempted_at = excluded.attempted_at, error = NULL, error_message = NULL, "
                b"backoff_until = NULL, failures = 0",
                (account_id, usage_to_json(usage), t, t),
            )
            self.conn.execute(b"DELETE FROM poll_claims WHERE account_id = %s", (account_id,))

    def put_usage_error(
        self,
        account_id: str,
        error: str,
        message: str,
        *,
        backoff_until: float | None,
        now: float | None = None,
    ) -> UsageRecord:
        with pg.errors(self.pool.where), self.conn.transaction():
            t = _now(self.pool, now)
            self.conn.execute(
                b"INSERT INTO usage (account_id, attempted_at, error, error_message, "
                b"backoff_until, failures) VALUES (%s, %s, %s, %s, %s, 1) "
                b"ON CONFLICT (account_id) DO UPDATE SET attempted_at = excluded.attempted_at, "
                b"error = excluded.error, error_message = excluded.error_message, "
                b"backoff_until = excluded.backoff_until, failures = usage.failures + 1",
                (account_id, t, error, message, backoff_until),
            )
            self.conn.execute(b"DELETE FROM poll_claims WHERE account_id = %s", (account_id,))
            row = self.conn.execute(
                (_USAGE + " WHERE account_id = %s").encode(), (account_id,)
            ).fetchone()
        assert row is not None
        return _record(row)

    def bench(
        self, account_id: str, until: float, *, kind: str, reason: str, now: float | None = None
    ) -> None:
        with pg.errors(self.pool.where), self.conn.transaction():
            t = _now(self.pool, now)
            self.conn.execute(
                b"INSERT INTO benches (account_id, until, kind, reason, set_at, host_id) "
                b"VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (account_id) DO UPDATE SET "
                b"until = excluded.until, kind = excluded.kind, reason = excluded.reason, "
                b"set_at = excluded.set_at, host_id = excluded.host_id",
                (account_id, until, kind, reason, t, self.pool.host_id),
            )

    def unbench(self, account_id: str) -> None:
        with pg.errors(self.pool.where):
            self.conn.execute(b"DELETE FROM benches WHERE account_id = %s", (account_id,))

    def benches(self, now: float | None = None) -> dict[str, Bench]:
        """Benches still in force, whichever machine set them."""
        with pg.errors(self.pool.where):
            t = _now(self.pool, now)
            rows = self.conn.execute(
                b"SELECT account_id, until, kind, reason, set_at FROM benches WHERE until > %s",
                (t,),
            ).fetchall()
        return {r[0]: Bench(*r) for r in rows}
