"""Fixtures for the Dagster side: a real SFTP server on a free loopback port, the resources
pointing at it and at the test database, a persistent Dagster instance, and helpers to tick
sensors and execute the runs they request - all in-process, nothing mocked."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, RunRequest, build_sensor_context, instance_for_test
from dagster._core.definitions.partitions.context import partition_loading_context
from sqlalchemy import Engine, text

from models import sftp_jobs
from orchestration.definitions import build_definitions
from orchestration.local_sftp import LocalSFTPServer
from orchestration.resources import PostgresResource, SFTPResource


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[LocalSFTPServer]:
    server = LocalSFTPServer(tmp_path / "sftp", tmp_path / "data", password="test-password-1")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sftp_resource(sftp_server: LocalSFTPServer, tmp_path: Path) -> SFTPResource:
    return SFTPResource(
        host="127.0.0.1",
        port=sftp_server.port,
        username=sftp_server.username,
        password=sftp_server.password,
        known_hosts=str(tmp_path / "known_hosts"),
        host_key_policy="accept_new",
        timeout_seconds=5.0,
    )


@pytest.fixture
def postgres_resource(database_url: str) -> PostgresResource:
    return PostgresResource(database_url=database_url)


@pytest.fixture(scope="session")
def dagster_instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


class Harness:
    """Drive the code location the way the daemon would, one step at a time."""

    def __init__(
        self,
        server: LocalSFTPServer,
        sftp: SFTPResource,
        postgres: PostgresResource,
        instance: DagsterInstance,
        engine: Engine,
    ) -> None:
        self.server = server
        self.root = server.root
        self.sftp = sftp
        self.postgres = postgres
        self.instance = instance
        self.engine = engine
        self.resources = {"sftp": sftp, "postgres": postgres}
        self.defs = build_definitions(self.resources)
        self.cursors: dict[str, str | None] = {}

    # --- SFTP ------------------------------------------------------------------------
    def upload(self, path: str, data: bytes) -> None:
        """Upload through the live server (no .part dance: like a plain client)."""
        with self.sftp.session() as s:
            s.makedirs(path.rsplit("/", 1)[0])
            with s.open_write(path) as fh:
                fh.write(data)

    def append(self, path: str, data: bytes) -> None:
        with self.sftp.session() as s, s.sftp.open(path, "ab") as fh:
            fh.write(data)

    def exists(self, path: str) -> bool:
        return (self.root / path).exists()

    def read(self, path: str) -> str:
        return (self.root / path).read_text(encoding="utf-8")

    # --- sensors and runs --------------------------------------------------------------
    def tick(self, sensor: Any) -> Any:
        """One sensor evaluation against the live server, keeping the sensor's cursor."""
        # evaluate_tick is the daemon's path (resources from the context, requests resolved),
        # inside the same partition-loading context the daemon uses (dagster/_daemon/sensor.py).
        with (
            build_sensor_context(
                instance=self.instance,
                instance_ref=self.instance.get_ref(),  # as the daemon: new partitions resolve
                cursor=self.cursors.get(sensor.name),
                resources=self.resources,
                definitions=self.defs,
            ) as context,
            partition_loading_context(dynamic_partitions_store=self.instance),
        ):
            result = sensor.evaluate_tick(context)
        if result.cursor is not None:
            self.cursors[sensor.name] = result.cursor
        return result

    def execute(self, request: RunRequest, job_name: str | None = None) -> Any:
        name = job_name or (sftp_jobs.IMPORT_JOB if request.partition_key else sftp_jobs.EXPORT_JOB)
        if request.partition_key:
            self.instance.add_dynamic_partitions(
                sftp_jobs.INBOX_PARTITIONS, [request.partition_key]
            )
        return self.defs.resolve_job_def(name).execute_in_process(
            run_config=request.run_config,
            partition_key=request.partition_key,
            tags=dict(request.tags),
            instance=self.instance,
            raise_on_error=False,
        )

    # --- database ----------------------------------------------------------------------
    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).mappings())

    def count(self, project_id: int) -> int:
        return int(
            self.scalar("SELECT count(*) FROM phone_numbers WHERE project_id = :p", p=project_id)
        )

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.rows("SELECT * FROM sftp_jobs WHERE id = :i", i=job_id)[0])


@pytest.fixture
def harness(
    sftp_server: LocalSFTPServer,
    sftp_resource: SFTPResource,
    postgres_resource: PostgresResource,
    dagster_instance: DagsterInstance,
    db: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    # Two ticks apart is still enough here; tests of the settle time set their own.
    monkeypatch.setenv("NUMBASE_SFTP_SETTLE_SECONDS", "0")
    return Harness(sftp_server, sftp_resource, postgres_resource, dagster_instance, db)


def csv_bytes(rows: list[list[Any]], delimiter: str = ",", encoding: str = "utf-8") -> bytes:
    import csv

    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode(encoding)


def phones(n: int, start: int = 0) -> list[str]:
    return [f"+7916{start + i:07d}" for i in range(n)]
