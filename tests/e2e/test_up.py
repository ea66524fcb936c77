"""`numbase up` as a user runs it: embedded PostgreSQL in a fresh data folder (as root too),
migrations, the API healthy, and Ctrl-C stopping every process it started; a second start
reuses the data.

Time: 20 s at a load average of 9; each step's limit is many times that and all of them fit in
the test's pytest timeout (tests/e2e/budget.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.budget import Budget, fits, free_port

ROOT = Path(__file__).resolve().parents[2]
# Seconds per step (the whole test took 20 s at a load average of 9).
LIMITS = {
    "first start healthy": 150.0,  # initdb, migrations, uvicorn workers
    "first Ctrl-C stop": 45.0,  # numbase up gives each part 20 s
    "first start's processes gone": 20.0,
    "create-user": 60.0,  # starts and stops the embedded server itself
    "second start healthy": 90.0,
    "login": 30.0,
    "second Ctrl-C stop": 45.0,
    "second start's processes gone": 20.0,
}
TEARDOWN_RESERVE = 60.0  # killing what a failed step left running
TIMEOUT = fits(540.0, LIMITS, TEARDOWN_RESERVE)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's tmp_path: as root the embedded server runs as another user, and every
    pytest session that starts meanwhile on the machine makes /tmp/pytest-of-root 0700 again,
    locking the server out of its own data folder."""
    path = Path(tempfile.mkdtemp(prefix="numbase-e2e-up-")) / "data"
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


def _healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"numbase up exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as r:
        return r.status == 200


def _processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(path) in cmd or env.get("NUMBASE_DATA_DIR") == str(path):
            found.append(proc)
    return found


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBASE_")}
    env["NUMBASE_DATA_DIR"] = str(data_dir)
    return env


def _start(data_dir: Path, api_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = _env(data_dir)
    env.update(
        NUMBASE_API_PORT=str(api_port),
        NUMBASE_SFTP_PORT=str(free_port()),
        NUMBASE_DAGSTER_PORT=str(free_port()),
    )
    # A file, not a pipe nobody reads while the test waits.
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--no-dagster"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(budget: Budget, step: str, proc: subprocess.Popen[bytes], log: Path) -> str:
    proc.send_signal(signal.SIGINT)
    with budget.step(step) as limit:
        proc.wait(limit)
    return log.read_text(errors="replace")


def _all_gone(budget: Budget, step: str, data_dir: Path) -> None:
    left: list[psutil.Process] = []

    def gone() -> bool:
        left[:] = _processes_using(data_dir)
        return not left

    def describe(_: object) -> str:
        lines = []
        for proc in left:
            try:
                lines.append(f"{proc.pid} (parent {proc.ppid()}): {' '.join(proc.cmdline())[:200]}")
            except psutil.Error as exc:
                lines.append(f"{proc.pid}: {exc}")
        return "left: " + "; ".join(lines)

    budget.poll(step, gone, every=0.2, describe=describe)


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
def test_up_serves_health_and_ctrl_c_stops_everything(data_dir: Path, tmp_path: Path) -> None:
    budget = Budget(TIMEOUT, LIMITS, TEARDOWN_RESERVE)
    port = free_port()
    log = tmp_path / "up-1.log"
    budget.context = lambda: log.read_text(errors="replace")[-4000:] if log.exists() else ""
    proc = _start(data_dir, port, log)
    try:
        budget.poll("first start healthy", lambda: _healthy(proc, port, log))
        assert (data_dir / "pgdata" / "PG_VERSION").exists()
        out = _stop(budget, "first Ctrl-C stop", proc, log)
        assert proc.returncode == 0, out
        # The hint comes last, framed, after the line saying everything runs.
        after_ready = out[out.index("press Ctrl-C to stop everything") :]
        assert "numbase: " + "=" * 72 in after_ready and "create the first admin" in after_ready
        assert f"NUMBASE_DATA_DIR={data_dir.resolve()} " in after_ready
        _all_gone(budget, "first start's processes gone", data_dir)

        # Second start: same data folder, no initdb, a user created in between is still there.
        with budget.step("create-user") as limit:
            made = subprocess.run(
                [sys.executable, "-m", "cli.main", "create-user", "--username", "boss", "--email",
                 "boss@example.com", "--role", "admin", "--password-stdin"],
                cwd=ROOT, input="long-enough-pass\n", text=True,
                capture_output=True, env=_env(data_dir), timeout=limit,
            )  # fmt: skip
        assert made.returncode == 0, made.stderr[-3000:]
        log = tmp_path / "up-2.log"
        proc = _start(data_dir, port, log)
        budget.poll("second start healthy", lambda: _healthy(proc, port, log))
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/auth/login/",
            data=b'{"username": "boss", "password": "long-enough-pass"}',
            headers={"content-type": "application/json"},
        )
        with budget.step("login") as limit, urllib.request.urlopen(req, timeout=limit) as resp:
            assert resp.status == 200
        out = _stop(budget, "second Ctrl-C stop", proc, log)
        assert proc.returncode == 0, out
        assert "create the first admin" not in out
        _all_gone(budget, "second start's processes gone", data_dir)
        print(f"\ne2e up: {budget.report()}, total {budget.elapsed():.1f} s")
    finally:
        if proc.poll() is None:  # a step failed: leave nothing running
            proc.kill()
            proc.wait()
        for leftover in _processes_using(data_dir):
            leftover.kill()
