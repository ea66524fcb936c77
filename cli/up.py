"""`numbase up`: the whole platform on one machine, stopped as a whole by Ctrl-C.

Children run in their own sessions with default signal handling (STACK-NOTES: `dagster dev`
started with SIGINT ignored cannot be stopped), get the resolved database URL so none of them
starts a second embedded server, and are stopped by process group.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cli.supervise import CodeLocationWatch, RestartBudget, say
from models.settings import Settings, get_settings

STOP_TIMEOUT = 20.0
# The first-admin hint again after Dagster's start-up burst of log lines, then now and then,
# for as long as there is no user (seconds).
FIRST_ADMIN_REMINDERS = (30.0, 300.0)


@dataclass
class Child:
    name: str
    argv: list[str]
    url: str
    ready_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: RestartBudget = field(default_factory=RestartBudget)


def _reset_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_child(child: Child, env: dict[str, str]) -> None:
    child.process = subprocess.Popen(
        child.argv, env=env, start_new_session=True, preexec_fn=_reset_signals
    )


def restart_if_dead(child: Child, env: dict[str, str]) -> bool:
    """Start a child that exited again (its strays killed first); False once it keeps dying."""
    assert child.process is not None
    code = child.process.poll()
    if code is None:
        return True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signal.SIGKILL)  # workers still holding its port
    n = child.restarts.take()
    if n is None:
        say(
            f"{child.name} exited ({code}) and keeps dying ({child.restarts.limit} restarts in "
            f"{child.restarts.window:.0f} s); stopping everything"
        )
        return False
    say(f"{child.name} exited ({code}); restarting it ({n} of {child.restarts.limit})")
    start_child(child, env)
    return True


def stop_children(children: list[Child]) -> None:
    live = [c for c in children if c.process and c.process.poll() is None]
    for child in live:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGTERM)  # type: ignore[union-attr]
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in live:
        assert child.process is not None
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
    for child in children:
        # Stray grandchildren (uvicorn workers, dagster daemons) go with their group.
        if child.process:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)


def wait_ready(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def child_environment(settings: Settings, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["NUMBASE_DATABASE_URL"] = database_url
    env["NUMBASE_DATA_DIR"] = str(settings.data_dir.resolve())
    env["NUMBASE_JWT_SECRET"] = settings.resolved_jwt_secret()
    env["DAGSTER_HOME"] = str(settings.dagster_home)
    # Several uvicorn workers: /metrics aggregates them through files in this folder.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(settings.data_dir.resolve() / "prometheus")
    return env


def platform_children(settings: Settings, env: dict[str, str], with_dagster: bool) -> list[Child]:
    python = sys.executable
    children: list[Child] = []
    if settings.local_sftp and importlib.util.find_spec("orchestration.local_sftp"):
        children.append(
            Child(
                "SFTP server",
                [python, "-m", "orchestration.local_sftp"],
                f"sftp://{settings.sftp_user}@127.0.0.1:{settings.sftp_port}",
            )
        )
    api = f"http://{settings.api_host}:{settings.api_port}"
    children.append(
        Child(
            "API",
            [
                python, "-m", "uvicorn", "api.main:create_app", "--factory",
                "--host", settings.api_host, "--port", str(settings.api_port),
                "--workers", str(max(1, os.cpu_count() or 1)), "--no-access-log",
                # Client addresses (login throttle, audit log) from X-Forwarded-For, but
                # only when the peer is one of the configured reverse proxies.
                "--proxy-headers", "--forwarded-allow-ips", settings.trusted_proxies,
            ],
            f"{api}/api/docs",
            f"{api}/api/health",
        )
    )  # fmt: skip
    if with_dagster and importlib.util.find_spec("orchestration.definitions"):
        from orchestration.instance import write_dagster_yaml

        write_dagster_yaml(settings.dagster_home, env["NUMBASE_DATABASE_URL"])
        workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
        dagster_url = f"http://127.0.0.1:{settings.dagster_port}"
        children.append(
            Child(
                "Dagster UI",
                [
                    python, "-m", "dagster", "dev", "-w", str(workspace),
                    "-h", "127.0.0.1", "-p", str(settings.dagster_port),
                ],
                dagster_url,
                f"{dagster_url}/server_info",
            )
        )  # fmt: skip
    return children


def run_platform(*, demo: bool = False, with_dagster: bool = True) -> int:
    from models import migrate
    from models.db import resolve_database_url
    from models.embedded import EmbeddedPostgres

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedPostgres(settings.pgdata_dir) if settings.embedded_database else None
    started_db = bool(embedded and not embedded.running())
    database_url = resolve_database_url(settings)
    print(f"numbase: database {database_url}" + (" (embedded)" if embedded else ""), flush=True)
    migrate.upgrade(database_url)
    env = child_environment(settings, database_url)
    metrics_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(metrics_dir, ignore_errors=True)  # stale counters of a previous run
    metrics_dir.mkdir(parents=True)
    children = platform_children(settings, env, with_dagster)
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    no_more_reminders = threading.Event()
    try:
        for child in children:
            start_child(child, env)
        for child in children:
            if child.ready_url and not wait_ready(child.ready_url, 90):
                print(f"numbase: {child.name} did not become ready", file=sys.stderr)
                return 1
        _announce(settings, database_url, children, no_more_reminders)
        if demo:
            from cli.demo import DemoError, seed_demo

            try:
                seed_demo(settings, database_url)
            except DemoError as exc:  # the platform is up all the same: say why and go on
                print(f"numbase: demo not seeded: {exc}", file=sys.stderr, flush=True)
        dagster = next((c for c in children if c.name == "Dagster UI"), None)
        watch = CodeLocationWatch(dagster.url) if dagster else None
        while not stopping:
            for child in children:
                if not restart_if_dead(child, env):
                    return 1
            if watch is not None and not watch.check():
                return 1
            time.sleep(0.5)
        return 0
    finally:
        no_more_reminders.set()
        print("numbase: stopping...", flush=True)
        stop_children(children)
        if embedded and started_db:
            embedded.stop()
        print("numbase: stopped", flush=True)


def _announce(
    settings: Settings, database_url: str, children: list[Child], stop_reminding: threading.Event
) -> None:
    for child in children:
        print(f"numbase: {child.name:<12} {child.url}", flush=True)
    print("numbase: running; press Ctrl-C to stop everything", flush=True)
    if not _has_users(database_url):
        # Last, framed, and repeated: Dagster logs plenty right after its UI answers.
        hint = first_admin_hint(settings, children)
        print(hint, flush=True)
        threading.Thread(
            target=remind_first_admin,
            args=(database_url, hint, stop_reminding, *FIRST_ADMIN_REMINDERS),
            name="first-admin-reminder",
            daemon=True,
        ).start()


def _has_users(database_url: str) -> bool:
    from sqlalchemy import func, select

    from models.db import make_engine
    from models.tables import User

    engine = make_engine(database_url, pool_size=None)
    try:
        with engine.connect() as conn:
            return bool(conn.scalar(select(func.count()).select_from(User)))
    finally:
        engine.dispose()


def first_admin_hint(settings: Settings, children: list[Child]) -> str:
    """A block to copy from into a shell in the same folder: names the data folder when it is
    not the default one, the usual reason a create-user finds an empty database."""
    exe = Path(sys.executable).with_name("numbase")
    program = "numbase"
    if exe.exists():
        program = os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)
    prefix = ""
    if settings.embedded_database and "NUMBASE_DATA_DIR" in os.environ:
        prefix = f"NUMBASE_DATA_DIR={settings.data_dir.resolve()} "
    rule = "numbase: " + "=" * 72
    lines = [
        rule,
        "numbase: no users yet - create the first admin (in another terminal):",
        f"numbase:   {prefix}{program} create-user --username admin --email admin@example.com "
        "--role admin --password-stdin",
    ]
    if not settings.embedded_database:
        lines.append("numbase: (in a shell with the same NUMBASE_DATABASE_URL)")
    docs = next((c.url for c in children if c.name == "API"), None)
    if docs:
        lines.append(f"numbase: then sign in with POST /api/auth/login/ (try it in {docs})")
    return "\n".join([*lines, rule])


def remind_first_admin(
    database_url: str, hint: str, stop: threading.Event, first: float, every: float
) -> None:
    """Print the hint again after `first` seconds, then every `every`, until a user exists."""
    from sqlalchemy.exc import SQLAlchemyError

    delay = first
    while not stop.wait(delay):
        try:
            if _has_users(database_url):
                return
        except SQLAlchemyError:  # the database going away is the supervisor's business
            return
        if stop.is_set():
            return
        print(hint, flush=True)
        delay = every
