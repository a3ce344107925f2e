"""``acct watch``: a live dashboard of the pool (Rich Live, full terminal).

One row per account with 5-hour and 7-day bars, reset countdowns, state, when its login was last
refreshed and the live sessions on it; the pool's verdict; recent rotations and limits. Keys:
``s`` switches the sort, ``r`` refreshes usage now (within the usage endpoint's budget), ``q``
quits. The data is read again only when acct's files change (or every few seconds for the
clock), so an idle dashboard costs next to nothing.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from acct.app.watch import SORTS, Frame, Row, frame, stamp
from acct.cli import app
from acct.cli.common import ctx
from acct.cli.picker import state_text
from acct.cli.render import human_duration, until
from acct.services.context import Ctx

BAR = 8
REREAD_EVERY = 5.0  # seconds: the clock moves even when no file does
_VERDICT_STYLE = {"green": "bold green", "yellow": "bold yellow", "red": "bold red"}


def bar(used: float | None, width: int = BAR) -> Text:
    if used is None:
        return Text("·" * width + "    -", style="dim")
    filled = max(0, min(width, round(min(used, 100.0) / 100.0 * width)))
    style = "green" if used < 80 else ("yellow" if used < 100 else "red")
    text = Text("█" * filled, style=style)
    text.append("·" * (width - filled), style="dim")
    text.append(f" {used:3.0f}%")
    return text


def _sessions(row: Row, now: float) -> str:
    parts = []
    for s in row.sessions:
        where = s.directory or ""
        home = os.path.expanduser("~")
        if where.startswith(home):
            where = "~" + where[len(home) :]
        parts.append(f"{s.tool} {where} {human_duration(now - s.since)}".replace("  ", " "))
    return ", ".join(parts) or "-"


def render(f: Frame, sort: str, now: float, note: str = "") -> Group:
    c = f.capacity
    head = Text("acct watch  ")
    head.append(c.verdict, style=_VERDICT_STYLE[c.verdict])
    head.append(
        f"  headroom 5h {c.headroom['five_hour']:.2f} 7d {c.headroom['seven_day']:.2f}"
        f"  {time.strftime('%H:%M:%S', time.localtime(now))}"
    )
    keys = Text(f"[s] sort: {sort}  [r] refresh usage  [q] quit", style="dim")
    if note:
        keys.append(f"  {note}", style="italic")
    table = Table(box=None, pad_edge=False, show_edge=False, expand=False)
    table.add_column("NAME", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("STATE", no_wrap=True, overflow="ellipsis", max_width=14)
    table.add_column("5H", no_wrap=True)
    table.add_column("7D", no_wrap=True)
    table.add_column("RESETS", justify="right", no_wrap=True, min_width=6)
    table.add_column("LOGIN", justify="right", no_wrap=True, min_width=5)
    table.add_column("SESSIONS", no_wrap=True, overflow="ellipsis")
    for row in f.rows:
        v = row.view
        login = "-" if row.refreshed_at is None else human_duration(now - row.refreshed_at)
        table.add_row(
            escape(v.name),
            escape(state_text(v, short=True)),
            bar(v.utilization(v.five_hour)),
            bar(v.utilization(v.seven_day)),
            until(v.relevant_reset, now),
            login,
            escape(_sessions(row, now)),
        )
    parts: list[Any] = [head, keys, Text(""), table]
    if c.verdict != "green" and c.reasons:
        parts.append(Text("; ".join(c.reasons), style="yellow" if c.verdict == "yellow" else "red"))
    parts.append(Text(""))
    parts.append(Text("recent rotations and limits", style="bold"))
    if not f.log:
        parts.append(Text("  none in the last 24 hours", style="dim"))
    for entry in f.log:
        stamp_text = time.strftime("%H:%M", time.localtime(entry.at))
        parts.append(Text(f"  {stamp_text} {entry.text}"))
    return Group(*parts)


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode while the dashboard runs (its file descriptor), when a terminal."""
    if not sys.stdin.isatty():
        yield None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_key(fd: int | None, timeout: float) -> str:
    if fd is None:
        time.sleep(timeout)
        return ""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return ""
    data = os.read(fd, 32)
    if not data:  # the terminal went away
        return "q"
    return data.decode("utf-8", "replace")[:1]


class _Refresher:
    """``r``: one usage poll in the background (its own context: SQLite is per thread)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        if self.busy:
            return

        def poll() -> None:
            with contextlib.suppress(Exception):
                from acct.services.usage import poll as poll_usage

                local = Ctx(env=self.env)
                try:
                    poll_usage(local, local.store.read())
                finally:
                    local.state.close()

        self.thread = threading.Thread(target=poll, name="acct-watch-poll", daemon=True)
        self.thread.start()


@app.command("watch")
def watch_command(
    once: Annotated[
        bool,
        typer.Option("--once", help="Print the dashboard once and exit (so does a pipe)."),
    ] = False,
) -> None:
    """A live dashboard of the pool: bars, resets, sessions, recent rotations (q quits)."""
    c = ctx()
    sort_i = 0
    console = Console(highlight=False)
    if once or not console.is_terminal:  # piped: one frame, not an endless stream of them
        console.print(render(frame(c, SORTS[sort_i]), SORTS[sort_i], time.time()))
        return
    from rich.live import Live

    refresher = _Refresher(dict(c.env))
    current = frame(c, SORTS[sort_i])
    seen, read_at = stamp(c), time.monotonic()
    with (
        _keys() as fd,
        Live(console=console, screen=True, auto_refresh=False, transient=True) as live,
    ):
        while True:
            note = "refreshing usage…" if refresher.busy else ""
            live.update(render(current, SORTS[sort_i], time.time(), note), refresh=True)
            key = _read_key(fd, 1.0)
            if key in ("q", "Q"):
                return
            if key in ("s", "S"):
                sort_i = (sort_i + 1) % len(SORTS)
            if key in ("r", "R"):
                refresher.start()
            now_stamp = stamp(c)
            if key or now_stamp != seen or time.monotonic() - read_at >= REREAD_EVERY:
                current = frame(c, SORTS[sort_i])
                seen, read_at = now_stamp, time.monotonic()
