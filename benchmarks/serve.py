"""The API as `numbase up` serves it (uvicorn, its own process group), for the HTTP benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_api(
    db_url: str, port: int, log: Path, *, workers: int = 1, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start uvicorn on 127.0.0.1:port against db_url and wait until /api/health answers."""
    full_env = dict(os.environ)
    full_env.update(
        NUMBASE_DATABASE_URL=db_url, NUMBASE_DATA_DIR=str(ROOT / ".numbase"), **(env or {})
    )
    argv = [
        sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-access-log",
    ]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)  # .numbase/ is absent in a fresh checkout
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
        if proc.poll() is not None:
            break
    stop_api(proc)
    raise RuntimeError(f"the API did not start; see {log}")


def stop_api(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
