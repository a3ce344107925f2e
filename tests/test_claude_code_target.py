"""Claude Code's credentials file: where it is, the locks around it, what acct writes into it.

Claude Code 2.1.197 keeps the file in ``m7()`` (``$CLAUDE_SECURESTORAGE_CONFIG_DIR``; ``~/.claude``
when that is set but empty; else the config dir) and refreshes holding two proper-lockfile
directories, in this order: ``m7()/.oauth_refresh.lock``, then ``${realpath(m7())}.lock``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from acct.base.errors import Busy
from acct.base.models import Account, Tokens
from acct.services.targets.claude_code import ClaudeCode, storage_dir
from tests.conftest import clean_env


def account(refresh: str = "sk-ant-ort01-RRRR", access: str = "sk-ant-oat01-AAAA") -> Account:
    return Account(
        name="work",
        uuid="u-1",
        email="work@example.com",
        plan="max",
        tier="default_claude_max_20x",
        tokens=Tokens(
            access=access, refresh=refresh, expires_at=2_000_000_000, scopes=("user:inference",)
        ),
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def tenv(home: Path) -> dict[str, str]:
    return clean_env(home)


def hold(lock: Path) -> Path:
    lock.mkdir(parents=True)
    return lock


# --- where -------------------------------------------------------------------------------------


def test_storage_dir_follows_claude_code(tenv: dict[str, str], home: Path, tmp_path: Path) -> None:
    cfg, sec = tmp_path / "cfg", tmp_path / "sec"
    assert storage_dir(tenv) == home / ".claude"
    assert storage_dir({**tenv, "CLAUDE_CONFIG_DIR": str(cfg)}) == cfg
    both = {**tenv, "CLAUDE_CONFIG_DIR": str(cfg), "CLAUDE_SECURESTORAGE_CONFIG_DIR": str(sec)}
    assert storage_dir(both) == sec
    # Set but empty: ~/.claude, not the config dir.
    empty = {**tenv, "CLAUDE_CONFIG_DIR": str(cfg), "CLAUDE_SECURESTORAGE_CONFIG_DIR": ""}
    assert storage_dir(empty) == home / ".claude"
    assert ClaudeCode().path(empty) == home / ".claude" / ".credentials.json"


@pytest.mark.parametrize(
    ("env", "lock", "legacy"),
    [
        ({}, ".claude/.oauth_refresh.lock", ".claude.lock"),
        ({"CLAUDE_CONFIG_DIR": "{t}/cfg"}, "{t}/cfg/.oauth_refresh.lock", "{t}/cfg.lock"),
        # The refresh lock is in the secure-storage dir, not in the config dir.
        (
            {"CLAUDE_CONFIG_DIR": "{t}/cfg", "CLAUDE_SECURESTORAGE_CONFIG_DIR": "{t}/sec"},
            "{t}/sec/.oauth_refresh.lock",
            "{t}/sec.lock",
        ),
        (
            {"CLAUDE_CONFIG_DIR": "{t}/cfg", "CLAUDE_SECURESTORAGE_CONFIG_DIR": ""},
            ".claude/.oauth_refresh.lock",
            ".claude.lock",
        ),
    ],
)
def test_lock_paths(
    tenv: dict[str, str],
    home: Path,
    tmp_path: Path,
    env: dict[str, str],
    lock: str,
    legacy: str,
) -> None:
    e = {**tenv, **{k: v.format(t=tmp_path) for k, v in env.items()}}
    t = ClaudeCode()
    path = t.path(e)
    assert t.lock_dir(e, path) == home / lock.format(t=tmp_path)
    assert t.legacy_lock_dir(e, path) == home / legacy.format(t=tmp_path)


@pytest.mark.parametrize("which", ["lock", "legacy"])
def test_each_lock_is_honoured(tenv: dict[str, str], tmp_path: Path, which: str) -> None:
    e = {**tenv, "CLAUDE_SECURESTORAGE_CONFIG_DIR": str(tmp_path / "sec")}
    t = ClaudeCode(lock_timeout=0.3)
    path = t.path(e)
    held = hold(t.lock_dir(e, path) if which == "lock" else t.legacy_lock_dir(e, path))
    with pytest.raises(Busy):
        t.write(e, account())
    assert not path.exists()
    held.rmdir()
    t.write(e, account())
    assert t.read(e) is not None
    assert not t.lock_dir(e, path).exists() and not t.legacy_lock_dir(e, path).exists()


def test_the_config_dirs_lock_does_not_guard_the_secure_storage(
    tenv: dict[str, str], tmp_path: Path
) -> None:
    e = {
        **tenv,
        "CLAUDE_CONFIG_DIR": str(tmp_path / "cfg"),
        "CLAUDE_SECURESTORAGE_CONFIG_DIR": str(tmp_path / "sec"),
    }
    hold(tmp_path / "cfg" / ".oauth_refresh.lock")
    ClaudeCode(lock_timeout=0.3).write(e, account())
    assert (tmp_path / "sec" / ".credentials.json").exists()


def test_the_legacy_lock_is_beside_the_real_directory(tenv: dict[str, str], tmp_path: Path) -> None:
    """proper-lockfile is given ``${realpath(dir)}.lock``; the new lock keeps the path as it is."""
    real = tmp_path / "real" / "claude"
    real.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    e = {**tenv, "CLAUDE_SECURESTORAGE_CONFIG_DIR": str(link)}
    t = ClaudeCode(lock_timeout=0.3)
    path = t.path(e)
    assert t.lock_dir(e, path) == link / ".oauth_refresh.lock"
    assert t.legacy_lock_dir(e, path) == tmp_path / "real" / "claude.lock"
    held = hold(tmp_path / "real" / "claude.lock")
    with pytest.raises(Busy):
        t.write(e, account())
    held.rmdir()
    t.write(e, account())


def test_locks_are_taken_in_claude_codes_order(tenv: dict[str, str], home: Path) -> None:
    """acct holds the new lock while it waits for the legacy one, as Claude Code does."""
    t = ClaudeCode(lock_timeout=30)
    path = t.path(tenv)
    new, legacy = home / ".claude" / ".oauth_refresh.lock", hold(home / ".claude.lock")
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(t.write(tenv, account())))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not new.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert new.exists() and not path.exists()
    finally:
        legacy.rmdir()
        worker.join(30)
    assert done and t.read(tenv) is not None
    assert not new.exists() and not legacy.exists()


def test_a_stale_legacy_lock_is_taken_over(tenv: dict[str, str], home: Path) -> None:
    legacy = hold(home / ".claude.lock")
    old = time.time() - 60  # Claude Code's locks are stale after 10 s
    os.utime(legacy, (old, old))
    ClaudeCode(lock_timeout=0.3).write(tenv, account())
    assert not legacy.exists()


# --- what --------------------------------------------------------------------------------------


def write_entry(t: ClaudeCode, env: dict[str, str], entry: dict[str, object]) -> Path:
    path = t.path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"claudeAiOauth": entry, "mcpOAuth": {"s": {"accessToken": "m"}}}))
    return path


def test_another_lineage_gets_a_fresh_entry(tenv: dict[str, str]) -> None:
    """The previous account's ``clientId`` (Claude Code refreshes with it) must not follow."""
    t = ClaudeCode()
    path = write_entry(
        t,
        tenv,
        {
            "accessToken": "sk-ant-oat01-OTHER",
            "refreshToken": "sk-ant-ort01-OTHER",
            "expiresAt": 1,
            "scopes": ["user:inference"],
            "clientId": "someone-elses-client",
            "futureKey": {"x": 1},
        },
    )
    t.write(tenv, account())
    doc = json.loads(path.read_text())
    assert set(doc["claudeAiOauth"]) == {
        "accessToken",
        "refreshToken",
        "expiresAt",
        "scopes",
        "subscriptionType",
        "rateLimitTier",
    }
    assert doc["claudeAiOauth"]["refreshToken"] == "sk-ant-ort01-RRRR"
    assert doc["mcpOAuth"] == {"s": {"accessToken": "m"}}  # the rest of the file stays


def test_the_same_lineage_keeps_its_keys(tenv: dict[str, str]) -> None:
    t = ClaudeCode()
    path = write_entry(
        t,
        tenv,
        {
            "accessToken": "sk-ant-oat01-OLD",
            "refreshToken": "sk-ant-ort01-RRRR",
            "expiresAt": 1,
            "scopes": ["user:inference"],
            "clientId": "its-client",
        },
    )
    entry = t.write(tenv, account())
    raw = json.loads(path.read_text())["claudeAiOauth"]
    assert raw["clientId"] == "its-client" and raw["accessToken"] == "sk-ant-oat01-AAAA"
    assert entry.extra == {"clientId": "its-client"}


def test_a_blanked_entry_gives_nothing_to_the_next_login(tenv: dict[str, str]) -> None:
    t = ClaudeCode()
    path = write_entry(
        t,
        tenv,
        {"accessToken": "", "refreshToken": "", "expiresAt": 0, "clientId": "c"},
    )
    t.write(tenv, account())
    assert "clientId" not in json.loads(path.read_text())["claudeAiOauth"]


def test_renewing_in_place_keeps_the_lineages_keys(tenv: dict[str, str]) -> None:
    t = ClaudeCode()
    path = write_entry(
        t,
        tenv,
        {
            "accessToken": "sk-ant-oat01-OLD",
            "refreshToken": "sk-ant-ort01-OLD",
            "expiresAt": 1,
            "scopes": ["user:inference"],
            "subscriptionType": "max",
            "clientId": "its-client",
        },
    )
    rotated = Tokens("sk-ant-oat01-NEW", "sk-ant-ort01-NEW", 2_000_000_000, ("user:inference",))
    t.renew(tenv, lambda entry: rotated)
    raw = json.loads(path.read_text())["claudeAiOauth"]
    assert raw["clientId"] == "its-client" and raw["refreshToken"] == "sk-ant-ort01-NEW"
    assert raw["subscriptionType"] == "max"


def test_claude_code_2_1_332s_subscription_type_source_stays_with_its_lineage(
    tenv: dict[str, str],
) -> None:
    """2.1.332 adds ``subscriptionTypeSource`` (and when it checked, the time) on every run:
    acct's writes of that same lineage, and its renewals in place, keep them."""
    t = ClaudeCode()
    added = {"subscriptionTypeSource": "profile", "subscriptionTypeVerifiedAt": 1796190000000}
    path = write_entry(
        t,
        tenv,
        {
            "accessToken": "sk-ant-oat01-OLD",
            "refreshToken": "sk-ant-ort01-RRRR",
            "expiresAt": 1,
            "scopes": ["user:inference"],
            "subscriptionType": "max",
            **added,
        },
    )
    entry = t.write(tenv, account())
    raw = json.loads(path.read_text())["claudeAiOauth"]
    assert {k: raw[k] for k in added} == added and entry.extra == added
    rotated = Tokens("sk-ant-oat01-NEW", "sk-ant-ort01-NEW", 2_000_000_000, ("user:inference",))
    t.renew(tenv, lambda entry: rotated)
    raw = json.loads(path.read_text())["claudeAiOauth"]
    assert {k: raw[k] for k in added} == added and raw["refreshToken"] == "sk-ant-ort01-NEW"
