"""The pool's schema, as numbered migrations applied in order.

``acct_schema`` lists the versions applied. A newer acct applies the ones it has that the pool
lacks (one transaction, under an advisory lock, so two machines upgrading at once apply each
migration once); an older acct, finding a version it does not know, refuses and names both.

Secrets (``*_sealed`` columns) are AES-GCM ciphertext bound to their row (see ``crypto``).
Lineages are named by fingerprint (sha256[:8] of the refresh token, as everywhere in acct):
``accounts.lineage`` is the current link, the compare-and-swap key of every token write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acct import __version__
from acct.base.errors import PoolError

if TYPE_CHECKING:
    from acct.services.pool.connect import Conn

_LOCK_ID = 0x61636374  # "acct": the advisory lock migrations take

_V1 = """
CREATE TABLE pool_meta (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key_id       text NOT NULL,
    key_check    bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE machines (
    host_id      text PRIMARY KEY,
    hostname     text,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_contact timestamptz NOT NULL DEFAULT now(),
    reclaimed_at timestamptz,
    left_at      timestamptz
);
CREATE TABLE accounts (
    id              text PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    kind            text NOT NULL CHECK (kind IN ('oauth', 'api_key')),
    uuid            text,
    org_uuid        text,
    email           text,
    display_name    text,
    org_name        text,
    plan            text,
    tier            text,
    enabled         boolean NOT NULL DEFAULT true,
    needs_login     boolean NOT NULL DEFAULT false,
    added_at        bigint NOT NULL,
    last_used_at    bigint NOT NULL DEFAULT 0,
    access_sealed   bytea,
    refresh_sealed  bytea,
    api_key_sealed  bytea,
    extra_sealed    bytea,
    expires_at      bigint,
    scopes          text[] NOT NULL DEFAULT '{}',
    obtained_at     bigint,
    lineage         text,
    generation      bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- One account per (account uuid, organization); API keys have no uuid and are not deduplicated.
CREATE UNIQUE INDEX accounts_identity ON accounts (uuid, coalesce(org_uuid, ''))
    WHERE uuid IS NOT NULL;
CREATE TABLE custody (
    account_id      text PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    host_id         text NOT NULL REFERENCES machines (host_id),
    target          text NOT NULL,
    path            text NOT NULL,
    lineage         text NOT NULL,
    since           timestamptz NOT NULL DEFAULT now(),
    pushed_access_sealed  bytea,
    pushed_refresh_sealed bytea,
    pushed_expires_at     bigint,
    pushed_lineage        text,
    pushed_at             timestamptz
);
CREATE INDEX custody_by_host ON custody (host_id);
CREATE TABLE usage (
    account_id    text PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    usage_json    jsonb,
    fetched_at    double precision,
    attempted_at  double precision,
    error         text,
    error_message text,
    backoff_until double precision,
    failures      integer NOT NULL DEFAULT 0
);
CREATE TABLE poll_claims (
    account_id  text PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    host_id     text NOT NULL,
    claimed_at  double precision NOT NULL,
    until       double precision NOT NULL
);
CREATE TABLE benches (
    account_id  text PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    until       double precision NOT NULL,
    kind        text NOT NULL,
    reason      text NOT NULL,
    set_at      double precision NOT NULL,
    host_id     text
);
CREATE TABLE sessions (
    id           text PRIMARY KEY,
    host_id      text NOT NULL REFERENCES machines (host_id),
    pid          integer NOT NULL,
    target       text NOT NULL,
    path         text NOT NULL,
    account_id   text REFERENCES accounts (id) ON DELETE SET NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL
);
CREATE INDEX sessions_by_host ON sessions (host_id);
CREATE TABLE history (
    id          bigserial PRIMARY KEY,
    t           double precision NOT NULL,
    host_id     text,
    event       text NOT NULL,
    account_id  text,
    target      text,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX history_by_time ON history (t);
"""

# What the pool took back from a machine that went silent (``acct pool reclaim``): the machine
# learns of it at its next contact, and never takes that lineage back from its file.
_V2 = """
CREATE TABLE reclaims (
    id          bigserial PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    host_id     text NOT NULL,
    target      text NOT NULL,
    path        text NOT NULL,
    lineage     text NOT NULL,            -- what this machine was lent
    pushed_lineage text,                  -- what it last pushed (a later link of it)
    took_pushed boolean NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    noticed_at  timestamptz
);
CREATE INDEX reclaims_by_host ON reclaims (host_id);
"""

# A refresh in flight (``custody.mark_refresh``, from the pool's store): committed as the refresh
# request goes on the wire, cleared in the commit that stores the answer. A mark whose refresher
# is gone (the advisory lock its session held is free) means the token may be spent: nothing
# presents it again.
_V3 = """
ALTER TABLE accounts
    ADD COLUMN refreshing_by      text,         -- host_id of the machine sending
    ADD COLUMN refreshing_pid     integer,      -- its backend's pg_backend_pid()
    ADD COLUMN refreshing_since   timestamptz,
    ADD COLUMN refreshing_lineage text;         -- the lineage whose refresh token was sent
"""

# Which refresh left a mark: a nonce of the refresh, also in its courier's journal, so the machine
# that left it can tell its own mark (or a cut-off of it) from an earlier refresh's of the lineage.
_V4 = """
ALTER TABLE accounts ADD COLUMN refreshing_nonce text;
"""

MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1), (2, _V2), (3, _V3), (4, _V4))
LATEST = MIGRATIONS[-1][0]


class SchemaTooNew(PoolError):
    code = "pool_schema"


def version(conn: Conn) -> int:
    """The newest migration applied to the pool; 0 for a database acct never set up."""
    row = conn.execute("SELECT to_regclass('acct_schema') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    got = conn.execute("SELECT coalesce(max(version), 0) FROM acct_schema").fetchone()
    return int(got[0]) if got else 0


def _refuse_newer(current: int, known: int) -> None:
    if current > known:
        raise SchemaTooNew(
            f"the pool's schema is version {current}, newer than this acct {__version__} knows "
            f"(version {known})",
            hint="upgrade acct on this machine",
        )


def migrate(conn: Conn, migrations: tuple[tuple[int, str], ...] = MIGRATIONS) -> tuple[int, int]:
    """Apply the migrations the pool lacks, in one transaction. Returns (before, after)."""
    known = migrations[-1][0]
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS acct_schema (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now(), by_acct text NOT NULL)"
        )
        before = version(conn)
        _refuse_newer(before, known)
        for number, sql in migrations:
            if number > before:
                conn.execute(sql.encode())
                conn.execute(
                    "INSERT INTO acct_schema (version, by_acct) VALUES (%s, %s)",
                    (number, __version__),
                )
    return before, known


def require(conn: Conn, migrations: tuple[tuple[int, str], ...] = MIGRATIONS) -> int:
    """Check the pool before use: set up, and not newer than this acct; upgrade an older one."""
    current = version(conn)
    known = migrations[-1][0]
    _refuse_newer(current, known)
    if current == 0:
        raise PoolError("the pool has no acct schema yet", hint="run `acct pool init` once")
    if current < known:
        migrate(conn, migrations)
    return known
