"""acct, started ahead and held at a gate, so that two machines' commands begin at one instant.

    python -m tests.pool.gated_acct GATE ACCT-ARGS...

Imports acct's command line (and the pool's modules) first, then says it is ready by creating
``GATE.ready.<pid>``, waits until the file GATE exists, and runs ``acct ACCT-ARGS...``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main() -> int:
    gate = Path(sys.argv[1])
    import psycopg  # noqa: F401  (imported before the gate, as acct's command line is)

    from acct.cli import run
    from acct.services.pool import core  # noqa: F401

    Path(f"{gate}.ready.{__import__('os').getpid()}").touch()
    deadline = time.monotonic() + 120
    while not gate.exists():
        if time.monotonic() > deadline:
            return 99
        time.sleep(0.0005)
    return run(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
