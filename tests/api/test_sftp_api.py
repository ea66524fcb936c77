"""/api/sftp/: import/export requests become exactly one pending sftp_jobs row + one audit row;
every bad input is a 400 naming its field; other projects' jobs are 404 on every route."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from models.number_filters import NumberFilters
from models.tables import SftpJob
from tests.api.util import audit_rows, table_state


def jobs(engine: Engine) -> list[SftpJob]:
    with Session(engine) as s:
        return list(s.scalars(select(SftpJob).order_by(SftpJob.id)).all())


def add_job(engine: Engine, **values: Any) -> int:
    values.setdefault("job_type", "import")
    values.setdefault("status", "completed")
    with Session(engine) as s:
        job = SftpJob(**values)
        s.add(job)
        s.commit()
        return job.id


@pytest.fixture
def mine(factory, manager):  # type: ignore[no-untyped-def]
    return factory.project(code="acme", members=[manager.user])


@pytest.fixture
def theirs(factory, other_manager):  # type: ignore[no-untyped-def]
    return factory.project(code="beta", members=[other_manager.user])


# --- import ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_import_request_inserts_a_pending_job_and_its_audit_row(
    request, client, db, mine, factory, role
) -> None:
    actor = request.getfixturevalue(role)
    provider = factory.provider(code="leadco", projects=[mine])
    body = {
        "project_id": mine.id,
        "file_path": "inbox/acme/leadco/may.csv",
        "column_map": {"phone": "Телефон", "name": 2},
    }
    resp = client.post("/api/sftp/import/", json=body, headers=actor.headers)
    assert resp.status_code == 202, resp.text
    out = resp.json()
    [job] = jobs(db)
    assert out["id"] == job.id and out["status"] == "pending"
    assert (job.job_type, job.status, job.project_id, job.provider_id) == (
        "import", "pending", mine.id, provider.id,  # provider from the folder
    )  # fmt: skip
    assert (job.file_path, job.file_name) == ("inbox/acme/leadco/may.csv", "may.csv")
    assert job.params == {"source": "api", "column_map": {"phone": "Телефон", "name": 2}}
    assert job.requested_by == actor.user.id and job.started_at is None
    assert job.records_count == 0 and job.dagster_run_id is None
    [row] = audit_rows(db)
    assert (row.action, row.entity_type, row.entity_id, row.user_id) == (
        "sftp_import.requested", "sftp_job", job.id, actor.user.id,
    )  # fmt: skip
    assert row.changes["file_path"] == [None, "inbox/acme/leadco/may.csv"]
    assert row.changes["provider_id"] == [None, provider.id]


def test_import_without_provider_folder_or_map(client, db, mine, manager) -> None:
    body = {"project_id": mine.id, "file_path": "inbox/acme/leads 2024.xlsx"}
    resp = client.post("/api/sftp/import/", json=body, headers=manager.headers)
    assert resp.status_code == 202, resp.text
    assert resp.json()["provider_id"] is None and resp.json()["params"]["column_map"] == {}


@pytest.mark.parametrize(
    "path",
    [
        "/inbox/acme/a.csv",  # absolute
        "inbox/acme/../beta/a.csv",
        "inbox/../etc/passwd",
        "inbox/./acme/a.csv",
        "inbox//acme/a.csv",
        "inbox/acme/",
        "inbox/a.csv",  # not in a project folder
        "outbox/acme/a.csv",
        "processed/acme/a.csv",
        "inbox/acme/leadco/deep/a.csv",
        "inbox/acme/a.csv.part",
        "inbox/acme/.hidden.csv",
        "inbox\\acme\\a.csv",
        "inbox/acme/a\nb.csv",
        "",
        "inbox/acme/" + "x" * 256,
        "inbox/beta/a.csv",  # another project's folder (db check)
        "inbox/acme/nobody/a.csv",  # unknown provider folder (db check)
    ],
)
def test_import_path_is_validated(client, db, mine, theirs, manager, path) -> None:
    body = {"project_id": mine.id, "file_path": path}
    resp = client.post("/api/sftp/import/", json=body, headers=manager.headers)
    assert resp.status_code == 400, (path, resp.text)
    assert list(resp.json()) == ["file_path"], resp.json()
    assert jobs(db) == [] and audit_rows(db) == []


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"project_id": "1"}, "project_id"),  # no coercion
        ({"project_id": 0}, "project_id"),
        ({"project_id": 2**63}, "project_id"),
        ({"provider_id": True}, "provider_id"),
        ({"column_map": ["phone"]}, "column_map"),
        ({"column_map": {"phone": True}}, "column_map.phone"),
        ({"column_map": {"phone": 0}}, "column_map.phone"),
        ({"column_map": {"phone": " "}}, "column_map.phone"),
        ({"column_map": {"phone": "Тел", "name": "тел"}}, "column_map"),
        ({"bogus": 1}, "bogus"),
        ({"file_path": None}, "file_path"),
    ],
)
def test_import_body_errors_name_the_field(client, db, mine, admin, patch, field) -> None:
    body = {"project_id": mine.id, "file_path": "inbox/acme/a.csv", **patch}
    resp = client.post("/api/sftp/import/", json=body, headers=admin.headers)
    assert resp.status_code == 400
    assert any(k == field or k.startswith(field + ".") for k in resp.json()), resp.json()
    assert jobs(db) == []


def test_import_provider_checks(client, db, mine, admin, factory) -> None:
    leadco = factory.provider(code="leadco", projects=[mine])
    other = factory.provider(code="other", projects=[mine])
    sleepy = factory.provider(code="sleepy", status="inactive", projects=[mine])
    factory.provider(code="stranger")  # active, but not linked to the project
    url, h = "/api/sftp/import/", admin.headers
    cases = [
        ({"provider_id": 10**9, "file_path": "inbox/acme/a.csv"}, "provider_id", "does not exist"),
        ({"provider_id": sleepy.id, "file_path": "inbox/acme/a.csv"}, "provider_id", "inactive"),
        ({"file_path": "inbox/acme/sleepy/a.csv"}, "file_path", "inactive"),
        ({"provider_id": other.id, "file_path": "inbox/acme/leadco/a.csv"}, "provider_id",
         "'leadco'"),
        ({"file_path": "inbox/acme/stranger/a.csv"}, "file_path", "not linked to this project"),
    ]  # fmt: skip
    for patch, field, words in cases:
        resp = client.post(url, json={"project_id": mine.id, **patch}, headers=h)
        assert resp.status_code == 400 and words in resp.json()[field][0], (patch, resp.json())
    assert jobs(db) == []
    # A provider given for a file without a provider folder is taken as is.
    body = {"project_id": mine.id, "file_path": "inbox/acme/a.csv", "provider_id": leadco.id}
    assert client.post(url, json=body, headers=h).json()["provider_id"] == leadco.id


def test_a_file_already_being_imported_is_a_409(client, db, mine, admin) -> None:
    body = {"project_id": mine.id, "file_path": "inbox/acme/a.csv"}
    first = client.post("/api/sftp/import/", json=body, headers=admin.headers)
    assert first.status_code == 202
    again = client.post("/api/sftp/import/", json=body, headers=admin.headers)
    assert again.status_code == 409 and str(first.json()["id"]) in again.json()["detail"]
    with db.begin() as conn:
        conn.execute(text("UPDATE sftp_jobs SET status = 'failed'"))
    assert client.post("/api/sftp/import/", json=body, headers=admin.headers).status_code == 202
    assert len(jobs(db)) == 2


def test_other_projects_are_404_for_requests(
    client, db, mine, theirs, manager, admin, factory
) -> None:
    gone = factory.project(code="gone", members=[manager.user], is_deleted=True,
                           status="deleted", deleted_at=text("now()"))  # fmt: skip
    for project, path in ((theirs, "inbox/beta/a.csv"), (gone, "inbox/gone/a.csv")):
        for url, body in (
            ("/api/sftp/import/", {"project_id": project.id, "file_path": path}),
            ("/api/sftp/export/", {"project_id": project.id}),
        ):
            resp = client.post(url, json=body, headers=manager.headers)
            assert resp.status_code == 404 and resp.json() == {"detail": "Project not found."}
    missing = client.post("/api/sftp/export/", json={"project_id": 10**9}, headers=admin.headers)
    assert missing.status_code == 404
    assert jobs(db) == [] and audit_rows(db) == []


# --- export ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_export_request_stores_validated_filters(request, client, db, mine, role) -> None:
    actor = request.getfixturevalue(role)
    body = {
        "project_id": mine.id,
        "filters": {"status": ["success", "failed"], "created_after": "2024-05-01",
                    "phone": "8 916", "call_attempts_lt": 3},
        "file_name": "may-leads.csv",
    }  # fmt: skip
    resp = client.post("/api/sftp/export/", json=body, headers=actor.headers)
    assert resp.status_code == 202, resp.text
    [job] = jobs(db)
    assert resp.json()["id"] == job.id
    assert (job.job_type, job.status, job.project_id, job.requested_by) == (
        "export", "pending", mine.id, actor.user.id,
    )  # fmt: skip
    assert (job.file_name, job.file_path) == ("may-leads.csv", "outbox/acme/may-leads.csv")
    assert job.params == {
        "source": "api",
        "name": "may-leads",
        "filters": {
            "project_id": mine.id,
            "status": ["success", "failed"],
            "created_after": "2024-05-01T00:00:00+00:00",
            "phone": "+7916",
            "call_attempts_lt": 3,
        },
    }
    # What the sensor and the export asset will read back parses to the same filter.
    again = NumberFilters.from_params(job.params["filters"])
    assert again.statuses == ("success", "failed") and again.phone_prefix
    [row] = audit_rows(db)
    assert (row.action, row.entity_type, row.entity_id) == (
        "sftp_export.requested", "sftp_job", job.id,
    )  # fmt: skip
    assert row.changes["params"][1]["name"] == "may-leads"


def test_export_default_name_and_busy_name(client, db, mine, admin) -> None:
    resp = client.post("/api/sftp/export/", json={"project_id": mine.id}, headers=admin.headers)
    job_id = resp.json()["id"]
    assert resp.json()["file_path"] == f"outbox/acme/acme-export-{job_id}.csv"
    assert resp.json()["params"]["filters"] == {"project_id": mine.id}
    body = {"project_id": mine.id, "file_name": f"acme-export-{job_id}"}
    busy = client.post("/api/sftp/export/", json=body, headers=admin.headers)
    assert busy.status_code == 409 and "outbox/" in busy.json()["detail"]
    assert len(jobs(db)) == 1 and len(audit_rows(db)) == 1


def test_export_names_are_per_project_and_never_reused(client, db, mine, theirs, manager) -> None:
    """A manager of acme exporting under the name of beta's completed export writes acme's own
    file; a name held by any export of the project that did not fail is a 409."""
    add_job(db, job_type="export", project_id=theirs.id, file_path="outbox/beta/may.csv",
            file_name="may.csv", params={"name": "may"})  # fmt: skip
    body = {"project_id": mine.id, "file_name": "may"}
    first = client.post("/api/sftp/export/", json=body, headers=manager.headers)
    assert first.status_code == 202, first.text
    assert first.json()["file_path"] == "outbox/acme/may.csv"
    with db.begin() as conn:
        conn.execute(text("UPDATE sftp_jobs SET status = 'completed' WHERE id = :i"),
                     {"i": first.json()["id"]})  # fmt: skip
    before = table_state(db, "sftp_jobs")
    clash = client.post("/api/sftp/export/", json=body, headers=manager.headers)
    assert clash.status_code == 409 and "outbox/acme/may.csv" in clash.json()["detail"]
    assert table_state(db, "sftp_jobs") == before
    with db.begin() as conn:
        conn.execute(text("UPDATE sftp_jobs SET status = 'failed' WHERE id = :i"),
                     {"i": first.json()["id"]})  # fmt: skip
    # A failed export never renamed its file into place: the name is free again.
    assert client.post("/api/sftp/export/", json=body, headers=manager.headers).status_code == 202


def test_racing_exports_to_one_name_admit_one(client, db, mine, admin) -> None:
    """The project row lock serialises the name check: of N racing requests, one is 202."""
    import threading

    statuses: list[int] = []

    def post() -> None:
        body = {"project_id": mine.id, "file_name": "race"}
        statuses.append(
            client.post("/api/sftp/export/", json=body, headers=admin.headers).status_code
        )

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [202, 409, 409, 409]
    assert [j.file_path for j in jobs(db)] == ["outbox/acme/race.csv"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"filters": {"status": ["won"]}}, "filters.status"),
        ({"filters": {"created_after": "0.5"}}, "filters.created_after"),
        ({"filters": {"created_after": "2024-06-01", "created_before": "2024-05-01"}},
         "filters.created_after"),
        ({"filters": {"phone": "abc"}}, "filters.phone"),
        ({"filters": {"provider_id": -1}}, "filters.provider_id"),
        ({"filters": {"call_attempts_lt": "x"}}, "filters.call_attempts_lt"),
        ({"filters": {"bogus": 1}}, "filters.bogus"),
        ({"filters": {"project_id": 999}}, "filters.project_id"),
        ({"filters": []}, "filters"),
        ({"file_name": "../etc/passwd"}, "file_name"),
        ({"file_name": "a b"}, "file_name"),
        ({"file_name": "name_"}, "file_name"),
        ({"file_name": "x" * 101}, "file_name"),
        ({"file_name": ""}, "file_name"),
        ({"format": "xlsx"}, "format"),
    ],
)  # fmt: skip
def test_export_errors_name_the_field(client, db, mine, manager, patch, field) -> None:
    resp = client.post(
        "/api/sftp/export/", json={"project_id": mine.id, **patch}, headers=manager.headers
    )
    assert resp.status_code == 400 and field in resp.json(), resp.json()
    assert jobs(db) == [] and audit_rows(db) == []


# --- jobs -----------------------------------------------------------------------------------


def test_job_lists_are_scoped_and_filtered(
    client, db, mine, theirs, manager, admin, factory
) -> None:
    gone = factory.project(code="gone", members=[manager.user])
    a = add_job(db, project_id=mine.id, job_type="import", status="completed", records_count=5)
    b = add_job(db, project_id=mine.id, job_type="export", status="failed", error_log="boom")
    c = add_job(db, project_id=theirs.id)
    d = add_job(db, project_id=None, status="failed", error_log="no live project 'x'")
    e = add_job(db, project_id=gone.id)
    client.delete(f"/api/projects/{gone.id}/", headers=admin.headers)

    def ids(actor, query: str = "") -> list[int]:
        resp = client.get(f"/api/sftp/jobs/{query}", headers=actor.headers)
        assert resp.status_code == 200, resp.text
        return [j["id"] for j in resp.json()["results"]]

    assert ids(manager) == [b, a]  # newest first; theirs, unmapped and deleted ones hidden
    assert ids(admin) == [d, c, b, a]
    assert ids(manager, "?job_type=export") == [b]
    assert ids(manager, "?status=completed") == [a]
    assert ids(admin, f"?project_id={theirs.id}") == [c]
    assert ids(manager, "?ordering=records_count") == [b, a]
    assert ids(manager, "?ordering=-records_count") == [a, b]
    page = client.get("/api/sftp/jobs/?page_size=1", headers=admin.headers).json()
    assert page["count"] == 4 and page["next"].endswith("page_size=1&page=2")
    one = client.get(f"/api/sftp/jobs/{a}/", headers=manager.headers)
    assert one.status_code == 200 and one.json()["records_count"] == 5
    assert client.get(f"/api/sftp/jobs/{d}/", headers=admin.headers).status_code == 200
    for job_id in (c, d, e, 10**9):
        resp = client.get(f"/api/sftp/jobs/{job_id}/", headers=manager.headers)
        assert resp.status_code == 404 and resp.json() == {"detail": "Job not found."}
    assert client.get(f"/api/sftp/jobs/{e}/", headers=admin.headers).status_code == 404
    for project_id in (theirs.id, gone.id, 10**9):
        resp = client.get(f"/api/sftp/jobs/?project_id={project_id}", headers=manager.headers)
        assert resp.status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("job_type=copy", "job_type"),
        ("status=done", "status"),
        ("project_id=0", "project_id"),
        ("project_id=x", "project_id"),
        ("ordering=file_path", "ordering"),
        ("created_after=0.5", "created_after"),
        ("page_size=1001", "page_size"),
        ("stauts=failed", "stauts"),
    ],
)
def test_job_list_errors_name_the_field(client, db, admin, query, field) -> None:
    resp = client.get(f"/api/sftp/jobs/?{query}", headers=admin.headers)
    assert resp.status_code == 400 and field in resp.json(), resp.json()


def test_job_routes_write_nothing_on_404(client, db, theirs, manager) -> None:
    job = add_job(db, project_id=theirs.id)
    before = table_state(db, "sftp_jobs")
    assert client.get(f"/api/sftp/jobs/{job}/", headers=manager.headers).status_code == 404
    assert table_state(db, "sftp_jobs") == before


@pytest.mark.parametrize(
    "name", ["created_after", "created_before", "last_call_after", "last_call_before"]
)
def test_numbers_list_and_csv_take_iso_dates_only(client, db, admin, name) -> None:
    """The numbers list and its CSV export (whose filters an export job shares) refuse what
    pydantic alone would read as a Unix timestamp."""
    for url in ("/api/phone-numbers/", "/api/phone-numbers/export.csv"):
        resp = client.get(f"{url}?{name}=0.5", headers=admin.headers)
        assert resp.status_code == 400 and name in resp.json(), (url, resp.text)
        assert client.get(f"{url}?{name}=2024-05-01", headers=admin.headers).status_code == 200
