"""``acct prompt``: a short segment for the shell prompt, such as ``work 37%``.

This module runs on every prompt, so it imports the standard library only and reads nothing but
the small JSON file acct keeps current (``prompt.json`` in the state directory) and one ``stat``
of the tool's credential file. It never touches the network, never waits on a lock, never
prints an error and always exits 0: a prompt must not break because acct did.

Staleness: acct records the credential file's ``(mtime_ns, size)`` whenever it writes the
prompt state. When the file differs now (the tool refreshed its tokens, or the user ran
``/login`` in it), the account acct last saw there may be gone, so the segment shows ``?``
instead of a name until acct looks at the file again (any ``acct`` command that lends,
harvests or polls usage does).
"""

from __future__ import annotations

import os
import sys
import time

# Every millisecond here is paid at each prompt: `typing`, `collections.abc`, `re` and `json`
# (which pulls in `re`) are kept out of the import path. Annotations stay strings.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    StatFn = Callable[[str], tuple[int, int] | None]

DEFAULT_FORMAT = "{account} {peak}"
DEFAULT_TARGET = "claude-code"
UNKNOWN = "?"
PLACEHOLDERS = ("account", "target", "5h", "7d", "peak", "reset", "5h_reset", "7d_reset")


# --- where the files are (kept equal to acct.base.paths.Paths.from_env; a test checks) ------------


def _xdg(env: Mapping[str, str], var: str, home: str, default: str) -> str:
    value = env.get(var, "")
    if value and os.path.isabs(value):
        return value
    return os.path.join(home, default)


def dirs(env: Mapping[str, str]) -> tuple[str, str]:
    """acct's (data_dir, state_dir) for ``env``, without importing anything outside stdlib."""
    home = env.get("HOME", None)
    if home is None:
        home = os.path.expanduser("~")
    root = env.get("ACCT_HOME")
    base = os.path.expanduser(root) if root else None
    if not os.path.isabs(home) or (base is not None and not os.path.isabs(base)):
        raise ValueError("HOME and ACCT_HOME must be absolute")  # acct refuses them too
    if base is not None:
        return os.path.join(base, "data"), os.path.join(base, "state")
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return (
            os.path.join(_xdg(env, "XDG_DATA_HOME", home, ".local/share"), "acct"),
            os.path.join(_xdg(env, "XDG_STATE_HOME", home, ".local/state"), "acct"),
        )
    # Other platforms follow platformdirs, as acct.base.paths does; the cost of importing it is
    # theirs alone (and this layer imports nothing of acct's: it sits below all of it).
    import platformdirs

    return (
        platformdirs.user_data_dir("acct", appauthor=False),
        platformdirs.user_state_dir("acct", appauthor=False),
    )


def prompt_state_path(env: Mapping[str, str]) -> str:
    return os.path.join(dirs(env)[1], "prompt.json")


def prompt_file_path(env: Mapping[str, str]) -> str:
    return os.path.join(dirs(env)[1], "prompt")


# --- rendering ---------------------------------------------------------------------------------


def file_stat(path: str) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of ``path`` (following symlinks), ``None`` when it is absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def pct(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{round(value):d}%"
    return ""


def duration(seconds: float) -> str:
    """Compact time span: ``45s``, ``12m``, ``3h05m``, ``2d4h``."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h}h"


def _until(ts: Any, now: float) -> str:
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and ts > now:
        return duration(ts - now)
    return ""


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _live(value: float | None, reset_at: Any, now: float) -> float | None:
    """A window's figure as of ``now``: 0 once its reset time has passed (the cache may be old)."""
    passed = (
        isinstance(reset_at, (int, float)) and not isinstance(reset_at, bool) and reset_at <= now
    )
    return 0.0 if value is not None and passed else value


def fields(target: str, entry: Mapping[str, Any], now: float) -> dict[str, str]:
    """The placeholder values for one target's entry of the prompt state."""
    five = _live(_number(entry.get("five_hour")), entry.get("five_hour_resets_at"), now)
    seven = _live(_number(entry.get("seven_day")), entry.get("seven_day_resets_at"), now)
    five_reset = _until(entry.get("five_hour_resets_at"), now)
    seven_reset = _until(entry.get("seven_day_resets_at"), now)
    known = [(v, r) for v, r in ((five, five_reset), (seven, seven_reset)) if v is not None]
    peak, reset = max(known, key=lambda vr: vr[0]) if known else (None, "")
    return {
        "account": str(entry.get("account") or ""),
        "target": target,
        "5h": pct(five),
        "7d": pct(seven),
        "peak": pct(peak),
        "reset": reset,
        "5h_reset": five_reset,
        "7d_reset": seven_reset,
    }


def fill(fmt: str, values: Mapping[str, str]) -> str:
    """Replace known ``{placeholders}``; anything else stays as written (a prompt never fails).

    Runs of white space collapse to one space, so empty fields leave no gaps.
    """
    parts = fmt.split("{")
    out = [parts[0]]
    for part in parts[1:]:
        name, brace, rest = part.partition("}")
        if brace and name in values:
            out.append(_printable(values[name]) + rest)
        else:
            out.append("{" + part)
    return " ".join("".join(out).split())


def _printable(value: str) -> str:
    """``value`` with control characters (a terminal would obey them) shown as ``?``; the
    format itself may colour the prompt as it likes."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else "?" for c in value)


def segment(
    state: Mapping[str, Any] | None,
    target: str,
    fmt: str = DEFAULT_FORMAT,
    *,
    now: float | None = None,
    stat: StatFn = file_stat,
) -> str:
    """The prompt segment for ``target``: empty when acct knows of nothing to show there.

    ``?`` when the tool's file changed since acct recorded it, or holds an account acct
    cannot name.
    """
    targets = state.get("targets") if isinstance(state, dict) else None
    entry = targets.get(target) if isinstance(targets, dict) else None
    if not isinstance(entry, dict):
        return ""
    path = entry.get("path")
    current = stat(path) if isinstance(path, str) else None
    if current is None:
        return ""
    if current != (entry.get("mtime_ns"), entry.get("size")):
        return UNKNOWN
    if not entry.get("account"):
        return UNKNOWN if entry.get("held") else ""
    return fill(fmt, fields(target, entry, time.time() if now is None else now))


class _JsonContext:
    """What CPython's JSON scanner reads from a decoder: plain defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict[str, str] = {}


def parse_json(text: str) -> Any:
    """``json.loads`` without importing ``json`` (and ``re``) where CPython's scanner exists."""
    try:
        from _json import make_scanner
    except ImportError:
        import json

        return json.loads(text)
    text = text.strip()
    try:
        # The C scanner takes any object with the decoder's attributes (typeshed says JSONDecoder).
        value, end = make_scanner(_JsonContext())(text, 0)  # type: ignore[arg-type]
    except StopIteration:
        raise ValueError("not JSON") from None
    finally:
        _JsonContext.memo.clear()
    if end != len(text):
        raise ValueError("extra data after JSON")
    return value


_STATE_LIMIT = 1 << 20  # prompt.json is a few hundred bytes


def read_small(path: str, limit: int = _STATE_LIMIT) -> str:
    """A small regular file's text; never blocks on a FIFO nor reads a device (ValueError).

    The standard-library twin of ``acct.base.inputs.read_file``, for the fast paths."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        import stat

        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise ValueError("not a small regular file")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, limit + 1 - total):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ValueError("file grew too large")
        return b"".join(chunks).decode("utf-8")
    finally:
        os.close(fd)


def read_state(path: str) -> dict[str, Any] | None:
    try:
        doc = parse_json(read_small(path))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and doc.get("version") == 1 else None


def default_target(state: Mapping[str, Any] | None) -> str:
    value = state.get("default_target") if isinstance(state, dict) else None
    return value if isinstance(value, str) and value else DEFAULT_TARGET


def render(env: Mapping[str, str], target: str | None = None, fmt: str | None = None) -> str:
    """What ``acct prompt`` prints for ``env`` (without the newline). Never raises."""
    try:
        state = read_state(prompt_state_path(env))
        return segment(state, target or default_target(state), fmt or DEFAULT_FORMAT)
    except Exception:  # noqa: BLE001  (a prompt must never fail)
        return ""


USAGE = """\
usage: acct prompt [--target TARGET] [--format FORMAT]

Print a short segment for the shell prompt: the account the target's credential file holds
and its utilization, e.g. "work 37%". Reads local state only; prints nothing when there is
nothing to show and "?" when the tool's file changed since acct last looked at it.

  -t, --target TARGET   claude-code, opencode, pi, codex or pi-chatgpt (default: the configured default target)
  -f, --format FORMAT   placeholders: {account} {target} {5h} {7d} {peak} {reset}
                        {5h_reset} {7d_reset} (default: "{account} {peak}")
"""


def parse_args(argv: list[str]) -> tuple[str | None, str | None, bool]:
    """``(target, format, help)`` from ``argv``; unknown words are ignored, never an error."""
    target = fmt = None
    want_help = False
    it = iter(argv)
    for word in it:
        name, eq, value = word.partition("=")
        if name in ("-t", "--target", "-f", "--format"):
            if not eq:
                value = next(it, "")
            if name in ("-t", "--target"):
                target = value or None
            else:
                fmt = value or None
        elif word in ("-h", "--help"):
            want_help = True
    return target, fmt, want_help


def main(argv: list[str] | None = None) -> int:
    target, fmt, want_help = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if want_help:
            sys.stdout.write(USAGE)
        else:
            text = render(os.environ, target, fmt)
            if text:
                sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except Exception:  # noqa: BLE001  (a closed stdout must not print a traceback into the prompt)
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
