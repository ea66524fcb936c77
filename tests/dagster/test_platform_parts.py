"""The local SFTP server's credentials and host keys, Dagster's PostgreSQL storage, filters."""

from __future__ import annotations

import stat
from pathlib import Path

import paramiko
import pytest

from models.number_filters import FilterError, NumberFilters, copy_query
from orchestration.instance import write_dagster_yaml
from orchestration.local_sftp import PASSWORD_FILE, LocalSFTPServer, local_password
from orchestration.resources import SFTPResource, UnknownHostKey


def test_local_server_credentials_are_generated_once_and_shared(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with LocalSFTPServer(tmp_path / "sftp", data) as server:
        pw_file = data / PASSWORD_FILE
        assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
        assert local_password(data) == server.password  # what the Dagster side reads
        assert {p.name for p in (tmp_path / "sftp").iterdir()} >= {
            "inbox", "processed", "rejected", "outbox",
        }  # fmt: skip
        res = SFTPResource(
            port=server.port,
            password_file=str(pw_file),
            known_hosts=str(tmp_path / "kh"),
            host_key_policy="accept_new",
        )
        with res.session() as s:
            assert sorted(a.filename for a in s.listdir_attr(".")) == [
                "inbox", "outbox", "processed", "rejected",
            ]  # fmt: skip
        assert "[127.0.0.1]" in (tmp_path / "kh").read_text()  # accepted and remembered
        port = server.port
    # Restart: same password and host key, so the remembered key still matches.
    with LocalSFTPServer(tmp_path / "sftp", data, port=port) as again:
        assert again.password == server.password
        with res.session() as s:
            s.listdir_attr("inbox")


def test_host_key_policies(tmp_path: Path) -> None:
    with LocalSFTPServer(tmp_path / "sftp", tmp_path / "a", password="pw-123456") as server:
        strict = SFTPResource(
            port=server.port, password="pw-123456", known_hosts=str(tmp_path / "empty"),
            host_key_policy="known_hosts",
        )  # fmt: skip
        (tmp_path / "empty").write_text("")
        with pytest.raises(UnknownHostKey, match="not in known_hosts"), strict.session():
            pass
        dev = SFTPResource(
            port=server.port, password="pw-123456", known_hosts=str(tmp_path / "kh"),
        )  # fmt: skip
        with dev.session():
            pass
        wrong = dev.model_copy(update={"password": "nope"})
        with pytest.raises(paramiko.AuthenticationException), wrong.session():
            pass
        port = server.port
    # Another server (new host key) on the same address: accept-new refuses the changed key.
    with (
        LocalSFTPServer(tmp_path / "sftp", tmp_path / "b", password="pw-123456", port=port),
        pytest.raises(paramiko.BadHostKeyException),
        dev.session(),
    ):
        pass


def test_dagster_storage_in_postgres(tmp_path: Path, database_url: str) -> None:
    import psycopg
    from dagster import DagsterInstance

    path = write_dagster_yaml(tmp_path / "dagster_home", database_url)
    assert "postgresql+psycopg2" in path.read_text()
    instance = DagsterInstance.from_config(str(tmp_path / "dagster_home"))
    try:
        assert instance.get_runs() == []
        # Run monitoring on, without resume (the default launcher cannot resume a run).
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert not instance.run_retries_enabled
        instance.add_dynamic_partitions("sftp_inbox_files", ["inbox/a/b.csv"])
    finally:
        instance.dispose()
    with psycopg.connect(database_url) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'dagster'"
            )
        }
    assert {"runs", "event_logs", "dynamic_partitions", "alembic_version"} <= tables


def test_runs_log_json_lines_with_their_run_id(tmp_path: Path, database_url: str, capfd) -> None:
    import json

    from dagster import DagsterInstance, job, op

    @op
    def say(context) -> None:  # type: ignore[no-untyped-def]
        context.log.info("hello from a run")

    @job
    def logged() -> None:
        say()

    write_dagster_yaml(tmp_path / "dagster_home", database_url)
    instance = DagsterInstance.from_config(str(tmp_path / "dagster_home"))
    try:
        result = logged.execute_in_process(instance=instance)
    finally:
        instance.dispose()
    captured = capfd.readouterr()
    entries = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    ours = [e for e in entries if e.get("run_id") == result.run_id]
    assert any(e["msg"] == "hello from a run" and e["step_key"] == "say" for e in ours)
    assert all("dagster_event" not in e for e in ours)


def test_number_filters() -> None:
    f = NumberFilters.from_params(
        {"project_id": "3", "status": "new,failed", "created_after": "2024-01-01"}
    )
    assert f.project_id == 3 and f.statuses == ("new", "failed")
    query, params = copy_query(f)
    assert query.startswith("COPY (SELECT") and "TO STDOUT" in query
    assert 3 in params.values() and "2024" not in query  # values stay parameters
    for bad, msg in [
        ({"status": ["bogus"]}, "status 'bogus'"),
        ({"project_id": "x"}, "project_id must be an integer"),
        ({"created_after": "yesterday"}, "ISO 8601"),
        ({"colour": "red"}, "unknown filter"),
        ({"created_after": "2024-02-01", "created_before": "2024-01-01"}, "earlier"),
    ]:
        with pytest.raises(FilterError, match=msg):
            NumberFilters.from_params(bad)
