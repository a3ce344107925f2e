"""`acct metrics`, the textfile and what they count: valid exposition (promtool, the client's
parser), names per the Prometheus guide, account names as labels, no email, no token."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from acct.domain.answers import AnswerUsage
from acct.services.accounting import record_answer_usage
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, exec_env, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package prometheus; .ci/run installs it)",
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and want <= set(ls))


def promtool_check(text: str) -> None:
    assert PROMTOOL is not None
    proc = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        check=False,
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # promtool prints lint problems on stderr and exits 1 (or 3 for lint only).
    assert proc.returncode == 0, proc.stdout + proc.stderr


def write_config(ctx: Ctx, text: str) -> None:
    ctx.paths.config_dir.mkdir(parents=True, exist_ok=True)
    ctx.paths.config_file.write_text(text)


@pytest.fixture
def pool(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> dict[str, Any]:
    """Three accounts: one polled twice (ok, then refused), one benched, one needing a login;
    one token refresh, one refused refresh, and some proxied traffic."""
    write_config(ctx, "usage_min_age = 0\n")
    work = seed_account(fake, ctx, "work", five_hour=37.0, seven_day=12.0)
    rest = seed_account(fake, ctx, "rest", five_hour=100.0, seven_day=50.0)
    dead = seed_account(fake, ctx, "dead")
    acct("list", "--usage", check=True)
    fake.configure(usage_fail_status=429, usage_fail_times=1)
    acct("list", "--usage", "--json", check=True)
    acct("refresh", "work", check=True)
    assert dead.uuid
    fake.revoke(dead.uuid)
    assert acct("refresh", "dead").returncode == 4
    until = time.time() + 3600
    ctx.state.bench(rest.id, until, kind="quota", reason="5-hour limit")
    usage = AnswerUsage("claude-sonnet-4-5", 100, 20, 300, 4000)
    record_answer_usage(ctx, work.id, "claude-code", "s1", None, usage)
    record_answer_usage(ctx, work.id, "claude-code", "s1", None, usage)
    return {"work": work, "rest": rest, "dead": dead, "bench_until": until}


def test_metrics_say_the_pool_state_and_counters(
    pool: dict[str, Any], ctx: Ctx, acct: AcctRunner
) -> None:
    proc = acct("metrics")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert value(text, "acct_account_utilization_ratio", account="work", window="5h") == 0.37
    assert value(text, "acct_account_utilization_ratio", account="work", window="7d") == 0.12
    assert (
        value(text, "acct_account_window_reset_timestamp_seconds", account="work", window="5h")
        > time.time()
    )
    assert value(text, "acct_account_state", account="rest", state="benched") == 1
    assert value(text, "acct_account_state", account="rest", state="ok") == 0
    assert value(text, "acct_account_benched", account="rest") == 1
    assert value(text, "acct_account_needs_login", account="dead") == 1
    assert value(
        text, "acct_account_bench_until_timestamp_seconds", account="rest"
    ) == pytest.approx(pool["bench_until"])
    assert value(text, "acct_account_live_sessions", account="work") == 0
    assert value(text, "acct_usage_polls_total", account="work", result="ok") >= 1
    assert total(text, "acct_usage_polls_total", result="rate_limited") == 1
    assert value(text, "acct_token_refreshes_total", account="work", result="ok") == 1
    refreshed = value(text, "acct_account_login_refreshed_timestamp_seconds", account="work")
    assert time.time() - 300 < refreshed <= time.time()
    assert value(text, "acct_token_refreshes_total", account="dead", result="needs_login") == 1
    model = "claude-sonnet-4-5"
    assert value(text, "acct_tokens_total", account="work", model=model, type="input") == 200
    assert value(text, "acct_tokens_total", account="work", model=model, type="cache_read") == 8000
    assert value(text, "acct_requests_total", account="work", model=model, tool="claude-code") == 2
    cost = 2 * (100 * 3.0 + 20 * 15.0 + 300 * 3.75 + 4000 * 0.30) / 1e6
    assert value(
        text, "acct_estimated_cost_dollars_total", account="work", model=model
    ) == pytest.approx(cost)
    assert value(text, "acct_pool_verdict") == 0  # work is usable and idle
    assert value(text, "acct_pool_usable_accounts") == 1
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("acct_"), family.name
        assert family.documentation, family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
    assert "@example.com" not in text  # names, not emails
    assert_no_secrets(text, store_secrets(ctx))


@needs_promtool
def test_metrics_pass_promtool(pool: dict[str, Any], acct: AcctRunner) -> None:
    promtool_check(acct("metrics", check=True).stdout)
    om = acct("metrics", "--openmetrics", check=True).stdout
    assert om.rstrip().endswith("# EOF")


def test_textfile_follows_polls_rotations_and_session_ends(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], tmp_path: Path
) -> None:
    textfile = tmp_path / "node" / "acct.prom"
    textfile.parent.mkdir()
    write_config(ctx, f'metrics_textfile = "{textfile}"\n')
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    run = AcctRunner(exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl"))
    run("list", "--usage", check=True)
    first = textfile.read_text()
    assert value(first, "acct_account_utilization_ratio", account="a", window="5h") == 0.1
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert [p.name for p in textfile.parent.iterdir()] == ["acct.prom"]  # no temp file left

    reset = int(time.time()) + 2 * 3600
    assert a.uuid
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    p = run("exec", "--account", "a", "--", "claude", "-p", "work")
    assert p.returncode == 0 and "switching to b" in p.stderr, p.stderr
    after = textfile.read_text()
    assert value(after, "acct_rotations_total", account="a", reason="quota") == 1
    assert value(after, "acct_account_state", account="a", state="benched") == 1
    assert value(after, "acct_account_live_sessions", account="b") == 0  # the session ended
    assert_no_secrets([after, p.stdout, p.stderr], store_secrets(ctx))
    if PROMTOOL:
        promtool_check(after)


def test_unwritable_textfile_warns_once_and_fails_nothing(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, tmp_path: Path
) -> None:
    write_config(ctx, f'metrics_textfile = "{tmp_path}/missing/dir/acct.prom"\n')
    seed_account(fake, ctx, "a", five_hour=10)
    proc = acct("list", "--usage")
    assert proc.returncode == 0
    assert proc.stderr.count("cannot write metrics_textfile") == 1


def test_normal_start_up_does_not_import_prometheus_client(env: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from acct.__main__ import main\n"
        "main(['list'])\n"
        "main(['prompt'])\n"
        "print('LOADED' if 'prometheus_client' in sys.modules else 'NOT LOADED')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env["HOME"],
    )
    assert proc.stdout.strip().endswith("NOT LOADED"), proc.stdout + proc.stderr
    code_metrics = code.replace("main(['prompt'])", "main(['metrics'])")
    proc = subprocess.run(
        [sys.executable, "-c", code_metrics],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env["HOME"],
    )
    assert proc.stdout.strip().endswith("LOADED") and "NOT" not in proc.stdout.splitlines()[-1]


PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, what: str, deadline_s: float = 90.0) -> Any:
    """Poll ``check`` until it returns something truthy (a liveness wait, not a timing test)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (Debian package prometheus)"
)
def test_prometheus_scrapes_acct_exec_metrics_port(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], tmp_path: Path
) -> None:
    import httpx

    seed_account(fake, ctx, "work", five_hour=42.0, seven_day=7.0)
    run = AcctRunner(exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl"))
    run("list", "--usage", check=True)
    port, web = free_port(), free_port()
    gate = tmp_path / "gate"
    session = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acct",
            "exec",
            "--metrics-port",
            str(port),
            "--",
            "claude",
            "-p",
            "hi",
        ],
        env={**run.env, "FAKE_TOOL_GATE": str(gate)},
        cwd=env["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: acct\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n"
    )
    assert PROMETHEUS is not None
    server = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def query() -> list[Any]:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{web}/api/v1/query",
                    params={"query": 'acct_account_utilization_ratio{window="5h"}'},
                    timeout=5,
                )
                return list(r.json()["data"]["result"]) if r.status_code == 200 else []
            except (httpx.HTTPError, ValueError, KeyError):
                return []

        (series,) = wait_for(query, "Prometheus to scrape acct's utilization series")
        assert series["metric"]["account"] == "work" and series["metric"]["job"] == "acct"
        assert float(series["value"][1]) == pytest.approx(0.42)
    finally:
        server.terminate()
        server.wait(30)
        gate.touch()
        out, err = session.communicate(timeout=120)
    assert session.returncode == 0, err
    assert_no_secrets([out, err], store_secrets(ctx))
    with pytest.raises(httpx.HTTPError):  # the endpoint went with the session
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_metrics_port_is_validated(acct: AcctRunner) -> None:
    proc = acct("exec", "--metrics-port", "70000", "--", "claude", "-p", "hi")
    assert proc.returncode == 2 and "--metrics-port" in proc.stderr
