"""One store, two providers: refreshes, usage polls, picking and lending dispatch through each
account's provider, against the fake Anthropic and the fake ChatGPT servers running together."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from acct.base.errors import NeedsLogin, ProtocolError, UsageError
from acct.domain.pick import pick
from acct.services import custody, oauth, providers, usage
from acct.services.context import Ctx
from tests.conftest import AcctRunner, clean_env, seed_account, seed_chatgpt
from tests.fake_anthropic.client import FakeAnthropic
from tests.fake_chatgpt.client import FakeChatGPT


@pytest.fixture
def gpt() -> Iterator[FakeChatGPT]:
    with FakeChatGPT() as server:
        yield server


@pytest.fixture
def env(home, fake: FakeAnthropic, gpt: FakeChatGPT) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return clean_env(home, {**fake.env(), **gpt.env()})


def test_every_account_has_its_providers_implementation(ctx: Ctx, fake, gpt) -> None:  # type: ignore[no-untyped-def]
    claude = seed_account(fake, ctx, "claude")
    chat = seed_chatgpt(gpt, ctx, "chat")
    assert providers.of(claude).name == "anthropic" and providers.of(chat).name == "chatgpt"
    assert providers.of(chat).patterns.quota and providers.of(chat).login.port == 1455
    with pytest.raises(UsageError, match="unknown provider 'gemini'"):
        providers.get("gemini")


def test_a_chatgpt_refresh_goes_to_the_chatgpt_token_endpoint_and_keeps_the_id_token(
    ctx: Ctx, fake: FakeAnthropic, gpt: FakeChatGPT
) -> None:
    chat = seed_chatgpt(gpt, ctx, "chat")
    assert chat.tokens is not None
    result = providers.refresh_result(ctx, chat.id, force=True)
    assert result.sent
    after = ctx.store.read().get("chat")
    assert after.tokens is not None and after.tokens.refresh != chat.tokens.refresh
    assert after.id_token and after.provider == "chatgpt"
    assert len(gpt.log("token_refresh")) == 1 and fake.log("token") == []
    assert gpt.lineage(refresh_token=after.tokens.refresh)["revoked"] is False


def test_anthropics_sender_refuses_a_chatgpt_account_before_sending(
    ctx: Ctx, fake: FakeAnthropic, gpt: FakeChatGPT
) -> None:
    chat = seed_chatgpt(gpt, ctx, "chat")
    with pytest.raises(ProtocolError, match="nothing was sent"):
        oauth.refresh(ctx, chat.id, force=True)
    assert fake.log("token") == [] and gpt.log("token_refresh") == []
    assert ctx.store.read().get("chat").tokens == chat.tokens


def test_a_dead_chatgpt_lineage_marks_the_account_needing_a_login(
    ctx: Ctx, fake: FakeAnthropic, gpt: FakeChatGPT
) -> None:
    chat = seed_chatgpt(gpt, ctx, "chat")
    gpt.revoke(str(chat.org_uuid))
    with pytest.raises(NeedsLogin, match="no longer valid") as e:
        providers.refresh(ctx, chat.id, force=True)
    assert e.value.hint == "acct login --provider chatgpt chat"
    assert ctx.store.read().get("chat").needs_login


def test_usage_polls_each_account_at_its_own_provider(
    ctx: Ctx, fake: FakeAnthropic, gpt: FakeChatGPT
) -> None:
    claude = seed_account(fake, ctx, "claude", five_hour=10.0, seven_day=20.0)
    chat = seed_chatgpt(gpt, ctx, "chat")
    gpt.set_usage(str(chat.org_uuid), primary=30.0, secondary=40.0, secondary_window_s=7 * 86400)
    records = usage.poll(ctx, ctx.store.read(), force=True)
    c_usage, g_usage = records[claude.id].usage, records[chat.id].usage
    assert c_usage and c_usage.five_hour and c_usage.five_hour.utilization == 10.0
    assert g_usage and g_usage.five_hour and g_usage.five_hour.utilization == 30.0
    assert g_usage.seven_day and g_usage.seven_day.utilization == 40.0
    assert g_usage.label("seven_day", "?") == "7-day"
    assert len(gpt.log("usage")) == 1 and len(fake.log("usage")) == 1


def test_a_target_is_only_ever_given_an_account_of_its_provider(
    ctx: Ctx, fake: FakeAnthropic, gpt: FakeChatGPT
) -> None:
    seed_account(fake, ctx, "claude")
    seed_chatgpt(gpt, ctx, "chat")
    accounts = list(ctx.store.read())
    now = time.time()
    for provider, wanted in (("chatgpt", "chat"), ("anthropic", "claude")):
        choice = pick(accounts, {}, {}, now, last_used={}, provider=provider)
        assert choice.account is not None and choice.account.name == wanted
    with pytest.raises(UsageError, match="codex needs a ChatGPT login"):
        custody.lend(ctx, ctx.store.read().get("claude").id, "codex")
    with pytest.raises(UsageError, match="claude-code needs a Claude subscription login"):
        custody.lend(ctx, ctx.store.read().get("chat").id, "claude-code")
    assert not (ctx.paths.home / ".codex" / "auth.json").exists()


def test_a_chatgpt_token_about_to_expire_is_refreshed_at_chatgpt_before_its_usage_poll(
    ctx: Ctx, fake: FakeAnthropic, gpt: FakeChatGPT
) -> None:
    chat = seed_chatgpt(gpt, ctx, "chat", expires_in=5)
    records = usage.poll(ctx, ctx.store.read(), force=True)
    assert records[chat.id].usage is not None and records[chat.id].error is None
    assert len(gpt.log("token_refresh")) == 1 and fake.log("token") == []
    after = ctx.store.read().get("chat")
    assert after.tokens is not None and after.tokens.fresh_for(3600)


def test_a_lineage_codex_rotated_in_its_file_is_harvested_by_its_id_token(
    ctx: Ctx, fake: FakeAnthropic, gpt: FakeChatGPT
) -> None:
    import json

    from acct.services.providers import chatgpt

    chat = seed_chatgpt(gpt, ctx, "chat")
    custody.lend(ctx, chat.id, "codex")
    path = ctx.paths.home / ".codex" / "auth.json"
    doc = json.loads(path.read_text())
    # Codex refreshes its own file (after a 401): a new lineage link the store has not seen.
    lent = ctx.store.read().get("chat").tokens
    assert lent is not None
    rotated = chatgpt.refresh(chatgpt.ChatGPTEndpoints.from_env(ctx.env), lent)
    doc["tokens"].update(
        access_token=rotated.access, refresh_token=rotated.refresh, id_token=rotated.id_token
    )
    path.write_text(json.dumps(doc))
    result = custody.harvest(ctx, "codex")
    assert result.status in ("harvested", "refreshed"), result.message
    after = ctx.store.read().get("chat")
    assert after.tokens is not None and after.tokens.refresh == rotated.refresh
    assert after.id_token == rotated.id_token and after.holder is not None
    assert gpt.lineage(refresh_token=rotated.refresh)["revoked"] is False


def test_a_chatgpt_window_of_another_length_is_labelled_with_it(
    ctx: Ctx, fake: FakeAnthropic, gpt: FakeChatGPT, acct: AcctRunner
) -> None:
    chat = seed_chatgpt(gpt, ctx, "chat")
    gpt.set_usage(
        str(chat.org_uuid),
        primary=12.0,
        primary_window_s=3 * 3600,
        secondary=40.0,
        secondary_window_s=86400,
    )
    doc = json.loads(acct("list", "--usage", "--json", check=True).stdout)
    (row,) = doc["accounts"]
    assert row["usage"]["five_hour"]["window"] == "3-hour"
    assert row["usage"]["seven_day"]["window"] == "1-day"
    table = acct("list", check=True).stdout
    assert "12% (3-hour)" in table and "40% (1-day)" in table and "chatgpt plus" in table
    # the shared cache: a second listing within the minimum age asks nothing
    acct("list", "--usage", check=True)
    assert len(gpt.log("usage")) == 1


def test_doctor_names_the_chatgpt_login_command_for_a_dead_chatgpt_account(
    ctx: Ctx, fake: FakeAnthropic, gpt: FakeChatGPT, acct: AcctRunner
) -> None:
    chat = seed_chatgpt(gpt, ctx, "chat")
    with ctx.store.transaction() as accounts:
        accounts.put(accounts.get("chat").copy(needs_login=True))
    r = acct("doctor", "--json")
    assert r.returncode == 1
    checks = json.loads(r.stdout)["checks"]
    dead = [c for c in checks if c["check"] == "login" and not c["ok"]]
    assert dead and "`acct login --provider chatgpt chat`" in dead[0]["message"]
    assert chat.id_token and chat.id_token not in r.stdout
