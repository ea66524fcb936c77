"""The bulk loader against a real PostgreSQL: exact counts, rejects, attributes, atomicity,
argument errors and flat memory."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from models.bulk import (
    BulkLoadError,
    BulkLoadTimeout,
    LoadResult,
    Reject,
    RowChunk,
    chunked,
    load_numbers,
)
from models.db import DbTimeouts, connect
from models.phones import normalize_many


@pytest.fixture
def conn(db: Any, database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _numbers(conn: psycopg.Connection[Any], project_id: int) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT phone_number, provider_id, geo_id, status, attributes FROM phone_numbers "
        "WHERE project_id = %s",
        (project_id,),
    ).fetchall()
    return {
        r[0]: {"provider_id": r[1], "geo_id": r[2], "status": r[3], "attrs": r[4]} for r in rows
    }


def _count(conn: psycopg.Connection[Any]) -> int:
    return conn.execute("SELECT count(*) FROM phone_numbers").fetchone()[0]  # type: ignore[index]


def _reason(raw: object) -> str:
    reason = normalize_many([raw])[1][0]
    assert reason is not None
    return reason


def test_mixed_input_gives_exact_counts_rejects_and_attributes(conn, factory) -> None:
    project, other = factory.project(), factory.project()
    provider, geo = factory.provider(), factory.geo()
    factory.number(project, "+79161110001")
    factory.number(project, "+79161110002")
    factory.number(other, "+79161110003")  # another project's number is not "already present"
    phones: list[object] = [
        "8 (916) 111-00-01",  # 1 already in the project
        "+7 916 111 00 03",  # 2 new here
        "abc",  # 3 invalid
        "9161110004",  # 4 new, first occurrence
        "+79161110004",  # 5 duplicate of 4
        None,  # 6 invalid (empty)
        79161110005,  # 7 new (int from a spreadsheet)
        "12345",  # 8 invalid (too short)
        "8-916-111-00-04",  # 9 duplicate of 4
        79161110005.0,  # 10 duplicate of 7 (float from a spreadsheet)
    ]
    attrs: list[dict[str, Any] | None] = [None] * len(phones)
    attrs[3] = {"name": "Ann", "comment": "VIP"}
    attrs[4] = {"name": "Not me"}
    seen: list[Reject] = []

    result = load_numbers(
        conn,
        project.id,
        [RowChunk(phones, attributes=attrs)],
        provider_id=provider.id,
        geo_id=geo.id,
        on_reject=seen.append,
    )

    assert isinstance(result, LoadResult)
    counts = {
        k: v
        for k, v in result.as_dict().items()
        if k not in ("rejects", "seconds", "duplicate_elsewhere", "load_id")
    }
    counts.pop("rows_per_second")
    assert counts == {
        "read": 10,
        "inserted": 3,
        "duplicate_in_input": 3,
        "already_present": 1,
        "invalid": 3,
        "on_dnc": 0,
    }
    assert result.rejects == [
        Reject(3, "abc", _reason("abc")),
        Reject(6, "", _reason(None)),
        Reject(8, "12345", _reason("12345")),
    ]
    assert seen == result.rejects
    assert result.seconds > 0 and result.rows_per_second > 0

    rows = _numbers(conn, project.id)
    assert set(rows) == {"+79161110001", "+79161110002", "+79161110003", "+79161110004",
                         "+79161110005"}  # fmt: skip
    new = rows["+79161110004"]
    assert new == {
        "provider_id": provider.id,
        "geo_id": geo.id,
        "status": "new",
        "attrs": {"name": "Ann", "comment": "VIP"},  # first occurrence wins
    }
    assert rows["+79161110005"]["attrs"] is None
    # The pre-existing row is untouched (no provider set on it by the load).
    assert rows["+79161110001"]["provider_id"] is None
    assert set(_numbers(conn, other.id)) == {"+79161110003"}


def test_line_numbers_run_across_chunks_or_come_from_the_caller(conn, factory) -> None:
    project = factory.project()
    result = load_numbers(
        conn,
        project.id,
        [RowChunk(["+79160000001", "x"]), RowChunk(["bad", "+79160000002", ""])],
    )
    assert [(r.line, r.raw) for r in result.rejects] == [(2, "x"), (3, "bad"), (5, "")]

    result = load_numbers(conn, project.id, [RowChunk(["oops", "+79160000003"], lines=[17, 42])])
    assert result.rejects == [Reject(17, "oops", _reason("oops"))]
    assert result.inserted == 1


def test_on_reject_gets_every_reject_and_the_result_keeps_the_first_n(conn, factory) -> None:
    project = factory.project()
    seen: list[Reject] = []
    phones = [f"bad{i}" for i in range(10)] + ["+79160000001"]
    result = load_numbers(
        conn, project.id, chunked(phones, size=3), reject_limit=4, on_reject=seen.append
    )
    assert result.invalid == 10 and result.inserted == 1
    assert [r.line for r in seen] == list(range(1, 11))
    assert result.rejects == seen[:4]
    assert load_numbers(conn, project.id, [RowChunk(["zz"])], reject_limit=0).rejects == []


def test_attributes_survive_escaping_and_spreadsheet_gaps(conn, factory) -> None:
    project = factory.project()
    attrs = {
        "comment": 'tab\there\nnew line \\ back "quoted" ключ',
        "score": float("nan"),  # an empty spreadsheet cell
        "nul": "a\x00b",
        "nested": {"n": 1, "list": [1, 2.5, None]},
    }
    result = load_numbers(
        conn,
        project.id,
        [RowChunk(["+79160000001", "+79160000002"], attributes=[attrs, {}])],
    )
    assert result.inserted == 2
    rows = _numbers(conn, project.id)
    assert rows["+79160000001"]["attrs"] == {
        "comment": 'tab\there\nnew line \\ back "quoted" ключ',
        "score": None,
        "nul": "ab",
        "nested": {"n": 1, "list": [1, 2.5, None]},
    }
    assert rows["+79160000002"]["attrs"] is None  # an empty dict stores nothing


def test_empty_input_gives_zero_counts(conn, factory) -> None:
    project = factory.project()
    for chunks in ([], [RowChunk([])], [RowChunk([]), RowChunk([])]):
        result = load_numbers(conn, project.id, chunks)
        assert (result.read, result.inserted, result.invalid) == (0, 0, 0)
        assert (result.duplicate_in_input, result.already_present, result.rejects) == (0, 0, [])
    # All invalid: nothing reaches the INSERT.
    result = load_numbers(conn, project.id, [RowChunk(["", None])])
    assert (result.read, result.invalid, result.inserted) == (2, 2, 0)
    assert _count(conn) == 0


def test_a_failing_chunk_iterator_leaves_the_table_unchanged(conn, factory) -> None:
    project = factory.project()
    factory.number(project, "+79160000009")

    def chunks() -> Iterator[RowChunk]:
        yield RowChunk(["+79160000001", "+79160000002"])
        raise RuntimeError("the file broke")

    with pytest.raises(RuntimeError, match="the file broke"):
        load_numbers(conn, project.id, chunks())
    assert set(_numbers(conn, project.id)) == {"+79160000009"}
    # No staging table survives and the connection is usable.
    assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'numbase_stage%'"
                        ).fetchone() == (0,)  # fmt: skip
    assert load_numbers(conn, project.id, [RowChunk(["+79160000001"])]).inserted == 1


def test_a_database_error_in_the_insert_leaves_the_table_unchanged(
    conn, factory, database_url
) -> None:
    project = factory.project()
    factory.number(project, "+79160000009")
    conn.execute("SET lock_timeout = '200ms'")
    # Another session holds a lock that the final INSERT needs: the rows are already staged
    # when the database refuses.
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE phone_numbers IN SHARE MODE")
        with pytest.raises(BulkLoadTimeout):
            load_numbers(conn, project.id, chunked([f"+7916000{i:04d}" for i in range(100)]))
        blocker.rollback()
    conn.execute("RESET lock_timeout")
    assert set(_numbers(conn, project.id)) == {"+79160000009"}


@pytest.mark.parametrize(
    ("lock", "table"),
    [
        ("LOCK TABLE phone_numbers IN SHARE MODE", "phone_numbers"),  # PostgreSQL names none
        ("SELECT 1 FROM projects WHERE id = {project} FOR UPDATE", "projects"),  # a row wait
    ],
    ids=["table-lock", "project-row"],
)
def test_a_held_lock_fails_the_load_within_the_lock_timeout_naming_the_wait(
    factory, database_url, lock: str, table: str
) -> None:
    """The connection's timeouts (set at connect time, as the import's are) cut the wait; the
    loader says what it waited for, and nothing is stored."""
    project = factory.project()
    timeouts = DbTimeouts(lock_seconds=1.0, statement_seconds=60.0)
    with (
        psycopg.connect(database_url) as blocker,
        connect(database_url, application_name="test-load", timeouts=timeouts) as loader,
    ):
        blocker.execute(lock.format(project=project.id))
        started = time.monotonic()
        with pytest.raises(BulkLoadTimeout) as caught:
            load_numbers(loader, project.id, chunked(["+79160000001", "+79160000002"]))
        elapsed = time.monotonic() - started
        blocker.rollback()
        assert loader.execute("SELECT count(*) FROM phone_numbers").fetchone() == (0,)
    assert 0.9 <= elapsed < 15, elapsed  # the timeout, not the blocker, ended the wait
    message = str(caught.value)
    assert f"timed out waiting for a lock on {table} held by another transaction" in message
    assert "NUMBASE_DB_LOCK_TIMEOUT_SECONDS" in message and "nothing was imported" in message
    assert caught.value.transient


def test_a_statement_timeout_fails_the_load_with_its_reason(factory, database_url) -> None:
    project = factory.project()
    timeouts = DbTimeouts(lock_seconds=0, statement_seconds=0.001)
    with (
        connect(database_url, application_name="test-load", timeouts=timeouts) as loader,
        pytest.raises(BulkLoadTimeout, match="statement timeout"),
    ):
        load_numbers(loader, project.id, chunked([f"+7916000{i:04d}" for i in range(5000)]))


def test_a_bad_chunk_shape_is_a_clear_error_and_rolls_back(conn, factory) -> None:
    project = factory.project()
    chunks = [RowChunk(["+79160000001"]), RowChunk(["+79160000002", "+79160000003"], lines=[1])]
    with pytest.raises(BulkLoadError, match="2 phones but 1 line numbers"):
        load_numbers(conn, project.id, chunks)
    with pytest.raises(BulkLoadError, match="2 phones but 1 attributes"):
        load_numbers(conn, project.id, [RowChunk(["+79160000002", "1"], attributes=[None])])
    with pytest.raises(BulkLoadError, match="line 1: attributes must be a dict"):
        load_numbers(conn, project.id, [RowChunk(["+79160000002"], attributes=["x"])])  # type: ignore[list-item]
    with pytest.raises(BulkLoadError, match="chunks must be RowChunk"):
        load_numbers(conn, project.id, [["+79160000002"]])  # type: ignore[list-item]
    assert _count(conn) == 0


def test_inside_a_caller_transaction_the_load_is_a_savepoint(conn, factory, database_url) -> None:
    project = factory.project()
    with psycopg.connect(database_url) as c:  # not autocommit: a transaction is open
        c.execute("UPDATE projects SET name = 'renamed' WHERE id = %s", (project.id,))
        with pytest.raises(RuntimeError):
            load_numbers(c, project.id, _raising_after_first_chunk())
        # The failed load rolled back to its savepoint; the caller's own work survives.
        assert load_numbers(c, project.id, [RowChunk(["+79160000001"])]).inserted == 1
        assert _count(conn) == 0  # not committed yet
        c.commit()
    assert set(_numbers(conn, project.id)) == {"+79160000001"}
    name = conn.execute("SELECT name FROM projects WHERE id = %s", (project.id,)).fetchone()
    assert name == ("renamed",)


def _raising_after_first_chunk() -> Iterator[RowChunk]:
    yield RowChunk(["+79160000002"])
    raise RuntimeError("boom")


def test_bad_ids_and_arguments_give_clear_errors(conn, factory, session) -> None:
    project, provider, geo = factory.project(), factory.provider(), factory.geo()
    deleted = factory.project(is_deleted=True, status="deleted", deleted_at=_now())
    one = [RowChunk(["+79160000001"])]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"project_id": 999_999}, "project 999999 does not exist"),
        ({"project_id": deleted.id}, f"project {deleted.id} is deleted"),
        ({"provider_id": 999_999}, "provider 999999 does not exist"),
        ({"geo_id": 999_999}, "geo 999999 does not exist"),
        ({"project_id": 0}, "project_id must be a positive integer"),
        ({"project_id": "1"}, "project_id must be a positive integer"),
        ({"provider_id": True}, "provider_id must be a positive integer"),
        ({"region": "XX"}, "region"),
        ({"reject_limit": -1}, "reject_limit must be >= 0"),
    ]
    for override, message in cases:
        kwargs: dict[str, Any] = {
            "project_id": project.id,
            "provider_id": provider.id,
            "geo_id": geo.id,
            **override,
        }
        pid = kwargs.pop("project_id")
        with pytest.raises(BulkLoadError, match=message):
            load_numbers(conn, pid, one, **kwargs)
    assert isinstance(BulkLoadError("x"), ValueError)
    assert _count(conn) == 0


def _now():  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def test_memory_stays_flat_for_a_large_lazy_input(conn, factory) -> None:
    project = factory.project()
    total = 300_000
    formats = (
        "+7 916 {:03d}-{:02d}-{:02d}",
        "8 (916) {:03d} {:02d} {:02d}",
        "916{:03d}{:02d}{:02d}",
    )

    def phones() -> Iterator[str]:
        for i in range(total):
            a, rest = divmod(i, 10_000)
            yield formats[i % 3].format(a, *divmod(rest, 100))

    # Warm up once: libphonenumber loads ~20 MB of zone metadata on first use (per process,
    # not per row), which is not what this test measures.
    load_numbers(conn, factory.project().id, chunked(["+79990000000"]))
    # What holding every row at once would take, for scale.
    gc.collect()
    tracemalloc.start()
    held = list(phones())
    hold_all = tracemalloc.get_traced_memory()[0]
    del held
    tracemalloc.stop()

    gc.collect()
    tracemalloc.start()
    try:
        result = load_numbers(conn, project.id, chunked(phones(), size=10_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.read, result.inserted, result.invalid) == (total, total, 0)
    assert peak < hold_all / 4, (peak, hold_all)
    assert peak < 8 * 1024 * 1024, peak


def test_chunked_cuts_a_lazy_stream_with_aligned_attributes() -> None:
    phones = (f"+7916000{i:04d}" for i in range(7))
    attrs = ({"i": i} for i in range(7))
    chunks = list(chunked(phones, attrs, size=3, first_line=2))
    assert [list(c.phones) for c in chunks] == [
        ["+79160000000", "+79160000001", "+79160000002"],
        ["+79160000003", "+79160000004", "+79160000005"],
        ["+79160000006"],
    ]
    assert [list(c.lines or []) for c in chunks] == [[2, 3, 4], [5, 6, 7], [8]]
    assert chunks[2].attributes == [{"i": 6}]
    with pytest.raises(BulkLoadError, match="attributes stream is shorter"):
        list(chunked(["1", "2"], [{}], size=5))
    with pytest.raises(ValueError, match="size must be >= 1"):
        list(chunked([], size=0))


def test_pandas_columns_work_as_chunk_sequences(conn, factory) -> None:
    import pandas as pd

    project = factory.project()
    frame = pd.DataFrame(
        {"phone": ["+79160000001", "bad", 79160000002.0, None], "line": [10, 11, 12, 13]},
        index=[100, 101, 102, 103],  # a non-positional index must not matter
    )
    chunks = [
        RowChunk(frame["phone"], lines=frame["line"]),
        RowChunk(pd.Series(["x"], index=[7])),
    ]
    result = load_numbers(conn, project.id, chunks)
    assert (result.read, result.inserted, result.invalid) == (5, 2, 3)
    assert [(r.line, r.raw) for r in result.rejects] == [(11, "bad"), (13, ""), (14, "x")]


def test_fk_checks_are_skipped_only_when_safe_and_never_bypass_user_triggers(conn, factory) -> None:
    from models.bulk_insert import may_skip_fk_checks

    project, provider = factory.project(), factory.provider()
    assert may_skip_fk_checks(conn)  # superuser; only ALWAYS triggers (callable counts)
    conn.execute(
        """
        CREATE TABLE insert_seen (phone text);
        CREATE FUNCTION note_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO insert_seen VALUES (NEW.phone_number); RETURN NEW; END $$;
        CREATE TRIGGER trg_note_insert AFTER INSERT ON phone_numbers
            FOR EACH ROW EXECUTE FUNCTION note_insert();
        """
    )
    try:
        assert not may_skip_fk_checks(conn)
        result = load_numbers(
            conn, project.id, [RowChunk(["+79160000001", "+79160000002"])], provider_id=provider.id
        )
        assert result.inserted == 2
        seen = {r[0] for r in conn.execute("SELECT phone FROM insert_seen").fetchall()}
        assert seen == {"+79160000001", "+79160000002"}
    finally:
        conn.execute(
            "DROP TRIGGER trg_note_insert ON phone_numbers; DROP FUNCTION note_insert(); "
            "DROP TABLE insert_seen"
        )
    # The role is back to normal after a load, inside or outside a caller's transaction.
    assert conn.execute("SHOW session_replication_role").fetchone()[0] == "origin"


def test_referenced_rows_cannot_vanish_during_a_load(conn, factory, database_url) -> None:
    """With the FK triggers skipped, the loader's own locks keep project, provider and geo."""
    project, provider, geo = factory.project(), factory.provider(), factory.geo()
    with psycopg.connect(database_url) as loader:
        load_numbers(
            loader, project.id, [RowChunk(["+79160000003"])], provider_id=provider.id, geo_id=geo.id
        )
    with psycopg.connect(database_url) as loader, loader.transaction():
        load_numbers(loader, project.id, [RowChunk(["+79160000004"])], provider_id=provider.id)
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("DELETE FROM providers WHERE id = %s", (provider.id,))
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("DELETE FROM projects WHERE id = %s", (project.id,))
    numbers = _numbers(conn, project.id)
    assert numbers["+79160000004"]["provider_id"] == provider.id
    assert numbers["+79160000003"]["geo_id"] == geo.id
