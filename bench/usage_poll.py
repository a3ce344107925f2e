"""Benchmark: `acct list --usage` over 20 accounts must take about as long as over one.

The fake Anthropic server answers usage after 300 ms, and so does the fake ChatGPT server
(wham/usage). Polling 20 accounts one after the other would take 20 times that; polled
concurrently, the whole poll costs about one request. Two rows: 20 Claude accounts, and a mixed
store of 10 ChatGPT and 10 Claude accounts (both servers polled in the same run). Each run
starts with an empty usage cache. Prints the medians and their ratios to one account; exits 1
if a ratio is above 1.5.

    .venv/bin/python bench/usage_poll.py [--reps 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from acct.services.context import Ctx
from tests.conftest import clean_env, seed_account, seed_chatgpt
from tests.fake_anthropic.client import FakeAnthropic
from tests.fake_chatgpt.client import FakeChatGPT

LATENCY_MS = 300
MAX_RATIO = 1.5


def make_home(
    fake: FakeAnthropic, gpt: FakeChatGPT, root: Path, n: int, chatgpt: int = 0
) -> dict[str, str]:
    """A HOME and ACCT_HOME holding ``n`` Claude accounts minted on the fake Anthropic server
    and ``chatgpt`` ChatGPT accounts minted on the fake ChatGPT server."""
    home = root / f"home-{n}-{chatgpt}"
    home.mkdir()
    env = clean_env(home, {**fake.env(), **gpt.env(), "ACCT_HOME": str(home / "acct")})
    ctx = Ctx(env=env)
    for i in range(n):
        seed_account(fake, ctx, f"acct{i:02d}", five_hour=float(i), seven_day=float(2 * i))
    for i in range(chatgpt):
        acc = seed_chatgpt(gpt, ctx, f"gpt{i:02d}")
        gpt.set_usage(str(acc.org_uuid), primary=float(i), secondary=float(2 * i))
    return env


def timed_list(env: dict[str, str]) -> float:
    shutil.rmtree(Path(env["ACCT_HOME"]) / "state", ignore_errors=True)  # a cold usage cache
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "acct", "list", "--usage"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or "%" not in proc.stdout:
        sys.exit(f"acct list --usage failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=20)
    args = parser.parse_args()
    half = args.accounts // 2
    with (
        FakeAnthropic() as fake,
        FakeChatGPT() as gpt,
        tempfile.TemporaryDirectory() as tmp,
    ):
        fake.configure(usage_latency_ms=LATENCY_MS, usage_limit=1_000_000)
        gpt.configure(usage_delay_ms=LATENCY_MS, usage_limit=1_000_000)
        one = make_home(fake, gpt, Path(tmp), 1)
        many = make_home(fake, gpt, Path(tmp), args.accounts)
        mixed = make_home(fake, gpt, Path(tmp), args.accounts - half, chatgpt=half)
        timed_list(one)  # warm the interpreter's file caches
        t_one = statistics.median(timed_list(one) for _ in range(args.reps))
        t_many = statistics.median(timed_list(many) for _ in range(args.reps))
        t_mixed = statistics.median(timed_list(mixed) for _ in range(args.reps))
        polled = fake.stats().get("usage", 0)
        polled_gpt = len(gpt.log("usage"))
    ratio, ratio_mixed = t_many / t_one, t_mixed / t_one
    print(
        f"usage latency {LATENCY_MS} ms, {args.reps} runs each, median wall time of `acct list --usage`:"
    )
    print(f"  1 account:                       {t_one:.3f} s")
    print(f"  {args.accounts} Claude accounts:              {t_many:.3f} s  ratio {ratio:.2f}")
    print(
        f"  {half} ChatGPT + {args.accounts - half} Claude accounts:  {t_mixed:.3f} s  "
        f"ratio {ratio_mixed:.2f}"
    )
    print(f"  limit {MAX_RATIO}; {polled} Anthropic and {polled_gpt} ChatGPT usage requests in all")
    return 0 if max(ratio, ratio_mixed) <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
