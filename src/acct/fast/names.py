"""``acct __complete accounts``: account names for the shell completion scripts.

Called on every <Tab>, so it imports the standard library only and reads the account store
with ``tomllib`` directly (names only, no validation). It prints one name per line, nothing on
any problem, and always exits 0: completion must stay quiet.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping

from acct.fast.prompt import dirs, read_small


def account_names(env: Mapping[str, str]) -> list[str]:
    """The local store's names, then those of the pool this machine last read (a machine in a
    pool keeps its accounts there; acct notes their names in the state dir's ``pool-names``)."""
    return list(dict.fromkeys(_local_names(env) + _pool_names(env)))


def _local_names(env: Mapping[str, str]) -> list[str]:
    try:
        text = read_small(os.path.join(dirs(env)[0], "accounts.toml"), 16 << 20)
        doc = tomllib.loads(text)
    except (OSError, ValueError, RecursionError):
        return []
    accounts = doc.get("accounts")
    if not isinstance(accounts, list):
        return []
    return [a["name"] for a in accounts if isinstance(a, dict) and isinstance(a.get("name"), str)]


def _pool_names(env: Mapping[str, str]) -> list[str]:
    try:
        text = read_small(os.path.join(dirs(env)[1], "pool-names"), 1 << 20)
    except (OSError, ValueError):
        return []
    return [n for n in text.splitlines() if n and n.isprintable()]


def main(argv: list[str]) -> int:
    if argv[:1] == ["accounts"]:
        try:
            prefix = argv[1] if len(argv) > 1 else ""
            sys.stdout.write(
                "".join(f"{n}\n" for n in account_names(os.environ) if n.startswith(prefix))
            )
            sys.stdout.flush()
        except Exception:  # noqa: BLE001  (completion must stay quiet)
            pass
    return 0
