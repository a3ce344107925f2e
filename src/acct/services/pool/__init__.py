"""The pool: accounts, custody, usage, benches, sessions and history shared by many machines in
one PostgreSQL database (see DESIGN.md section 8).

The pool's invariants are section 2's, pool-wide: one live holder per refresh-token lineage (the
pool, or one file on one machine), one refresher per account at a time (under the account's row
lock, re-reading after taking it), writes that compare-and-swap on the lineage fingerprint.

Modules:
- ``settings``: whether a pool is configured, where its key lives, this machine's id (stdlib only,
  so start-up without a pool pays nothing);
- ``connect``: the one place psycopg is imported; its errors become acct errors;
- ``schema``: versioned migrations;
- ``crypto``: the pool key and AES-GCM sealing of token columns bound to their row;
- ``accounts``: accounts in and out of their rows;
- ``custody``: claim (lend), release, and refresh with its "in flight" mark; push and reclaim;
- ``backend``: the pool behind the local ``Store`` and ``State`` interfaces (``Ctx`` picks it
  when a pool is configured), so every command works on the pool unchanged;
- ``usage``, ``sessions``, ``reclaims``, ``merge``: the usage cache and poll claims, live sessions
  and heartbeats, what a silent machine lost, and a machine's accounts into the pool.

Nothing here is imported unless a pool is configured: ``acct prompt`` and ordinary start-up
never load psycopg or cryptography.
"""
