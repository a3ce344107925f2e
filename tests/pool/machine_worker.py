"""One machine of a pool as a long-lived process, driven line by line on stdin.

    python -m tests.pool.machine_worker      (ACCT_POOL, ACCT_HOST_ID, ACCT_HOME in the environment)

Commands, one per line; each answers one line on stdout:
- ``claim GATE ACCOUNT_ID``: wait at the gate (a shared advisory lock the test holds until every
  machine waits at it), then try to lend the account to this machine's file. Answers ``won``,
  ``held <code>`` or ``error <code> <message>``.
- ``poll GATE ACCOUNT_ID``: the same gate, then ask for the account's usage poll (minimum age
  180 s, lease 30 s). Answers ``claimed`` or ``no``.
- ``refresh GATE ACCOUNT_ID SEEN TOKEN_URL``: the same gate, then refresh the account as acct
  does, through the token endpoint at TOKEN_URL, if its lineage is still SEEN. Answers ``sent``, ``skipped`` or
  ``error <code> <message>``.
- ``recover 0``: what the start of every acct command does: store the answers of refreshes
  this machine got but did not store. Answers ``recovered NAME,...`` (``-`` for none).
- ``lend GATE ACCOUNT_ID PATH``: lend the account as acct does: record this machine's file at
  PATH as the holder, then write the login there (atomically, 0600). Answers ``won`` or
  ``held <code> <message>``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import psycopg

from acct.base.errors import AcctError
from acct.base.models import Tokens
from acct.base.paths import Paths
from acct.services import providers
from acct.services.context import Ctx
from acct.services.pool import core, custody
from acct.services.pool.usage import PoolUsage


def _gate(gate: psycopg.Connection[tuple[object, ...]], number: int) -> None:
    gate.execute("SELECT pg_advisory_lock_shared(%s)", (number,))
    gate.execute("SELECT pg_advisory_unlock_shared(%s)", (number,))


def _write_login(path: Path, tokens: Tokens) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {"claudeAiOauth": {"accessToken": tokens.access, "refreshToken": tokens.refresh,
                             "expiresAt": tokens.expires_at * 1000}}  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main() -> None:
    env = dict(os.environ)
    pool = core.open_pool(env, Paths.from_env(env))
    gate = psycopg.connect(env["ACCT_POOL"], autocommit=True)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        try:
            if int(words[1]) != 0:  # gate 0: at once (nothing to wait for)
                _gate(gate, int(words[1]))
            if words[0] == "claim":
                custody.claim(pool, words[2], target="claude-code", path="/home/x/.claude/c.json")
                print("won", flush=True)
            elif words[0] == "poll":
                usage = PoolUsage(pool)
                print("claimed" if usage.claim_poll(words[2], min_age=180, lease=30) else "no",
                      flush=True)  # fmt: skip
            elif words[0] == "lend":
                lent = custody.claim(pool, words[2], target="claude-code", path=words[3])
                assert lent.account.tokens is not None
                _write_login(Path(words[3]), lent.account.tokens)
                print("won", flush=True)
            elif words[0] == "refresh":
                # acct's own refresh (as `acct refresh` runs it): its mark, journal and store.
                ctx = Ctx(env={**env, "ACCT_TOKEN_URL": words[4]})
                done = providers.refresh_result(ctx, words[2], seen=words[3], margin=10**9)
                print("sent" if done.sent else "skipped", flush=True)
            elif words[0] == "recover":
                names = providers.recover_refreshes(Ctx(env=env))
                print(f"recovered {','.join(names) or '-'}", flush=True)
        except AcctError as e:
            kind = "held" if e.code == "held" else "error"
            print(f"{kind} {e.code} {e.message}", flush=True)
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
            print(
                f"error {type(e).__name__} {str(e).splitlines()[0] if str(e) else ''}", flush=True
            )


if __name__ == "__main__":
    main()
