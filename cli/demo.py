"""`numbase demo` / `numbase up --demo`: a demo project a newcomer can watch being imported.

Idempotent: the project `demo`, the provider `demo-vendor`, the Moscow geo, their links and the
manager `demo-manager` are created only when missing. The sample file goes to
`inbox/demo/demo-vendor/demo-numbers.csv` through SFTP with the platform's own credentials (the
local server's generated password, or NUMBASE_SFTP_*), so it works against a real SFTP server
too; it is not dropped again while it is still in the inbox or already in processed/.
"""

from __future__ import annotations

import os
import posixpath
import random
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import make_engine
from models.phones import InvalidPhone, normalize_phone
from models.settings import Settings
from models.tables import (
    AuditLog,
    Geo,
    Project,
    ProjectGeo,
    ProjectMember,
    ProjectProvider,
    Provider,
    User,
)

PROJECT_CODE = "demo"
PROVIDER_CODE = "demo-vendor"
MANAGER = "demo-manager"
MANAGER_EMAIL = "demo-manager@example.com"
PASSWORD_ENV = "NUMBASE_DEMO_PASSWORD"
SAMPLE_NAME = "demo-numbers.csv"
INBOX_PATH = f"inbox/{PROJECT_CODE}/{PROVIDER_CODE}/{SAMPLE_NAME}"
PROCESSED_PATH = f"processed/{PROJECT_CODE}/{PROVIDER_CODE}/{SAMPLE_NAME}"
ACTOR = "system:cli"
SFTP_WAIT_SECONDS = 20.0  # `numbase up --demo`: the SFTP child may still be starting

FIRST_NAMES = ("Анна", "Иван", "Мария", "Сергей", "Ольга", "Дмитрий", "Елена", "Алексей")
LAST_NAMES = ("Иванов", "Петров", "Смирнов", "Кузнецов", "Попов", "Соколов", "Волков")
COMMENTS = ("перезвонить вечером", "интересовался тарифом", "", "", "VIP", "не звонить до 12")
# Things lead vendors really send instead of a number.
JUNK = ("12345", "не указан", "", "+7 916 123", "000-000", "тел. уточнить", "8 800", "abc")


class DemoError(RuntimeError):
    """Seeding cannot go on (SFTP unreachable or refusing us, a clashing row); says why."""


@dataclass
class SampleFile:
    data: bytes  # CP1251, ';'-separated, Russian headers
    rows: int
    valid_distinct: int  # what the import should insert into an empty project
    invalid: int
    duplicates: int


@dataclass
class DemoResult:
    project_id: int
    provider_id: int
    geo_id: int
    manager_id: int
    created: list[str] = field(default_factory=list)
    manager_password: str | None = None  # only when the manager was created now
    sample: SampleFile | None = None
    uploaded_to: str | None = None
    upload_note: str = ""


def _format(rng: random.Random, e164: str) -> str:
    """One number in one of the spellings call-center files are full of."""
    n = e164[2:]  # 10 national digits
    styles = (
        f"+7 {n[:3]} {n[3:6]}-{n[6:8]}-{n[8:]}",
        f"8 ({n[:3]}) {n[3:6]}-{n[6:8]}-{n[8:]}",
        f"7{n}",
        n,
        f"+7({n[:3]}){n[3:]}",
        f"8{n}",
        f" 8-{n[:3]}-{n[3:6]}-{n[6:8]}-{n[8:]} ",
    )
    return rng.choice(styles)


def sample_csv(rows: int = 300, seed: int = 2024, region: str = "RU") -> SampleFile:
    """A messy but realistic vendor file: mixed spellings, junk cells and repeated numbers."""
    rng = random.Random(seed)
    seen: list[str] = []
    lines = ["Телефон;ФИО;Город;Комментарий"]
    for _ in range(rows):
        roll = rng.random()
        if roll < 0.06:
            phone = rng.choice(JUNK)
        elif roll < 0.14 and seen:
            phone = _format(rng, rng.choice(seen))  # the same number spelled differently
        else:
            prefix = rng.choice(("916", "903", "925", "985", "495", "499"))
            e164 = f"+7{prefix}{rng.randrange(10**7):07d}"
            seen.append(e164)
            phone = _format(rng, e164)
        name = f"{rng.choice(LAST_NAMES)} {rng.choice(FIRST_NAMES)}"
        lines.append(f"{phone};{name};Москва;{rng.choice(COMMENTS)}")
    valid: set[str] = set()
    invalid = dupes = 0
    for line in lines[1:]:
        try:
            e164 = normalize_phone(line.split(";", 1)[0], region)
        except InvalidPhone:
            invalid += 1
            continue
        dupes += e164 in valid
        valid.add(e164)
    data = ("\r\n".join(lines) + "\r\n").encode("cp1251")
    return SampleFile(data, rows, len(valid), invalid, dupes)


# --- database ---------------------------------------------------------------------------------


def _audit(session: Session, entity_type: str, entity_id: int, changes: dict[str, object]) -> None:
    session.add(
        AuditLog(
            actor=ACTOR,
            action="create",
            entity_type=entity_type,
            entity_id=entity_id,
            changes={k: [None, v] for k, v in changes.items()},
        )
    )


def _seed_rows(session: Session, result_created: list[str], password: str) -> tuple[int, ...]:
    from pwdlib import PasswordHash

    created = result_created
    project = session.scalar(select(Project).where(Project.code == PROJECT_CODE))
    if project is None:
        project = Project(
            code=PROJECT_CODE,
            name="Demo campaign",
            description="Seeded by `numbase demo`: numbers arrive through the SFTP inbox.",
        )
        session.add(project)
        session.flush()
        _audit(session, "project", project.id, {"code": project.code, "name": project.name})
        created.append(f"project {PROJECT_CODE!r}")
    elif project.is_deleted:
        raise DemoError(
            f"project {PROJECT_CODE!r} is soft-deleted: restore it "
            f"(POST /api/projects/{project.id}/restore/) or purge it, then seed again"
        )
    provider = session.scalar(select(Provider).where(Provider.code == PROVIDER_CODE))
    if provider is None:
        provider = Provider(
            code=PROVIDER_CODE,
            name="Demo lead vendor",
            type="sftp",
            contact_info={"email": "leads@demo-vendor.example"},
        )
        session.add(provider)
        session.flush()
        _audit(session, "provider", provider.id, {"code": provider.code, "name": provider.name})
        created.append(f"provider {PROVIDER_CODE!r}")
    moscow = dict(country_code="RU", region="Moscow", city="Moscow", timezone="Europe/Moscow")
    geo = session.scalar(
        select(Geo).where(*(getattr(Geo, k) == v for k, v in moscow.items())).order_by(Geo.id)
    )
    if geo is None:
        geo = Geo(**moscow)
        session.add(geo)
        session.flush()
        _audit(session, "geo", geo.id, dict(moscow))
        created.append("geo Moscow (Europe/Moscow)")
    manager = session.scalar(select(User).where(User.username == MANAGER))
    if manager is None:
        if session.scalar(select(User.id).where(User.email == MANAGER_EMAIL)) is not None:
            raise DemoError(f"another user already has the e-mail {MANAGER_EMAIL}")
        manager = User(
            username=MANAGER,
            email=MANAGER_EMAIL,
            role="manager",
            password_hash=PasswordHash.recommended().hash(password),
        )
        session.add(manager)
        session.flush()
        _audit(session, "user", manager.id, {"username": MANAGER, "role": "manager"})
        created.append(f"manager {MANAGER!r}")
    links = (
        (ProjectProvider, "provider_id", provider.id, "link_provider"),
        (ProjectGeo, "geo_id", geo.id, "link_geo"),
        (ProjectMember, "user_id", manager.id, "add_member"),
    )
    for table, column, ref, action in links:
        exists = session.scalar(
            select(table.project_id).where(
                table.project_id == project.id, getattr(table, column) == ref
            )
        )
        if exists is None:
            session.add(table(project_id=project.id, **{column: ref}))
            session.add(
                AuditLog(
                    actor=ACTOR,
                    action=action,
                    entity_type="project",
                    entity_id=project.id,
                    changes={column: [None, ref]},
                )
            )
            created.append(f"{action} {column}={ref}")
    return project.id, provider.id, geo.id, manager.id


# --- SFTP -------------------------------------------------------------------------------------


def sftp_resource(settings: Settings, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """The platform's SFTP credentials as the Dagster resource uses them."""
    from orchestration.local_sftp import local_credentials
    from orchestration.resources import SFTPResource

    data_dir = settings.data_dir.resolve()
    if settings.local_sftp:
        host, port, user, password = local_credentials(settings)
        return SFTPResource(
            host=host,
            port=port,
            username=user,
            password=password,
            known_hosts=str(settings.sftp_known_hosts or data_dir / "known_hosts"),
            host_key_policy="accept_new",
            timeout_seconds=timeout,
        )
    return SFTPResource(
        host=settings.sftp_host or "",
        port=settings.sftp_port,
        username=settings.sftp_user,
        password=settings.sftp_password,
        key_file=str(settings.sftp_key_file) if settings.sftp_key_file else None,
        known_hosts=str(settings.sftp_known_hosts) if settings.sftp_known_hosts else None,
        host_key_policy=settings.sftp_host_key_policy,
        timeout_seconds=timeout,
    )


def _drop_sample(settings: Settings, sample: SampleFile, wait: float) -> tuple[str | None, str]:
    import paramiko

    from orchestration.resources import SFTPUnavailable

    resource = sftp_resource(settings)
    deadline = time.monotonic() + wait
    while True:
        try:
            with resource.session() as sftp:
                for path, what in ((INBOX_PATH, "waiting in"), (PROCESSED_PATH, "imported to")):
                    if sftp.stat(path) is not None:
                        return None, f"sample already {what} {path}; not dropped again"
                with tempfile.TemporaryDirectory() as tmp:
                    local = Path(tmp) / SAMPLE_NAME
                    local.write_bytes(sample.data)
                    sftp.makedirs(posixpath.dirname(INBOX_PATH))
                    sftp.upload(local, INBOX_PATH)  # .part + rename: never half a file
                return INBOX_PATH, ""
        except SFTPUnavailable as exc:
            if time.monotonic() >= deadline:
                raise DemoError(f"{exc}; is the platform running (`numbase up`)?") from exc
            time.sleep(0.5)
        except (paramiko.SSHException, OSError) as exc:  # refused login, host key, permissions
            raise DemoError(f"SFTP {resource.host}:{resource.port}: {exc!r}") from exc


# --- entry point ------------------------------------------------------------------------------


def seed_demo(
    settings: Settings,
    database_url: str,
    *,
    echo: Callable[[str], None] = lambda s: print(s, flush=True),
    sftp_wait: float = SFTP_WAIT_SECONDS,
) -> DemoResult:
    """Create what is missing, drop the sample into the inbox, say where to look."""
    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(12)
    created: list[str] = []
    engine = make_engine(database_url, pool_size=None)
    try:
        with Session(engine) as session, session.begin():
            ids = _seed_rows(session, created, password)
    finally:
        engine.dispose()
    result = DemoResult(*ids, created=created)
    if f"manager {MANAGER!r}" in created:
        result.manager_password = password
    sample = sample_csv(region=settings.phone_region)
    result.sample = sample
    result.uploaded_to, result.upload_note = _drop_sample(settings, sample, sftp_wait)
    _report(settings, result, echo)
    return result


def _report(settings: Settings, r: DemoResult, echo: Callable[[str], None]) -> None:
    echo("numbase demo: " + ("created " + ", ".join(r.created) if r.created else "all present"))
    echo(
        f"numbase demo: project id {r.project_id} (code {PROJECT_CODE}), provider id "
        f"{r.provider_id} ({PROVIDER_CODE}), geo id {r.geo_id} (Moscow), manager id {r.manager_id}"
    )
    if r.manager_password:
        source = PASSWORD_ENV if os.environ.get(PASSWORD_ENV) else "generated, shown only now"
        echo(f"numbase demo: log in as {MANAGER} / {r.manager_password}  ({source})")
    else:
        echo(f"numbase demo: {MANAGER} already existed; its password is unchanged")
    s = r.sample
    assert s is not None
    if r.uploaded_to:
        echo(
            f"numbase demo: dropped {r.uploaded_to} over SFTP ({s.rows} rows, CP1251, Russian "
            f"headers: {s.valid_distinct} valid distinct numbers, {s.duplicates} repeats, "
            f"{s.invalid} junk cells)"
        )
    else:
        echo(f"numbase demo: {r.upload_note}")
    ui = f"http://127.0.0.1:{settings.dagster_port}"
    api = f"http://{settings.api_host}:{settings.api_port}"
    links = (
        (f"{ui}/assets/phone_numbers?view=partitions", "the import asset: one partition per file"),
        (f"{ui}/assets/phone_numbers?view=lineage", "its lineage: import -> dbt models"),
        (f"{ui}/runs", "the import run, then the dbt refresh"),
        (f"{ui}/automation", "sftp_inbox_sensor and its ticks"),
        (f"{api}/api/sftp/jobs/", f"the job row (log in as {MANAGER})"),
        (f"{api}/api/phone-numbers/?project_id={r.project_id}", "the numbers"),
    )
    width = max(len(url) for url, _ in links) + 2
    echo(
        "numbase demo: the sensor imports the file after two stable ticks (about 20 s). Watch:\n"
        + "\n".join(f"  {url:<{width}}{what}" for url, what in links)
    )
