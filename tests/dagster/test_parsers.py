"""Parsers on files written to disk: delimiters, encodings, quoting, aliases, Excel, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.parsers import ParseError, parse_file


def _rows(path: Path, **kw) -> tuple[list, list, list]:
    phones, lines, attrs = [], [], []
    for chunk in parse_file(path, **kw):
        phones += list(chunk.phones)
        lines += list(chunk.lines or [])
        attrs += list(chunk.attributes or [None] * len(chunk.phones))
    return phones, lines, attrs


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_detected(tmp_path: Path, delimiter: str) -> None:
    body = delimiter.join(["name", "phone", "city"]) + "\n"
    body += delimiter.join(["Ivan", "+79161234567", "Moscow"]) + "\n"
    body += delimiter.join(["Olga", "89161234568", "Tver"]) + "\n"
    f = tmp_path / "f.txt"
    f.write_text(body)
    phones, lines, attrs = _rows(f)
    assert phones == ["+79161234567", "89161234568"] and lines == [2, 3]
    assert attrs[1] == {"name": "Olga", "city": "Tver"}


@pytest.mark.parametrize(
    "encoding, header", [("utf-8", "телефон"), ("utf-8-sig", "Номер"), ("cp1251", "Телефон")]
)
def test_encodings_and_russian_headers(tmp_path: Path, encoding: str, header: str) -> None:
    f = tmp_path / "ru.csv"
    f.write_bytes(f"ФИО;{header}\nИванов Иван;8 916 123-45-67\n".encode(encoding))
    phones, _, attrs = _rows(f)
    assert phones == ["8 916 123-45-67"] and attrs == [{"ФИО": "Иванов Иван"}]


def test_quoted_fields_with_delimiters_quotes_and_newlines(tmp_path: Path) -> None:
    f = tmp_path / "q.csv"
    f.write_text('phone,comment\n"+7 916 123-45-67","call after 6, ""urgent""\nsecond line"\n'
                 "+79161234568,plain\n")  # fmt: skip
    phones, lines, attrs = _rows(f)
    assert phones == ["+7 916 123-45-67", "+79161234568"]
    assert lines == [2, 4]  # the record's first physical line
    assert attrs[0] == {"comment": 'call after 6, "urgent"\nsecond line'}


def test_column_map_headerless_and_chunks(tmp_path: Path) -> None:
    f = tmp_path / "m.csv"
    f.write_text("Контакт,Имя\n" + "".join(f"+7916{i:07d},n{i}\n" for i in range(25)))
    chunks = list(parse_file(f, column_map={"phone": "Контакт", "name": "Имя"}, chunk_rows=10))
    assert [len(c.phones) for c in chunks] == [10, 10, 5]
    assert chunks[0].attributes[0] == {"name": "n0"}
    g = tmp_path / "bare.csv"
    g.write_text("+79161234567\n89161234568\n")
    assert _rows(g)[0] == ["+79161234567", "89161234568"]  # no header at all


def test_xlsx_numbers_as_floats_and_text(tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["Номер телефона", "Дата"])
    ws.append([79161234567.0, "2024-05-01"])
    ws.append(["+7 916 123 45 68", None])
    f = tmp_path / "x.xlsx"
    wb.save(f)
    phones, lines, attrs = _rows(f)
    assert phones == [79161234567.0, "+7 916 123 45 68"] and lines == [2, 3]
    assert attrs == [{"Дата": "2024-05-01"}, None]


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"\n\n", "empty file"),
        (b"phone,name\n", "header only"),
        (b"name,email\nIvan,i@example.com\n", "no phone column"),
        (bytes(range(256)) * 40, "binary data"),
        (b"\x01\x02\x03\x04garbage\x05\x06" * 500, "binary data"),
        (b"PK\x03\x04not really a zip", "not a readable XLSX"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1broken", "not a readable Excel"),
    ],
)
def test_bad_input_fails_cleanly(tmp_path: Path, content: bytes, reason: str) -> None:
    f = tmp_path / "bad"
    f.write_bytes(content)
    with pytest.raises(ParseError, match=reason):
        _rows(f)


def test_column_map_naming_a_missing_column(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(ParseError, match="not in the header"):
        _rows(f, column_map={"phone": "tel"})


# --- one broken row is rejected alone (issue 12.4, issue 13.4) -------------------------------


def _reasons(phones: list) -> dict[int, str]:
    from models.phones import normalize_many

    return {i: r for i, r in enumerate(normalize_many(phones)[1]) if r is not None}


def test_a_nul_byte_rejects_its_row_alone(tmp_path: Path) -> None:
    f = tmp_path / "nul.csv"
    f.write_bytes(b"phone,name\n89161234567,Ivan\n8916\x001234568,Olga\n89161234569,Anna\n")
    phones, lines, attrs = _rows(f)
    assert lines == [2, 3, 4] and phones[0] == "89161234567" and phones[2] == "89161234569"
    assert _reasons(phones) == {1: "contains a NUL byte (binary data in a text file)"}
    assert str(phones[1]) == "8916\\x001234568,Olga"  # printable in the rejects report
    assert attrs == [{"name": "Ivan"}, None, {"name": "Anna"}]


@pytest.mark.parametrize(
    "encoding, bad",
    [("utf-8", b"\xff\xfe"), ("cp1251", b"\x98")],  # 0x98 is unassigned in CP1251
)
def test_an_undecodable_row_is_rejected_alone(tmp_path: Path, encoding: str, bad: bytes) -> None:
    # Far past the 64 KiB sample the encoding is detected from, as in a real export.
    head = "телефон,город\n".encode(encoding)
    body = "".join(f"8916{i:07d},Тверь\n" for i in range(5000)).encode(encoding)
    f = tmp_path / "late.csv"
    f.write_bytes(
        head + body + b"89160000001," + bad + b"\n" + "89160000002,Тула\n".encode(encoding)
    )
    phones, lines, _ = _rows(f)
    assert len(phones) == 5002 and lines[-2:] == [5002, 5003] and phones[-1] == "89160000002"
    assert _reasons(phones) == {5000: f"not valid {encoding} text (byte 0x{bad[0]:02x})"}


def test_an_over_long_cell_rejects_its_record_and_the_rest_loads(tmp_path: Path) -> None:
    f = tmp_path / "long.csv"
    f.write_text(
        "phone,comment\n89161234567,ok\n"
        f"89161234568,{'x' * 140_000}\n"
        '89161234569,"never closed\n89161234570,swallowed\n'
        f"89161234571,{'y' * 140_000}\n"
        "89161234572,fine\n"
    )
    phones, lines, _ = _rows(f)
    assert lines == [2, 3, 4, 7] and phones[0] == "89161234567" and phones[-1] == "89161234572"
    assert _reasons(phones) == {
        1: "a cell longer than 131072 characters (line 3; an unclosed quote?)",
        2: "a cell longer than 131072 characters (lines 4-6; an unclosed quote?)",
    }


def test_an_unreadable_header_refuses_the_file(tmp_path: Path) -> None:
    f = tmp_path / "head.csv"
    f.write_bytes(b"pho\x00ne,name\n89161234567,Ivan\n")
    with pytest.raises(ParseError, match="line 1: contains a NUL byte"):
        _rows(f)


def test_utf16_without_a_bom_is_still_refused_as_binary(tmp_path: Path) -> None:
    f = tmp_path / "u16.csv"
    f.write_bytes("phone\n89161234567\n".encode("utf-16-le") * 50)
    with pytest.raises(ParseError, match="binary data.*byte-order mark"):
        _rows(f)


def test_many_broken_rows_refuse_the_file(tmp_path: Path) -> None:
    # A CP1251 export whose first 64 KiB are plain ASCII: guessed UTF-8, then every Cyrillic
    # row fails to decode. Past 1,000 such rows it is the guess, not the rows, that is wrong.
    head = b"phone,name\n" + b"".join(b"8916%07d,ivan\n" % i for i in range(4000))
    tail = b"".join(f"8926{i:07d},Иван\n".encode("cp1251") for i in range(1001))
    f = tmp_path / "mixed.csv"
    f.write_bytes(head + tail)
    with pytest.raises(ParseError, match="more than 1000 rows cannot be read .*not valid utf-8"):
        _rows(f)
    f.write_bytes(head + tail[: tail.index(b"89260001000")])  # 1,000 broken rows: rejected
    phones, _, _ = _rows(f)
    assert len(phones) == 5000 and len(_reasons(phones)) == 1000


def test_a_headerless_column_of_cut_numbers_is_the_phone_column(tmp_path: Path) -> None:
    # Excel's "General" format of a number column: every value lost digits. The column is
    # still found, so each row is rejected with the reason instead of "no phone column".
    from models.phones import LOST_DIGITS

    f = tmp_path / "cut.csv"
    f.write_text("Ivan;Tver;7,91612E+10\nOlga;Tula;7,91613E+10\n")
    phones, lines, _ = _rows(f)
    assert phones == ["7,91612E+10", "7,91613E+10"] and lines == [1, 2]
    assert _reasons(phones) == {0: LOST_DIGITS, 1: LOST_DIGITS}
