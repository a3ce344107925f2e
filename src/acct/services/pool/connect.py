"""The one place psycopg is imported and its exceptions become acct's.

The connection string never carries a password: libpq finds it in its own sources
(``PGPASSWORD``, ``~/.pgpass``, a service file), so it never sits in acct's config, argv or
output. Messages name the pool by host, port and database only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from acct.base.errors import Busy, ConfigError, PoolError, PoolUnreachable

if TYPE_CHECKING:
    import psycopg

    Conn = psycopg.Connection[tuple[Any, ...]]

CONNECT_TIMEOUT = 5  # seconds: a pool that does not answer fails a command within a few seconds
LOCK_TIMEOUT = "30s"  # an account's row lock is held across one refresh request at most


def _parse(conninfo: str, source: str) -> dict[str, Any]:
    import psycopg

    try:
        return dict(psycopg.conninfo.conninfo_to_dict(conninfo))
    except psycopg.ProgrammingError:
        raise ConfigError(
            f"{source}: the pool is not a valid libpq connection string or URL"
        ) from None


def describe(conninfo: str, source: str = "ACCT_POOL") -> str:
    """``host:port/dbname`` for messages: never the password, nor options."""
    params = _parse(conninfo, source)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    db = params.get("dbname") or params.get("user") or "postgres"
    if "service" in params and "host" not in params:
        return f"service {params['service']}"
    return f"{host}:{port}/{db}"


def check(conninfo: str, source: str) -> dict[str, Any]:
    params = _parse(conninfo, source)
    if params.get("password"):
        raise ConfigError(
            f"{source}: the pool's connection string carries a password; acct takes it only from "
            "libpq's own sources",
            hint="remove it and put it in ~/.pgpass (0600), a service file or PGPASSWORD",
        )
    return params


def _reason(e: BaseException) -> str:
    """The first line of what libpq or the server said, without libpq's "connection to server
    at ... failed:" preamble (the message names the pool already)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    first = lines[0] if lines else type(e).__name__
    return first.rsplit(" failed: ", 1)[-1]


def connect(conninfo: str, source: str = "ACCT_POOL") -> Conn:
    """A connection to the pool, or PoolUnreachable within about CONNECT_TIMEOUT seconds."""
    import psycopg

    params = check(conninfo, source)
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    params.setdefault("application_name", "acct")
    # A commit acct was told of must survive a crash of the server: a lend recorded and then
    # lost would let another machine lend the same lineage. The server's default may be off.
    params["options"] = f"{params.get('options') or ''} -c synchronous_commit=on".strip()
    try:
        # autocommit: every transaction is an explicit ``conn.transaction()`` block, so none is
        # ever a savepoint inside an implicit one that nobody commits.
        return psycopg.connect(autocommit=True, **params)
    except psycopg.Error as e:
        raise PoolUnreachable(
            f"pool {describe(conninfo, source)} is unreachable: {_reason(e)}",
            hint="check the pool's server and ACCT_POOL (or pool in config.toml)",
        ) from None


@contextlib.contextmanager
def errors(where: str) -> Iterator[None]:
    """psycopg's exceptions as acct's, for the statements of one use of the pool."""
    import psycopg
    from psycopg import errors as pg

    try:
        yield
    except pg.LockNotAvailable:
        raise Busy(
            f"pool {where}: an account's row stayed locked too long", hint="try again"
        ) from None
    except psycopg.OperationalError as e:
        raise PoolUnreachable(f"pool {where}: lost the connection: {_reason(e)}") from None
    except psycopg.Error as e:
        raise PoolError(f"pool {where}: {_reason(e)}") from None
