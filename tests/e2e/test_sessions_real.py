"""An isolated ``acct exec`` session around the real Claude Code (npm, pinned): Claude Code reads
the session's own credentials file through ``CLAUDE_SECURESTORAGE_CONFIG_DIR``, and the default
file, which another session may be using, is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acct.services import custody
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.e2e.conftest import refresh_spends
from tests.e2e.test_claude_code_real import credentials_file, expire_at_server, messages

pytestmark = pytest.mark.e2e


def test_isolated_claude_sends_the_sessions_token(
    fake, ctx, run_acct: AcctRunner, claude_env, workdir: Path
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    custody.lend(ctx, a.id, "claude-code")  # the default file holds a (another session's)
    default = credentials_file(claude_env)
    before = default.read_bytes(), default.stat().st_mtime_ns

    p = run_acct("exec", "--isolate", "--", "claude", "-p", "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    assert [(c["account_uuid"], c["token_sha8"]) for c in messages(fake)] == [
        (b.uuid, fake.sha8(b.tokens.access))
    ]
    assert (default.read_bytes(), default.stat().st_mtime_ns) == before
    assert json.loads(default.read_text())["claudeAiOauth"]["accessToken"] == a.tokens.access
    root = ctx.paths.sessions_dir
    assert not root.exists() or list(root.iterdir()) == []
    assert ctx.store.read().get("b").holder is None
    assert ctx.store.read().get("a").holder is not None
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_a_refresh_in_an_isolated_session_comes_back_to_the_store(
    fake, ctx, run_acct: AcctRunner, claude_env_tls, workdir: Path
) -> None:
    seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    run_acct("list", "--usage", check=True)
    a = expire_at_server(fake, ctx, "a")
    assert a.tokens is not None

    p = run_acct("exec", "--isolate", "--", "claude", "-p", "hi", cwd=workdir, timeout=180)

    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    assert refresh_spends(fake) == [(200, fake.sha8(a.tokens.refresh))]
    after = ctx.store.read().get("a")
    assert after.holder is None and after.tokens is not None
    assert after.tokens.refresh != a.tokens.refresh
    lineage = fake.lineage(refresh_token=after.tokens.refresh)
    assert not lineage["revoked"]
    assert lineage["live_refresh_sha8"] == fake.sha8(after.tokens.refresh)
    assert not credentials_file(claude_env_tls).exists()  # the default file was never written
    root = ctx.paths.sessions_dir
    assert not root.exists() or list(root.iterdir()) == []
