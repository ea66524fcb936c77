"""Dagster resources: the SFTP server (paramiko) and the platform's PostgreSQL.

Both are `ConfigurableResource`s built from `NUMBASE_` variables through `EnvVar`
(`default_resources()`), so the UI shows where they point without showing secrets.
"""

from __future__ import annotations

import os
import posixpath
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

import paramiko
import psycopg
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr

from models import job_recovery
from models.db import libpq_url

# Network trouble worth a retry (the server went away, a timeout, a refused connection).
_CONNECT_ERRORS = (paramiko.SSHException, EOFError, ConnectionError, TimeoutError, socket.error)


class SFTPUnavailable(ConnectionError):
    """The SFTP server could not be reached or the connection dropped: retry later."""


class UnknownHostKey(paramiko.SSHException):
    """The server's host key is not in known_hosts (a configuration error, never retried)."""


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        raise UnknownHostKey(
            f"host key {key.get_name()} {key.get_fingerprint().hex()} of {hostname} is not in "
            "known_hosts (host_key_policy=known_hosts)"
        )


class SFTPSession:
    """A connected SFTP client with the few operations numbase needs.

    Any error that leaves the transport dead is re-raised as `SFTPUnavailable`, so callers can
    tell "the network failed, retry" from "that file does not exist".
    """

    def __init__(self, client: paramiko.SSHClient, sftp: paramiko.SFTPClient) -> None:
        self.client = client
        self.sftp = sftp

    def _alive(self) -> bool:
        transport = self.client.get_transport()
        return bool(transport and transport.is_active())

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except SFTPUnavailable:
            raise
        except Exception as exc:
            if not self._alive() or isinstance(exc, (EOFError, socket.timeout)):
                raise SFTPUnavailable(f"SFTP connection lost during {what}: {exc!r}") from exc
            raise

    def listdir_attr(self, path: str) -> list[paramiko.SFTPAttributes]:
        with self._guard(f"listing {path}"):
            return self.sftp.listdir_attr(path)

    def stat(self, path: str) -> paramiko.SFTPAttributes | None:
        with self._guard(f"stat {path}"):
            try:
                return self.sftp.stat(path)
            except FileNotFoundError:
                return None

    def is_dir(self, path: str) -> bool:
        st = self.stat(path)
        return bool(st and st.st_mode is not None and stat.S_ISDIR(st.st_mode))

    def makedirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        current = ""
        for part in parts:
            current = f"{current}/{part}" if current else part
            if not self.is_dir(current):
                with self._guard(f"mkdir {current}"):
                    try:
                        self.sftp.mkdir(current)
                    except OSError:
                        if not self.is_dir(current):  # lost a race with another writer: fine
                            raise

    def download(self, remote: str, local: Path) -> int:
        """Copy a remote file to a local path with prefetch (4x faster); returns bytes."""
        with self._guard(f"download of {remote}"), local.open("wb") as fh:
            self.sftp.getfo(remote, fh, prefetch=True, max_concurrent_prefetch_requests=64)
        return local.stat().st_size

    def upload(self, local: Path, remote: str) -> None:
        """Upload via `<remote>.part` + rename, so readers never see half a file."""
        self.makedirs(posixpath.dirname(remote))
        with self._guard(f"upload of {remote}"):
            self.sftp.put(str(local), remote + ".part", confirm=True)
            self.sftp.posix_rename(remote + ".part", remote)

    @contextmanager
    def open_write(self, remote: str) -> Iterator[IO[bytes]]:
        with self._guard(f"write of {remote}"), self.sftp.open(remote, "wb") as fh:
            fh.set_pipelined(True)
            yield fh  # type: ignore[misc]

    def write_bytes(self, remote: str, data: bytes) -> None:
        self.makedirs(posixpath.dirname(remote))
        with self.open_write(remote + ".part") as fh:
            fh.write(data)
        self.rename(remote + ".part", remote)

    def rename(self, src: str, dst: str) -> None:
        """Atomic move that replaces `dst` (a plain rename refuses to, STACK-NOTES)."""
        with self._guard(f"rename {src} -> {dst}"):
            self.sftp.posix_rename(src, dst)

    def remove(self, path: str) -> None:
        with self._guard(f"remove {path}"):
            self.sftp.remove(path)


class SFTPResource(ConfigurableResource):
    """An SFTP server reached with paramiko.

    host_key_policy: "known_hosts" (production) accepts only keys already in `known_hosts`;
    "accept_new" (development) trusts a host the first time, records its key in `known_hosts`,
    and refuses a changed key afterwards - like OpenSSH's StrictHostKeyChecking=accept-new.
    """

    host: str = "127.0.0.1"
    port: int = 2222
    username: str = "numbase"
    password: str | None = Field(default=None, description="secret; or password_file / key_file")
    password_file: str | None = Field(
        default=None, description="file holding the password (the local dev server's)"
    )
    key_file: str | None = None
    known_hosts: str | None = None
    host_key_policy: Literal["known_hosts", "accept_new"] = "accept_new"
    timeout_seconds: float = 20.0

    def _password(self) -> str | None:
        if self.password:
            return self.password
        if self.password_file:
            return Path(self.password_file).read_text().strip()
        return None

    @contextmanager
    def session(self) -> Iterator[SFTPSession]:
        client = paramiko.SSHClient()
        known = Path(self.known_hosts).expanduser() if self.known_hosts else None
        if self.host_key_policy == "known_hosts":
            if known is None:
                client.load_system_host_keys()
            else:
                client.load_host_keys(str(known))
            client.set_missing_host_key_policy(_RejectUnknown())
        else:
            if known is not None:
                known.parent.mkdir(parents=True, exist_ok=True)
                known.touch(mode=0o600, exist_ok=True)
                # paramiko then saves newly accepted keys here; a changed key still fails.
                client.load_host_keys(str(known))
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.username,
                password=self._password(),
                key_filename=self.key_file,
                timeout=self.timeout_seconds,
                banner_timeout=self.timeout_seconds,
                auth_timeout=self.timeout_seconds,
                allow_agent=False,
                look_for_keys=False,
            )
            sftp = client.open_sftp()
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(self.timeout_seconds)
        except (paramiko.BadHostKeyException, paramiko.AuthenticationException, UnknownHostKey):
            client.close()
            raise
        except _CONNECT_ERRORS as exc:
            client.close()
            raise SFTPUnavailable(
                f"cannot reach SFTP server {self.host}:{self.port}: {exc!r}"
            ) from exc
        try:
            yield SFTPSession(client, sftp)
        finally:
            client.close()


class PostgresResource(ConfigurableResource):
    """The platform database (NUMBASE_DATABASE_URL, or the embedded server when unset).

    In a run, the process executing it holds the run's liveness lock on a connection of its own
    for as long as it lives (models/job_recovery.py): that is how the reconcile sensor tells a
    job whose process died from one still working, whatever the run status says.
    """

    database_url: str | None = None
    phone_region: str = "RU"
    _liveness: psycopg.Connection | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = context.run
        if run is not None:  # not for sensors and schedules
            # A session of its own, past any transaction pooler (NUMBASE_DB_SESSION_URL): the
            # lock must live and die with this process, not with a pooled server connection.
            self._liveness = self.connect(
                f"numbase-run:{run.run_id[:8]}", autocommit=True, session=True
            )
            job_recovery.hold_run_lock(self._liveness, run.run_id)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._liveness is not None:
            self._liveness.close()
            self._liveness = None

    def url(self) -> str:
        if self.database_url:
            return libpq_url(self.database_url)
        from models.db import resolve_database_url
        from models.settings import load_settings

        return resolve_database_url(load_settings())

    def connect(
        self,
        application_name: str = "numbase-dagster",
        *,
        bulk: bool = True,
        session: bool = False,
        **kwargs: Any,
    ) -> psycopg.Connection:
        """A connection with the configured lock timeout, so a held lock fails the import (or
        the sensor tick) with a message naming the wait instead of stalling it. Dagster work
        (imports, exports) gets the longer bulk statement limit unless `bulk=False`.
        `session`: one that keeps session state, past any transaction pooler."""
        from models.db import connect, db_timeouts
        from models.settings import load_settings

        settings = load_settings()
        url = libpq_url(settings.db_session_url) if session and settings.db_session_url else None
        timeouts = db_timeouts(settings, bulk=bulk)
        return connect(
            url or self.url(), application_name=application_name, timeouts=timeouts, **kwargs
        )


def _env(name: str) -> Any:
    """EnvVar when the variable is set (the UI shows the name, not the value), else None."""
    return EnvVar(name) if os.environ.get(name) else None


def default_resources() -> dict[str, Any]:
    """Resources from NUMBASE_* variables (the local SFTP server if NUMBASE_SFTP_HOST is unset)."""
    from models.settings import load_settings
    from orchestration.local_sftp import PASSWORD_FILE

    settings = load_settings()
    data_dir = settings.data_dir.resolve()
    sftp_kwargs: dict[str, Any] = {
        "port": settings.sftp_port,
        "username": settings.sftp_user,
        "host_key_policy": settings.sftp_host_key_policy,
    }
    if settings.sftp_host:
        sftp_kwargs["host"] = EnvVar("NUMBASE_SFTP_HOST")
        sftp_kwargs["password"] = _env("NUMBASE_SFTP_PASSWORD")
        sftp_kwargs["key_file"] = str(settings.sftp_key_file) if settings.sftp_key_file else None
        sftp_kwargs["known_hosts"] = str(settings.sftp_known_hosts or "") or None
    else:
        sftp_kwargs["password"] = _env("NUMBASE_SFTP_PASSWORD")
        if sftp_kwargs["password"] is None:
            sftp_kwargs["password_file"] = str(data_dir / PASSWORD_FILE)
        sftp_kwargs["known_hosts"] = str(settings.sftp_known_hosts or data_dir / "known_hosts")
        sftp_kwargs["host_key_policy"] = "accept_new"  # our own freshly generated host key
    return {
        "sftp": SFTPResource(**{k: v for k, v in sftp_kwargs.items() if v is not None}),
        "postgres": PostgresResource(
            database_url=_env("NUMBASE_DATABASE_URL"), phone_region=settings.phone_region
        ),
    }
