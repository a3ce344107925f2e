"""A stand-in for the Codex CLI 0.171.0, run as a real child process (``codex`` on PATH).

    python tests/fake_codex.py [ARGS...]      (the ``codex`` shim that :func:`install` writes)

It behaves as the real one was measured to (docs/codex.md), against the fake ChatGPT server:

- reads ``${CODEX_HOME:-~/.codex}/auth.json`` (``CODEX_ACCESS_TOKEN`` replaces its access
  token, ``CODEX_API_KEY`` is sent instead of it);
- takes its provider from ``-c model_provider=P`` and ``-c model_providers.P={…base_url=…}``
  (anywhere before the prompt: root or ``exec`` options; the later one wins), and posts one turn
  to ``<base_url>/responses`` with ``authorization`` and ``chatgpt-account-id``;
- on a 401 re-reads its file: another account there ends the run ("signed in to another
  account"); the same account with other tokens is retried; otherwise it refreshes through
  ``CODEX_REFRESH_TOKEN_URL_OVERRIDE`` (JSON, ``refresh_reason``), writes the rotated pair back
  atomically and retries; a refused refresh ends the run with Codex's words;
- prints the answer's text on stdout (exit 0), or ``ERROR: …`` on stderr and exits 1: the
  usage-limit words with U+2019 and ``try again at H:MM AM.`` (in ``TZ``), the throttle's
  ``exceeded retry limit, last status: 429 Too Many Requests``.

Knobs (environment): ``FAKE_TOOL_LOG`` (one JSON line per event: start with argv, turn with
status, refresh, end), ``FAKE_CODEX_REFRESH=1`` (refresh before the turn, as after a 401 from
an expired token), ``FAKE_CODEX_TURNS=N`` (N turns in one run, each re-reading nothing: the
access token stays the one in memory). Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
VALUE_OPTIONS = {"-c", "--config", "-m", "--model", "-p", "--profile", "-C", "--cd", "-s"}
LIMIT = (
    "You\u2019ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit "
    "https://chatgpt.com/settings/usage to purchase more credits or try again at {at}."
)
THROTTLE = "exceeded retry limit, last status: 429 Too Many Requests"
DEAD = (
    "Your access token could not be refreshed because your refresh token was already used. "
    "Please log out and sign in again."
)
OTHER_ACCOUNT = (
    "Your access token could not be refreshed because you have since logged out or signed in "
    "to another account. Please sign in again."
)


def log(event: str, **fields: Any) -> None:
    path = os.environ.get("FAKE_TOOL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, "tool": "codex", **fields}) + "\n")


def auth_path() -> Path:
    home = os.environ.get("CODEX_HOME") or os.path.join(os.environ["HOME"], ".codex")
    return Path(home) / "auth.json"


def read_auth() -> dict[str, Any]:
    try:
        doc = json.loads(auth_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_auth(doc: dict[str, Any]) -> None:
    path = auth_path()
    fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


def provider(args: list[str]) -> str | None:
    """The base URL of the provider the ``-c`` options name (the last setting of each wins)."""
    chosen, tables = None, {}
    for i, arg in enumerate(args[:-1]):
        if arg not in ("-c", "--config"):
            continue
        key, _, value = args[i + 1].partition("=")
        if key == "model_provider":
            chosen = value.strip('"')
        elif key.startswith("model_providers."):
            m = re.search(r'base_url\s*=\s*"([^"]+)"', value)
            if m:
                tables[key.split(".", 1)[1]] = m.group(1)
    return tables.get(chosen) if chosen else None


def prompt_of(args: list[str]) -> str:
    words, i = [], 0
    while i < len(args):
        if args[i] in VALUE_OPTIONS:
            i += 2
            continue
        if not args[i].startswith("-"):
            words.append(args[i])
        i += 1
    return words[-1] if words else ""


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    for k, v in {"content-type": "application/json", **headers}.items():
        req.add_header(k, v)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def refresh(doc: dict[str, Any]) -> bool:
    url = os.environ.get("CODEX_REFRESH_TOKEN_URL_OVERRIDE", "https://auth.openai.com/oauth/token")
    tokens = doc.get("tokens") or {}
    body = {
        "client_id": CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": tokens.get("refresh_token", ""),
        "refresh_reason": "unauthorized_recovery",
    }
    status, _, raw = post(url, body, {})
    log("refresh", status=status)
    if status != 200:
        return False
    got = json.loads(raw)
    doc = read_auth() or doc
    doc["tokens"] = {
        **(doc.get("tokens") or {}),
        **{k: got[k] for k in ("id_token", "access_token", "refresh_token") if k in got},
    }
    doc["last_refresh"] = datetime.now().astimezone().isoformat()
    write_auth(doc)
    return True


def turn(base: str, tokens: dict[str, Any], prompt: str) -> tuple[int, Any, bytes]:
    bearer = os.environ.get("CODEX_API_KEY") or os.environ.get("CODEX_ACCESS_TOKEN")
    headers = {
        "authorization": f"Bearer {bearer or tokens.get('access_token', '')}",
        "accept": "text/event-stream",
        "originator": "codex_exec",
    }
    if tokens.get("account_id"):
        headers["chatgpt-account-id"] = tokens["account_id"]
    body = {"model": "gpt-5.5", "stream": True, "input": [{"role": "user", "content": prompt}]}
    return post(base.rstrip("/") + "/responses", body, headers)


def text_of(raw: bytes) -> str:
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("data:"):
            with_data = line[5:].strip()
            try:
                ev = json.loads(with_data)
            except ValueError:
                continue
            if ev.get("type") == "response.output_text.delta":
                out.append(ev.get("delta", ""))
    return "".join(out)


def refused(status: int, raw: bytes) -> int:
    try:
        err = json.loads(raw).get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    if status == 429 and err.get("type") == "usage_limit_reached":
        at = err.get("resets_at") or time.time() + 3600
        when = datetime.fromtimestamp(float(at)).strftime("%I:%M %p").lstrip("0")
        print("ERROR: " + LIMIT.format(at=when), file=sys.stderr)
    elif status == 429:
        print(f"ERROR: {THROTTLE}", file=sys.stderr)
    else:
        print(f"ERROR: unexpected status {status}: {raw[:200]!r}", file=sys.stderr)
    return 1


def one_turn(base: str, doc: dict[str, Any], prompt: str) -> tuple[int, dict[str, Any]]:
    """One turn with the 401 recovery Codex does; (exit status or -1 to go on, the login)."""
    tokens = doc.get("tokens") or {}
    status, _, raw = turn(base, tokens, prompt)
    if status == 401:
        now = read_auth()
        now_tokens = now.get("tokens") or {}
        if now_tokens.get("account_id") != tokens.get("account_id"):
            print(f"ERROR: {OTHER_ACCOUNT}", file=sys.stderr)
            return 1, doc
        same = now_tokens.get("access_token") == tokens.get("access_token")
        if same and not refresh(now):
            print(f"ERROR: {DEAD}", file=sys.stderr)
            return 1, doc
        doc = read_auth()
        status, _, raw = turn(base, doc.get("tokens") or {}, prompt)
    log("turn", status=status)
    if status != 200:
        return refused(status, raw), doc
    print(text_of(raw))
    return -1, doc


def session_of(args: list[str]) -> str:
    """The session this run continues (``resume ID``) or begins; a begun one is recorded as
    Codex records it: ``sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl`` opening with
    ``session_meta`` (id, cwd, the account it is scoped to)."""
    if "resume" in args:
        after = args[args.index("resume") + 1 :]
        named = [a for a in after[:-1] if not a.startswith("-")]
        if named:
            return named[0]
    sid = str(uuid.uuid4())
    now = datetime.now()
    day = auth_path().parent / "sessions" / now.strftime("%Y/%m/%d")
    day.mkdir(parents=True, exist_ok=True)
    tokens = read_auth().get("tokens") or {}
    meta = {
        "type": "session_meta",
        "payload": {
            "id": sid,
            "cwd": os.getcwd(),
            "account_scoped": True,
            "creator_account_id": tokens.get("account_id"),
        },
    }
    name = f"rollout-{now.strftime('%Y-%m-%dT%H-%M-%S')}-{sid}.jsonl"
    (day / name).write_text(json.dumps(meta) + "\n", encoding="utf-8")
    return sid


def main(args: list[str]) -> int:
    log("start", argv=["codex", *args])
    log("session", id=session_of(args))
    base = provider(args)
    if base is None:
        print("ERROR: the fake Codex needs a provider given with -c", file=sys.stderr)
        return 2
    doc = read_auth()
    if not doc.get("tokens"):
        print("ERROR: Not logged in", file=sys.stderr)
        return 1
    if os.environ.get("FAKE_CODEX_REFRESH") == "1":
        if not refresh(doc):
            print(f"ERROR: {DEAD}", file=sys.stderr)
            return 1
        doc = read_auth()
    for _ in range(int(os.environ.get("FAKE_CODEX_TURNS", "1") or 1)):
        status, doc = one_turn(base, doc, prompt_of(args))
        if status != -1:
            return status
    return 0


def install(bin_dir: Path, python: str | None = None) -> Path:
    """Create ``codex`` in ``bin_dir``, running this script."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "codex"
    script = Path(__file__).resolve()
    exe.write_text(f'#!/bin/sh\nexec "{python or sys.executable}" "{script}" "$@"\n')
    exe.chmod(0o755)
    return exe


if __name__ == "__main__":
    status = main(sys.argv[1:])
    log("end", status=status)
    sys.exit(status)
