"""Benchmark of the usage proxy (acct.services.proxy): what it adds to each Messages request.

1. Median and 95th-percentile latency of ``POST /v1/messages`` direct and through the proxy (one
   kept-alive client each, as the tools hold one), for a plain and a streamed (SSE) answer:
   against the fake Anthropic server, and against a minimal upstream without Nagle delays (the
   fake's own answers wait about 40 ms for delayed ACKs, which would hide a small overhead).
   Target: the proxy adds at most 5 ms at the median.
2. Time to first byte of a streamed answer, direct and proxied.
3. The cost of starting and stopping the proxy (``Watch``), which ``acct exec`` pays once.
4. Added latency at 1, 8 and 32 parallel streams (each its own kept-alive client, streamed
   answers from the minimal upstream): median per request, proxied minus direct.
5. Cancellation: from the client hanging up to the upstream connection closing, before the
   answer's headers and during a silence in a stream. Target: 1 s.
6. In-flight failover: from the moment the proxy has the quota refusal's headers to the first
   byte of the answer re-sent on the next account, through a real session (store, state,
   policy) in a temporary HOME. Target: 150 ms plus one upstream round trip.

Usage: ``.venv/bin/python bench/proxy.py [--runs N]``. Prints the figures with their targets;
exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from acct.services import custody
from acct.services.context import Ctx
from acct.services.proxy import Plan, Proxy, Watch
from acct.services.targets import get_target
from tests.conftest import clean_env, seed_account
from tests.fake_anthropic.client import FakeAnthropic

OVERHEAD_TARGET_MS = 5.0
PARALLEL_TARGET_MS = {1: 5.0, 8: 15.0, 32: 50.0}  # added per request at N parallel streams
FAILOVER_TARGET_MS = 150.0  # plus one upstream round trip
CANCEL_TARGET_MS = 1000.0
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def timings(
    client: httpx.Client, url: str, headers: dict[str, str], stream: bool, runs: int
) -> tuple[list[float], list[float]]:
    """Total and first-byte times in ms of ``runs`` requests."""
    total, first = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        with client.stream("POST", url, json={**BODY, "stream": stream}, headers=headers) as r:
            chunks = r.iter_raw()
            next(chunks)
            t1 = time.perf_counter()
            for _ in chunks:
                pass
        if r.status_code != 200:
            raise SystemExit(f"request failed: {r.status_code}")
        total.append((time.perf_counter() - t0) * 1000)
        first.append((t1 - t0) * 1000)
    return total, first


class Minimal(BaseHTTPRequestHandler):
    """Answers every POST at once, with unified headers, as one write (SSE when asked)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        stream = b'"stream": true' in raw or b'"stream":true' in raw
        body = (
            b"".join(b'event: e\ndata: {"i": %d}\n\n' % i for i in range(12))
            if stream
            else b'{"type":"message","content":[{"type":"text","text":"hi"}]}'
        )
        head = (
            "HTTP/1.1 200 OK\r\n"
            f"Content-Type: {'text/event-stream' if stream else 'application/json'}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "anthropic-ratelimit-unified-status: allowed\r\n"
            "anthropic-ratelimit-unified-5h-utilization: 0.37\r\n"
            "anthropic-ratelimit-unified-7d-utilization: 0.12\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)


class Backlogged(ThreadingHTTPServer):
    """The minimal upstream with a backlog for 32 streams at once (http.server's is 5)."""

    request_queue_size = 1024


def compare(label: str, upstream: str, headers: dict[str, str], runs: int) -> bool:
    """Print direct vs proxied figures; whether the overhead stays within the target."""
    ok = True
    path = "/v1/messages?beta=true"
    with Proxy(upstream, lambda obs: None) as proxy:
        for stream in (False, True):
            with httpx.Client(timeout=30) as direct_c, httpx.Client(timeout=30) as proxied_c:
                timings(direct_c, upstream + path, headers, stream, 20)  # warm up
                timings(proxied_c, proxy.url + path, headers, stream, 20)
                direct, d_first = timings(direct_c, upstream + path, headers, stream, runs)
                proxied, p_first = timings(proxied_c, proxy.url + path, headers, stream, runs)
            added = statistics.median(proxied) - statistics.median(direct)
            kind = "stream" if stream else "plain "
            print(
                f"{label} {kind}: direct median {statistics.median(direct):.2f} ms "
                f"(p95 {p95(direct):.2f}), proxied median {statistics.median(proxied):.2f} ms "
                f"(p95 {p95(proxied):.2f}); added {added:.2f} ms "
                f"(target <= {OVERHEAD_TARGET_MS:.0f} ms)"
            )
            if stream:
                print(
                    f"{label} stream: first byte direct {statistics.median(d_first):.2f} ms, "
                    f"proxied {statistics.median(p_first):.2f} ms"
                )
            ok = ok and added <= OVERHEAD_TARGET_MS
    return ok


def parallel(upstream: str, headers: dict[str, str], runs: int) -> bool:
    """Added latency per streamed request at 1, 8 and 32 parallel streams."""
    ok = True
    path = "/v1/messages?beta=true"
    with Proxy(upstream, lambda obs: None) as proxy:
        for n in (1, 8, 32):
            direct = _streams(upstream + path, headers, n, runs)
            proxied = _streams(proxy.url + path, headers, n, runs)
            added = statistics.median(proxied) - statistics.median(direct)
            target = PARALLEL_TARGET_MS[n]
            print(
                f"{n:>2} parallel streams: direct median {statistics.median(direct):.2f} ms, "
                f"proxied {statistics.median(proxied):.2f} ms (p95 {p95(proxied):.2f}); "
                f"added {added:.2f} ms (target <= {target:.0f} ms)"
            )
            ok = ok and added <= target
    return ok


def _streams(url: str, headers: dict[str, str], n: int, runs: int) -> list[float]:
    """Per-request times (ms) of ``n`` clients streaming ``runs`` requests each at once."""
    out: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def one() -> None:
        with httpx.Client(timeout=60) as client:
            timings(client, url, headers, True, 5)  # warm up
            start.wait()
            total, _ = timings(client, url, headers, True, runs)
        with lock:
            out.extend(total)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def cancellation(runs: int) -> bool:
    """Client gone -> upstream connection closed, before headers and during a silence."""
    import socket

    from tests.test_proxy_hardening import RawUpstream

    ok = True
    for path in ("/hang", "/silence"):
        gaps = []
        for _ in range(runs):
            up = RawUpstream()
            with Proxy(up.url, lambda obs: None, env={}) as proxy:
                port = int(proxy.url.rsplit(":", 1)[1])
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(
                    b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" % path.encode()
                )
                up.waiting.wait(30)
                time.sleep(0.3)  # the answer's first event, if any, has gone out
                t0 = time.perf_counter()
                sock.close()
                up.closed.wait(30)
                gaps.append((time.perf_counter() - t0) * 1000)
            up.stop()
        where = "before the headers" if path == "/hang" else "during a silence"
        worst = max(gaps)
        print(
            f"cancellation {where}: median {statistics.median(gaps):.0f} ms, worst {worst:.0f} ms "
            f"(target <= {CANCEL_TARGET_MS:.0f} ms)"
        )
        ok = ok and worst <= CANCEL_TARGET_MS
    return ok


def failover(fake: FakeAnthropic, runs: int) -> bool:
    """Refusal seen -> first byte of the re-sent answer, in a real session's proxy."""
    with tempfile.TemporaryDirectory() as home:
        env = clean_env(Path(home), fake.env())
        ctx = Ctx(env=env)
        a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
        b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
        fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
        custody.lend(ctx, a.id, "claude-code", env, move=False)
        here = ("claude-code", custody.holder_path(get_target("claude-code").path(env)))
        plan = Plan("claude-code", here, env, "headroom")
        watch = Watch({**env, "ANTHROPIC_BASE_URL": fake.base_url}, plan=plan).start()
        assert watch.failover is not None
        seen: list[float] = []
        after = watch.failover.after

        def timed(obs, sent):  # type: ignore[no-untyped-def]
            if obs is not None and obs.quota is not None:
                seen.append(time.perf_counter())
            return after(obs, sent)

        watch.failover.after = timed  # type: ignore[method-assign]
        access = ctx.store.read().get("a").tokens.access
        headers = {
            "authorization": f"Bearer {access}",
            "anthropic-beta": "oauth-2025-04-20",
            "anthropic-version": "2023-06-01",
        }
        b_headers = {**headers, "authorization": f"Bearer {b.tokens.access}"}
        gaps, rtts = [], []
        try:
            with httpx.Client(timeout=60) as client:
                url = watch.url + "/v1/messages?beta=true"
                for _ in range(runs):
                    ctx.state.unbench(a.id)
                    ctx.state.close()
                    watch.begin(ctx.store.read().get("a"))
                    watch.failover.switches.clear()  # each run a session's first switch
                    seen.clear()
                    with client.stream(
                        "POST", url, json={**BODY, "stream": True}, headers=headers
                    ) as r:
                        chunks = r.iter_raw()
                        next(chunks)
                        first = time.perf_counter()
                        for _ in chunks:
                            pass
                    if r.status_code != 200 or not seen:
                        raise SystemExit(f"failover did not happen: {r.status_code}")
                    gaps.append((first - seen[0]) * 1000)
                    _, d_first = timings(
                        client, fake.base_url + "/v1/messages?beta=true", b_headers, True, 1
                    )
                    rtts.append(d_first[0])
        finally:
            watch.stop()
    rtt = statistics.median(rtts)
    gap = statistics.median(gaps)
    target = FAILOVER_TARGET_MS + rtt
    print(
        f"in-flight failover (refusal seen -> first byte on b): median {gap:.1f} ms, "
        f"p95 {p95(gaps):.1f} ms; one upstream round trip {rtt:.1f} ms "
        f"(target <= {FAILOVER_TARGET_MS:.0f} ms + {rtt:.1f} ms = {target:.1f} ms)"
    )
    return gap <= target


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.95) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    minimal = Backlogged(("127.0.0.1", 0), Minimal)
    minimal.daemon_threads = True
    threading.Thread(target=minimal.serve_forever, daemon=True).start()
    with FakeAnthropic() as fake:
        acc = fake.add_account(email="bench@example.com")
        access = fake.mint(acc["uuid"])["access_token"]
        headers = {
            "authorization": f"Bearer {access}",
            "anthropic-beta": "oauth-2025-04-20",
            "anthropic-version": "2023-06-01",
        }
        ok = compare("fake   ", fake.base_url, headers, args.runs)
        upstream = f"http://127.0.0.1:{minimal.server_address[1]}"
        ok = compare("minimal", upstream, headers, args.runs) and ok
        ok = parallel(upstream, headers, max(10, args.runs // 10)) and ok
        ok = cancellation(5) and ok
        ok = failover(fake, 20) and ok
        with tempfile.TemporaryDirectory() as home:
            env = {**clean_env(Path(home), fake.env()), "ANTHROPIC_BASE_URL": fake.base_url}
            costs = []
            for _ in range(20):
                t0 = time.perf_counter()
                Watch(env).start().stop()
                costs.append((time.perf_counter() - t0) * 1000)
            print(f"start+stop of the proxy: median {statistics.median(costs):.2f} ms")
    minimal.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
