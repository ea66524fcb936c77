"""The numbering-plan registry: both encodings, extra columns, the curated region table, and a
bad file refused whole with its line while the previous registry stays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from models.dialing.regions import match_region, subjects
from models.dialing.registry import RegistryFormatError, load_registry
from tests.dialing.conftest import ABC_CP1251, DEF_UTF8

ROOT = Path(__file__).resolve().parents[2]
HEADER = "АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН"


def _ranges(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT prefix, range_from, range_to, operator, region, zones FROM numbering_ranges "
        "ORDER BY range_from"
    ).fetchall()


def _write(tmp_path: Path, name: str, lines: list[str], encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes("\r\n".join(lines).encode(encoding) + b"\r\n")
    return path


def test_every_subject_has_real_zones_and_common_spellings_match() -> None:
    import zoneinfo

    names = {s.name for s in subjects()}
    assert len(names) >= 89  # 89 subjects (+ the registry's combined "Москва и ..." entries)
    for s in subjects():
        assert s.zones, s.name
        for zone in s.zones:
            zoneinfo.ZoneInfo(zone)
    assert match_region("Республика Саха /Якутия/").zones == (  # type: ignore[union-attr]
        "Asia/Yakutsk", "Asia/Khandyga", "Asia/Ust-Nera", "Asia/Srednekolymsk",
    )  # fmt: skip
    assert match_region("г. Москва").name == "Москва"  # type: ignore[union-attr]
    assert match_region("Москва и Московская обл.").zones == ("Europe/Moscow",)  # type: ignore[union-attr]
    assert match_region("Ханты - Мансийский - Югра АО").zones == ("Asia/Yekaterinburg",)  # type: ignore[union-attr]
    assert match_region("КАЛИНИНГРАДСКАЯ ОБЛ.").zones == ("Europe/Kaliningrad",)  # type: ignore[union-attr]
    # Hostile: nationwide, empty, unknown words, a known name with an unknown part.
    for name in ("Российская Федерация", "", "   ", "Атлантида", "Москва и Атлантида", None):
        assert match_region(name) is None


def test_both_encodings_and_extra_columns_load(conn) -> None:
    result = load_registry(conn, [DEF_UTF8, ABC_CP1251], loaded_by="test")
    by_file = {f.file: f for f in result.files}
    assert by_file["DEF-9xx.csv"].encoding == "utf-8"
    assert by_file["ABC-3xx-4xx.csv"].encoding == "cp1251"
    assert by_file["DEF-9xx.csv"].ranges == 6 and by_file["ABC-3xx-4xx.csv"].ranges == 3
    assert by_file["DEF-9xx.csv"].unmapped_regions == {"Российская Федерация": 1}
    rows = {r[0]: r for r in _ranges(conn)}
    assert rows[916][1:] == (
        9160000000, 9169999999, 'ПАО "Мобильные ТелеСистемы"', "Москва и Московская область",
        ["Europe/Moscow"],
    )  # fmt: skip
    assert rows[411][4] == "Республика Саха (Якутия)" and len(rows[411][5]) == 4
    assert rows[958][5] is None  # nationwide: no zone from the registry
    stored = conn.execute("SELECT ranges, files FROM registry_loads").fetchone()
    assert stored[0] == 9 and {f["file"] for f in stored[1]} == set(by_file)


def test_a_new_load_replaces_the_previous_registry(conn, tmp_path) -> None:
    load_registry(conn, [DEF_UTF8, ABC_CP1251])
    small = _write(tmp_path, "DEF.csv", [HEADER, "999;0000000;0000009;10;Оп;Тверская обл.;1"])
    load_registry(conn, [small])
    assert [r[0] for r in _ranges(conn)] == [999]


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("916;0000000;9999999;10000000;ПАО;г. Москва", "6 fields where the header has 7"),
        ("91X;0000000;0000009;10;Оп;г. Москва;1", "АВС/DEF code is not a number"),
        ("916;0000009;0000000;10;Оп;г. Москва;1", "От 9 is after До 0"),
        ("916;0000000;0000009;11;Оп;г. Москва;1", "Емкость 11 disagrees"),
        ("916;00000000;00000009;10;Оп;г. Москва;1", "От is not a number"),
        ("916;0000000;0000009;10;Оп;;1", "Регион is empty"),
        ("916;-1;0000009;10;Оп;г. Москва;1", "От is not a number"),
        ("0;0000000;0000009;10;Оп;г. Москва;1", "not three digits"),
        ("916;0000005;0000019;15;Оп;г. Москва;1", "overlaps"),
    ],
)
def test_a_bad_line_refuses_the_file_and_the_old_registry_stays(
    conn, tmp_path, bad_line, reason
) -> None:
    load_registry(conn, [DEF_UTF8, ABC_CP1251])
    before = _ranges(conn)
    loads = conn.execute("SELECT count(*) FROM registry_loads").fetchone()[0]
    good = _write(tmp_path, "a.csv", [HEADER, "495;0000000;0000009;10;Оп;г. Москва;1"])
    bad = _write(
        tmp_path, "b.csv",
        [HEADER, "916;0000000;0000009;10;Оп;г. Москва;1", "", bad_line], encoding="cp1251",
    )  # fmt: skip
    with pytest.raises(RegistryFormatError) as err:
        load_registry(conn, [good, bad])
    assert err.value.file == "b.csv" and err.value.line == 4, str(err.value)
    assert reason in str(err.value)
    assert _ranges(conn) == before
    assert conn.execute("SELECT count(*) FROM registry_loads").fetchone()[0] == loads


def test_files_that_are_not_registries_are_refused(conn, tmp_path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(RegistryFormatError, match="empty file"):
        load_registry(conn, [empty])
    wrong = _write(tmp_path, "numbers.csv", ["phone;name", "+79161234567;x"])
    with pytest.raises(RegistryFormatError, match="header lacks code, from, to") as err:
        load_registry(conn, [wrong])
    assert err.value.line == 1
    binary = tmp_path / "blob.csv"
    binary.write_bytes(bytes(range(256)) * 100)
    with pytest.raises(RegistryFormatError):
        load_registry(conn, [binary])
    assert _ranges(conn) == []


def test_quoted_fields_and_a_bom_are_read(conn, tmp_path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(
        (
            "\ufeff"
            + HEADER
            + '\n"900";"0000000";"0000009";"10";"ООО ""Т2""";"Тверская обл.";"1"\n'
        ).encode()
    )
    load_registry(conn, [path])
    assert _ranges(conn)[0][3:5] == ('ООО "Т2"', "Тверская область")


def test_cli_loads_and_refuses(database_url, db, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBASE_")}
    env["NUMBASE_DATABASE_URL"] = database_url

    def cli(*files: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "registry", "load", *map(str, files)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    ok = cli(DEF_UTF8, ABC_CP1251)
    assert ok.returncode == 0, ok.stderr
    assert "DEF-9xx.csv: 6 ranges" in ok.stdout and "Российская Федерация" in ok.stdout
    bad = _write(tmp_path, "bad.csv", [HEADER, "916;x;1;1;Оп;г. Москва;1"])
    refused = cli(bad)
    assert refused.returncode == 1
    assert "bad.csv, line 2" in refused.stderr and "registry unchanged" in refused.stderr
    assert cli(tmp_path / "missing.csv").returncode == 2
    with psycopg.connect(database_url) as c:
        assert c.execute("SELECT count(*) FROM numbering_ranges").fetchone()[0] == 9


def test_a_megabyte_long_line_is_refused_with_its_number(conn, tmp_path) -> None:
    lines = [HEADER, "916;0000000;0000009;10;Оп;г. Москва;1", "916;" + "9" * 1_000_000]
    path = _write(tmp_path, "long.csv", lines)
    with pytest.raises(RegistryFormatError) as err:
        load_registry(conn, [path])
    assert err.value.line == 3
    assert _ranges(conn) == []
