"""The Codex target (acct.services.targets.codex): Codex's auth.json, written safely.

Contract-style like tests/test_targets_contract.py; the file's shape, locks and settings are the
ones measured on the Codex CLI 0.171.0 (docs/codex.md). Tokens are JWTs minted by the fake
ChatGPT server's helper so their claims are real.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

from acct.base.errors import Busy, CorruptFile, HeldByTarget, NeedsLogin, UsageError
from acct.base.models import Account, Tokens
from acct.services.targets import TARGET_NAMES
from acct.services.targets.base import Entry, TargetChanged, entry_fingerprint
from acct.services.targets.codex import LOCK_NAMES, Codex, codex_home, running_codex
from tests.conftest import clean_env
from tests.fake_chatgpt.server import AUTH_CLAIM, jwt

EXP = 2_000_000_000


def token(account_id: str = "acc-1", plan: str = "plus", email: str = "w@example.com") -> str:
    return jwt(
        {
            "exp": EXP,
            "email": email,
            AUTH_CLAIM: {"chatgpt_account_id": account_id, "chatgpt_plan_type": plan},
        }
    )


def chatgpt_account(
    name: str = "work", *, refresh: str = "rt_RRRR", account_id: str = "acc-1"
) -> Account:
    access = token(account_id)
    return Account(
        name=name,
        provider="chatgpt",
        email=f"{name}@example.com",
        plan="plus",
        tokens=Tokens(
            access=access,
            refresh=refresh,
            expires_at=EXP,
            extra={"id_token": token(account_id), "account_id": account_id},
        ),
    )


@pytest.fixture
def tenv(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return clean_env(home)


@pytest.fixture
def codex() -> Codex:
    return Codex(lock_timeout=0.5)


def test_codex_is_registered_and_takes_chatgpt_logins_only(
    codex: Codex, tenv: dict[str, str]
) -> None:
    assert "codex" in TARGET_NAMES and codex.provider == "chatgpt"
    claude = Account(name="claude", tokens=Tokens("sk-ant-oat01-a", "sk-ant-ort01-b", EXP))
    with pytest.raises(UsageError, match="is an anthropic login; codex needs a ChatGPT login"):
        codex.write(tenv, claude)
    assert not codex.path(tenv).exists()


def test_path_is_codex_home_auth_json(tenv: dict[str, str], tmp_path: Path) -> None:
    assert Codex().path(tenv) == Path(tenv["HOME"]) / ".codex" / "auth.json"
    moved = {**tenv, "CODEX_HOME": str(tmp_path / "ch")}
    assert Codex().path(moved) == tmp_path / "ch" / "auth.json"
    assert codex_home({**tenv, "CODEX_HOME": "relative/dir"}) == Path(tenv["HOME"]) / ".codex"


def test_write_gives_the_shape_codex_reads_0600(codex: Codex, tenv: dict[str, str]) -> None:
    entry = codex.write(tenv, chatgpt_account())
    path = codex.path(tenv)
    doc = json.loads(path.read_text())
    assert doc["auth_mode"] == "chatgpt" and doc["OPENAI_API_KEY"] is None
    assert set(doc["tokens"]) == {"id_token", "access_token", "refresh_token", "account_id"}
    assert doc["tokens"]["account_id"] == "acc-1" and doc["tokens"]["refresh_token"] == "rt_RRRR"
    assert doc["last_refresh"].endswith("Z")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert entry.tokens.refresh == "rt_RRRR" and entry.tokens.expires_at == EXP
    assert entry.subscription_type == "plus"


def test_round_trip_keeps_foreign_keys(codex: Codex, tenv: dict[str, str]) -> None:
    path = codex.path(tenv)
    path.parent.mkdir(mode=0o700)
    old = {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "agent_identity": "keep-me",
        "tokens": {
            "id_token": "x",
            "access_token": "a",
            "refresh_token": "r",
            "account_id": "old",
            "future_key": 1,
        },
        "last_refresh": "2026-01-01T00:00:00Z",
    }
    path.write_text(json.dumps(old))
    codex.write(tenv, chatgpt_account())
    doc = json.loads(path.read_text())
    assert doc["agent_identity"] == "keep-me" and doc["tokens"]["future_key"] == 1
    read = codex.read(tenv)
    assert read is not None and read.tokens.extra["account_id"] == "acc-1"


def test_read_takes_identity_from_the_tokens(codex: Codex, tenv: dict[str, str]) -> None:
    codex.write(tenv, chatgpt_account(account_id="acc-9"))
    entry = codex.read(tenv)
    assert entry is not None and not entry.blank
    assert entry.tokens.extra["id_token"] and entry.tokens.extra["account_id"] == "acc-9"


def test_an_api_key_login_is_another_kind_and_named_by_fingerprint(
    codex: Codex, tenv: dict[str, str]
) -> None:
    path = codex.path(tenv)
    path.parent.mkdir(mode=0o700)
    path.write_text(json.dumps({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-proj-SECRET"}))
    slot = codex.look(tenv)
    assert slot.entry is None and slot.other is not None and "API key" in slot.other
    assert "sk-proj-SECRET" not in slot.other


def test_corrupt_file_is_refused_and_left_unchanged(codex: Codex, tenv: dict[str, str]) -> None:
    path = codex.path(tenv)
    path.parent.mkdir(mode=0o700)
    path.write_text("{not json")
    with pytest.raises(CorruptFile):
        codex.write(tenv, chatgpt_account())
    assert path.read_text() == "{not json"
    path.write_text(json.dumps({"tokens": "nope"}))
    with pytest.raises(CorruptFile):
        codex.read(tenv)


@pytest.mark.parametrize("store", ["keyring", "auto", "ephemeral"])
def test_refuses_when_codex_keeps_its_login_elsewhere(
    codex: Codex, tenv: dict[str, str], store: str
) -> None:
    home = codex_home(tenv)
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(f'cli_auth_credentials_store = "{store}"\n')
    with pytest.raises(UsageError, match="cli_auth_credentials_store"):
        codex.write(tenv, chatgpt_account())
    assert not codex.path(tenv).exists()
    assert codex.doctor_checks(tenv, fix=False)[0].ok is False


def test_file_store_and_no_config_are_accepted(codex: Codex, tenv: dict[str, str]) -> None:
    assert codex.doctor_checks(tenv, fix=False)[0].ok is True
    home = codex_home(tenv)
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text('cli_auth_credentials_store = "file"\nmodel = "gpt-5.5"\n')
    codex.write(tenv, chatgpt_account())


def test_unparseable_config_refuses_the_write(codex: Codex, tenv: dict[str, str]) -> None:
    home = codex_home(tenv)
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("cli_auth_credentials_store = \n")
    with pytest.raises(CorruptFile):
        codex.write(tenv, chatgpt_account())


def test_an_anthropic_login_is_refused(codex: Codex, tenv: dict[str, str]) -> None:
    claude = Account(
        name="claude", tokens=Tokens("sk-ant-oat01-A", "sk-ant-ort01-R", EXP, ("user:inference",))
    )
    with pytest.raises(UsageError, match="needs a ChatGPT login"):
        codex.write(tenv, claude)
    assert not codex.path(tenv).exists()


def test_a_login_that_needs_renewing_is_refused(codex: Codex, tenv: dict[str, str]) -> None:
    acc = chatgpt_account()
    acc.needs_login = True
    with pytest.raises(NeedsLogin):
        codex.write(tenv, acc)


def test_expect_guards_against_a_concurrent_codex_write(codex: Codex, tenv: dict[str, str]) -> None:
    codex.write(tenv, chatgpt_account(refresh="rt_ONE"))
    seen = entry_fingerprint(codex.read(tenv))
    codex.write(tenv, chatgpt_account(refresh="rt_TWO"))  # Codex refreshed meanwhile
    with pytest.raises(TargetChanged):
        codex.write(tenv, chatgpt_account(refresh="rt_THREE"), expect=seen)
    assert json.loads(codex.path(tenv).read_text())["tokens"]["refresh_token"] == "rt_TWO"


HOLD = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize("lock_name", ["auth.lock", "auth.json.lock"])
def test_write_waits_for_codexs_own_flock(
    codex: Codex, tenv: dict[str, str], lock_name: str
) -> None:
    home = codex_home(tenv)
    home.mkdir(mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home / lock_name)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        with pytest.raises(Busy):
            codex.write(tenv, chatgpt_account())
        assert not codex.path(tenv).exists()
    finally:
        holder.communicate(b"")
    codex.write(tenv, chatgpt_account())  # free again
    assert codex.path(tenv).exists()


def test_the_locks_are_released_after_a_write(codex: Codex, tenv: dict[str, str]) -> None:
    codex.write(tenv, chatgpt_account())
    for name in ("auth.lock", "auth.json.lock"):
        fd = os.open(codex_home(tenv) / name, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if still held
        finally:
            os.close(fd)


TRY_LOCK = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("held")
    else:
        print("free")
    """
)


def _lock_state(path: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(path)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_renew_spends_the_refresh_token_with_both_of_codexs_locks_held(
    codex: Codex, tenv: dict[str, str]
) -> None:
    """Codex re-reads its file under these locks on a 401 before it refreshes (seen): one that
    gets its 401 while acct renews waits, then finds the rotated pair instead of spending the
    same refresh token. Its lock does not cover its own refresh request, hence has_lock False."""
    codex.write(tenv, chatgpt_account(refresh="rt_OLD"))
    doc = json.loads(codex.path(tenv).read_text())
    doc["last_refresh"] = "2026-01-01T00:00:00Z"
    doc["zzz_extra"] = 1
    codex.path(tenv).write_text(json.dumps(doc))
    seen: dict[str, str] = {}

    def spend(entry: Entry) -> Tokens:
        for name in ("auth.lock", "auth.json.lock"):
            seen[name] = _lock_state(codex_home(tenv) / name)
        seen["refresh"] = entry.tokens.refresh or ""
        return chatgpt_account(refresh="rt_NEW").tokens  # type: ignore[return-value]

    assert codex.has_lock(tenv) is False and codex.can_renew(tenv) is True
    after = codex.renew(tenv, spend)
    assert seen == {"auth.lock": "held", "auth.json.lock": "held", "refresh": "rt_OLD"}
    assert after is not None and after.tokens.refresh == "rt_NEW"
    written = json.loads(codex.path(tenv).read_text())
    assert written["tokens"]["refresh_token"] == "rt_NEW"
    assert written["last_refresh"] != "2026-01-01T00:00:00Z" and written["zzz_extra"] == 1
    assert stat.S_IMODE(codex.path(tenv).stat().st_mode) == 0o600
    assert [_lock_state(codex_home(tenv) / n) for n in LOCK_NAMES] == ["free", "free"]


def start_codex(program: Path, env: dict[str, str], cwd: str | None = None) -> subprocess.Popen:
    """A stand-in process the kernel names ``codex`` (a script of that name), once it runs."""
    proc = subprocess.Popen(
        [str(program)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=cwd
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_renew_spends_nothing_while_a_codex_runs_on_the_file(
    codex: Codex, tenv: dict[str, str], tmp_path: Path
) -> None:
    codex.write(tenv, chatgpt_account())
    before = codex.path(tenv).read_bytes()
    program = tmp_path / "codex"
    program.write_text("#!/bin/sh\necho ready\nread line\n")
    program.chmod(0o755)
    elsewhere = start_codex(program, {**tenv, "CODEX_HOME": str(tmp_path / "x")})
    # CODEX_HOME relative to its working directory names this file too
    relative = start_codex(program, {**tenv, "CODEX_HOME": ".codex"}, cwd=tenv["HOME"])
    spent: list[Entry] = []
    try:
        assert running_codex(codex_home(tenv)) == [relative.pid]
        with pytest.raises(HeldByTarget, match=rf"Codex is running on .* \(pid {relative.pid}\)"):
            codex.renew(tenv, lambda entry: spent.append(entry) or None)
    finally:
        for proc in (elsewhere, relative):
            proc.communicate(b"\n", timeout=30)
    assert spent == [] and codex.path(tenv).read_bytes() == before
    assert running_codex(codex_home(tenv)) == []


def test_remove_keeps_other_keys(codex: Codex, tenv: dict[str, str]) -> None:
    codex.write(tenv, chatgpt_account())
    assert codex.remove(tenv) is True
    doc = json.loads(codex.path(tenv).read_text())
    assert "tokens" not in doc and doc["auth_mode"] == "chatgpt"
    assert codex.remove(tenv) is False


def test_write_through_symlink_keeps_the_link(
    codex: Codex, tenv: dict[str, str], tmp_path: Path
) -> None:
    real = tmp_path / "real-auth.json"
    real.write_text("{}")
    link = codex.path(tenv)
    link.parent.mkdir(mode=0o700)
    link.symlink_to(real)
    codex.write(tenv, chatgpt_account())
    assert link.is_symlink() and json.loads(real.read_text())["tokens"]["account_id"] == "acc-1"


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["codex", "exec", "fix it"], ["codex", "exec", "resume", "--last", "GO ON"]),
        (
            ["codex", "exec", "--skip-git-repo-check", "-m", "gpt-5.5", "--json", "fix it"],
            [
                "codex",
                "exec",
                "--skip-git-repo-check",
                "-m",
                "gpt-5.5",
                "--json",
                "resume",
                "--last",
                "GO ON",
            ],
        ),
        (
            ["codex", "e", "-c", "model=x", "fix"],
            ["codex", "e", "-c", "model=x", "resume", "--last", "GO ON"],
        ),
        (
            ["codex", "exec", "resume", "--last", "again"],
            ["codex", "exec", "resume", "--last", "GO ON"],
        ),
        (
            ["codex", "exec", "resume", "01a2-id", "again"],
            ["codex", "exec", "resume", "01a2-id", "GO ON"],
        ),
        (["codex"], ["codex", "resume", "--last", "GO ON"]),
        (
            ["codex", "-m", "gpt-5.5", "build a thing"],
            ["codex", "-m", "gpt-5.5", "resume", "--last", "GO ON"],
        ),
        (["/usr/bin/codex", "resume", "--last"], ["/usr/bin/codex", "resume", "--last", "GO ON"]),
    ],
)
def test_resume_args(argv: list[str], want: list[str]) -> None:
    assert Codex().resume_args(argv, "GO ON") == want


SID = "01a236d9-510d-7561-9888-5cf2292670ee"


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["codex", "exec", "--json", "hi"], ["codex", "exec", "--json", "resume", SID, "GO ON"]),
        (
            ["codex", "exec", "resume", "--last", "--all", "hi"],
            ["codex", "exec", "resume", SID, "GO ON"],
        ),
        (["codex", "-m", "o3", "fix it"], ["codex", "-m", "o3", "resume", SID, "GO ON"]),
    ],
)
def test_after_a_switch_the_resume_names_the_interrupted_session(argv, want) -> None:
    # Codex 0.171.0 scopes sessions to the account they began on: `--last` on the next
    # account starts a new session, `resume <ID>` continues the interrupted one (seen).
    assert Codex().resume_session_args(argv, "GO ON", SID) == want
    assert Codex().resume_session_args(argv, "GO ON", None) == Codex().resume_args(argv, "GO ON")


def rollout(sessions: Path, sid: str, cwd: Path, when: float) -> Path:
    day = sessions / datetime.fromtimestamp(when).strftime("%Y/%m/%d")
    day.mkdir(parents=True, exist_ok=True)
    f = day / f"rollout-x-{sid}.jsonl"
    meta = {"type": "session_meta", "payload": {"id": sid, "cwd": str(cwd)}}
    f.write_text(json.dumps(meta) + "\n" + json.dumps({"type": "response_item"}) + "\n")
    os.utime(f, (when, when))
    return f


def test_the_runs_session_is_the_newest_one_begun_in_its_directory(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "CODEX_HOME": str(tmp_path / "codex")}
    sessions = tmp_path / "codex" / "sessions"
    here, other = tmp_path / "here", tmp_path / "other"
    now = time.time()
    rollout(sessions, "old", here, now - 600)  # before the run
    rollout(sessions, "mine", here, now - 5)
    rollout(sessions, "elsewhere", other, now - 1)  # newer, another directory
    assert Codex().run_session(env, here, now - 60) == "mine"
    assert Codex().run_session(env, tmp_path / "nowhere", now - 60) is None
    assert Codex().run_session({"HOME": str(tmp_path)}, here, now - 60) is None
