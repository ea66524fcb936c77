"""`numbase up` as a user runs it: embedded PostgreSQL in a fresh data folder (as root too),
migrations, the API healthy, and Ctrl-C stopping every process it started; a second start
reuses the data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(port: int, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.2)
    return None


def _processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(path) in cmd or env.get("NUMBASE_DATA_DIR") == str(path):
            found.append(proc)
    return found


def _start(data_dir: Path, api_port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBASE_")}
    env.update(
        NUMBASE_DATA_DIR=str(data_dir),
        NUMBASE_API_PORT=str(api_port),
        NUMBASE_SFTP_PORT=str(_free_port()),
        NUMBASE_DAGSTER_PORT=str(_free_port()),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--no-dagster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return out


@pytest.mark.slow
def test_up_serves_health_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    proc = _start(data_dir, port)
    try:
        took = _health(port, 60)
        assert took is not None, "API did not become healthy within 60 s"
        assert (data_dir / "pgdata" / "PG_VERSION").exists()
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert "create the first admin" in out
    time.sleep(0.5)
    assert _processes_using(data_dir) == []

    # Second start: same data folder, no initdb, a user created in between is still there.
    subprocess.run(
        [sys.executable, "-m", "cli.main", "create-user", "--username", "boss", "--email",
         "boss@example.com", "--role", "admin", "--password-stdin"],
        cwd=ROOT, input="long-enough-pass\n", text=True, check=True, capture_output=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("NUMBASE_")},
             "NUMBASE_DATA_DIR": str(data_dir)},
    )  # fmt: skip
    proc = _start(data_dir, port)
    try:
        assert _health(port, 60) is not None
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/auth/login/",
            data=b'{"username": "boss", "password": "long-enough-pass"}',
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
    finally:
        out = _stop(proc)
    assert "create the first admin" not in out
    time.sleep(0.5)
    assert _processes_using(data_dir) == []
