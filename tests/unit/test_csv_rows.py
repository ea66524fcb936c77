"""models/csv_rows.py: the shared CSV text rules. Property tests: the fast path for clean files
reads exactly what the checking path reads; no byte string makes the non-strict reader raise or
lose a line; the encoding check refuses every codec that is no character set."""

from __future__ import annotations

import codecs
import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.csv_rows import (
    CsvInputError,
    check_encoding,
    is_clean,
    open_text,
    read_records,
)
from models.phones import Unreadable

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
cells = st.text(alphabet=st.sampled_from(list('ab,;"\n\r 79\t') + ["\x00", "я", "\u2028"]))


def _read(data: bytes, encoding: str, clean: bool, **kw) -> list:  # type: ignore[no-untyped-def]
    raw = io.BytesIO(data)
    out = []
    for line, row in read_records(
        open_text(raw, encoding), ",", encoding=encoding, clean=clean, **kw
    ):
        out.append((line, row if isinstance(row, list) else (row.reason, str(row))))
    return out


@PROPERTY
@given(rows=st.lists(st.lists(cells, min_size=1, max_size=4), max_size=8))
def test_clean_files_read_the_same_on_both_paths(rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    data = buf.getvalue().encode("utf-8")
    if is_clean(io.BytesIO(data), "utf-8"):
        assert _read(data, "utf-8", True) == _read(data, "utf-8", False)
        parsed = [r for _, r in _read(data, "utf-8", True)]
        assert parsed == list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    else:
        assert "\x00" in buf.getvalue()


@PROPERTY
@given(data=st.binary(max_size=400), encoding=st.sampled_from(["utf-8", "cp1251", "utf-16"]))
def test_no_bytes_make_the_reader_raise(data: bytes, encoding: str) -> None:
    try:
        records = _read(data, encoding, is_clean(io.BytesIO(data), encoding))
    except CsvInputError as exc:  # only a stream the codec refuses as a whole
        assert "does not start with BOM" in str(exc) or "more than" in str(exc)
        return
    lines = [line for line, _ in records]
    assert lines == sorted(set(lines))  # every record once, in order
    for _, row in records:
        assert isinstance(row, list | tuple)


def test_strict_mode_raises_with_the_line_but_keeps_nul_rows() -> None:
    data = b"a\nb\x00\nc\xff\n"
    records = read_records(open_text(io.BytesIO(data), "utf-8"), ",", encoding="utf-8", strict=True)
    assert next(records) == (1, ["a"])
    line, nul = next(records)
    assert line == 2 and isinstance(nul, Unreadable)
    with pytest.raises(CsvInputError, match="line 3: not valid utf-8 text") as info:
        next(records)
    assert info.value.undecodable


@pytest.mark.parametrize("name", ["rot13", "hex", "base64", "zlib", "bz2", "uu", "quopri",
                                  "undefined", "unicode_escape", "raw_unicode_escape", "idna",
                                  "punycode", "klingon", "", "utf-8\x00"])  # fmt: skip
def test_codecs_that_are_no_character_set_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_encoding(name)


@pytest.mark.parametrize(
    "name",
    [
        "utf-8",
        "UTF8",
        "utf-8-sig",
        "utf_16",
        "cp1251",
        "koi8-r",
        "windows-1251",
        "latin-1",
        "ascii",
        "cp866",
        "mac-cyrillic",
    ],
)
def test_real_character_sets_are_accepted(name: str) -> None:
    assert check_encoding(name) == codecs.lookup(name).name
