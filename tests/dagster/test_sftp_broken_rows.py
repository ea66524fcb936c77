"""A broken row of a delivered file is rejected alone, with its line and reason, and the rest of
the file loads (issue 12.1 and 12.4): live SFTP server, sensor ticks, real Dagster runs, real
PostgreSQL. A NUL byte used to refuse the whole file; spreadsheet E-notation that lost digits
used to be stored as a wrong number padded with zeros."""

from __future__ import annotations

import csv
import io

from models.phones import LOST_DIGITS
from sensors.inbox import sftp_inbox_sensor
from tests.dagster.conftest import Harness, phones


def _import(h: Harness, path: str, data: bytes) -> tuple[dict, list[list[str]]]:
    """Upload, tick the inbox sensor until it asks for the run, run it; -> (metadata, report)."""
    h.upload(path, data)
    requests = []
    for _ in range(3):
        requests = h.tick(sftp_inbox_sensor).run_requests
        if requests:
            break
    assert len(requests) == 1
    result = h.execute(requests[0])
    assert result.success
    mat = result.asset_materializations_for_node("phone_numbers")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    report = meta["rejects_report"]
    rows = list(csv.reader(io.StringIO(h.read(report)))) if report else []
    return meta, rows


def _stored(h: Harness, project_id: int) -> set[str]:
    return {
        r["phone_number"]
        for r in h.rows(
            "SELECT phone_number FROM phone_numbers WHERE project_id = :p", p=project_id
        )
    }


def test_nul_and_undecodable_rows_are_rejected_alone_and_reported(harness: Harness, factory):
    project = factory.project(code="nul")
    factory.provider(code=f"lead{project.id}", projects=[project])
    good = phones(200)
    body = b"phone,name\n" + b"".join(f"{p},client {i}\n".encode() for i, p in enumerate(good))
    body += b"+7926\x000000001,nul in the phone\n"  # line 202
    body += b"+79260000002,nul\x00 in a name\n"  # line 203
    body += f"+79260000003,{'x' * 140_000}\n".encode()  # line 204: an over-long cell
    # Past the 64 KiB the encoding is detected from (UTF-8 here), as in a real export.
    body += b"+79260000004,bad byte \xff\n"  # line 205
    body += b"+79260000005,last\n"  # line 206
    meta, report = _import(harness, f"inbox/nul/lead{project.id}/nul.csv", body)

    assert _stored(harness, project.id) == set(good) | {"+79260000005"}
    assert meta["rows_read"] == 205 and meta["inserted"] == 201 and meta["invalid"] == 4
    assert report[0] == ["line", "raw_value", "reason"]
    nul = "contains a NUL byte (binary data in a text file)"
    assert [(r[0], r[2]) for r in report[1:]] == [
        ("202", nul),
        ("203", nul),
        ("204", "a cell longer than 131072 characters (line 204; an unclosed quote?)"),
        ("205", "not valid utf-8 text (byte 0xff)"),
    ]
    assert report[1][1] == "+7926\\x000000001,nul in the phone"
    assert report[4][1] == "+79260000004,bad byte \\xff"


def test_spreadsheet_notation_that_lost_digits_is_rejected(harness: Harness, factory):
    project = factory.project(code="sci")
    factory.provider(code=f"lead{project.id}", projects=[project])
    rows = [
        "phone,note",
        "7.91612E+10,cut",  # was stored as +79161200000
        "7.92E+10,cut",  # was +79200000000
        "8.91612E+10,cut",  # was the same wrong number again
        '"7,91612E+10",comma',  # was "misplaced '+'"
        "7.9161234567E+10,every digit",
        "79161234568.0,float text",
    ]
    meta, report = _import(
        harness, f"inbox/sci/lead{project.id}/sci.csv", "\n".join(rows).encode() + b"\n"
    )

    assert _stored(harness, project.id) == {"+79161234567", "+79161234568"}
    assert meta["invalid"] == 4
    assert [(r[0], r[1], r[2]) for r in report[1:]] == [
        ("2", "7.91612E+10", LOST_DIGITS),
        ("3", "7.92E+10", LOST_DIGITS),
        ("4", "8.91612E+10", LOST_DIGITS),
        ("5", "7,91612E+10", LOST_DIGITS),
    ]


def test_xlsx_numeric_cells_are_exact_and_text_notation_is_checked(
    harness: Harness, factory, tmp_path
):
    from openpyxl import Workbook

    project = factory.project(code="xsci")
    factory.provider(code=f"lead{project.id}", projects=[project])
    wb = Workbook()
    ws = wb.active
    ws.append(["Телефон"])
    ws.append([79161234567])  # a numeric cell, whatever its display format: the number
    ws.append([7.9161234568e10])
    ws.append(["7.91612E+10"])  # the same notation as text: what was displayed, digits cut
    f = tmp_path / "x.xlsx"
    wb.save(f)
    meta, report = _import(harness, f"inbox/xsci/lead{project.id}/x.xlsx", f.read_bytes())

    assert _stored(harness, project.id) == {"+79161234567", "+79161234568"}
    assert [(r[0], r[2]) for r in report[1:]] == [("4", LOST_DIGITS)]


def test_too_many_broken_rows_refuse_the_whole_file(harness: Harness, factory):
    project = factory.project(code="mix")
    factory.provider(code=f"lead{project.id}", projects=[project])
    head = b"phone,name\n" + b"".join(b"+7916%07d,ivan\n" % i for i in range(4000))
    tail = b"".join(f"+7926{i:07d},Иван\n".encode("cp1251") for i in range(1500))
    path = f"inbox/mix/lead{project.id}/mixed.csv"
    harness.upload(path, head + tail)
    requests = []
    for _ in range(3):
        requests = harness.tick(sftp_inbox_sensor).run_requests
        if requests:
            break
    result = harness.execute(requests[0])
    assert not result.success
    assert harness.count(project.id) == 0  # whole file or nothing
    job = harness.job(int(requests[0].tags["numbase/sftp_job_id"]))
    assert job["status"] == "failed" and "more than 1000 rows cannot be read" in job["error_log"]
    assert not harness.exists(path)  # moved to rejected/ with the reason beside it
