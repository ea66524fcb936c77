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
