"""A registry swap racing a bulk load: the swap waits for the load's transaction, the load
resolves against one whole registry (the old one), and nobody ever sees half a registry."""

from __future__ import annotations

import threading

import psycopg

from models.bulk import chunked, load_numbers
from models.dialing.registry import load_registry
from models.dialing.resolve import current_index
from tests.dialing.conftest import DEF_UTF8


def test_swap_waits_for_a_running_load(conn, factory, database_url, tmp_path) -> None:
    load_registry(conn, [DEF_UTF8])
    project = factory.project()
    new = tmp_path / "DEF-new.csv"
    new.write_text("АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН\n"
                   "916;0000000;9999999;10000000;Новый;Тверская обл.;1\n")  # fmt: skip
    done = threading.Event()
    errors: list[BaseException] = []

    def swap() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as other:
                load_registry(other, [new])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    with psycopg.connect(database_url) as loader:  # one open transaction, like a long import
        assert len(current_index(loader)) == 6
        thread = threading.Thread(target=swap)
        thread.start()
        assert not done.wait(1.5), "the swap must wait for the running load"
        # Readers outside both transactions are not queued behind the swap, and see the whole
        # old registry (another import's lookup, here). A queued reader fails fast, not hangs.
        conn.execute("SET lock_timeout = '5s'")
        assert conn.execute("SELECT count(*) FROM numbering_ranges").fetchone()[0] == 6
        with psycopg.connect(database_url) as reader:
            assert len(current_index(reader)) == 6
        load_numbers(loader, project.id, chunked(["+79162345678"]))
        loader.commit()
    assert done.wait(30) and not errors, errors
    thread.join()
    region = conn.execute("SELECT region FROM phone_numbers").fetchone()[0]
    assert region == "Москва и Московская область"  # resolved against the old registry, whole
    assert conn.execute("SELECT region FROM numbering_ranges").fetchall() == [("Тверская область",)]
