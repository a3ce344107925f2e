"""Accounts say their provider: the store schema (version 2), old stores, --json documents."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from acct.base.errors import CorruptFile
from acct.base.models import Account, Tokens
from acct.services.context import Ctx
from acct.services.store import SCHEMA_VERSION, dumps, loads
from tests.conftest import AcctRunner

ID_TOKEN = "eyJhbGciOiJub25lIn0.eyJlbWFpbCI6IncifQ.c2lnX3NlY3JldF9pZA"


@pytest.fixture
def env(offline_env: dict[str, str]) -> dict[str, str]:
    return offline_env


def chatgpt(name: str = "gpt") -> Account:
    return Account(
        name=name,
        provider="chatgpt",
        uuid="user-1",
        org_uuid="acc-1",
        email="gpt@example.com",
        plan="plus",
        tokens=Tokens(
            "at_secret_access", "rt_secret_refresh", 2_000_000_000, extra={"id_token": ID_TOKEN}
        ),
    )


V1 = """version = 1
[[accounts]]
id = "aaa"
name = "old"
kind = "oauth"
email = "old@example.com"
[accounts.tokens]
access = "sk-ant-oat01-x"
refresh = "sk-ant-ort01-y"
expires_at = 2000000000
"""


def test_a_version_1_store_reads_as_anthropic_and_is_written_back_as_version_2(
    ctx: Ctx,
) -> None:
    path = ctx.paths.accounts_file
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_text(V1)
    path.chmod(0o600)
    (old,) = list(ctx.store.read())
    assert old.provider == "anthropic"
    with ctx.store.transaction() as accounts:
        accounts.add(chatgpt())
    text = path.read_text()
    assert f"version = {SCHEMA_VERSION}" in text and SCHEMA_VERSION == 2
    again = {a.name: a for a in ctx.store.read()}
    assert again["old"].provider == "anthropic" and again["gpt"].provider == "chatgpt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_chatgpt_account_keeps_its_id_token_and_identity_through_the_store() -> None:
    text = dumps(loads(dumps(_one(chatgpt())), Path("x")))
    (acc,) = list(loads(text, Path("x")))
    assert acc.provider == "chatgpt" and acc.uuid == "user-1" and acc.org_uuid == "acc-1"
    assert acc.id_token == ID_TOKEN and acc.tokens is not None
    assert acc.tokens.refresh == "rt_secret_refresh"


def _one(acc: Account) -> object:
    from acct.services.store import Accounts

    return Accounts([acc])


def test_a_store_of_a_newer_schema_is_refused_untouched(ctx: Ctx, acct: AcctRunner) -> None:
    path = ctx.paths.accounts_file
    path.parent.mkdir(mode=0o700, parents=True)
    body = V1.replace("version = 1", f"version = {SCHEMA_VERSION + 1}")
    path.write_text(body)
    r = acct("list")
    assert r.returncode != 0
    assert "newer than this acct understands" in r.stderr and len(r.stderr.splitlines()) <= 2
    assert path.read_text() == body


def test_an_unknown_provider_is_a_corrupt_store() -> None:
    text = V1.replace("version = 1", "version = 2").replace(
        'kind = "oauth"', 'kind = "oauth"\nprovider = "gemini"'
    )
    with pytest.raises(CorruptFile, match="unknown provider 'gemini'"):
        loads(text, Path("accounts.toml"))


def test_list_json_says_each_accounts_provider_and_never_the_id_token(
    ctx: Ctx, acct: AcctRunner
) -> None:
    with ctx.store.transaction() as accounts:
        accounts.add(chatgpt())
        accounts.add(
            Account(name="claude", tokens=Tokens("sk-ant-oat01-a", "sk-ant-ort01-b", 2_000_000_000))
        )
    r = acct("list", "--json", check=True)
    rows = {row["name"]: row for row in json.loads(r.stdout)["accounts"]}
    assert rows["gpt"]["provider"] == "chatgpt" and rows["claude"]["provider"] == "anthropic"
    assert ID_TOKEN not in r.stdout and "rt_secret_refresh" not in r.stdout
