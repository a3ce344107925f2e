from __future__ import annotations

from pathlib import Path

import pytest

from acct.base.config import Config, load_config
from acct.base.endpoints import Endpoints
from acct.base.errors import ConfigError
from acct.base.paths import Paths


def test_acct_home_moves_everything(tmp_path: Path) -> None:
    p = Paths.from_env({"HOME": "/h", "ACCT_HOME": str(tmp_path)})
    for d in (p.config_dir, p.data_dir, p.state_dir):
        assert d.is_relative_to(tmp_path)


def test_xdg_defaults_and_overrides() -> None:
    p = Paths.from_env({"HOME": "/h"})
    assert p.accounts_file == Path("/h/.local/share/acct/accounts.toml")
    assert p.config_file == Path("/h/.config/acct/config.toml")
    assert p.state_dir == Path("/h/.local/state/acct")
    q = Paths.from_env({"HOME": "/h", "XDG_DATA_HOME": "/d", "XDG_STATE_HOME": "relative/ignored"})
    assert q.accounts_file == Path("/d/acct/accounts.toml")
    assert q.state_dir == Path("/h/.local/state/acct")


def test_endpoints_overridable() -> None:
    e = Endpoints.from_env({"ACCT_API_BASE": "http://127.0.0.1:9/", "ACCT_TOKEN_URL": "http://t"})
    assert e.usage_url == "http://127.0.0.1:9/api/oauth/usage"
    assert e.token_url == "http://t"
    assert Endpoints.from_env({}).token_url == "https://platform.claude.com/v1/oauth/token"


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == Config()
    f = tmp_path / "config.toml"
    f.write_text(
        'policy = "pace"\nusage_min_age = 60\n[targets.claude-code]\nresume_args = ["-c"]\n'
    )
    c = load_config(f)
    assert c.policy == "pace" and c.usage_min_age == 60
    assert c.target("claude-code").resume_args == ("-c",)
    assert c.proxy is True
    f.write_text("proxy = false\n")
    assert load_config(f).proxy is False
    for bad in (
        'policy = "random"',
        "usage_min_age = -1",
        "[targets]\nx = 1",
        "= broken",
        "polcy = 'pace'",
        "[targets.pi]\nresume = []",
        "[targets.pi]\nquota_patterns = ['(unclosed']",
        'proxy = "no"',
    ):
        f.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(f)
