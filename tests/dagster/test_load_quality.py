"""SFTP imports are recorded loads: each file's job has its number_loads row, a number keeps the
file that first brought it, and cross-project duplicates are counted and reported by name only
in the file's reject report."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sensors.inbox import sftp_inbox_sensor
from tests.dagster.conftest import Harness, csv_bytes


def _drive(h: Harness) -> list:
    for _ in range(3):
        out = h.tick(sftp_inbox_sensor)
        if out.run_requests:
            return [h.execute(r) for r in out.run_requests]
    return []


def _meta(result) -> dict:  # type: ignore[no-untyped-def]
    mat = result.asset_materializations_for_node("phone_numbers")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def _source(h: Harness, phone: str, project_id: int) -> int | None:
    return h.scalar(
        "SELECT source_load_id FROM phone_numbers WHERE phone_number = :p AND project_id = :j",
        p=phone,
        j=project_id,
    )


def test_file_a_stays_the_source_after_file_b_and_the_api(
    harness: Harness, factory, database_url: str
) -> None:
    project = factory.project(code="acme")
    provider = factory.provider(code="leadco", projects=[project])
    harness.upload("inbox/acme/leadco/a.csv", csv_bytes([["phone"], ["+79160000001"]]))
    [run_a] = _drive(harness)
    assert run_a.success
    load_a = _meta(run_a)["load_id"]
    row = harness.rows("SELECT * FROM number_loads WHERE id = :i", i=load_a)[0]
    job_a = harness.scalar("SELECT id FROM sftp_jobs WHERE file_path = 'inbox/acme/leadco/a.csv'")
    assert (row["kind"], row["sftp_job_id"], row["provider_id"], row["source"]) == (
        "sftp", job_a, provider.id, "inbox/acme/leadco/a.csv",
    )  # fmt: skip
    assert (row["rows_read"], row["inserted"]) == (1, 1)

    harness.upload(
        "inbox/acme/leadco/b.csv", csv_bytes([["phone"], ["8 916 000-00-01"], ["+79160000002"]])
    )
    [run_b] = _drive(harness)
    assert run_b.success and _meta(run_b)["already_present"] == 1
    load_b = _meta(run_b)["load_id"]
    assert load_b != load_a

    # ... and through the API bulk endpoint.
    from api.main import create_app
    from models.settings import load_settings
    from tests.api.conftest import PASSWORD, TEST_SETTINGS, login

    admin = factory.user(role="admin", password=PASSWORD)
    app = create_app(settings=load_settings(database_url=database_url, **TEST_SETTINGS))
    with TestClient(app) as client:
        actor = login(client, admin)
        resp = client.post(
            "/api/phone-numbers/bulk/",
            json={"project_id": project.id, "numbers": ["+79160000001"]},
            headers=actor.headers,
        )
    assert resp.status_code == 200 and resp.json()["already_present"] == 1
    assert _source(harness, "+79160000001", project.id) == load_a
    assert _source(harness, "+79160000002", project.id) == load_b
    assert harness.scalar("SELECT count(*) FROM number_loads") == 3


def test_cross_project_duplicates_are_named_only_in_the_file_report(
    harness: Harness, factory
) -> None:
    other = factory.project(code="other-camp")
    factory.number(other, "+79160000001", result_data={"secret": "vip client"})
    factory.project(code="acme", dedupe_scope="all_projects")
    rows = [["phone"], ["+79160000009"], ["8 916 000 00 01"], ["junk"]]
    harness.upload("inbox/acme/c.csv", csv_bytes(rows))
    [run] = _drive(harness)
    assert run.success
    meta = _meta(run)
    assert (meta["inserted"], meta["duplicate_elsewhere"], meta["invalid"]) == (1, 1, 1)
    job = harness.rows("SELECT * FROM sftp_jobs WHERE file_path LIKE 'inbox/acme/c.csv%'")[0]
    report = harness.read(f"rejected/acme/c.csv.job{job['id']}.rejects.csv").splitlines()
    assert report[0] == "line,raw_value,reason"
    assert sorted(report[1:]) == sorted(
        ["3,+79160000001,already in project other-camp", "4,junk,contains letters"]
    )
    text = "\n".join(report)
    assert "vip" not in text and str(other.id) not in text.replace("+79160000001", "")
    # The job's stats are readable through the API by the project's managers: no code there.
    assert job["stats"]["duplicate_elsewhere"] == 1
    assert "other-camp" not in str(job["stats"])
    assert "already in another project" in str(job["stats"]["rejects"])
    # The checks count the new figure.
    checks = {c.check_name: c for c in run.get_asset_check_evaluations()}
    assert checks["counts_add_up"].passed
