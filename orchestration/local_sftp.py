"""The local SFTP server for `numbase up` and the tests: asyncssh on loopback.

Rooted at `<data_dir>/sftp` with `inbox/ processed/ rejected/ outbox/`. One user
(NUMBASE_SFTP_USER, password NUMBASE_SFTP_PASSWORD or one generated once into
`<data_dir>/sftp_password`, mode 0600); the host key is generated once into
`<data_dir>/sftp_host_key`. Both live outside the SFTP root, so an SFTP user cannot read them.
The Dagster side finds the same password through `local_credentials()`.

asyncssh's chroot only rewrites paths (a symlink inside the root may point outside it), so this
is a development/test server; production points NUMBASE_SFTP_HOST at a real one.

    python -m orchestration.local_sftp          # serve on 127.0.0.1:NUMBASE_SFTP_PORT
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import asyncssh

FOLDERS = ("inbox", "processed", "rejected", "outbox")
PASSWORD_FILE = "sftp_password"
HOST_KEY_FILE = "sftp_host_key"


def _read_or_create(path: Path, make: Any) -> bytes:
    """Create a 0600 file once (first writer wins), then always read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(make())
    return path.read_bytes()


def local_password(data_dir: Path, configured: str | None = None) -> str:
    """The configured password, else one generated once per data folder."""
    if configured:
        return configured
    path = data_dir.resolve() / PASSWORD_FILE
    return _read_or_create(path, lambda: secrets.token_urlsafe(24).encode()).decode().strip()


def host_key(data_dir: Path) -> asyncssh.SSHKey:
    path = data_dir.resolve() / HOST_KEY_FILE
    data = _read_or_create(
        path, lambda: asyncssh.generate_private_key("ssh-ed25519").export_private_key()
    )
    return asyncssh.import_private_key(data)


def local_credentials(settings: Any) -> tuple[str, int, str, str]:
    """(host, port, user, password) of the local server for these settings."""
    return (
        "127.0.0.1",
        settings.sftp_port,
        settings.sftp_user,
        local_password(settings.data_dir, settings.sftp_password),
    )


class LocalSFTPServer:
    """An asyncssh SFTP server on its own event-loop thread: start(), stop(), start() again.

    `bytes_read` counts file bytes served and `read_delay` slows every read, so a test can cut
    the connection in the middle of a download.
    """

    def __init__(
        self,
        root: Path,
        data_dir: Path,
        *,
        username: str = "numbase",
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.root = root.resolve()
        self.data_dir = data_dir.resolve()
        self.username = username
        self.password = local_password(self.data_dir, password)
        self.host = host
        self.port = port
        self.read_delay = 0.0
        self.bytes_read = 0
        self._key = host_key(self.data_dir)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._conns: set[asyncssh.SSHServerConnection] = set()

    # --- asyncssh plumbing ------------------------------------------------------------
    def _server_factory(self) -> asyncssh.SSHServer:
        owner = self

        class _Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                self._conn = conn
                owner._conns.add(conn)

            def connection_lost(self, exc: Exception | None) -> None:
                owner._conns.discard(self._conn)

            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                ok_user = hmac.compare_digest(username.encode(), owner.username.encode())
                ok_pass = hmac.compare_digest(password.encode(), owner.password.encode())
                return ok_user and ok_pass

        return _Server()

    def _sftp_factory(self, chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
        owner = self

        class _SFTP(asyncssh.SFTPServer):
            async def read(self, file_obj: object, offset: int, size: int) -> bytes:
                if owner.read_delay:
                    await asyncio.sleep(owner.read_delay)
                data = super().read(file_obj, offset, size)  # type: ignore[arg-type]
                owner.bytes_read += len(data)  # type: ignore[arg-type]
                return data  # type: ignore[return-value]

        return _SFTP(chan, chroot=str(self.root).encode())

    async def _listen(self) -> int:
        self._acceptor = await asyncssh.listen(
            self.host,
            self.port,
            server_host_keys=[self._key],
            server_factory=self._server_factory,
            sftp_factory=self._sftp_factory,
            allow_scp=False,
            reuse_address=True,
        )
        return self._acceptor.get_port()

    async def _close(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        conns = list(self._conns)
        for conn in conns:  # asyncssh leaves open sessions alive after close(): cut them
            conn.abort()
        for conn in conns:
            await conn.wait_closed()
        self._conns.clear()

    # --- public -----------------------------------------------------------------------
    def prepare_folders(self) -> None:
        for name in FOLDERS:
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def start(self) -> int:
        """Listen in a background thread; returns the port (fixed after the first start)."""
        if self._thread is not None:
            raise RuntimeError("already running")
        self.prepare_folders()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="local-sftp", daemon=True)
        thread.start()
        try:
            self.port = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(10)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()
            raise
        self._loop, self._thread = loop, thread
        return self.port

    def stop(self) -> None:
        """Stop listening and cut every open connection (mid-transfer included)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> LocalSFTPServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    from models.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"local SFTP server: {exc}", file=sys.stderr)
        return 2
    server = LocalSFTPServer(
        settings.sftp_root,
        settings.data_dir,
        username=settings.sftp_user,
        password=settings.sftp_password,
        port=settings.sftp_port,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        server.start()
    except OSError as exc:
        print(
            f"local SFTP server: cannot listen on 127.0.0.1:{server.port}: {exc}", file=sys.stderr
        )
        return 1
    print(
        f"local SFTP server: sftp://{server.username}@127.0.0.1:{server.port} "
        f"root {server.root} (password in {settings.data_dir.resolve() / PASSWORD_FILE})",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
