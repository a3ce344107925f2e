"""Bad input of every kind, through the real ``python -m acct`` in a temporary HOME.

For each case: no traceback, exactly one line on stderr naming the file or the variable at
fault, a non-zero exit, and every file that existed before byte-identical afterwards (nothing
new appears outside acct's own directories either). Property tests feed arbitrary bytes and
arbitrary documents to the readers in-process: nothing but acct's own errors may come out.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acct.base.errors import AcctError
from acct.base.models import Account, Tokens
from acct.base.paths import Paths
from acct.services.context import Ctx
from acct.services.store import Store
from acct.services.targets import TARGET_NAMES, get_target, targets_of
from tests.conftest import clean_env

ACCOUNT_ID = "0123456789ab"
CLOSED = "http://127.0.0.1:9"  # nothing listens: no case may need the network


@dataclass
class Home:
    root: Path  # holds home/ and outside/
    home: Path
    env: dict[str, str]
    paths: Paths

    @property
    def store(self) -> Path:
        return self.paths.accounts_file

    @property
    def config(self) -> Path:
        return self.paths.config_file

    def tool(self, target: str) -> Path:
        return get_target(target).path(self.env)

    def put(self, path: Path, data: bytes | str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def fifo(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        os.mkfifo(path)
        return path


@pytest.fixture
def bad_home(tmp_path: Path) -> Home:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "outside").mkdir()
    env = clean_env(
        home,
        {"ACCT_API_BASE": CLOSED, "ACCT_TOKEN_URL": CLOSED + "/t", "ACCT_AUTHORIZE_URL": CLOSED},
    )
    h = Home(tmp_path, home, env, Paths.from_env(env))
    tokens = Tokens("sk-ant-oat01-a", "sk-ant-ort01-r", 4_000_000_000, ("user:inference",))
    with Store(h.paths).transaction() as accounts:
        accounts.add(Account(name="work", id=ACCOUNT_ID, email="w@example.com", tokens=tokens))
    return h


@dataclass
class Case:
    id: str
    args: tuple[str, ...]
    prepare: Callable[[Home], object]
    names: Callable[[Home], str]  # what the one line must name: a path or a variable
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | str | None = None  # bytes/str piped in; "/dev/zero" etc. opened as a file
    known: str | None = None  # a known defect elsewhere: the case is expected to fail (strict)


def _nested_toml(h: Home) -> object:
    return h.put(h.store, "version = 1\nx = " + "[" * 3000 + "]" * 3000 + "\n")


def _entry(target: str, expires: str) -> str:
    if target == "claude-code":
        body = f'"accessToken": "a", "refreshToken": "r", "expiresAt": {expires}'
        return f'{{"claudeAiOauth": {{{body}, "scopes": ["user:inference"]}}}}'
    return (
        f'{{"anthropic": {{"type": "oauth", "access": "a", "refresh": "r", "expires": {expires}}}}}'
    )


def _store(h: Home) -> str:
    return str(h.store)


def _config(h: Home) -> str:
    return str(h.config)


def _tool(target: str) -> Callable[[Home], str]:
    return lambda h: str(h.tool(target))


def _store_cases() -> list[Case]:
    def put(text: str) -> Callable[[Any], None]:
        return lambda h: h.put(h.store, text)

    tokens = "version = 1\n[[accounts]]\nname='a'\nid='1'\n[accounts.tokens]\naccess='x'\n"
    return [
        Case("store-nested", ("list",), _nested_toml, _store),
        Case("store-int-5000-digits", ("list",), put("version = 1\nx = " + "9" * 5000), _store),
        Case(
            "store-expiry-400-digits", ("list",), put(tokens + "expires_at = " + "9" * 400), _store
        ),
        Case("store-expiry-nan", ("list",), put(tokens + "expires_at = nan"), _store),
        Case("store-expiry-inf", ("list", "--json"), put(tokens + "expires_at = inf"), _store),
        Case("store-binary", ("list",), put(b"\x00\xff\xfe garbage \x1b[2J"), _store),
        Case("store-utf16", ("list",), put("version = 1\n".encode("utf-16")), _store),
        Case("store-fifo", ("list",), lambda h: h.fifo(h.store), _store),
        Case(
            "store-fifo-write",
            ("login", "k", "--api-key"),
            lambda h: h.fifo(h.store),
            _store,
            stdin="sk-ant-api03-key\n",
        ),
        Case("store-directory", ("list",), lambda h: (h.store.unlink(), h.store.mkdir()), _store),
        Case("store-dangling-symlink", ("list",), _dangling_store, _store),
        Case(
            "store-dangling-symlink-write",
            ("login", "k", "--api-key"),
            _dangling_store,
            _store,
            stdin="sk-ant-api03-key\n",
        ),
        Case(
            "store-too-large", ("list",), lambda h: os.truncate(h.store, 17 * 1024 * 1024), _store
        ),
        Case("store-symlink-loop", ("list",), _looping_store, _store),
        Case(
            "rescue-fifo",
            ("refresh", "work"),
            _rescue_fifo,
            lambda h: str(h.paths.state_dir / "rescued" / f"{ACCOUNT_ID}.json"),
        ),
        Case(
            "rescue-nan",
            ("refresh", "work"),
            _rescue_nan,
            lambda h: str(h.paths.state_dir / "rescued" / f"{ACCOUNT_ID}.json"),
        ),
        Case(
            "state-fifo",
            ("list",),
            lambda h: h.fifo(h.paths.state_db),
            lambda h: str(h.paths.state_db),
        ),
    ]


def _dangling_store(h: Home) -> None:
    h.store.unlink()
    h.store.symlink_to(h.root / "outside" / "gone" / "accounts.toml")


def _looping_store(h: Home) -> None:
    h.store.unlink()
    h.store.symlink_to(h.store)


def _rescue_fifo(h: Home) -> None:
    h.fifo(h.paths.state_dir / "rescued" / f"{ACCOUNT_ID}.json")


def _rescue_nan(h: Home) -> None:
    h.put(h.paths.state_dir / "rescued" / f"{ACCOUNT_ID}.json", '{"tokens": {"expires_at": NaN}}')


def _tool_cases() -> list[Case]:
    cases = []
    # `use work` lends an Anthropic account: the targets of ChatGPT logins refuse it before
    # they read their file (their files' bad input is covered by `import` and their own tests).
    lends = targets_of("anthropic")
    for t in TARGET_NAMES:
        for bad, expires in (
            ()
            if t not in lends
            else (
                ("nan", "NaN"),
                ("inf", "Infinity"),
                ("1e400", "1e400"),
                ("huge", str(10**30)),
                ("int-5000-digits", "9" * 5000),
            )
        ):
            cases.append(
                Case(
                    f"{t}-expiry-{bad}",
                    ("use", "work", "--target", t),
                    lambda h, t=t, e=expires: h.put(h.tool(t), _entry(t, e)),
                    _tool(t),
                )
            )
        cases += [
            Case(
                f"{t}-nested",
                ("import", t),
                lambda h, t=t: h.put(h.tool(t), "[" * 100_000 + "]" * 100_000),
                _tool(t),
            ),
            Case(f"{t}-fifo-import", ("import", t), lambda h, t=t: h.fifo(h.tool(t)), _tool(t)),
        ]
        cases += (
            [
                Case(
                    f"{t}-fifo-use",
                    ("use", "work", "--target", t),
                    lambda h, t=t: h.fifo(h.tool(t)),
                    _tool(t),
                ),
                Case(
                    f"{t}-not-json",
                    ("use", "work", "--target", t),
                    lambda h, t=t: h.put(h.tool(t), b"{\xff"),
                    _tool(t),
                ),
            ]
            if t in lends
            else []
        )
        cases += [
            Case(
                f"{t}-directory",
                ("import", t),
                lambda h, t=t: h.tool(t).mkdir(parents=True),
                _tool(t),
            ),
        ]
    cases += [
        Case(
            "claude-identity-fifo",
            ("use", "work"),
            lambda h: h.fifo(h.home / ".claude.json"),
            lambda h: str(h.home / ".claude.json"),
        ),
        Case(
            "import-from-dev-zero",
            ("import", "pi", "--from", "/dev/zero"),
            lambda h: None,
            lambda h: "/dev/zero",
        ),
        Case(
            "import-from-fifo",
            ("import", "opencode", "--from", "../outside/pipe"),
            lambda h: h.fifo(h.root / "outside" / "pipe"),
            lambda h: "outside/pipe",
        ),
        Case(
            "import-from-directory",
            ("import", "claude-code", "--from", "/"),
            lambda h: None,
            lambda h: "/ is a directory",
        ),
        Case(
            "import-from-huge",
            ("import", "pi", "--from", "../outside/big.json"),
            lambda h: os.truncate(h.put(h.root / "outside" / "big.json", ""), 257 * 1024 * 1024),
            lambda h: "big.json",
        ),
    ]
    return cases


def _config_cases() -> list[Case]:
    def put(text: str) -> Callable[[Any], None]:
        return lambda h: h.put(h.config, text)

    values = [
        "usage_timeout = 0",
        "usage_timeout = -1",
        "usage_timeout = nan",
        "usage_min_age = inf",
        "refresh_margin = nan",
        "cooloff = -inf",
        "refresh_margin = 1e300",
        "max_rotations = inf",
        "max_rotations = 1.5",
        "max_rotations = " + "9" * 5000,
        'default_target = "vim"',
        "[targets.vim]\nresume_args = []",
        "x = " + "[" * 3000 + "]" * 3000,
        "= nonsense",
    ]
    cases = [
        Case(f"config-{v.split()[0]}-{i}", ("list",), put(v), _config) for i, v in enumerate(values)
    ]
    cases += [
        Case("config-fifo", ("status",), lambda h: h.fifo(h.config), _config),
        Case(
            "config-dangling-symlink",
            ("list",),
            lambda h: (h.config.parent.mkdir(parents=True), h.config.symlink_to(h.root / "nope")),
            _config,
        ),
        Case("config-binary", ("list",), put(b"\xff\xfe\x00"), _config),
    ]
    return cases


def _env_cases() -> list[Case]:
    def var(name: str) -> Callable[[Any], str]:
        return lambda h: name

    def none(h: Any) -> None:
        return None

    return [
        Case("home-relative", ("list",), none, var("HOME"), env={"HOME": "rel/home"}),
        Case("home-empty", ("list",), none, var("HOME"), env={"HOME": ""}),
        Case(
            "home-relative-write",
            ("login", "k", "--api-key"),
            none,
            var("HOME"),
            env={"HOME": "."},
            stdin="sk-ant-api03-key\n",
        ),
        Case("acct-home-relative", ("list",), none, var("ACCT_HOME"), env={"ACCT_HOME": "here"}),
        Case(
            "token-url-bad-port",
            ("refresh", "work"),
            none,
            var("ACCT_TOKEN_URL"),
            env={"ACCT_TOKEN_URL": "http://127.0.0.1:99999/t"},
        ),
        Case(
            "token-url-no-scheme",
            ("refresh", "work"),
            none,
            var("ACCT_TOKEN_URL"),
            env={"ACCT_TOKEN_URL": "127.0.0.1/t"},
        ),
        Case(
            "token-url-bad-idna",
            ("refresh", "work"),
            none,
            var("ACCT_TOKEN_URL"),
            env={"ACCT_TOKEN_URL": "http://xn--/t"},
        ),
        Case(
            "api-base-bad-ipv4",
            ("list", "--usage"),
            none,
            var("ACCT_API_BASE"),
            env={"ACCT_API_BASE": "http://9127.0.0.1"},
        ),
        Case(
            "api-base-bad-port",
            ("list", "--usage"),
            none,
            var("ACCT_API_BASE"),
            env={"ACCT_API_BASE": "http://127.0.0.1:70000"},
        ),
        Case(
            "api-base-ipv6-unclosed",
            ("list", "--usage"),
            none,
            var("ACCT_API_BASE"),
            env={"ACCT_API_BASE": "http://[::1"},
        ),
        Case(
            "authorize-url-space",
            ("list",),
            none,
            var("ACCT_AUTHORIZE_URL"),
            env={"ACCT_AUTHORIZE_URL": "http://a b/"},
        ),
    ]


def _stdin_cases() -> list[Case]:
    def none(h: Any) -> None:
        return None

    def stdin(h: Any) -> str:
        return "stdin"

    return [
        Case("api-key-dev-zero", ("login", "k", "--api-key"), none, stdin, stdin="/dev/zero"),
        Case("api-key-100k", ("login", "k", "--api-key"), none, stdin, stdin=b"a" * 100_000),
        Case("api-key-not-utf8", ("login", "k", "--api-key"), none, stdin, stdin=b"sk-\xff\xfe"),
    ]


CASES = _store_cases() + _tool_cases() + _config_cases() + _env_cases() + _stdin_cases()


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a regular file's hash, a link's target, other kinds' type."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "special"
    return out


def _acct_own(h: Home, rel: str) -> bool:
    """What acct may create on the way to an error: its state and its lock sidecars."""
    p = h.root / rel
    return (
        p.is_relative_to(h.paths.state_dir)
        or h.paths.state_dir.is_relative_to(p)
        or (p.is_relative_to(h.paths.data_dir) and p.name.endswith(".lock"))
    )


def run_case(h: Home, case: Case) -> subprocess.CompletedProcess[bytes]:
    env = {**h.env, **case.env}
    cmd = [sys.executable, "-m", "acct", *case.args]
    if isinstance(case.stdin, str) and case.stdin.startswith("/dev/"):
        with open(case.stdin, "rb") as fh:
            return subprocess.run(
                cmd, stdin=fh, capture_output=True, env=env, cwd=h.home, timeout=60, check=False
            )
    data = case.stdin.encode() if isinstance(case.stdin, str) else case.stdin
    return subprocess.run(
        cmd,
        input=data if data is not None else b"",
        capture_output=True,
        env=env,
        cwd=h.home,
        timeout=60,  # a FIFO read would hang: the run would fail here
        check=False,
    )


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(reason=c.known, strict=True)) if c.known else c
        for c in CASES
    ],
    ids=[c.id for c in CASES],
)
def test_bad_input_is_one_line_non_zero_and_leaves_every_file_as_it_was(
    bad_home: Home, case: Case
) -> None:
    h = bad_home
    case.prepare(h)
    before = snapshot(h.root)
    proc = run_case(h, case)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("acct: "), stderr
    assert case.names(h) in lines[0], lines[0]
    assert proc.returncode != 0
    after = snapshot(h.root)
    changed = {k for k in before if before[k] != after.get(k)}
    assert not changed, changed
    new = {k for k in after if k not in before and not _acct_own(h, k)}
    assert not new, new


def test_the_suite_covers_every_kind_of_input() -> None:
    kinds = {c.id.split("-")[0] for c in CASES}
    assert {"store", "config", "home", "api", "import", "rescue", "state"} <= kinds
    assert all(any(c.id.startswith(f"{t}-fifo") for c in CASES) for t in TARGET_NAMES)


# --- properties: arbitrary input never escapes as anything but acct's errors -----------------

_PROPS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
_json_docs = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
_toml_values = st.recursive(
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_account_keys = st.sampled_from(
    ["id", "name", "kind", "email", "tokens", "holder", "enabled", "added_at", "api_key", "x"]
)
_accounts = st.lists(st.dictionaries(_account_keys, _toml_values, max_size=8), max_size=3)


def _only_acct_errors(action: Callable[[], object]) -> None:
    try:
        action()
    except AcctError as e:
        assert e.message and "\n" not in e.message


@pytest.fixture
def prop_ctx(tmp_path: Path) -> Ctx:
    return Ctx(env=clean_env(tmp_path, {"ACCT_TOKEN_URL": CLOSED, "ACCT_API_BASE": CLOSED}))


@_PROPS
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_as_the_store_never_raise_anything_but_acct_errors(
    prop_ctx: Ctx, data: bytes
) -> None:
    path = prop_ctx.paths.accounts_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    _only_acct_errors(prop_ctx.store.read)


@_PROPS
@given(version=st.sampled_from([1, 1, 1, 0, 2]), accounts=_accounts)
def test_arbitrary_store_documents_never_raise_anything_but_acct_errors(
    prop_ctx: Ctx, version: int, accounts: list[dict[str, object]]
) -> None:
    from acct.app.views import current_views

    path = prop_ctx.paths.accounts_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({"version": version, "accounts": accounts}))

    def read_and_view() -> None:
        current_views(prop_ctx, list(prop_ctx.store.read()))

    _only_acct_errors(read_and_view)


@_PROPS
@given(target=st.sampled_from(TARGET_NAMES), data=st.binary(max_size=2000))
def test_arbitrary_bytes_as_a_tool_file_never_raise_anything_but_acct_errors(
    prop_ctx: Ctx, target: str, data: bytes
) -> None:
    t = get_target(target)
    path = t.path(prop_ctx.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    _only_acct_errors(lambda: t.look(prop_ctx.env))


@_PROPS
@given(target=st.sampled_from(TARGET_NAMES), entry=_json_docs, other=_json_docs)
def test_arbitrary_tool_entries_never_raise_anything_but_acct_errors(
    prop_ctx: Ctx, target: str, entry: object, other: object
) -> None:
    t = get_target(target)
    path = t.path(prop_ctx.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(entry, dict) and target != "claude-code":
        entry = {**entry, "type": "oauth"}
    path.write_text(json.dumps({t.entry_key: entry, "other": other}))
    _only_acct_errors(lambda: t.look(prop_ctx.env))


_CONFIG_KEYS = [
    "default_target", "policy", "usage_min_age", "usage_timeout", "refresh_margin", "cooloff",
    "max_rotations", "proxy", "continuation_prompt", "targets",
]  # fmt: skip


@_PROPS
@given(doc=st.dictionaries(st.sampled_from(_CONFIG_KEYS), _toml_values, max_size=5))
def test_arbitrary_config_values_never_raise_anything_but_acct_errors(
    prop_ctx: Ctx, doc: dict[str, object]
) -> None:
    from acct.base.config import load_config

    path = prop_ctx.paths.config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(doc))
    _only_acct_errors(lambda: load_config(path))


_url_parts = st.sampled_from(
    [*"abc:/[]@%?#.-_09", "::1", "127.0.0.1", "xn--", "%zz", "999999", " ", "\x00", "é"]
)


@settings(max_examples=500, deadline=None)
@given(
    scheme=st.sampled_from(["http://", "https://", "", "ftp://"]),
    rest=st.lists(_url_parts, max_size=12),
)
def test_an_endpoint_variable_acct_accepts_is_one_the_http_client_accepts(
    scheme: str, rest: list[str]
) -> None:
    import httpx

    from acct.base.endpoints import Endpoints

    url = scheme + "".join(rest)
    try:
        e = Endpoints.from_env({"ACCT_TOKEN_URL": url, "ACCT_API_BASE": url})
    except AcctError as err:
        assert "ACCT_" in err.message and "\n" not in err.message
        return
    httpx.Request("POST", e.token_url)
    httpx.Request("GET", e.usage_url)
