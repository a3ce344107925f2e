"""Opening the pool: connect, check the schema, check the key, say this machine is alive."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from acct.base.errors import PoolError
from acct.base.paths import Paths
from acct.services.pool import connect as pg
from acct.services.pool import crypto, schema, settings

if TYPE_CHECKING:
    from acct.services.pool.connect import Conn


@dataclass
class Pool:
    """One open connection to the pool, with its key and this machine's id."""

    conn: Conn
    key: crypto.PoolKey
    host_id: str
    where: str  # host:port/dbname, for messages

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class InitResult:
    where: str
    schema_before: int
    schema_now: int
    key_path: str
    key_created: bool
    key_id: str


def _settings(env: Mapping[str, str], paths: Paths) -> settings.PoolSettings:
    found = settings.configured(env, paths)
    if found is None:
        raise PoolError(
            "no pool is configured", hint='set ACCT_POOL or pool = "..." in config.toml'
        )
    return found


def touch(conn: Conn, host_id: str, where: str, *, rejoin: bool = False) -> None:
    """This machine was in contact with the pool now. A machine that left the pool stays out
    (PoolError) until ``rejoin`` (``acct pool join``/``init``) brings it back. One statement
    (atomic on its own, one round trip: every command opens the pool)."""
    touched = conn.execute(
        "INSERT INTO machines (host_id, hostname) VALUES (%s, %s) ON CONFLICT (host_id) "
        "DO UPDATE SET last_contact = now(), hostname = excluded.hostname, left_at = NULL "
        "WHERE machines.left_at IS NULL OR %s RETURNING 1",
        (host_id, socket.gethostname(), rejoin),
    ).fetchone()
    if touched is None:
        _refuse_left(conn, host_id, where)


def _refuse_left(conn: Conn, host_id: str, where: str) -> None:
    row = conn.execute(
        "SELECT to_char(left_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM machines "
        "WHERE host_id = %s",
        (host_id,),
    ).fetchone()
    at = f" at {row[0]} UTC" if row and row[0] else ""
    raise PoolError(
        f"this machine left the pool {where}{at}; run `acct pool join` to use it again, "
        "or unset ACCT_POOL"
    )


def _meta(conn: Conn) -> tuple[str, bytes] | None:
    row = conn.execute("SELECT key_id, key_check FROM pool_meta").fetchone()
    return (str(row[0]), bytes(row[1])) if row else None


def open_pool(env: Mapping[str, str], paths: Paths, *, rejoin: bool = False) -> Pool:
    """The configured pool, ready for use; PoolUnreachable, PoolError or PoolKeyError if not
    (PoolError too when this machine left the pool, unless ``rejoin``)."""
    cfg = _settings(env, paths)
    host = settings.host_id(env, paths)
    where = pg.describe(cfg.conninfo, cfg.source)
    conn = pg.connect(cfg.conninfo, cfg.source)
    try:
        with pg.errors(where):
            schema.require(conn)
            meta = _meta(conn)
        if meta is None:
            raise PoolError(f"pool {where} has no key yet", hint="run `acct pool init` once")
        key = crypto.load_key(cfg.key_path)
        key.verify(meta[1], meta[0])
        with pg.errors(where):
            touch(conn, host, where, rejoin=rejoin)
    except BaseException:
        conn.close()
        raise
    return Pool(conn, key, host, where)


def init_pool(env: Mapping[str, str], paths: Paths) -> InitResult:
    """Create or upgrade the pool's schema, and its key when neither the pool nor this machine
    has one. A pool that has a key accepts only that key."""
    cfg = _settings(env, paths)
    host = settings.host_id(env, paths)
    where = pg.describe(cfg.conninfo, cfg.source)
    with pg.connect(cfg.conninfo, cfg.source) as conn, pg.errors(where):
        before, now = schema.migrate(conn)
        meta = _meta(conn)
        created = False
        if meta is None:
            key, created = crypto.load_or_create_key(cfg.key_path)
            _store_key_check(conn, key)
            meta = _meta(conn)
        else:
            key = crypto.load_key(cfg.key_path)
        assert meta is not None
        key.verify(meta[1], meta[0])
        touch(conn, host, where, rejoin=True)
    return InitResult(where, before, now, str(cfg.key_path), created, key.key_id)


def _store_key_check(conn: Conn, key: crypto.PoolKey) -> None:
    """The first machine's key becomes the pool's (a concurrent init keeps the first one)."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO pool_meta (key_id, key_check) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (key.key_id, key.check_value()),
        )
