"""What the fake servers' client handles share: one server process on 127.0.0.1, started with
``python -m <module> --port 0 --watch-stdin`` (it prints ``PORT n`` and exits when its stdin
closes), and its ``/_admin`` JSON API."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Self
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 15.0


class FakeProcess:
    """Handle on one fake server process. Subclasses name their ``module``, their ``label`` (for
    messages) and ``error`` (the exception an admin call or a failed start raises)."""

    module = ""
    label = "fake"
    error: type[Exception] = RuntimeError

    def __init__(self, *, verbose: bool = False) -> None:
        self._verbose = verbose
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.port: int = 0

    def extra_args(self) -> list[str]:
        """Command-line options of this fake beyond the shared ones."""
        return []

    # ----- lifecycle -----

    def start(self) -> Self:
        if self._proc is not None:
            return self
        args = [sys.executable, "-m", self.module, "--port", "0", "--watch-stdin"]
        args += self.extra_args()
        if self._verbose:
            args.append("--verbose")
        # Closed in stop(); kept so a failed start can show what the server said.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,  # kept open: the server exits when it closes
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        line = self._read_port_line()
        if not line.startswith(b"PORT "):
            self.stop()
            raise self.error(f"{self.label} did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def _read_port_line(self) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if out and out[0]:
            return out[0].strip()
        if self._stderr is not None:
            self._stderr.seek(0)
            return b"(no PORT line) " + self._stderr.read()[-2000:]
        return b"(no PORT line)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def base_url(self) -> str:
        if not self.port:
            raise self.error("the fake is not started")
        return f"http://127.0.0.1:{self.port}"

    # ----- admin endpoints -----

    def _admin(
        self,
        method: str,
        name: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        url = f"{self.base_url}/_admin/{name}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise self.error(f"{method} /_admin/{name}: {exc.code} {detail}") from None
