"""What the pool took back from a silent machine, as that machine learns of it.

``acct pool reclaim HOST`` (``custody.reclaim``) writes one row per lineage it took. The machine,
at its next contact, finds the rows that name it and that it has not settled yet: it stops
using each lineage (acct never takes it back from the file: a copy there is not the live one any
more) and says so; a row is settled once the file no longer holds that lineage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acct.services.pool.core import Pool


@dataclass(frozen=True)
class Lost:
    """One lineage the pool took back from this machine."""

    id: int
    account_id: str
    account: str  # its name in the pool
    target: str
    path: str
    lineage: str
    pushed_lineage: str | None
    took_pushed: bool
    at: float

    def copies(self) -> tuple[str, ...]:
        """The lineages this machine's file may still hold of it."""
        return (self.lineage,) + ((self.pushed_lineage,) if self.pushed_lineage else ())


def pending(pool: Pool) -> list[Lost]:
    """The lineages the pool took back from this machine that it has not settled yet."""
    found = pool.conn.execute(
        b"SELECT r.id, r.account_id, a.name, r.target, r.path, r.lineage, r.pushed_lineage, "
        b"r.took_pushed, "
        b"extract(epoch FROM r.at)::float8 FROM reclaims r JOIN accounts a ON a.id = r.account_id "
        b"WHERE r.host_id = %s AND r.noticed_at IS NULL ORDER BY r.id",
        (pool.host_id,),
    ).fetchall()
    return [
        Lost(
            int(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            str(r[4]),
            str(r[5]),
            None if r[6] is None else str(r[6]),
            bool(r[7]),
            float(r[8]),
        )
        for r in found
    ]


def settled(pool: Pool, lost: Lost) -> None:
    with pool.conn.transaction():
        pool.conn.execute(b"UPDATE reclaims SET noticed_at = now() WHERE id = %s", (lost.id,))


def was_reclaimed(pool: Pool, account_id: str, lineage: str) -> bool:
    """Whether the pool took this lineage back from this machine (it must never take it from
    its file again)."""
    row = pool.conn.execute(
        b"SELECT 1 FROM reclaims WHERE host_id = %s AND account_id = %s "
        b"AND (lineage = %s OR pushed_lineage = %s)",
        (pool.host_id, account_id, lineage, lineage),
    ).fetchone()
    return row is not None
