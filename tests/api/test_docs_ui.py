"""/api/docs works without internet: the page names no other host, its assets come from the app,
and a real headless Chromium that cannot resolve any outside name renders the operations."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

URL_ATTRIBUTE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
QUOTED_URL = re.compile(r"""["'](?:https?:)?//[^"']*["']""")


def _page_urls(html: str) -> list[str]:
    return URL_ATTRIBUTE.findall(html)


def test_docs_page_names_no_other_host_and_its_assets_answer(client: TestClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.text
    assert QUOTED_URL.findall(html) == []  # no absolute or protocol-relative URL anywhere
    urls = _page_urls(html)
    assert len(urls) == 3, urls  # stylesheet, favicon, script
    assert all(u.startswith("/api/docs/assets/") for u in urls), urls
    types = {}
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, url
        assert len(r.content) > 500, url
        types[url.rsplit(".", 1)[1]] = r.headers["content-type"]
    assert types["js"].startswith(("text/javascript", "application/javascript"))
    assert types["css"].startswith("text/css") and types["png"] == "image/png"
    assert "'/api/openapi.json'" in html or '"/api/openapi.json"' in html
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/api/docs/assets/nope.js").status_code == 404
    assert client.get("/api/docs/assets/../../main.py").status_code == 404


def test_docs_page_behind_a_prefix_stripping_proxy(app: FastAPI) -> None:
    with TestClient(app, root_path="/numbase") as c:
        html = c.get("/api/docs").text
    urls = _page_urls(html)
    assert urls and all(u.startswith("/numbase/api/docs/assets/") for u in urls), urls
    assert "/numbase/api/openapi.json" in html


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_api(app: FastAPI) -> Iterator[str]:
    """The app on a real port: Chromium needs a socket, not a TestClient."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _chromium() -> str | None:
    return next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )


@pytest.mark.skipif(
    _chromium() is None, reason="no Chromium on this machine (Debian: apt-get install chromium)"
)
def test_swagger_ui_renders_operations_in_chromium_without_internet(
    live_api: str, tmp_path: Path
) -> None:
    argv = [
        str(_chromium()),
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
        # As on a LAN without internet: every name but the API's own address fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        # Let the page's scripts run (fetch the schema, render) before the DOM is dumped.
        "--virtual-time-budget=30000",
        "--dump-dom", f"{live_api}/api/docs",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'class="swagger-ui' in dom, dom[:3000]
    assert "Failed to load API definition" not in dom
    # Operations are listed: one block per path+method, the login among them.
    blocks = re.findall(r'class="opblock opblock-(?:get|post|put|patch|delete)', dom)
    assert len(blocks) >= 40, dom[:3000]
    assert 'data-path="/api/auth/login/"' in dom
