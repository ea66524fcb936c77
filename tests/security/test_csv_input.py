"""Hostile CSV uploads to POST /api/phone-numbers/bulk/ (issue 13.4, CSV part): a codec that is
no text encoding, a cell over the csv module's 131,072-character limit, NUL bytes, bytes that
are not valid in the chosen encoding. Each is a 400 naming the field (`encoding`, or `file`
with the line) that changes nothing, or, for a NUL-bearing row, that row rejected alone."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models.tables import AuditLog, PhoneNumber
from tests.api.conftest import app, client, manager, settings  # noqa: F401 - fixtures

URL = "/api/phone-numbers/bulk/"
LONG = 131_072 + 1


@pytest.fixture
def upload(client, manager, factory):  # noqa: F811 - fixtures
    project = factory.project(members=[manager.user])

    def send(content: bytes, **data: str):  # type: ignore[no-untyped-def]
        return client.post(
            URL,
            data={"project_id": str(project.id), **data},
            files={"file": ("f.csv", content, "text/csv")},
            headers=manager.headers,
        )

    send.project = project  # type: ignore[attr-defined]
    return send


def _unchanged(session) -> None:  # type: ignore[no-untyped-def]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(PhoneNumber)) == 0
    bulk = select(func.count()).select_from(AuditLog).where(AuditLog.action == "bulk_create")
    assert session.scalar(bulk) == 0


@pytest.mark.parametrize(
    "encoding", ["rot13", "hex", "base64", "zlib", "undefined", "unicode_escape"]
)
def test_a_codec_that_is_no_text_encoding_is_a_400_on_encoding(upload, session, encoding) -> None:
    resp = upload(b"phone\n89161234567\n", encoding=encoding)
    assert resp.status_code == 400, resp.text
    assert list(resp.json()) == ["encoding"] and encoding in resp.json()["encoding"][0]
    _unchanged(session)


@pytest.mark.parametrize(
    "body, line",
    [
        (b"phone,note\n89161234567,ok\n89161234568," + b"x" * LONG + b"\n89161234569,ok\n", 3),
        (b'phone,note\n89161234567,"' + b"x" * LONG + b'"\n', 2),  # quoted
        (b'phone,note\n89161234567,"never closed\n' + b"89161234568,a\n" * 12_000, 2),
    ],
    ids=["bare", "quoted", "unclosed-quote"],
)
def test_a_cell_over_the_limit_is_a_400_on_file_with_the_line(upload, session, body, line) -> None:
    resp = upload(body)
    assert resp.status_code == 400, resp.text
    message = resp.json()["file"][0]
    assert message.startswith(f"line {line}: a cell longer than 131072 characters"), message
    _unchanged(session)


def test_a_header_over_the_limit_is_a_400(upload, session) -> None:
    resp = upload(b"phone," + b"h" * (2 * LONG) + b"\n89161234567,x\n")
    assert resp.status_code == 400 and "line 1" in resp.json()["file"][0]
    _unchanged(session)


def test_undecodable_bytes_are_a_400_naming_line_and_encoding(upload, session) -> None:
    resp = upload(b"phone,name\n89161234567,ok\n89161234568,\xff\n")
    assert resp.status_code == 400
    assert resp.json()["file"][0].startswith("line 3: not valid utf-8 text (byte 0xff)")
    assert "`encoding`" in resp.json()["file"][0]
    _unchanged(session)
    resp = upload(b"pho\xffne\n89161234567\n", encoding="ascii")
    assert resp.status_code == 400 and resp.json()["file"][0].startswith("line 1: not valid ascii")
    _unchanged(session)


def test_a_nul_row_is_rejected_alone(upload, session) -> None:
    resp = upload(b"phone,name\n89161234567,Ivan\n8916123\x004568,Olga\n89161234569,An\x00na\n")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["inserted"] == 1 and body["invalid"] == 2
    nul = "contains a NUL byte (binary data in a text file)"
    assert [(r["line"], r["reason"]) for r in body["rejects"]] == [(3, nul), (4, nul)]
    assert body["rejects"][0]["raw"] == "8916123\\x004568,Olga"
    session.expire_all()
    assert session.scalars(select(PhoneNumber.phone_number)).all() == ["+79161234567"]


def test_a_header_with_a_nul_is_a_400(upload, session) -> None:
    resp = upload(b"pho\x00ne\n89161234567\n")
    assert resp.status_code == 400 and "line 1: contains a NUL byte" in resp.json()["file"][0]
    _unchanged(session)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_codec_refusing_the_whole_stream_is_a_400_on_file(upload, session, encoding) -> None:
    # Python's utf-16/utf-32 decoders refuse a stream without a byte-order mark outright.
    resp = upload("phone\n89161234567\n".encode("utf-16-le"), encoding=encoding)
    assert resp.status_code == 400, resp.text
    assert (
        resp.json()["file"][0].startswith("line 1: not") and "`encoding`" in resp.json()["file"][0]
    )
    _unchanged(session)
    ok = upload("phone\n89161234567\n".encode(encoding), encoding=encoding)  # with its BOM
    assert ok.status_code == 200 and ok.json()["inserted"] == 1, ok.text
