"""Shared state of all acct processes: usage cache, benches (cooldowns), exec history, and the
record of running ``acct exec`` sessions (which one uses which credentials file).

SQLite in WAL mode: many readers and one writer at a time, safe across processes. Every
transaction is short; ``busy_timeout`` makes a writer wait instead of failing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from acct.base.errors import Busy, CorruptFile
from acct.base.fsio import FILE_MODE, FileAccessError, ensure_dir, os_error
from acct.base.inputs import check_regular
from acct.base.models import Usage, UsageRecord, Window
from acct.base.paths import Paths

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    account_id    TEXT PRIMARY KEY,
    usage_json    TEXT,
    fetched_at    REAL,
    attempted_at  REAL,
    error         TEXT,
    error_message TEXT,
    backoff_until REAL,
    failures      INTEGER NOT NULL DEFAULT 0,
    inflight_until REAL
);
CREATE TABLE IF NOT EXISTS bench (
    account_id TEXT PRIMARY KEY,
    until      REAL NOT NULL,
    kind       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    set_at     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    t          REAL NOT NULL,
    event      TEXT NOT NULL,
    account_id TEXT,
    target     TEXT,
    detail     TEXT
);
CREATE TABLE IF NOT EXISTS session (
    id          TEXT PRIMARY KEY,
    pid         INTEGER NOT NULL,
    pid_start   INTEGER,
    child_pid   INTEGER,
    child_start INTEGER,
    target      TEXT NOT NULL,
    path        TEXT NOT NULL,
    isolated    INTEGER NOT NULL,
    account_id  TEXT,
    started_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counter (
    name       TEXT NOT NULL,
    labels     TEXT NOT NULL,
    value      REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (name, labels)
);
CREATE TABLE IF NOT EXISTS answer_usage (
    hour                  INTEGER NOT NULL,
    account_id            TEXT NOT NULL,
    tool                  TEXT NOT NULL,
    session               TEXT NOT NULL,
    model                 TEXT NOT NULL,
    requests              INTEGER NOT NULL,
    input_tokens          INTEGER NOT NULL,
    output_tokens         INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    cache_read_tokens     INTEGER NOT NULL,
    PRIMARY KEY (hour, account_id, tool, session, model)
);
CREATE TABLE IF NOT EXISTS memo (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Poll failures a new login cures (the codes acct.services.usage records for a refused token).
LOGIN_ERRORS = ("auth", "needs_login", "forbidden")


@dataclass(frozen=True)
class SessionRow:
    """A running ``acct exec``: the file its tool reads, and the account lent there."""

    id: str
    pid: int  # acct's process
    pid_start: int | None  # its start time where the system tells (a reused pid differs)
    child_pid: int | None  # the tool's process, once started
    child_start: int | None
    target: str
    path: str  # the credential file, as custody records it
    isolated: bool  # a file of its own, under acct's state directory
    account_id: str | None
    started_at: float


_SESSION_FIELDS = ("child_pid", "child_start", "account_id")


def _session_row(r: tuple[Any, ...]) -> SessionRow:
    sid, pid, pid_start, child_pid, child_start, target, path, isolated, account_id, started = r
    return SessionRow(
        sid,
        pid,
        pid_start,
        child_pid,
        child_start,
        target,
        path,
        bool(isolated),
        account_id,
        started,
    )


@dataclass(frozen=True)
class AnswerRow:
    """Tokens of the answers one account gave one tool's session for one model in one hour."""

    hour: int  # epoch seconds of the hour's start
    account_id: str
    tool: str
    session: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int


HOUR = 3600


@dataclass(frozen=True)
class Bench:
    account_id: str
    until: float
    kind: str  # quota | cooloff | auth
    reason: str
    set_at: float


def usage_to_json(u: Usage) -> str:
    def w(x: Window | None) -> list[float | None] | None:
        return None if x is None else [x.utilization, x.resets_at]

    return json.dumps(
        {
            "five_hour": w(u.five_hour),
            "seven_day": w(u.seven_day),
            "scoped": [list(s) for s in u.scoped],
            "extra_usage_enabled": u.extra_usage_enabled,
            **({"labels": [list(x) for x in u.labels]} if u.labels else {}),
        }
    )


def usage_from_json(text: str) -> Usage:
    d = json.loads(text)

    def w(x: Any) -> Window | None:
        return None if x is None else Window(x[0], x[1])

    return Usage(
        five_hour=w(d.get("five_hour")),
        seven_day=w(d.get("seven_day")),
        scoped=tuple(tuple(s) for s in d.get("scoped", [])),
        extra_usage_enabled=d.get("extra_usage_enabled"),
        labels=tuple((str(x[0]), str(x[1])) for x in d.get("labels", []) if len(x) == 2),
    )


class State:
    def __init__(self, paths: Paths, *, timeout: float = 10.0) -> None:
        self.path = paths.state_db
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            ensure_dir(self.path.parent)
            # SQLite would block forever reading a FIFO put in the database's place.
            check_regular(self.path, what="state database")
            if not self.path.exists():
                # Create 0600 before SQLite opens it.
                try:
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
                except OSError as e:
                    raise os_error("create the state database", self.path, e) from None
            try:
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.OperationalError as e:
                raise FileAccessError(
                    f"cannot open the state database {self.path}: {e}",
                    hint=f"check that {self.path.parent} is a writable directory",
                ) from None
            except sqlite3.DatabaseError as e:
                raise CorruptFile(
                    f"state database {self.path} is unreadable ({e}); besides caches it holds "
                    "the record of running `acct exec` sessions",
                    hint=f"end every `acct exec`, then move {self.path} aside: acct rebuilds it, "
                    "and `acct status` takes back the logins left in sessions' own files",
                ) from None
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise Busy(f"state database {self.path} is busy ({e})") from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    # --- usage cache -------------------------------------------------------------------------

    @staticmethod
    def _row_to_record(row: sqlite3.Row | tuple[Any, ...]) -> UsageRecord:
        (aid, uj, fetched, attempted, err, msg, backoff, failures, _inflight) = row
        return UsageRecord(
            account_id=aid,
            usage=usage_from_json(uj) if uj else None,
            fetched_at=fetched,
            attempted_at=attempted,
            error=err,
            error_message=msg,
            backoff_until=backoff,
            failures=failures or 0,
        )

    def usage(self, account_id: str) -> UsageRecord | None:
        row = (
            self._connect()
            .execute("SELECT * FROM usage WHERE account_id=?", (account_id,))
            .fetchone()
        )
        return self._row_to_record(row) if row else None

    def all_usage(self) -> dict[str, UsageRecord]:
        rows = self._connect().execute("SELECT * FROM usage").fetchall()
        return {r[0]: self._row_to_record(r) for r in rows}

    def claim_poll(
        self, account_id: str, *, min_age: float, lease: float, now: float | None = None
    ) -> bool:
        """Decide atomically whether this process may poll the account's usage now.

        No when the cached values are younger than ``min_age``, while a back-off runs, or while
        another process holds the poll lease. Yes takes the lease for ``lease`` seconds.
        """
        now = time.time() if now is None else now
        with self._tx() as c:
            row = c.execute(
                "SELECT fetched_at, backoff_until, inflight_until FROM usage WHERE account_id=?",
                (account_id,),
            ).fetchone()
            if row:
                fetched, backoff, inflight = row
                if fetched is not None and now - fetched < min_age:
                    return False
                if backoff is not None and now < backoff:
                    return False
                if inflight is not None and now < inflight:
                    return False
                c.execute(
                    "UPDATE usage SET inflight_until=?, attempted_at=? WHERE account_id=?",
                    (now + lease, now, account_id),
                )
            else:
                c.execute(
                    "INSERT INTO usage (account_id, attempted_at, inflight_until) VALUES (?,?,?)",
                    (account_id, now, now + lease),
                )
            return True

    def put_usage(self, account_id: str, usage: Usage, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._tx() as c:
            c.execute(
                """INSERT INTO usage (account_id, usage_json, fetched_at, attempted_at, error,
                       error_message, backoff_until, failures, inflight_until)
                   VALUES (?,?,?,?,NULL,NULL,NULL,0,NULL)
                   ON CONFLICT(account_id) DO UPDATE SET usage_json=excluded.usage_json,
                       fetched_at=excluded.fetched_at, attempted_at=excluded.attempted_at,
                       error=NULL, error_message=NULL, backoff_until=NULL, failures=0,
                       inflight_until=NULL""",
                (account_id, usage_to_json(usage), now, now),
            )

    def put_observed_usage(
        self, account_id: str, usage: Usage, *, now: float | None = None
    ) -> None:
        """Usage read from a tool's own API answers: fresh values, but the usage endpoint's
        back-off stays (its throttle is per account, whatever else answered). An observation
        older than the values cached (a poll that finished meanwhile) changes nothing."""
        now = time.time() if now is None else now
        with self._tx() as c:
            c.execute(
                """INSERT INTO usage (account_id, usage_json, fetched_at, failures) VALUES (?,?,?,0)
                   ON CONFLICT(account_id) DO UPDATE SET usage_json=excluded.usage_json,
                       fetched_at=excluded.fetched_at
                   WHERE usage.fetched_at IS NULL OR usage.fetched_at <= excluded.fetched_at""",
                (account_id, usage_to_json(usage), now),
            )

    def put_usage_error(
        self,
        account_id: str,
        error: str,
        message: str,
        *,
        backoff_until: float | None,
        now: float | None = None,
    ) -> UsageRecord:
        """Record a failed poll; last good values are kept. Returns the updated record."""
        now = time.time() if now is None else now
        with self._tx() as c:
            c.execute(
                """INSERT INTO usage (account_id, attempted_at, error, error_message, backoff_until,
                       failures, inflight_until) VALUES (?,?,?,?,?,1,NULL)
                   ON CONFLICT(account_id) DO UPDATE SET attempted_at=excluded.attempted_at,
                       error=excluded.error, error_message=excluded.error_message,
                       backoff_until=excluded.backoff_until, failures=usage.failures+1,
                       inflight_until=NULL""",
                (account_id, now, error, message, backoff_until),
            )
            row = c.execute("SELECT * FROM usage WHERE account_id=?", (account_id,)).fetchone()
        return self._row_to_record(row)

    def fresh_login(self, account_id: str) -> None:
        """A new login: forget the old lineage's refused polls and a bench for a refused login.

        Usage values, quota benches and other back-offs stay: they describe the account (or the
        endpoint), not its tokens. A 429 back-off in particular is per account, whatever the login.
        """
        codes = ", ".join("?" * len(LOGIN_ERRORS))
        with self._tx() as c:
            c.execute(
                f"""UPDATE usage SET error=NULL, error_message=NULL, backoff_until=NULL,
                       failures=0 WHERE account_id=? AND error IN ({codes})""",
                (account_id, *LOGIN_ERRORS),
            )
            c.execute("DELETE FROM bench WHERE account_id=? AND kind='auth'", (account_id,))

    def release_poll(self, account_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE usage SET inflight_until=NULL WHERE account_id=?", (account_id,))

    def forget(self, account_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM usage WHERE account_id=?", (account_id,))
            c.execute("DELETE FROM bench WHERE account_id=?", (account_id,))

    # --- benches -----------------------------------------------------------------------------

    def bench(
        self, account_id: str, until: float, *, kind: str, reason: str, now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        with self._tx() as c:
            c.execute(
                """INSERT INTO bench (account_id, until, kind, reason, set_at) VALUES (?,?,?,?,?)
                   ON CONFLICT(account_id) DO UPDATE SET until=excluded.until, kind=excluded.kind,
                       reason=excluded.reason, set_at=excluded.set_at""",
                (account_id, until, kind, reason, now),
            )

    def unbench(self, account_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM bench WHERE account_id=?", (account_id,))

    def benches(self, now: float | None = None) -> dict[str, Bench]:
        """Benches still in force at ``now``."""
        now = time.time() if now is None else now
        rows = self._connect().execute("SELECT * FROM bench WHERE until > ?", (now,)).fetchall()
        return {r[0]: Bench(*r) for r in rows}

    # --- exec sessions -----------------------------------------------------------------------

    def add_session(self, make: Callable[[list[SessionRow]], SessionRow]) -> SessionRow:
        """Insert the row ``make`` builds from the rows there now, in one transaction: two
        sessions starting together see each other."""
        with self._tx() as c:
            rows = [_session_row(r) for r in c.execute("SELECT * FROM session")]
            row = make(rows)
            c.execute(
                "INSERT INTO session VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    row.id,
                    row.pid,
                    row.pid_start,
                    row.child_pid,
                    row.child_start,
                    row.target,
                    row.path,
                    int(row.isolated),
                    row.account_id,
                    row.started_at,
                ),
            )
        return row

    def sessions(self) -> list[SessionRow]:
        rows = self._connect().execute("SELECT * FROM session ORDER BY started_at").fetchall()
        return [_session_row(r) for r in rows]

    def update_session(self, session_id: str, **fields: int | str | None) -> None:
        """Set ``child_pid``, ``child_start`` or ``account_id`` of a session."""
        unknown = set(fields) - set(_SESSION_FIELDS)
        if unknown:
            raise ValueError(f"not a session field: {', '.join(sorted(unknown))}")
        if not fields:
            return
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as c:
            c.execute(f"UPDATE session SET {sets} WHERE id=?", (*fields.values(), session_id))

    def remove_session(self, session_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM session WHERE id=?", (session_id,))

    # --- history -----------------------------------------------------------------------------

    def record(
        self, event: str, *, account_id: str | None = None, target: str | None = None, **detail: Any
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO history (t, event, account_id, target, detail) VALUES (?,?,?,?,?)",
                (time.time(), event, account_id, target, json.dumps(detail) if detail else None),
            )

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = (
            self._connect()
            .execute(
                "SELECT t, event, account_id, target, detail FROM history ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            {"t": t, "event": e, "account_id": a, "target": tg, **(json.loads(d) if d else {})}
            for t, e, a, tg, d in rows
        ]

    def last_used(self) -> dict[str, float]:
        rows = (
            self._connect()
            .execute(
                "SELECT account_id, MAX(t) FROM history WHERE event='lend' GROUP BY account_id"
            )
            .fetchall()
        )
        return {a: t for a, t in rows if a}

    def events(self, *names: str, since: float | None = None) -> list[dict[str, Any]]:
        """History rows named ``names`` (oldest first), from ``since`` on."""
        marks = ", ".join("?" * len(names))
        rows = (
            self._connect()
            .execute(
                f"SELECT id, t, event, account_id, target, detail FROM history "
                f"WHERE event IN ({marks}) AND t >= ? ORDER BY id",
                (*names, since if since is not None else 0.0),
            )
            .fetchall()
        )
        return [
            {
                "id": i,
                "t": t,
                "event": e,
                "account_id": a,
                "target": tg,
                **(json.loads(d) if d else {}),
            }
            for i, t, e, a, tg, d in rows
        ]

    # --- counters (metrics) ------------------------------------------------------------------

    def bump(self, name: str, labels: Mapping[str, str], value: float = 1.0) -> None:
        """Add ``value`` to the counter ``name`` with ``labels`` (created at 0)."""
        key = json.dumps(dict(labels), sort_keys=True)
        with self._tx() as c:
            c.execute(
                """INSERT INTO counter (name, labels, value, updated_at) VALUES (?,?,?,?)
                   ON CONFLICT(name, labels) DO UPDATE SET value=counter.value+excluded.value,
                       updated_at=excluded.updated_at""",
                (name, key, value, time.time()),
            )

    def counters(self, name: str) -> list[tuple[dict[str, str], float]]:
        rows = (
            self._connect()
            .execute("SELECT labels, value FROM counter WHERE name=? ORDER BY labels", (name,))
            .fetchall()
        )
        return [(json.loads(labels), value) for labels, value in rows]

    # --- tokens of answers -------------------------------------------------------------------

    def add_answer(
        self,
        *,
        account_id: str,
        tool: str,
        session: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_creation_tokens: int = 0,
        cache_read_tokens: int = 0,
        now: float | None = None,
    ) -> None:
        """Count one answer into its hour's row (rows stay few: one per hour and kind)."""
        now = time.time() if now is None else now
        hour = int(now // HOUR * HOUR)
        with self._tx() as c:
            c.execute(
                """INSERT INTO answer_usage VALUES (?,?,?,?,?,1,?,?,?,?)
                   ON CONFLICT(hour, account_id, tool, session, model) DO UPDATE SET
                       requests=requests+1,
                       input_tokens=input_tokens+excluded.input_tokens,
                       output_tokens=output_tokens+excluded.output_tokens,
                       cache_creation_tokens=cache_creation_tokens+excluded.cache_creation_tokens,
                       cache_read_tokens=cache_read_tokens+excluded.cache_read_tokens""",
                (
                    hour,
                    account_id,
                    tool,
                    session,
                    model,
                    input_tokens,
                    output_tokens,
                    cache_creation_tokens,
                    cache_read_tokens,
                ),
            )

    def answers(self, since: float | None = None) -> list[AnswerRow]:
        """Answer rows of the hours from the one ``since`` falls in."""
        start = 0 if since is None else int(since // HOUR * HOUR)
        rows = (
            self._connect()
            .execute("SELECT * FROM answer_usage WHERE hour >= ? ORDER BY hour", (start,))
            .fetchall()
        )
        return [AnswerRow(*r) for r in rows]

    # --- small memory (alerts) ---------------------------------------------------------------

    def swap_memo(self, key: str, make: Callable[[str | None], str]) -> tuple[str | None, str]:
        """Replace the memo ``key`` by ``make(old)`` in one transaction; returns (old, new).
        Two processes never see the same old value."""
        with self._tx() as c:
            row = c.execute("SELECT value FROM memo WHERE key=?", (key,)).fetchone()
            old = row[0] if row else None
            new = make(old)
            c.execute(
                "INSERT INTO memo (key, value) VALUES (?,?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, new),
            )
        return old, new
