"""One contract over every target: the tools' credential files are read and written safely."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from acct.base.errors import Busy, CorruptFile
from acct.base.models import Account, Tokens
from acct.services.targets import TARGETS, get_target, target_for_command, targets_of
from acct.services.targets.base import TargetChanged, entry_fingerprint
from acct.services.targets.claude_code import ClaudeCode, identity_file
from acct.services.targets.pi import Pi
from tests.conftest import clean_env

# The targets of Anthropic logins (Codex, of ChatGPT logins, has its own contract in
# tests/test_codex_target.py).
TARGET_NAMES = targets_of("anthropic")

# What each tool keeps next to its entry; acct must keep all of it.
FOREIGN = {
    "claude-code": {
        "mcpOAuth": {"server|abc": {"accessToken": "mcp-secret", "expiresAt": 1}},
        "pluginSecrets": {"p": "x"},
        "trustedDeviceToken": "tdt",
    },
    "opencode": {"openai": {"type": "oauth", "refresh": "r", "access": "a", "expires": 1}},
    "pi": {
        "openai-codex": {
            "type": "oauth",
            "refresh": "r",
            "access": "a",
            "expires": 1,
            "accountId": "x",
        }
    },
}
RELOCATE = {
    "claude-code": "CLAUDE_CONFIG_DIR",
    "opencode": "XDG_DATA_HOME",
    "pi": "PI_CODING_AGENT_DIR",
}


def account(
    name: str = "work", *, access: str = "sk-ant-oat01-AAAA", refresh: str = "sk-ant-ort01-RRRR"
) -> Account:
    return Account(
        name=name,
        uuid="u-1",
        email=f"{name}@example.com",
        org_uuid="o-1",
        org_name="Org",
        display_name="Work",
        plan="max",
        tier="default_claude_max_20x",
        tokens=Tokens(
            access=access,
            refresh=refresh,
            expires_at=2_000_000_000,
            scopes=("user:inference", "user:profile"),
        ),
    )


@pytest.fixture
def tenv(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return clean_env(home)


def entry_key(name: str) -> str:
    return "claudeAiOauth" if name == "claude-code" else "anthropic"


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_round_trip_keeps_foreign_keys_and_mode(name: str, tenv: dict[str, str]) -> None:
    t = get_target(name)
    path = t.path(tenv)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(FOREIGN[name]))
    entry = t.write(tenv, account())
    assert entry.tokens.access == "sk-ant-oat01-AAAA"
    doc = json.loads(path.read_text())
    for k, v in FOREIGN[name].items():
        assert doc[k] == v
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = t.read(tenv)
    assert back is not None and not back.blank
    assert back.tokens.refresh == "sk-ant-ort01-RRRR"
    assert back.tokens.expires_at == 2_000_000_000
    assert back.lineage_fingerprint == account().tokens.lineage_fingerprint
    raw = doc[entry_key(name)]
    if name == "claude-code":
        assert raw["expiresAt"] == 2_000_000_000_000
        assert "user:inference" in raw["scopes"]
        assert raw["subscriptionType"] == "max"
    else:
        assert raw == {
            "type": "oauth",
            "refresh": "sk-ant-ort01-RRRR",
            "access": "sk-ant-oat01-AAAA",
            "expires": 2_000_000_000_000,
        }


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_new_file_is_created_0600(name: str, tenv: dict[str, str]) -> None:
    t = get_target(name)
    t.write(tenv, account())
    assert stat.S_IMODE(t.path(tenv).stat().st_mode) == 0o600


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_write_through_symlink_keeps_the_link(
    name: str, tenv: dict[str, str], tmp_path: Path
) -> None:
    t = get_target(name)
    real = tmp_path / "dotfiles" / "creds.json"
    real.parent.mkdir()
    real.write_text(json.dumps(FOREIGN[name]))
    link = t.path(tenv)
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    t.write(tenv, account())
    assert link.is_symlink() and os.readlink(link) == str(real)
    doc = json.loads(real.read_text())
    assert doc[entry_key(name)]
    assert all(doc[k] == v for k, v in FOREIGN[name].items())


@pytest.mark.parametrize("name", TARGET_NAMES)
@pytest.mark.parametrize("content", ['{"broken": ', "[1, 2]", '{"%s": "text"}'])
def test_corrupt_file_is_refused_and_left_unchanged(
    name: str, content: str, tenv: dict[str, str]
) -> None:
    t = get_target(name)
    path = t.path(tenv)
    path.parent.mkdir(parents=True)
    text = content % entry_key(name) if "%s" in content else content
    path.write_text(text)
    with pytest.raises(CorruptFile):
        t.read(tenv)
    with pytest.raises(CorruptFile):
        t.write(tenv, account())
    with pytest.raises(CorruptFile):
        t.remove(tenv)
    assert path.read_text() == text


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_blanked_entry_is_detected(name: str, tenv: dict[str, str]) -> None:
    t = get_target(name)
    path = t.path(tenv)
    path.parent.mkdir(parents=True)
    if name == "claude-code":
        blank = {
            "accessToken": "",
            "refreshToken": "",
            "expiresAt": 0,
            "scopes": ["user:inference"],
        }
    else:
        blank = {"type": "oauth", "access": "", "refresh": "", "expires": 0}
    path.write_text(json.dumps({entry_key(name): blank}))
    entry = t.read(tenv)
    assert entry is not None and entry.blank
    assert entry_fingerprint(entry) == "-"


@pytest.mark.parametrize("name", TARGET_NAMES)
@pytest.mark.parametrize(
    ("written", "seconds"),
    [(1_900_000_000_123, 1_900_000_000), (1_900_000_000, 1_900_000_000), (0, 0)],
)
def test_expiry_in_ms_or_seconds(
    name: str, written: int, seconds: int, tenv: dict[str, str]
) -> None:
    t = get_target(name)
    path = t.path(tenv)
    path.parent.mkdir(parents=True)
    if name == "claude-code":
        obj = {"accessToken": "a", "refreshToken": "r", "expiresAt": written, "scopes": []}
    else:
        obj = {"type": "oauth", "access": "a", "refresh": "r", "expires": written}
    path.write_text(json.dumps({entry_key(name): obj}))
    entry = t.read(tenv)
    assert entry is not None and entry.tokens.expires_at == seconds


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_env_relocates_the_file(name: str, tenv: dict[str, str], tmp_path: Path) -> None:
    t = get_target(name)
    default = t.path(tenv)
    moved = dict(tenv, **{RELOCATE[name]: str(tmp_path / "elsewhere")})
    assert t.path(moved) != default
    assert str(t.path(moved)).startswith(str(tmp_path / "elsewhere"))
    t.write(moved, account())
    assert t.path(moved).exists() and not default.exists()


def test_claude_code_paths(tenv: dict[str, str], tmp_path: Path) -> None:
    t = ClaudeCode()
    home = Path(tenv["HOME"])
    assert t.path(tenv) == home / ".claude" / ".credentials.json"
    assert identity_file(tenv) == home / ".claude.json"
    both = dict(
        tenv,
        CLAUDE_CONFIG_DIR=str(tmp_path / "cfg"),
        CLAUDE_SECURESTORAGE_CONFIG_DIR=str(tmp_path / "sec"),
    )
    assert t.path(both) == tmp_path / "sec" / ".credentials.json"
    assert identity_file(both) == tmp_path / "cfg" / ".claude.json"


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_expect_guards_against_a_concurrent_tool_write(name: str, tenv: dict[str, str]) -> None:
    t = get_target(name)
    t.write(tenv, account())
    seen = entry_fingerprint(t.read(tenv))
    t.write(
        tenv, account(access="sk-ant-oat01-BBBB", refresh="sk-ant-ort01-SSSS")
    )  # "the tool" rotates
    before = t.path(tenv).read_bytes()
    with pytest.raises(TargetChanged):
        t.write(tenv, account("other", access="sk-ant-oat01-CCCC"), expect=seen)
    assert t.path(tenv).read_bytes() == before


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_remove_keeps_other_keys(name: str, tenv: dict[str, str]) -> None:
    t = get_target(name)
    path = t.path(tenv)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(FOREIGN[name]))
    t.write(tenv, account())
    assert t.remove(tenv) is True
    assert json.loads(path.read_text()) == FOREIGN[name]
    assert t.read(tenv) is None
    assert t.remove(tenv) is False


def test_claude_code_merges_identity_key_by_key(tenv: dict[str, str]) -> None:
    ident = identity_file(tenv)
    ident.write_text(
        json.dumps(
            {
                "numStartups": 7,
                "projects": {"/x": {"allowedTools": []}},
                "oauthAccount": {
                    "accountUuid": "old",
                    "emailAddress": "old@example.com",
                    "organizationRole": "admin",
                    "displayName": "Old",
                },
            }
        )
    )
    acc = account().copy(display_name=None)
    t = ClaudeCode()
    t.write(tenv, acc)
    assert json.loads(ident.read_text())["oauthAccount"]["accountUuid"] == "old"  # not yet
    t.after_write(tenv, t.path(tenv), acc)  # custody runs it once the write is recorded
    doc = json.loads(ident.read_text())
    assert doc["numStartups"] == 7 and doc["projects"] == {"/x": {"allowedTools": []}}
    oa = doc["oauthAccount"]
    assert oa["accountUuid"] == "u-1" and oa["emailAddress"] == "work@example.com"
    assert oa["organizationUuid"] == "o-1" and oa["organizationName"] == "Org"
    assert oa["organizationRole"] == "admin"
    assert "displayName" not in oa  # belonged to the previous account


def test_claude_code_refuses_unparseable_identity_file(tenv: dict[str, str]) -> None:
    ident = identity_file(tenv)
    ident.write_text("{not json")
    t = ClaudeCode()
    with pytest.raises(CorruptFile):
        t.write(tenv, account())
    assert ident.read_text() == "{not json"
    assert not t.path(tenv).exists()


def test_claude_code_needs_inference_scope(tenv: dict[str, str]) -> None:
    from acct.base.errors import AuthError

    acc = account()
    acc = acc.copy(
        tokens=Tokens(access="a", refresh="r", expires_at=2_000_000_000, scopes=("user:profile",))
    )
    with pytest.raises(AuthError):
        ClaudeCode().write(tenv, acc)
    no_scopes = account().copy(tokens=Tokens(access="a", refresh="r", expires_at=2_000_000_000))
    ClaudeCode().write(tenv, no_scopes)
    raw = json.loads(ClaudeCode().path(tenv).read_text())["claudeAiOauth"]
    assert "user:inference" in raw["scopes"]


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_api_key_and_needs_login_accounts_are_refused(name: str, tenv: dict[str, str]) -> None:
    from acct.base.errors import NeedsLogin, UsageError

    t = get_target(name)
    with pytest.raises(UsageError):
        t.write(tenv, Account(name="k", kind="api_key", api_key="sk-ant-api03-x"))
    with pytest.raises(NeedsLogin):
        t.write(tenv, account().copy(needs_login=True))
    assert not t.path(tenv).exists()


def _hold(lock: Path) -> None:
    lock.mkdir(parents=True)


def test_pi_lock_is_honoured(tenv: dict[str, str]) -> None:
    t = Pi(lock_timeout=0.3)
    path = t.path(tenv)
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    lock = Path(str(path) + ".lock")
    _hold(lock)
    with pytest.raises(Busy):
        t.write(tenv, account())
    assert path.read_text() == "{}"
    # A writer waiting on the lock goes ahead once the tool lets go.
    waiting = Pi(lock_timeout=30)
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(waiting.write(tenv, account())))
    worker.start()
    lock.rmdir()
    worker.join(30)
    assert done and waiting.read(tenv) is not None
    assert not lock.exists()


def test_pi_stale_lock_is_taken_over(tenv: dict[str, str]) -> None:
    t = Pi(lock_timeout=0.3)
    path = t.path(tenv)
    lock = Path(str(path) + ".lock")
    _hold(lock)
    old = time.time() - 120
    os.utime(lock, (old, old))
    t.write(tenv, account())
    assert t.read(tenv) is not None and not lock.exists()


def test_claude_code_lock_is_honoured(tenv: dict[str, str]) -> None:
    t = ClaudeCode(lock_timeout=0.3)
    lock = Path(tenv["HOME"]) / ".claude" / ".oauth_refresh.lock"
    _hold(lock)
    with pytest.raises(Busy):
        t.write(tenv, account())
    assert not t.path(tenv).exists()
    lock.rmdir()
    t.write(tenv, account())
    assert t.read(tenv) is not None


def test_registry() -> None:
    assert set(TARGETS) == {"claude-code", "opencode", "pi", "codex", "pi-chatgpt"}
    assert target_for_command("/usr/local/bin/claude") == "claude-code"
    assert target_for_command("opencode") == "opencode"
    assert target_for_command("pi") == "pi"
    assert target_for_command("codex") == "codex"
    assert target_for_command("vim") is None
    assert {n: TARGETS[n].provider for n in TARGETS} == {
        "claude-code": "anthropic",
        "opencode": "anthropic",
        "pi": "anthropic",
        "codex": "chatgpt",
        "pi-chatgpt": "chatgpt",
    }
    assert target_for_command("pi") == "pi"  # Pi's Claude slot; its ChatGPT one is named
    from acct.base.errors import UsageError

    with pytest.raises(UsageError, match="claude-code, opencode, pi, codex, pi-chatgpt"):
        get_target("gemini")
    for t in TARGETS.values():
        assert t.patterns.quota and t.patterns.auth
    assert TARGETS["opencode"].extra_usage_billing and TARGETS["pi"].extra_usage_billing
    assert not TARGETS["claude-code"].extra_usage_billing


CC_QUOTA = [
    "You've hit your session limit · resets 9:20am (UTC)",
    "You've hit your weekly limit · resets Nov 26, 8:12am (UTC)",
    "You've hit your usage credit limit · resets 3pm (UTC)",
    "You've hit your Opus limit · resets 3pm (UTC)",
    "You've hit your limit · resets 3pm (UTC)",
    '{"type":"result","is_error":true,"api_error_status":429,"result":"x"}',
    '{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1,"rateLimitType":"five_hour"}}',
    "Claude AI usage limit reached|1764100000",
]


def _matches(patterns: tuple[str, ...], text: str) -> bool:
    import re

    return any(re.search(p, text) for p in patterns)


@pytest.mark.parametrize("text", CC_QUOTA)
def test_claude_code_quota_patterns(text: str) -> None:
    assert _matches(TARGETS["claude-code"].patterns.quota, text)


def test_patterns_tell_throttle_and_auth_apart() -> None:
    cc = TARGETS["claude-code"].patterns
    throttle = (
        "API Error: Server is temporarily limiting requests (not your usage limit) · Rate limited"
    )
    assert _matches(cc.throttle, throttle) and not _matches(cc.quota, throttle)
    assert _matches(cc.auth, "Not logged in · Please run /login")
    assert not _matches(
        cc.quota, '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}'
    )
    pi = TARGETS["pi"].patterns
    assert _matches(
        pi.quota, '429 {"type":"error","error":{"type":"rate_limit_error","message":"x"}}'
    )
    assert _matches(pi.auth, '401 {"type":"error","error":{"type":"authentication_error"}}')
    oc = TARGETS["opencode"].patterns
    assert _matches(
        oc.quota,
        "Error: This request would exceed your account's rate limit. Please try again later.",
    )
    assert _matches(oc.auth, "Error: Invalid bearer token")


@pytest.mark.parametrize(
    ("name", "argv", "expected"),
    [
        ("claude-code", ["claude"], ["claude", "--continue"]),
        (
            "claude-code",
            ["claude", "-p", "fix it", "--model", "opus"],
            ["claude", "--continue", "-p", "CONT", "--model", "opus"],
        ),
        (
            "claude-code",
            ["claude", "--print", "--output-format", "json", "fix"],
            ["claude", "--continue", "--print", "--output-format", "json", "CONT"],
        ),
        (
            "claude-code",
            ["claude", "--continue", "-p", "x"],
            ["claude", "--continue", "-p", "CONT"],
        ),
        ("claude-code", ["claude", "-p"], ["claude", "--continue", "-p", "CONT"]),
        (
            "claude-code",
            ["claude", "--resume", "0e7a3c1e-1111-2222-3333-444444444444", "-p", "x"],
            ["claude", "--resume", "0e7a3c1e-1111-2222-3333-444444444444", "-p", "CONT"],
        ),
        ("claude-code", ["claude", "--resume"], ["claude", "--continue"]),
        (
            "opencode",
            ["opencode", "run", "fix", "it", "-m", "anthropic/claude"],
            ["opencode", "run", "--continue", "-m", "anthropic/claude", "CONT"],
        ),
        ("opencode", ["opencode", "run", "-c", "fix"], ["opencode", "run", "-c", "CONT"]),
        ("opencode", ["opencode"], ["opencode", "--continue"]),
        (
            "pi",
            ["pi", "--provider", "anthropic", "-p", "hi"],
            ["pi", "--continue", "--provider", "anthropic", "-p", "CONT"],
        ),
        ("pi", ["pi"], ["pi", "--continue"]),
    ],
)
def test_resume_args(name: str, argv: list[str], expected: list[str]) -> None:
    assert TARGETS[name].resume_args(argv, "CONT") == expected


@pytest.mark.parametrize("name", ["claude-code", "pi"])
def test_renew_refreshes_in_place_under_the_tools_lock(name: str, tenv: dict[str, str]) -> None:
    t = get_target(name)
    path = t.path(tenv)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(FOREIGN[name]))
    t.write(tenv, account())
    lock = t.lock_dir(tenv, path)
    assert lock is not None
    locked: list[bool] = []

    def refresh(entry: object) -> Tokens:
        locked.append(lock.exists())
        return Tokens("sk-ant-oat01-NEW", "sk-ant-ort01-NEW", 2_100_000_000, ("user:inference",))

    got = t.renew(tenv, refresh)
    assert locked == [True] and not lock.exists()
    assert got is not None and got.tokens.refresh == "sk-ant-ort01-NEW"
    back = t.read(tenv)
    assert back is not None and back.tokens.access == "sk-ant-oat01-NEW"
    assert back.tokens.expires_at == 2_100_000_000
    doc = json.loads(path.read_text())
    assert all(doc[k] == v for k, v in FOREIGN[name].items())
    assert t.renew(tenv, lambda entry: None) == back  # nothing to do: the file is left alone


def test_renew_is_refused_for_a_tool_without_a_lock(tenv: dict[str, str]) -> None:
    from acct.base.errors import UsageError

    t = get_target("opencode")
    t.write(tenv, account())
    before = t.path(tenv).read_bytes()
    with pytest.raises(UsageError):
        t.renew(tenv, lambda entry: None)
    assert t.path(tenv).read_bytes() == before


@pytest.mark.parametrize("name", ["opencode", "pi"])
def test_api_key_entry_is_named_and_guarded_by_compare_and_swap(
    name: str, tenv: dict[str, str]
) -> None:
    from acct.services.targets.base import NO_ENTRY

    t = get_target(name)
    path = t.path(tenv)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"anthropic": {"type": "api", "key": "sk-ant-api03-K"}}))
    slot = t.look(tenv)
    assert slot.entry is None and t.read(tenv) is None
    assert slot.other is not None and "API key" in slot.other and "sk-ant" not in slot.other
    with pytest.raises(TargetChanged):
        t.write(tenv, account(), expect=NO_ENTRY)  # what acct saw was not "no entry"
    t.write(tenv, account(), expect=slot.fingerprint)
    assert t.read(tenv) is not None


@pytest.mark.parametrize(
    ("name", "argv", "expected"),
    [
        (
            "claude-code",
            ["claude", "--effort", "high", "-p", "fix it"],
            ["claude", "--continue", "--effort", "high", "-p", "CONT"],
        ),
        (
            "claude-code",
            ["claude", "-n", "w", "-p", "x"],
            ["claude", "--continue", "-n", "w", "-p", "CONT"],
        ),
        (
            "claude-code",
            ["claude", "--debug", "api", "-p", "x"],
            ["claude", "--continue", "--debug", "api", "-p", "CONT"],
        ),
        (
            "claude-code",
            ["claude", "--file", "f:a", "f:b", "-p", "x"],
            ["claude", "--continue", "--file", "f:a", "f:b", "-p", "CONT"],
        ),
        # Pi 1.6.0 refuses --session-id next to --continue: the id reopens the session alone.
        ("pi", ["pi", "--session-id", "x", "hi"], ["pi", "--session-id", "x", "CONT"]),
        ("pi", ["pi", "-t", "read", "-p", "hi"], ["pi", "--continue", "-t", "read", "-p", "CONT"]),
        ("pi", ["pi", "--fork", "s1", "-p", "hi"], ["pi", "--continue", "-p", "CONT"]),
        (
            "opencode",
            ["opencode", "run", "-f", "a", "b", "-m", "x", "hi"],
            ["opencode", "run", "--continue", "-f", "a", "b", "-m", "x", "CONT"],
        ),
    ],
)
def test_resume_args_keep_every_option_the_tool_knows(
    name: str, argv: list[str], expected: list[str]
) -> None:
    """An option's value never becomes the continuation prompt, and the prompt is never lost
    (the tables in acct.domain.resume follow each pinned tool's own parser)."""
    assert TARGETS[name].resume_args(argv, "CONT") == expected
