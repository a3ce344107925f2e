"""The pool in the Prometheus text exposition format: ``acct metrics``, the textfile, ``/metrics``.

Everything comes from local state (store, usage cache, benches, live sessions, counters and the
answer table); nothing is polled. Names follow the Prometheus guide: one ``acct_`` prefix, base
units (seconds, ratios 0-1, dollars), ``_total`` for counters, ``_timestamp_seconds`` for
times. Accounts are labelled by their NAME (never an email unless the name is one, never a
token). ``prometheus_client`` is imported only here, and only when metrics are asked for.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acct.base.fsio import atomic_write

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from acct.services.context import Ctx

WINDOWS = (("5h", "five_hour"), ("7d", "seven_day"))
STATES = ("ok", "held", "full", "benched", "needs_login", "disabled")
VERDICT_VALUE = {"green": 0, "yellow": 1, "red": 2}
TOKEN_TYPES = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_creation", "cache_creation_tokens"),
    ("cache_read", "cache_read_tokens"),
)
TEXTFILE_MODE = 0o644  # node_exporter runs as another user; the file holds no secret


class _Snapshot:
    """The facts of one scrape, read once."""

    def __init__(self, ctx: Ctx) -> None:
        from acct.app.capacity import live_sessions, pool
        from acct.app.views import current_views
        from acct.domain.capacity import assess

        self.now = time.time()
        accounts = ctx.store.read()
        self.names = {a.id: a.name for a in accounts}
        self.refreshed = {
            a.name: float(a.tokens.obtained_at)
            for a in accounts
            if a.tokens is not None and a.tokens.obtained_at
        }
        self.views = current_views(ctx, accounts, now=self.now)
        self.sessions: Counter[str] = live_sessions(ctx)
        cfg = ctx.config
        self.capacity = assess(
            pool(self.views, self.sessions),
            now=self.now,
            low=cfg.capacity_low,
            min_headroom=cfg.capacity_min_headroom,
        )
        state = ctx.state
        self.polls = state.counters("usage_polls")
        self.refreshes = state.counters("token_refreshes")
        self.rotations = state.counters("rotations")
        self.answers = state.answers()
        from acct.domain.pricing import table

        self.prices = table(cfg.pricing)

    def name(self, account_id: str | None) -> str:
        if not account_id:
            return "-"
        return self.names.get(account_id, f"removed:{account_id}")


def _families(snap: _Snapshot) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    util = GaugeMetricFamily(
        "acct_account_utilization_ratio",
        "Utilization of the account's quota window (0-1, may exceed 1; 0 once it reset).",
        labels=["account", "window"],
    )
    resets = GaugeMetricFamily(
        "acct_account_window_reset_timestamp_seconds",
        "When the account's quota window resets.",
        labels=["account", "window"],
    )
    fetched = GaugeMetricFamily(
        "acct_account_usage_fetched_timestamp_seconds",
        "When the account's usage figures were last read.",
        labels=["account"],
    )
    state = GaugeMetricFamily(
        "acct_account_state",
        "1 for the state the account is in (ok, held, full, benched, needs_login, disabled).",
        labels=["account", "state"],
    )
    benched = GaugeMetricFamily(
        "acct_account_benched", "1 while the account rests after a limit.", labels=["account"]
    )
    needs_login = GaugeMetricFamily(
        "acct_account_needs_login", "1 when the account needs a new login.", labels=["account"]
    )
    bench_until = GaugeMetricFamily(
        "acct_account_bench_until_timestamp_seconds",
        "When the account's bench ends.",
        labels=["account"],
    )
    sessions = GaugeMetricFamily(
        "acct_account_live_sessions",
        "Running acct exec sessions on the account.",
        labels=["account"],
    )
    for v in snap.views:
        for label, attr in WINDOWS:
            w = getattr(v, attr)
            used = v.utilization(w)
            if used is not None:
                util.add_metric([v.name, label], used / 100.0)
            if w is not None and w.resets_at is not None:
                resets.add_metric([v.name, label], w.resets_at)
        if v.fetched_at is not None:
            fetched.add_metric([v.name], v.fetched_at)
        for s in STATES:
            state.add_metric([v.name, s], 1.0 if v.state == s else 0.0)
        benched.add_metric([v.name], 1.0 if v.state == "benched" else 0.0)
        needs_login.add_metric([v.name], 1.0 if v.state == "needs_login" else 0.0)
        if v.bench_until is not None:
            bench_until.add_metric([v.name], v.bench_until)
        sessions.add_metric([v.name], float(snap.sessions.get(v.id, 0)))
    refreshed = GaugeMetricFamily(
        "acct_account_login_refreshed_timestamp_seconds",
        "When acct last got the account's tokens from the token endpoint (login or refresh).",
        labels=["account"],
    )
    for name, at in sorted(snap.refreshed.items()):
        refreshed.add_metric([name], at)
    yield from (util, resets, fetched, state, benched, needs_login, bench_until, sessions)
    yield refreshed
    yield from _pool(snap)
    yield from _counters(snap, CounterMetricFamily)
    yield from _traffic(snap, CounterMetricFamily)


def _pool(snap: _Snapshot) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    c = snap.capacity
    verdict = GaugeMetricFamily(
        "acct_pool_verdict",
        "The pool's capacity verdict: 0 green, 1 yellow, 2 red (as acct capacity).",
    )
    verdict.add_metric([], float(VERDICT_VALUE[c.verdict]))
    headroom = GaugeMetricFamily(
        "acct_pool_headroom_accounts",
        "What is left of the window across usable accounts, in whole accounts' worth.",
        labels=["window"],
    )
    for label, attr in WINDOWS:
        headroom.add_metric([label], c.headroom[attr])
    usable = GaugeMetricFamily("acct_pool_usable_accounts", "Accounts that can run now.")
    usable.add_metric([], float(len(c.usable)))
    yield from (verdict, headroom, usable)
    if c.soonest_reset is not None:
        soonest = GaugeMetricFamily(
            "acct_pool_next_reset_timestamp_seconds",
            "The soonest reset of any window of any enabled account.",
        )
        soonest.add_metric([], c.soonest_reset)
        yield soonest


def _counters(snap: _Snapshot, family: Any) -> Iterator[Any]:
    specs = (
        ("acct_usage_polls", "Polls of the usage endpoint, by result.", snap.polls, "result"),
        ("acct_token_refreshes", "Token refreshes sent, by result.", snap.refreshes, "result"),
        ("acct_rotations", "Switches to another account, by reason.", snap.rotations, "reason"),
    )
    for name, doc, rows, key in specs:
        metric = family(name, doc, labels=["account", key])
        merged: dict[tuple[str, str], float] = {}
        for labels, value in rows:
            where = (snap.name(labels.get("account_id")), labels.get(key, "-"))
            merged[where] = merged.get(where, 0.0) + value
        for (account, value_label), value in sorted(merged.items()):
            metric.add_metric([account, value_label], value)
        yield metric


def _traffic(snap: _Snapshot, family: Any) -> Iterator[Any]:
    tokens = family(
        "acct_tokens",
        "Tokens in answers the usage proxy relayed, by type (input, output, cache_creation, "
        "cache_read).",
        labels=["account", "model", "type"],
    )
    requests = family(
        "acct_requests", "Answers the usage proxy relayed.", labels=["account", "model", "tool"]
    )
    cost = family(
        "acct_estimated_cost_dollars",
        "What the relayed traffic would have cost at API prices (US dollars).",
        labels=["account", "model"],
    )
    by_type: Counter[tuple[str, str, str]] = Counter()
    by_tool: Counter[tuple[str, str, str]] = Counter()
    dollars: dict[tuple[str, str], float] = {}
    for r in snap.answers:
        account = snap.name(r.account_id)
        for label, attr in TOKEN_TYPES:
            by_type[(account, r.model, label)] += getattr(r, attr)
        by_tool[(account, r.model, r.tool)] += r.requests
        price = snap.prices.cost(
            r.model,
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            cache_creation_tokens=r.cache_creation_tokens,
            cache_read_tokens=r.cache_read_tokens,
        )
        dollars[(account, r.model)] = dollars.get((account, r.model), 0.0) + (price or 0.0)
    for key, n in sorted(by_type.items()):
        tokens.add_metric(list(key), float(n))
    for key, n in sorted(by_tool.items()):
        requests.add_metric(list(key), float(n))
    for key2, d in sorted(dollars.items()):
        cost.add_metric(list(key2), d)
    yield from (tokens, requests, cost)


class _Collector:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Any]:
        yield from _families(_Snapshot(self.ctx))


def exposition(ctx: Ctx, *, openmetrics: bool = False) -> bytes:
    """The current state as Prometheus text (or OpenMetrics with ``openmetrics``)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(ctx))
    if openmetrics:
        from prometheus_client.openmetrics.exposition import generate_latest as om

        render: Callable[[Any], bytes] = om  # untyped in some releases
        return bytes(render(registry))
    from prometheus_client import generate_latest

    return bytes(generate_latest(registry))


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_warned: set[str] = set()


def write_textfile(ctx: Ctx) -> bool:
    """Rewrite ``metrics_textfile`` atomically when the config names one; never raises. A
    failure is said once per process on stderr."""
    try:
        path = ctx.config.metrics_textfile
    except Exception:  # noqa: BLE001  (a broken config is reported by the command itself)
        return False
    if not path:
        return False
    try:
        target = Path(path)
        if not target.parent.is_dir():
            # Not made here: a directory acct creates is 0700, unreadable to node_exporter.
            raise FileNotFoundError(f"no directory {target.parent}")
        atomic_write(target, exposition(ctx), mode=TEXTFILE_MODE)
        return True
    except Exception as e:  # noqa: BLE001  (metrics must never fail a command)
        if path not in _warned:
            _warned.add(path)
            reason = getattr(e, "message", None) or str(e) or type(e).__name__
            with contextlib.suppress(OSError):
                sys.stderr.write(f"acct: warning: cannot write metrics_textfile {path}: {reason}\n")
        return False


def serve(make_ctx: Callable[[], Ctx], port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; each scrape reads the state
    afresh with a context of its own (an SQLite connection belongs to its thread)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tool owns the terminal."""

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            ctx = make_ctx()
            try:
                body = exposition(ctx)
            except Exception:  # noqa: BLE001
                self.send_error(500)
                return
            finally:
                with contextlib.suppress(Exception):
                    ctx.state.close()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="acct-metrics", daemon=True).start()
    return server


@contextlib.contextmanager
def serving(ctx: Ctx, port: int | None) -> Iterator[ThreadingHTTPServer | None]:
    """``/metrics`` on 127.0.0.1:``port`` for the duration (nothing when ``port`` is None)."""
    from acct.base.errors import AcctError, UsageError

    if port is None:
        yield None
        return
    if not 0 < port < 65536:
        raise UsageError(f"--metrics-port {port} is not a TCP port (1-65535)")
    from acct.services.context import Ctx as _Ctx

    env = dict(ctx.env)
    try:
        server = serve(lambda: _Ctx(env=env), port)
    except OSError as e:
        raise AcctError(
            f"cannot serve metrics on 127.0.0.1:{port} ({e.strerror or type(e).__name__})"
        ) from None
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
