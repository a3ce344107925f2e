"""A stand-in for Claude Code, OpenCode and Pi, run as a real child process.

    python tests/fake_tool.py claude-code [ARGS...]      (argv[0] as the tool sees it: "claude")

Tests call it through a tiny executable named ``claude``, ``opencode`` or ``pi`` in a temporary
bin directory first on PATH (:func:`install`), so ``acct exec -- claude`` infers its target from
the command's name as it would for the real tool.

Like the real tools (as measured on them) it reads its credential file (or the environment tokens that
override it), refreshes through the fake's token endpoint when the access token is near expiry,
writes the rotated pair back keeping every other key (Claude Code blanks the file on
``invalid_grant``), calls ``$ANTHROPIC_BASE_URL/v1/messages`` and prints the tools' own words on
success, on a quota limit and on a throttle.

Knobs (environment):
  FAKE_TOOL_LOG      append one JSON line per event (start with argv, end with status, signal)
  FAKE_TOOL_EXIT     exit with this status after a successful answer
  FAKE_TOOL_SLEEP    seconds to sleep after answering, before exiting
  FAKE_TOOL_SIGNAL   kill itself with this signal (TERM, INT, ...) after answering
  FAKE_TOOL_REFRESH  "1": refresh the tokens first even when they are fresh
  FAKE_TOOL_OFFLINE  "1": do not call the API at all
  FAKE_TOOL_GATE     a path: after answering, wait (up to 120 s) until that file exists
  FAKE_TOOL_AGAIN    "1": after the sleep, read the credential file again and ask once more
                     (Claude Code re-reads its file when it changes)
  FAKE_TOOL_TZ       zone named in limit messages (default UTC)
  FAKE_TOOL_LIMIT_EXIT  exit with this status after printing a limit message (interactive
                     Claude Code waits on a limit and exits 0 when the user quits)
  FAKE_TOOL_WAIT_ON_429  seconds OpenCode or Pi sleeps on a 429 before it reports it (the real
                     ones sleep for the retry-after: hours on a quota answer)
  FAKE_TOOL_RACE     a path (OpenCode), once while it does not exist: refresh, write the new pair,
                     then fail as the plugin does when it races itself ("Token refresh failed:
                     400" from its second refresh); the path is created
  FAKE_TOOL_ROUNDS   N: after answering, N rounds; round i waits (up to 120 s) for the file
                     FAKE_TOOL_GATE.i, refreshes with the tokens it holds in memory (as a
                     long-running tool does when its access token nears expiry), writes the
                     rotated pair back, reads its file again and asks once more; then creates
                     FAKE_TOOL_GATE.i.done. It exits 1 at once when the refresh is refused
                     ("refresh_refused") or its file holds no login ("no_login").
Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
OAUTH_BETA = "oauth-2025-04-20"
COMMANDS = {"claude-code": "claude", "opencode": "opencode", "pi": "pi"}
REFRESH_MARGIN_S = 300  # the tools refresh about five minutes before expiry
NOT_LOGGED_IN = "Not logged in · Please run /login"
SESSION_ID = "5e55107d-0000-4000-8000-000000000001"
PI_REFRESH_FAILED = (
    "OAuth refresh failed for anthropic: Anthropic token refresh request failed. "
    "url=https://platform.claude.com/v1/oauth/token; details=Error: HTTP request failed. "
    "status=400\n    at refreshAnthropicToken (file:///pi/dist/auth/oauth/anthropic.js:88:15)"
)
LIMIT_LABELS = {
    "five_hour": "session limit",
    "seven_day": "weekly limit",
    "seven_day_opus": "Opus limit",
    "seven_day_sonnet": "Sonnet limit",
}


def log(event: str, **fields: Any) -> None:
    path = os.environ.get("FAKE_TOOL_LOG")
    if not path:
        return
    line = json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **fields})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


def finish(status: int) -> None:
    log("end", status=status)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


# ----- credential files -----


def home() -> Path:
    return Path(os.environ.get("HOME") or os.path.expanduser("~"))


def cred_path(tool: str) -> Path:
    env = os.environ
    if tool == "claude-code":
        base = env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR") or env.get("CLAUDE_CONFIG_DIR")
        return Path(base or home() / ".claude") / ".credentials.json"
    if tool == "opencode":
        xdg = env.get("XDG_DATA_HOME") or str(home() / ".local/share")
        return Path(xdg) / "opencode" / "auth.json"
    return Path(env.get("PI_CODING_AGENT_DIR") or home() / ".pi/agent") / "auth.json"


def read_doc(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return {}


def write_doc(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    real = path.resolve()
    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=real.name + ".")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR)
    os.replace(tmp, real)


class Creds:
    """The tool's view of its OAuth entry: tokens from the environment or from its file."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.path = cred_path(tool)
        self.from_env: str | None = None
        self.api_key = False
        self.access = ""
        self.refresh = ""
        self.expires_ms = 0
        self.scopes: list[str] = []

    def load(self) -> bool:
        """False when there is nothing to log in with."""
        env = os.environ
        if self.tool == "claude-code":
            for name in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"):
                if env.get(name):
                    self.from_env, self.access = name, env[name]
                    self.api_key = name == "ANTHROPIC_API_KEY"
                    return True
            entry = read_doc(self.path).get("claudeAiOauth") or {}
            self.access = entry.get("accessToken") or ""
            self.refresh = entry.get("refreshToken") or ""
            self.expires_ms = int(entry.get("expiresAt") or 0)
            self.scopes = list(entry.get("scopes") or [])
            return bool(self.access or self.refresh) and "user:inference" in self.scopes
        if self.tool == "opencode" and env.get("OPENCODE_AUTH_CONTENT"):
            doc = json.loads(env["OPENCODE_AUTH_CONTENT"])
            self.from_env = "OPENCODE_AUTH_CONTENT"
        else:
            doc = read_doc(self.path)
        entry = doc.get("anthropic") or {}
        if entry.get("type") == "oauth" and (entry.get("access") or entry.get("refresh")):
            self.access, self.refresh = entry.get("access") or "", entry.get("refresh") or ""
            self.expires_ms = int(entry.get("expires") or 0)
            return True
        if self.tool == "pi":
            for name in ("ANTHROPIC_OAUTH_TOKEN", "ANTHROPIC_API_KEY"):
                if env.get(name):
                    self.from_env, self.access = name, env[name]
                    self.api_key = name == "ANTHROPIC_API_KEY"
                    return True
        return False

    def needs_refresh(self) -> bool:
        if self.from_env or not self.refresh:
            return False
        if os.environ.get("FAKE_TOOL_REFRESH") == "1":
            return True
        return self.expires_ms / 1000.0 - time.time() < REFRESH_MARGIN_S

    def save(self) -> None:
        doc = read_doc(self.path)
        if self.tool == "claude-code":
            entry = dict(doc.get("claudeAiOauth") or {})
            entry.update(
                accessToken=self.access, refreshToken=self.refresh, expiresAt=self.expires_ms
            )
            doc["claudeAiOauth"] = entry
        else:
            entry = dict(doc.get("anthropic") or {})
            entry.update(
                type="oauth", access=self.access, refresh=self.refresh, expires=self.expires_ms
            )
            doc["anthropic"] = entry
        write_doc(self.path, doc)

    def blank(self) -> None:
        """What Claude Code does on invalid_grant."""
        self.access, self.refresh, self.expires_ms = "", "", 0
        self.save()


# ----- HTTP -----


def base_url() -> str:
    return os.environ.get("ANTHROPIC_BASE_URL", "http://127.0.0.1:9").rstrip("/")


def messages_url(tool: str) -> str:
    """Where the tool sends ``/v1/messages``, read as the real tool reads it (measured): OpenCode
    takes ``provider.anthropic.options.baseURL`` (with ``/v1``) from ``OPENCODE_CONFIG_CONTENT``
    over the environment; Pi takes the base URL acct's extension registers, when one is loaded
    (``-e``; it reads ``ACCT_PI_BASE_URL``). Otherwise ``$ANTHROPIC_BASE_URL``."""
    if tool == "opencode" and os.environ.get("OPENCODE_CONFIG_CONTENT"):
        doc = json.loads(os.environ["OPENCODE_CONFIG_CONTENT"])
        url = doc.get("provider", {}).get("anthropic", {}).get("options", {}).get("baseURL")
        if isinstance(url, str) and url:
            return url.rstrip("/") + "/messages?beta=true"
    if tool == "pi" and EXTENSIONS and os.environ.get("ACCT_PI_BASE_URL"):
        return os.environ["ACCT_PI_BASE_URL"].rstrip("/") + "/v1/messages"
    return base_url() + "/v1/messages?beta=true"


EXTENSIONS: list[str] = []  # Pi's `-e FILE` options: the files it loads


def take_extensions(tool: str, args: list[str]) -> list[str]:
    """Pi's words without its ``-e``/``--extension FILE`` options (kept in ``EXTENSIONS``)."""
    if tool != "pi":
        return args
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--":
            out += args[i:]
            break
        if args[i] in ("-e", "--extension") and i + 1 < len(args):
            EXTENSIONS.append(args[i + 1])
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def post(
    url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("content-type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            doc = json.loads(raw or b"null")
        except ValueError:
            doc = raw.decode("utf-8", "replace")
        return e.code, dict(e.headers), doc


def refresh(creds: Creds) -> bool:
    """Refresh and write the rotated pair back; False when the lineage is dead."""
    body: dict[str, Any] = {
        "grant_type": "refresh_token",
        "refresh_token": creds.refresh,
        "client_id": CLIENT_ID,
    }
    if creds.tool == "claude-code" and creds.scopes:
        body["scope"] = " ".join(creds.scopes)
    status, _, doc = post(base_url() + "/v1/oauth/token", body, {})
    log("refresh", status=status)
    if status != 200:
        if (
            isinstance(doc, dict)
            and doc.get("error") == "invalid_grant"
            and creds.tool == "claude-code"
        ):
            creds.blank()
        return False
    creds.access = doc["access_token"]
    creds.refresh = doc.get("refresh_token") or creds.refresh
    creds.expires_ms = int((time.time() + int(doc.get("expires_in", 28800))) * 1000)
    creds.save()
    return True


def messages(creds: Creds, prompt: str) -> tuple[int, dict[str, str], Any]:
    headers = {"anthropic-version": "2023-06-01"}
    if creds.api_key:
        headers["x-api-key"] = creds.access
    else:
        headers["authorization"] = f"Bearer {creds.access}"
        headers["anthropic-beta"] = OAUTH_BETA
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}],
    }
    if creds.tool == "claude-code" and not creds.api_key:
        body["metadata"] = {"user_id": claude_user_id()}
    return post(messages_url(creds.tool), body, headers)


def claude_user_id() -> str:
    """Claude Code 2.1's ``metadata.user_id``: JSON text naming the device, the account of
    ``oauthAccount`` in its ``.claude.json`` and the session (read in its shipped code)."""
    config = os.environ.get("CLAUDE_CONFIG_DIR")
    path = Path(config) / ".claude.json" if config else home() / ".claude.json"
    try:
        account = (read_doc(path).get("oauthAccount") or {}).get("accountUuid") or ""
    except (OSError, ValueError, AttributeError):
        account = ""
    doc = {"device_id": "d" * 64, "account_uuid": account, "session_id": SESSION_ID}
    return json.dumps(doc, separators=(",", ":"))


# ----- the tools' words -----


def reset_words(epoch: int) -> str:
    tz_name = os.environ.get("FAKE_TOOL_TZ", "UTC")
    when = datetime.fromtimestamp(epoch, ZoneInfo(tz_name))
    clock = when.strftime("%I:%M%p").lstrip("0").lower().replace(":00", "")
    if epoch - time.time() > 20 * 3600:
        return f"resets {when.strftime('%b')} {when.day}, {clock} ({tz_name})"
    return f"resets {clock} ({tz_name})"


def claude_limit_text(headers: dict[str, str]) -> str:
    h = {k.lower(): v for k, v in headers.items()}
    label = LIMIT_LABELS.get(h.get("anthropic-ratelimit-unified-representative-claim", ""), "limit")
    reset = int(h.get("anthropic-ratelimit-unified-reset", "0"))
    return f"You've hit your {label} · {reset_words(reset)}"


def output_format(args: list[str]) -> str:
    for i, a in enumerate(args):
        if a == "--output-format" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--output-format="):
            return a.split("=", 1)[1]
    return "text"


def prompt_of(args: list[str]) -> str:
    for i, a in enumerate(args):
        if a in ("-p", "--print", "run") and i + 1 < len(args) and not args[i + 1].startswith("-"):
            return args[i + 1]
    rest = [a for a in args if not a.startswith("-")]
    return rest[-1] if rest else "hi"


def report_claude(status: int, headers: dict[str, str], doc: Any, fmt: str) -> int:
    h = {k.lower(): v for k, v in headers.items()}
    if status == 429 and h.get("anthropic-ratelimit-unified-status") == "rejected":
        text = claude_limit_text(headers)
        if fmt == "stream-json":
            info = {
                "status": "rejected",
                "resetsAt": int(h.get("anthropic-ratelimit-unified-reset", "0")),
                "rateLimitType": h.get(
                    "anthropic-ratelimit-unified-representative-claim", "five_hour"
                ),
            }
            print(json.dumps({"type": "rate_limit_event", "rate_limit_info": info}))
        if fmt in ("json", "stream-json"):
            print(
                json.dumps(
                    {"type": "result", "is_error": True, "api_error_status": 429, "result": text}
                )
            )
        else:
            print(text)
        return 1
    message = doc.get("error", {}).get("message", "") if isinstance(doc, dict) else str(doc)
    if status == 429:
        print(
            f"API Error: Server is temporarily limiting requests (not your usage limit) · {message}"
        )
        return 1
    print(f"API Error: {status} {json.dumps(doc)}")
    return 1


def report_other(tool: str, status: int, doc: Any) -> int:
    wait = float(os.environ.get("FAKE_TOOL_WAIT_ON_429", "0") or 0)
    if status == 429 and wait:  # as OpenCode does: sleep for the retry-after, saying nothing
        log("waiting_on_429", seconds=wait)
        time.sleep(wait)
    if tool == "opencode":
        if status == 429:
            print(
                "Error: This request would exceed your account's rate limit. Please try again later.",
                file=sys.stderr,
            )
        else:
            message = doc.get("error", {}).get("message", "") if isinstance(doc, dict) else str(doc)
            print(f"Error: {message}", file=sys.stderr)
        return 1
    print(f"{status} {json.dumps(doc)}", file=sys.stderr)
    return 1


def answer_text(doc: Any) -> str:
    return "".join(part.get("text", "") for part in doc.get("content", []))


# ----- main -----


def on_signal(signum: int, frame: object) -> None:
    log("signal", signum=signum)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def main(argv: list[str]) -> int:
    tool, args = argv[0], take_extensions(argv[0], argv[1:])
    log("start", argv=[COMMANDS[tool], *args], tool=tool, extensions=EXTENSIONS)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    fmt = output_format(args)
    if os.environ.get("FAKE_TOOL_ROUNDS"):
        return rounds(tool, args, fmt, int(os.environ["FAKE_TOOL_ROUNDS"]))
    if os.environ.get("FAKE_TOOL_OFFLINE") != "1":
        status = call_api(tool, args, fmt)
        if status != 0:
            return status
    after_answer()
    if os.environ.get("FAKE_TOOL_AGAIN") == "1":
        status = call_api(tool, args, fmt)
        if status != 0:
            return status
    return int(os.environ.get("FAKE_TOOL_EXIT", "0"))


def rounds(tool: str, args: list[str], fmt: str, n: int) -> int:
    """FAKE_TOOL_ROUNDS: a long-running tool that refreshes from memory, round after round."""
    creds = Creds(tool)
    if not creds.load():
        log("no_login", round=0)
        return 1
    gate = os.environ["FAKE_TOOL_GATE"]
    for i in range(1, n + 1):
        deadline = time.monotonic() + 120
        while not os.path.exists(f"{gate}.{i}"):
            if time.monotonic() > deadline:
                log("gate_timeout", round=i)
                return 1
            time.sleep(0.01)
        if not refresh(creds):
            log("refresh_refused", round=i)
            print("Error: Token refresh failed: 400", file=sys.stderr)
            return 1
        creds = Creds(tool)
        if not creds.load():
            log("no_login", round=i)
            print("Error: Anthropic API key is missing", file=sys.stderr)
            return 1
        status, _, doc = messages(creds, prompt_of(args))
        log("messages", status=status, round=i)
        if status != 200:
            return report_other(tool, status, doc)
        Path(f"{gate}.{i}.done").touch()
    return 0


def call_api(tool: str, args: list[str], fmt: str) -> int:
    creds = Creds(tool)
    if not creds.load():
        print(NOT_LOGGED_IN if tool == "claude-code" else "Error: Anthropic API key is missing")
        return 1
    race = os.environ.get("FAKE_TOOL_RACE")
    if tool == "opencode" and race and not os.path.exists(race):
        Path(race).touch()
        refresh(creds)
        print("Error: Token refresh failed: 400", file=sys.stderr)
        return 1
    if creds.needs_refresh() and not refresh(creds):
        if tool == "claude-code":
            print(NOT_LOGGED_IN)
        elif tool == "pi":  # Pi 1.6.0's words, then its stack trace; the file stays as it was
            print(PI_REFRESH_FAILED, file=sys.stderr)
        else:
            print("Error: Token refresh failed: 400", file=sys.stderr)
        return 1
    status, headers, doc = messages(creds, prompt_of(args))
    if status == 401 and tool == "claude-code" and creds.refresh:
        if not refresh(creds):
            print(NOT_LOGGED_IN)
            return 1
        status, headers, doc = messages(creds, prompt_of(args))
    log("messages", status=status)
    if status == 200:
        print(answer_text(doc))
        return 0
    ended = report_claude(status, headers, doc, fmt) if tool == "claude-code" else None
    if ended is None:
        ended = report_other(tool, status, doc)
    limit_exit = os.environ.get("FAKE_TOOL_LIMIT_EXIT")
    return int(limit_exit) if limit_exit and status == 429 else ended


def after_answer() -> None:
    sys.stdout.flush()
    delay = float(os.environ.get("FAKE_TOOL_SLEEP", "0") or 0)
    if delay:
        log("sleeping", seconds=delay)
        time.sleep(delay)
    gate = os.environ.get("FAKE_TOOL_GATE")
    if gate:
        log("waiting", gate=gate)
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
    name = os.environ.get("FAKE_TOOL_SIGNAL")
    if name:
        sig = getattr(signal, "SIG" + name.upper().removeprefix("SIG"))
        log("signal", signum=int(sig))
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        time.sleep(5)


def install(bin_dir: Path, python: str | None = None) -> Path:
    """Create ``claude``, ``opencode`` and ``pi`` in ``bin_dir``, each running this script."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    script = Path(__file__).resolve()
    for tool, command in COMMANDS.items():
        exe = bin_dir / command
        exe.write_text(f'#!/bin/sh\nexec "{python}" "{script}" {tool} "$@"\n', encoding="utf-8")
        exe.chmod(0o755)
    return bin_dir


if __name__ == "__main__":
    finish(main(sys.argv[1:]))
