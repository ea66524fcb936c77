"""`numbase demo`: idempotent seeding, the sample dropped through a real SFTP server with the
platform's own credentials, and a sample whose announced figures the real parser and loader
reproduce."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pwdlib import PasswordHash
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from cli.demo import (
    INBOX_PATH,
    MANAGER,
    PROCESSED_PATH,
    DemoError,
    sample_csv,
    seed_demo,
)
from models.bulk import load_numbers
from models.settings import Settings, load_settings
from models.tables import AuditLog, ProjectMember, User
from orchestration.local_sftp import LocalSFTPServer
from orchestration.parsers import parse_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def platform(tmp_path: Path, database_url: str) -> Iterator[tuple[Settings, LocalSFTPServer]]:
    """Settings as `numbase up` sees them, and the local SFTP server they describe (its password
    generated into the data dir, read back by seed_demo through local_credentials)."""
    settings = load_settings(
        data_dir=tmp_path / "data", sftp_port=_free_port(), database_url=database_url
    )
    server = LocalSFTPServer(
        settings.sftp_root, settings.data_dir, username=settings.sftp_user, port=settings.sftp_port
    )
    server.start()
    yield settings, server
    server.stop()


def _quiet(_: str) -> None:
    pass


def test_seed_demo_is_idempotent_and_drops_the_sample_over_sftp(
    platform: tuple[Settings, LocalSFTPServer],
    database_url: str,
    db: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, server = platform
    monkeypatch.setenv("NUMBASE_DEMO_PASSWORD", "demo-pass-123")
    lines: list[str] = []
    first = seed_demo(settings, database_url, echo=lines.append)
    assert first.manager_password == "demo-pass-123"
    assert first.uploaded_to == INBOX_PATH
    dropped = server.root / INBOX_PATH
    assert dropped.read_bytes() == sample_csv().data
    assert not list(dropped.parent.glob("*.part"))
    out = "\n".join(lines)
    assert "demo-manager / demo-pass-123" in out and "/assets/phone_numbers?view=partitions" in out

    with Session(db) as s:
        manager = s.scalar(select(User).where(User.username == MANAGER))
        assert manager is not None and manager.role == "manager"
        assert PasswordHash.recommended().verify("demo-pass-123", manager.password_hash)
        assert (
            s.scalar(
                select(func.count())
                .select_from(ProjectMember)
                .where(ProjectMember.project_id == first.project_id)
            )
            == 1
        )
        audit_before = s.scalar(select(func.count()).select_from(AuditLog))
    with db.connect() as conn:
        links = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM project_providers WHERE project_id = :p),"
                " (SELECT count(*) FROM project_geo WHERE project_id = :p),"
                " (SELECT timezone FROM geo WHERE id = :g)"
            ),
            {"p": first.project_id, "g": first.geo_id},
        ).one()
    assert tuple(links) == (1, 1, "Europe/Moscow")
    assert audit_before == 7  # project, provider, geo, user + three links

    # Again: nothing new, the password is not reset, the file is not dropped twice - neither
    # while it waits in the inbox nor once the import archived it to processed/.
    monkeypatch.setenv("NUMBASE_DEMO_PASSWORD", "another-pass-456")
    again = seed_demo(settings, database_url, echo=_quiet)
    assert (again.project_id, again.provider_id, again.geo_id, again.manager_id) == (
        first.project_id, first.provider_id, first.geo_id, first.manager_id,
    )  # fmt: skip
    assert again.created == [] and again.manager_password is None
    assert again.uploaded_to is None and "waiting in" in again.upload_note
    processed = server.root / PROCESSED_PATH
    processed.parent.mkdir(parents=True)
    dropped.rename(processed)
    assert seed_demo(settings, database_url, echo=_quiet).uploaded_to is None
    assert not dropped.exists()
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(AuditLog)) == audit_before


def test_sample_figures_match_the_real_parser_and_loader(
    tmp_path: Path, database_url: str, db: Engine, factory
) -> None:  # type: ignore[no-untyped-def]
    sample = sample_csv()
    assert sample.rows == 300 and sample.invalid > 5 and sample.duplicates > 5
    path = tmp_path / "demo.csv"
    path.write_bytes(sample.data)
    project = factory.project()
    factory.session.commit()
    with psycopg.connect(database_url) as conn:
        result = load_numbers(conn, project.id, parse_file(path))
    assert result.read == sample.rows
    assert result.inserted == sample.valid_distinct
    assert result.invalid == sample.invalid
    assert result.duplicate_in_input == sample.duplicates


def test_unreachable_sftp_is_a_clear_error(tmp_path: Path, database_url: str, db: Engine) -> None:
    settings = load_settings(
        data_dir=tmp_path / "d", sftp_port=_free_port(), database_url=database_url
    )
    with pytest.raises(DemoError, match="is the platform running"):
        seed_demo(settings, database_url, echo=_quiet, sftp_wait=0.5)
