"""The shipped nginx config (deploy/nginx/numbase.conf), run for real in front of the API and of
a stand-in for the Dagster webserver: only /api/ is public, /metrics is not, the Dagster side
wants its password and keeps it, and clients cannot choose the address the API sees. Skipped
where nginx is not installed (compose runs the official image)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from models.tables import AuditLog
from tests.api.conftest import PASSWORD
from tests.security.live import nginx_main_conf, serve

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("openssl") is None,
    reason="nginx (and openssl, for the password hash) are not installed here",
)
ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "numbase.conf"
DAGSTER_USER, DAGSTER_PASSWORD = "ops", "dagster-ui-password"


class _Echo(BaseHTTPRequestHandler):
    """Stands in for dagster-webserver: answers with the request it received."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _dagster_stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _nginx(tmp_path: Path, api: str, dagster: str) -> Iterator[tuple[int, int]]:
    """The shipped config with only its addresses changed: compose's service names and ports
    become the loopback servers of this test, the secret's path a file in tmp_path."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=DAGSTER_PASSWORD,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    htpasswd = tmp_path / "dagster.htpasswd"
    htpasswd.write_text(f"{DAGSTER_USER}:{hashed}\n")
    api_port, dagster_port = _free_port(), _free_port()
    conf = NGINX_CONF.read_text()
    for old, new in (
        ("http://api:8000", api),
        ("http://dagster-webserver:3000", dagster),
        ("listen 8000;", f"listen 127.0.0.1:{api_port};"),
        ("listen 3000;", f"listen 127.0.0.1:{dagster_port};"),
        ("/run/secrets/dagster_htpasswd", str(htpasswd)),
    ):
        assert old in conf, old
        conf = conf.replace(old, new)
    (tmp_path / "numbase.conf").write_text(conf)
    main = tmp_path / "nginx.conf"
    main.write_text(nginx_main_conf(tmp_path, tmp_path / "numbase.conf"))
    proc = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-c", str(main)], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", dagster_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", api_port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield api_port, dagster_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _status(port: int, raw_path: str) -> int:
    """The status for a request line sent exactly as written (no client-side normalising)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


@pytest.fixture
def stack(app, tmp_path: Path) -> Iterator[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    # The API trusts X-Forwarded-For from the proxy's address only, as in compose.
    with (
        serve(app, forwarded_allow_ips="127.0.0.1") as api,
        _dagster_stand_in() as dagster,
        _nginx(tmp_path, api, dagster) as (api_port, dagster_port),
    ):
        yield api, api_port, dagster_port


def test_only_the_api_paths_are_public(stack) -> None:  # type: ignore[no-untyped-def]
    api, api_port, _ = stack
    assert httpx.get(f"{api}/metrics").status_code == 200  # inside the network: scrapeable
    assert _status(api_port, "/api/health") == 200
    assert _status(api_port, "/api/docs") == 200
    for path in (
        "/metrics",
        "/metrics/",
        "/metrics?x=1",
        "//metrics",
        "/%6Detrics",
        "/api/../metrics",
        "/api/%2E%2E/metrics",
        "/",
        "/server_info",
    ):
        assert _status(api_port, path) == 404, path


def test_clients_cannot_choose_their_address(stack, factory, session) -> None:  # type: ignore[no-untyped-def]
    _, api_port, _ = stack
    user = factory.user(password=PASSWORD)
    resp = httpx.post(
        f"http://127.0.0.1:{api_port}/api/auth/login/",
        json={"username": user.username, "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert resp.status_code == 200
    ip = session.scalar(select(AuditLog.ip_address).where(AuditLog.action == "login"))
    assert str(ip) == "127.0.0.1"  # the proxy's view of the client, not the header it sent


def test_dagster_wants_the_password_and_keeps_it(stack) -> None:  # type: ignore[no-untyped-def]
    _, _, dagster_port = stack
    url = f"http://127.0.0.1:{dagster_port}"
    for auth in (None, (DAGSTER_USER, "wrong"), ("someone", DAGSTER_PASSWORD)):
        for path in ("/", "/graphql", "/server_info"):
            resp = httpx.get(url + path, auth=auth)
            assert resp.status_code == 401, (auth, path)
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
    resp = httpx.get(f"{url}/graphql", auth=(DAGSTER_USER, DAGSTER_PASSWORD))
    assert resp.status_code == 200
    echoed = {k.lower(): v for k, v in resp.json()["headers"].items()}
    assert resp.json()["path"] == "/graphql"
    assert "authorization" not in echoed  # the credentials end at the proxy
    assert echoed["x-forwarded-for"] == "127.0.0.1"
