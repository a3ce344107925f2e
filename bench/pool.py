"""Benchmark: what the pool adds to picking an account and lending it, against the local store.

The call chain ``acct use`` runs, in process: a ``Ctx`` on the environment, the pick (every
account, its usage and benches, ranked) and ``services.custody.lend`` to Claude Code's file in
the HOME (holder recorded, then the file written). Locally that is the account store (TOML
under a file lock) and the state database; with ACCT_POOL set it is one PostgreSQL server on
loopback (started here in a temporary directory, as the tests do): connecting, checking the
schema and the key, reading the accounts (decrypting their tokens), and the store's
transactions under the pool's lock. Prints the medians; exits 1 if the pool adds more than
50 ms at the median, connection included.

Then the pool's usage budget: three machines (separate HOMEs, one pool) poll the usage of the
same accounts from the fake Anthropic server as often as they can for ``--windows`` minimum
ages of ``--min-age`` seconds, each with two processes running ``acct list --usage`` in a loop
(or, while the commands do not use the pool yet, the pool's poll claims called directly). The
fake's request log gives the usage requests per account per window; target: 1. Exits 1 above.

    .venv/bin/python bench/pool.py [--reps 50] [--accounts 8] [--min-age 10] [--windows 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from acct.base.models import Account  # noqa: E402
from acct.domain.pick import pick  # noqa: E402
from acct.services import custody  # noqa: E402
from acct.services.context import Ctx  # noqa: E402
from acct.services.pool import accounts, core  # noqa: E402
from acct.services.targets import get_target  # noqa: E402
from tests.conftest import clean_env  # noqa: E402
from tests.pool.helpers import add_account, made_up_tokens  # noqa: E402
from tests.pool_server import PgServer, running_server, why_not  # noqa: E402

TARGET_MS = 50.0
TOOL = get_target("claude-code")


def local_env(root: Path, n: int) -> dict[str, str]:
    home = root / "local"
    home.mkdir()
    env = clean_env(home, {"ACCT_HOME": str(home / "acct")})
    ctx = Ctx(env=env)
    with ctx.store.transaction() as accs:
        for i in range(n):
            accs.add(Account(name=f"acct{i}", uuid=f"u{i}", tokens=made_up_tokens()))
    return env


def wired_once(env: dict[str, str], parts: dict[str, list[float]]) -> float:
    """What ``acct use`` runs in process: a context on the environment (the pool's when
    ACCT_POOL is set, connection included), the pick, and ``custody.lend`` to Claude Code's
    file under the HOME. The lineage goes back to the store afterwards (not timed)."""
    start = time.perf_counter()
    ctx = Ctx(env=env)
    now = time.time()
    st = ctx.state
    choice = pick(list(ctx.store.read()), st.all_usage(), st.benches(now), now,
                  ctx.config.policy, last_used=st.last_used(), provider=TOOL.provider)  # fmt: skip
    assert choice.account is not None, choice.reason
    picked = time.perf_counter()
    lent = custody.lend(ctx, choice.account.id, TOOL.name)
    done = time.perf_counter()
    assert not lent.already
    parts["pick"].append(picked - start)
    parts["lend"].append(done - picked)
    custody.reclaim(ctx, choice.account.id)
    st.close()
    return done - start


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def measure(reps: int, once: Callable[[], float]) -> list[float]:
    once()  # warm caches and imports
    return [once() for _ in range(reps)]


def _poll_with_claims(env: dict[str, str], until: float, min_age: float) -> None:
    """One machine's poller through the pool's claims (what ``acct list --usage`` does once it
    uses the pool): claim, ask the fake, store the answer."""
    import httpx

    from acct.services.pool.usage import PoolUsage
    from acct.services.usage import parse_usage

    with core.open_pool(env, Ctx(env=env).paths) as pool:
        usage = PoolUsage(pool)
        while time.monotonic() < until:
            for p in accounts.all_accounts(pool.conn, pool.key):
                if not usage.claim_poll(p.account.id, min_age=min_age, lease=30):
                    continue
                assert p.account.tokens is not None
                got = httpx.get(
                    env["ACCT_API_BASE"] + "/api/oauth/usage",
                    headers={"authorization": f"Bearer {p.account.tokens.access}",
                             "anthropic-beta": "oauth-2025-04-20"},
                    timeout=10,
                )  # fmt: skip
                usage.put_usage(p.account.id, parse_usage(got.json()))
            time.sleep(0.05)


def _poll_with_acct(env: dict[str, str], until: float) -> None:
    import subprocess

    while time.monotonic() < until:
        subprocess.run([sys.executable, "-m", "acct", "list", "--usage", "--json"], env=env,
                       cwd=env["HOME"], capture_output=True, timeout=120, check=False)  # fmt: skip


def budget(pg: PgServer, root: Path, n_accounts: int, min_age: float, windows: int) -> int:
    """Usage requests per account per window with three machines polling at once."""
    import subprocess
    import threading

    from tests.fake_anthropic.client import FakeAnthropic
    from tests.pool.trials import most_in_a_window, usage_requests

    with FakeAnthropic() as fake:
        conninfo = pg.conninfo(pg.create_database())
        envs = []
        for host in ("laptop", "desk", "ci"):
            home = root / f"budget-{host}"
            (home / "acct" / "config").mkdir(parents=True)
            (home / "acct" / "config" / "config.toml").write_text(f"usage_min_age = {min_age}\n")
            envs.append(clean_env(home, {**fake.env(), "ACCT_HOME": str(home / "acct"),
                                         "ACCT_HOST_ID": host, "ACCT_POOL": conninfo,
                                         "PGPASSWORD": pg.password}))  # fmt: skip
        key = core.init_pool(envs[0], Ctx(env=envs[0]).paths).key_path
        for env in envs[1:]:
            env["ACCT_POOL_KEY"] = key
        from tests.pool.trials import PoolMachine, seed_pool

        seed_pool(PoolMachine("laptop", envs[0]), fake, [f"acct{i}" for i in range(n_accounts)])
        listed = subprocess.run([sys.executable, "-m", "acct", "list", "--json"], env=envs[1],
                                cwd=envs[1]["HOME"], capture_output=True, text=True)  # fmt: skip
        wired = listed.returncode == 0 and '"acct0"' in listed.stdout
        fake.reset_log()
        until = time.monotonic() + min_age * windows
        threads = [
            threading.Thread(target=_poll_with_acct, args=(env, until))
            if wired
            else threading.Thread(target=_poll_with_claims, args=(env, until, min_age))
            for env in envs
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        polls = usage_requests(fake)
    most = max((most_in_a_window(ts, min_age) for ts in polls.values()), default=0)
    total = sum(len(ts) for ts in polls.values())
    how = "acct list --usage" if wired else "the pool's poll claims (commands not on the pool yet)"
    print(f"usage budget: 3 machines x 2 pollers through {how}, {n_accounts} accounts, "
          f"{windows} windows of {min_age:.0f} s")  # fmt: skip
    print(
        f"usage requests: {total} ({total / max(1, n_accounts * windows):.2f} per account per "
        f"window on average), most for one account in one window: {most} (target: 1)"
    )
    return most


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--min-age", type=float, default=10.0)
    parser.add_argument("--windows", type=int, default=3)
    args = parser.parse_args()
    reason = why_not()
    if reason:
        print(f"bench/pool.py: {reason}")
        return 0
    with tempfile.TemporaryDirectory() as tmp, running_server() as pg:
        root = Path(tmp)
        lenv = local_env(root, args.accounts)
        os.environ["PGPASSWORD"] = pg.password  # libpq's own source, as ~/.pgpass would be
        home = root / "pool"
        home.mkdir()
        penv = clean_env(home, {"ACCT_HOME": str(home / "acct"), "ACCT_HOST_ID": "bench",
                                "ACCT_POOL": pg.conninfo(pg.create_database()),
                                "PGPASSWORD": pg.password})  # fmt: skip
        core.init_pool(penv, Ctx(env=penv).paths)
        with core.open_pool(penv, Ctx(env=penv).paths) as pool:
            for i in range(args.accounts):
                add_account(pool, f"acct{i}", made_up_tokens())
        lparts: dict[str, list[float]] = {"pick": [], "lend": []}
        local = measure(args.reps, lambda: wired_once(lenv, lparts))
        parts: dict[str, list[float]] = {"pick": [], "lend": []}
        pooled = measure(args.reps, lambda: wired_once(penv, parts))
        most = budget(pg, root, min(args.accounts, 4), args.min_age, args.windows)
    extra = median_ms(pooled) - median_ms(local)
    print(f"accounts: {args.accounts}, repetitions: {args.reps}")
    print("each: Ctx on the environment -> pick -> custody.lend to claude-code's file")
    print(
        f"local store   pick (Ctx+read+rank)        median {median_ms(lparts['pick'][1:]):7.1f} ms"
    )
    print(
        f"local store   lend                        median {median_ms(lparts['lend'][1:]):7.1f} ms"
    )
    print(f"local store   total                       median {median_ms(local):7.1f} ms")
    print(
        f"pool          pick (connect+read+rank)    median {median_ms(parts['pick'][1:]):7.1f} ms"
    )
    print(
        f"pool          lend                        median {median_ms(parts['lend'][1:]):7.1f} ms"
    )
    print(f"pool          total                       median {median_ms(pooled):7.1f} ms")
    print(f"pool adds {extra:+.1f} ms at the median (target: at most +{TARGET_MS:.0f} ms)")
    return 0 if extra <= TARGET_MS and most <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
