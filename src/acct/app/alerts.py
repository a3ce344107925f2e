"""Alerts: desktop notifications and webhooks (``notify = [...]`` in the config).

Events: a rotation; an account crossing a utilization in ``notify_utilization``; every account
refused (the pool is red); a login that died (``invalid_grant``, or a tool blanked its file);
a usage endpoint that has refused an account for over an hour. Each is decided from the shared
state after a change, and remembered there (``memo``), so several acct processes say it once.

A notification names accounts by name and never carries a token. Sending never fails or holds
up a command: webhooks are posted from daemon threads with a short timeout, a process waits for
them only briefly when it exits, and a failure is said once on stderr, naming the host alone
(a webhook URL's path is often its secret).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from acct.app.views import AccountView
    from acct.base.config import Notifier
    from acct.services.context import Ctx

WEBHOOK_TIMEOUT = 3.0
EXIT_WAIT = 4.0  # at most this long, in all, for webhooks still in flight when acct exits
USAGE_REFUSED_FOR = 3600.0
_WINDOWS = (("five_hour", "5-hour"), ("seven_day", "7-day"))


@dataclass(frozen=True)
class Alert:
    event: str  # rotation | utilization | all_refused | login_died | usage_refused
    title: str
    message: str
    account: str | None = None
    at: float = field(default_factory=time.time)
    detail: dict[str, Any] = field(default_factory=dict)


# --- deciding ------------------------------------------------------------------------------------


def on_event(ctx: Ctx, what: str, detail: dict[str, Any]) -> None:
    """Called after every change of state (acct.app.observe); sends what is new."""
    cfg = ctx.config
    if not cfg.notify:
        return
    alerts: list[Alert] = []
    if what == "rotation":
        alerts.append(_rotation(ctx, detail))
    else:
        from acct.app.views import current_views

        now = time.time()
        views = current_views(ctx, now=now)
        alerts += _crossings(ctx, views, cfg.notify_utilization)
        alerts += _dead_logins(ctx, views)
        alerts += _usage_refused(ctx, views, now)
        alerts += _all_refused(ctx, views, now)
    send(cfg.notify, alerts)


def _name(ctx: Ctx, account_id: Any) -> str:
    acc = ctx.store.read().by_id(str(account_id)) if account_id else None
    return acc.name if acc is not None else "?"


def _rotation(ctx: Ctx, detail: dict[str, Any]) -> Alert:
    src, dst = _name(ctx, detail.get("account_id")), _name(ctx, detail.get("to"))
    reason = str(detail.get("reason") or "limit")
    why = {"quota": "hit its limit", "cooloff": "reported a limit", "auth": "lost its login"}
    return Alert(
        "rotation",
        f"acct: switched from {src} to {dst}",
        f"{src} {why.get(reason, reason)}; acct exec goes on with {dst}",
        account=src,
        detail={"from": src, "to": dst, "reason": reason},
    )


def _flip(ctx: Ctx, key: str, new: str) -> str | None:
    """Set the memo ``key`` to ``new``; the old value (None when it was not set)."""
    old, _ = ctx.state.swap_memo(key, lambda _old: new)
    return old


def _window_key(resets_at: float | None) -> str:
    """Names one occurrence of a window: its reset time to ten minutes (polls jitter by 2 s)."""
    return "-" if resets_at is None else str(round(resets_at / 600))


def _crossings(ctx: Ctx, views: Iterable[AccountView], levels: tuple[float, ...]) -> list[Alert]:
    out: list[Alert] = []
    for v in views:
        for attr, label in _WINDOWS:
            w = getattr(v, attr)
            used = v.utilization(w)
            if used is None or not v.enabled:
                continue
            reached = max((lvl for lvl in levels if used >= lvl), default=0.0)
            window = _window_key(w.resets_at if w else None)
            decided: dict[str, bool] = {}

            def bump(
                old: str | None,
                window: str = window,
                reached: float = reached,
                decided: dict[str, bool] = decided,
            ) -> str:
                told = 0.0
                if old is not None:
                    told_window, level = json.loads(old)
                    told = float(level) if told_window == window else 0.0
                decided["new"] = reached > told
                return json.dumps([window, max(told, reached)])

            ctx.state.swap_memo(f"util:{v.id}:{attr}", bump)
            if decided.get("new"):
                resets = f" (resets {_clock(w.resets_at)})" if w and w.resets_at else ""
                out.append(
                    Alert(
                        "utilization",
                        f"acct: {v.name} is at {used:.0f}% of its {label} window",
                        f"{v.name} crossed {reached:g}% of its {label} window{resets}",
                        account=v.name,
                        detail={"window": attr, "utilization": used, "threshold": reached},
                    )
                )
    return out


def _dead_logins(ctx: Ctx, views: Iterable[AccountView]) -> list[Alert]:
    out: list[Alert] = []
    for v in views:
        dead = v.state == "needs_login"
        if _flip(ctx, f"login:{v.id}", "dead" if dead else "ok") != "dead" and dead:
            out.append(
                Alert(
                    "login_died",
                    f"acct: {v.name} needs a new login",
                    f"the login of {v.name} was refused (its refresh token is no longer valid); "
                    f"run `acct login {v.name}`",
                    account=v.name,
                )
            )
    return out


def _usage_refused(ctx: Ctx, views: Iterable[AccountView], now: float) -> list[Alert]:
    """Memo per account: ``[first failure seen, told]`` while polls fail, ``ok`` otherwise."""
    out: list[Alert] = []
    for v in views:
        key = f"usage:{v.id}"
        if v.usage_error is None:
            _flip(ctx, key, "ok")
            continue
        decided: dict[str, float] = {}

        def mark(old: str | None, decided: dict[str, float] = decided) -> str:
            since, told = (now, False) if old in (None, "ok") else json.loads(old or "")
            due = not told and now - since >= USAGE_REFUSED_FOR
            if due:
                decided["since"] = since
            return json.dumps([since, told or due])

        ctx.state.swap_memo(key, mark)
        if "since" in decided:
            minutes = int((now - decided["since"]) // 60)
            out.append(
                Alert(
                    "usage_refused",
                    f"acct: the usage endpoint refuses {v.name}",
                    f"polls of {v.name}'s usage have failed for {minutes} minutes "
                    f"({v.usage_error}); acct keeps its last figures",
                    account=v.name,
                    detail={"error": v.usage_error, "since": decided["since"]},
                )
            )
    return out


def _all_refused(ctx: Ctx, views: list[AccountView], now: float) -> list[Alert]:
    from acct.app.capacity import live_sessions, pool
    from acct.domain.capacity import assess

    if not views:
        return []
    c = assess(pool(views, live_sessions(ctx)), now=now)
    red = c.verdict == "red"
    if _flip(ctx, "pool", "red" if red else "ok") == "red" or not red:
        return []
    back = f"; {c.back_name} is back {_clock(c.back_at)}" if c.back_name and c.back_at else ""
    return [
        Alert(
            "all_refused",
            "acct: every account is refused",
            f"no account can run now{back}",
            detail={"back_account": c.back_name, "back_at": c.back_at},
        )
    ]


def _clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%H:%M %Z")


# --- sending -------------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def payload(alert: Alert, fmt: str, url: str) -> tuple[str, dict[str, Any]]:
    """Where to POST and what: acct's own JSON, or the shapes ntfy, Slack and Discord take."""
    if fmt == "slack":
        return url, {"text": f"*{alert.title}*\n{alert.message}"}
    if fmt == "discord":
        return url, {"username": "acct", "content": f"**{alert.title}**\n{alert.message}"}
    if fmt == "ntfy":
        # ntfy takes JSON at its root URL, the topic in the body.
        parts = urlsplit(url)
        base, _, topic = parts.path.rstrip("/").rpartition("/")
        root = urlunsplit((parts.scheme, parts.netloc, base + "/", "", ""))
        body = {
            "topic": topic,
            "title": alert.title,
            "message": alert.message,
            "tags": ["acct", alert.event],
            "priority": 4 if alert.event in ("all_refused", "login_died") else 3,
        }
        return root, body
    return url, {
        "version": 1,
        "kind": "alert",
        "event": alert.event,
        "title": alert.title,
        "message": alert.message,
        "account": alert.account,
        "at": _iso(alert.at),
        "at_epoch": round(alert.at),
        "detail": alert.detail,
    }


_warned: set[str] = set()
_threads: list[threading.Thread] = []
_lock = threading.Lock()


def _warn(where: str, reason: str) -> None:
    with _lock:
        if where in _warned:
            return
        _warned.add(where)
    with contextlib.suppress(Exception):
        sys.stderr.write(f"acct: warning: notification to {where} failed ({reason})\n")
        sys.stderr.flush()


def _post(url: str, body: dict[str, Any]) -> None:
    import httpx

    host = urlsplit(url).hostname or "?"
    try:
        r = httpx.post(url, json=body, timeout=WEBHOOK_TIMEOUT, headers={"user-agent": "acct"})
        if r.status_code >= 400:
            _warn(host, f"HTTP {r.status_code}")
    except Exception as e:  # noqa: BLE001  (a webhook never fails a command)
        _warn(host, type(e).__name__)


def _desktop(alert: Alert) -> None:
    try:
        if shutil.which("notify-send"):
            subprocess.run(
                ["notify-send", "--app-name=acct", alert.title, alert.message],
                check=False,
                timeout=WEBHOOK_TIMEOUT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        elif sys.platform == "darwin" and shutil.which("osascript"):
            message, title = json.dumps(alert.message), json.dumps(alert.title)
            script = f"display notification {message} with title {title}"
            subprocess.run(
                ["osascript", "-e", script],
                check=False,
                timeout=WEBHOOK_TIMEOUT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
    except (OSError, subprocess.SubprocessError) as e:
        _warn("the desktop", type(e).__name__)


def _start(target: Any, *args: Any) -> None:
    t = threading.Thread(target=target, args=args, name="acct-notify", daemon=True)
    with _lock:
        first = not _threads
        _threads.append(t)
    if first:
        atexit.register(_drain)
    t.start()


def _drain() -> None:
    """At exit: give notifications in flight a moment (bounded), never longer."""
    deadline = time.monotonic() + EXIT_WAIT
    with _lock:
        threads = list(_threads)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))


def send(notifiers: Iterable[Notifier], alerts: Iterable[Alert]) -> None:
    alerts = list(alerts)
    if not alerts:
        return
    for n in notifiers:
        for alert in alerts:
            if n.kind == "desktop":
                _start(_desktop, alert)
            elif n.url:
                url, body = payload(alert, n.format, n.url)
                _start(_post, url, body)
