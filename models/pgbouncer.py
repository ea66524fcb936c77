"""A local pgbouncer in transaction-pooling mode in front of any PostgreSQL server.

Used by the tests that run numbase through a pooler (tests/pgbouncer/) and by the benchmarks that
compare pooled with direct connections. It runs Debian's `pgbouncer` binary (`apt-get install
pgbouncer`; `.ci/run` installs it) with a config written into a work folder: every database name is
forwarded to the upstream server (`* = host=... port=...`), so a test database created through it
is reachable through it at once. pgbouncer refuses to run as root; as root it drops to the
unprivileged user `nobody` (`-u`), which must be able to read the work folder.

Transaction pooling means a server connection belongs to a client only for one transaction. What
that rules out, and how numbase stays clear of it (docs/scaling.md):
* session state: `SET` outside a transaction, session advisory locks, `LISTEN`, `WITH HOLD`
  cursors, temp tables that outlive a transaction. numbase uses `SET LOCAL` and
  `CREATE TEMP TABLE ... ON COMMIT DROP` only; Dagster's event-log watcher uses `LISTEN`, so
  Dagster's storage connects to PostgreSQL directly.
* protocol-level prepared statements (pgbouncer < 1.21): every numbase connection sets psycopg's
  `prepare_threshold=None`.
* startup parameters other than the ones pgbouncer tracks: `options` is refused ("unsupported
  startup parameter"), so per-connection settings must be `SET LOCAL`, role settings
  or a pgbouncer database alias whose `connect_query` sets them. Dagster's storage sends
  `options=-csearch_path=dagster`; through pgbouncer it connects to such an alias instead
  (`<database>_dagster`, see orchestration/instance.py), or its tables would land in `public`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

BINARY_NAMES = ("pgbouncer", "/usr/sbin/pgbouncer")
RUN_AS_WHEN_ROOT = "nobody"


class PgBouncerError(RuntimeError):
    pass


def find_binary() -> str | None:
    """The pgbouncer executable, or None where it is not installed."""
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class LocalPgBouncer:
    """pgbouncer on 127.0.0.1:<free port>, forwarding every database to `upstream_url`'s server.

    `workdir` (config, log, pid file) defaults to a new temp folder, removed on stop."""

    def __init__(
        self,
        upstream_url: str,
        workdir: Path | None = None,
        *,
        pool_mode: str = "transaction",
        default_pool_size: int = 20,
        max_client_conn: int = 500,
        aliases: dict[str, tuple[str, ...]] | None = None,
        connect_query: str | None = None,
    ) -> None:
        parts = urlsplit(upstream_url)
        if not parts.hostname or not parts.port:
            raise PgBouncerError(f"upstream URL needs a host and port: {upstream_url}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.user = parts.username or "postgres"
        # Its own folder by default: as root pgbouncer runs as `nobody`, which cannot reach
        # folders under a root-only parent such as pytest's temp root.
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="numbase-pgbouncer-"))
        self.pool_mode = pool_mode
        self.default_pool_size = default_pool_size
        self.max_client_conn = max_client_conn
        # alias -> (database, connect_query[, pool_mode]): a pool of its own whose server
        # connections all run connect_query once (e.g. Dagster's search_path, which it otherwise
        # sends as the `options` startup parameter that pgbouncer cannot honour).
        self.aliases = aliases or {}
        # run on every new server connection of the catch-all entry (session defaults)
        self.connect_query = connect_query
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "pgbouncer.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            + "".join(
                f"{alias} = host={self.upstream_host} port={self.upstream_port} dbname={spec[0]}"
                + (f" pool_mode={spec[2]}" if len(spec) > 2 else "")
                + f" connect_query='{spec[1]}'\n"
                for alias, spec in self.aliases.items()
            )
            + f"* = host={self.upstream_host} port={self.upstream_port}"
            + (f" connect_query='{self.connect_query}'" if self.connect_query else "")
            + "\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            # The upstream servers here trust loopback; a real deployment uses scram-sha-256.
            "auth_type = trust\n"
            f"auth_file = {self.workdir / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.default_pool_size}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            # `options` is deliberately NOT ignored: a client that needs per-connection settings
            # must fail loudly here rather than run without them (see the module docstring).
            "ignore_startup_parameters = extra_float_digits\n"
            # DISCARD ALL (the default) resets a session-pooled server connection when its client
            # leaves: session advisory locks end with their client (models/job_recovery.py).
            f"logfile = {self.log_path}\n"
            f"pidfile = {self.workdir / 'pgbouncer.pid'}\n"
            "admin_users = postgres\n"
        )
        return ini

    def start(self, timeout: float = 30.0) -> str:
        binary = find_binary()
        if binary is None:
            raise PgBouncerError("pgbouncer is not installed (apt-get install pgbouncer)")
        self.port = _free_port()
        ini = self._write_config()
        cmd = [binary]
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS_WHEN_ROOT)
            for path in (self.workdir, *self.workdir.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
            cmd += ["-u", RUN_AS_WHEN_ROOT]
        cmd.append(str(ini))
        # stderr to a file, never a pipe: pgbouncer logs every connection there too, and an
        # unread pipe fills up and blocks its one event loop (every client then times out).
        self._stderr = (self.workdir / "pgbouncer.stderr").open("wb")
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self._proc.poll() is not None:
                err = (self.workdir / "pgbouncer.stderr").read_text(errors="replace")
                log = self.log_path.read_text() if self.log_path.exists() else ""
                raise PgBouncerError(f"pgbouncer exited at start: {err}{log}")
            if time.monotonic() > deadline:
                self.stop()
                raise PgBouncerError(f"pgbouncer did not open port {self.port}")
            time.sleep(0.05)
        return self.url()

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # immediate shutdown: clients are done or dead
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._proc = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalPgBouncer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
