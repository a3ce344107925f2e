"""An HTTPS proxy that hands the tools' fixed Anthropic hosts to the fake server.

The tools reach their token, profile and usage URLs on fixed HTTPS hosts. Run with
``HTTPS_PROXY`` pointing here and ``NODE_EXTRA_CA_CERTS`` naming this proxy's throw-away CA,
every ``CONNECT host:443`` is answered by terminating TLS with a certificate for that host and
relaying the plain HTTP inside to the fake, whose paths match the real ones
(``/v1/oauth/token``, ``/api/oauth/profile``, ``/api/oauth/usage``). Hosts that are not
Anthropic's are refused. The certificates come from the ``openssl`` command line.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

ANTHROPIC_HOSTS = (
    "api.anthropic.com",
    "platform.claude.com",
    "console.anthropic.com",
    "claude.ai",
    "claude.com",
    "statsig.anthropic.com",
    "mcp-proxy.anthropic.com",
)
_TIMEOUT_S = 30.0


class ProxyUnavailable(RuntimeError):
    """No ``openssl`` to make certificates with."""


@dataclass(frozen=True)
class Certs:
    ca: Path  # PEM of the CA, for NODE_EXTRA_CA_CERTS
    cert: Path  # the server certificate (all of ANTHROPIC_HOSTS) and its key
    key: Path


def make_certs(directory: Path, hosts: tuple[str, ...] = ANTHROPIC_HOSTS) -> Certs:
    """A throw-away CA and one server certificate for `hosts`, signed by it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ProxyUnavailable("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts) + "\n"
    )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=acct test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/CN={hosts[0]}",
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return Certs(ca=ca, cert=cert, key=key)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@dataclass
class TlsProxy:
    """The proxy server; ``connects`` lists every ``host:port`` a client asked for."""

    upstream_port: int
    certs: Certs
    connects: list[str] = field(default_factory=list)
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """Proxy variables for a tool: HTTPS through here, loopback direct, trusting the CA."""
        return {
            "HTTPS_PROXY": self.url,
            "https_proxy": self.url,
            "HTTP_PROXY": self.url,
            "http_proxy": self.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "NODE_EXTRA_CA_CERTS": str(self.certs.ca),
        }

    def start(self) -> TlsProxy:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certs.cert, self.certs.key)
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.settimeout(_TIMEOUT_S)
                request = self.rfile.readline(8192).decode("latin-1").split()
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                if len(request) < 2:
                    return
                proxy.connects.append(
                    request[1] if request[0] == "CONNECT" else " ".join(request[:2])
                )
                host = request[1].rsplit(":", 1)[0]
                if request[0] != "CONNECT" or host not in ANTHROPIC_HOSTS:
                    self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                self.wfile.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                self.wfile.flush()
                try:
                    tls = context.wrap_socket(self.connection, server_side=True)
                    upstream = socket.create_connection(
                        ("127.0.0.1", proxy.upstream_port), _TIMEOUT_S
                    )
                except (OSError, ssl.SSLError):
                    return
                back = threading.Thread(target=_pipe, args=(upstream, tls), daemon=True)
                back.start()
                _pipe(tls, upstream)
                back.join(_TIMEOUT_S)
                upstream.close()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


__all__ = ["ANTHROPIC_HOSTS", "Certs", "ProxyUnavailable", "TlsProxy", "make_certs"]
