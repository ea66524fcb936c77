"""Loads are recorded and numbers remember theirs; the dedupe scopes against hand-built data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from models.bulk import ELSEWHERE_REASON, Reject, chunked, load_numbers
from models.number_loads import LoadSource


@pytest.fixture
def conn(db: Any, database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _load(conn: Any, project: Any, phones: list[object], **kw: Any) -> Any:
    kw.setdefault("record", LoadSource("api", source="test"))
    return load_numbers(conn, project.id, chunked(phones), **kw)


def _source(conn: Any, phone: str, project_id: int) -> int | str | None:
    """The number's source_load_id, or "absent" when the project does not have it."""
    row = conn.execute(
        "SELECT source_load_id FROM phone_numbers WHERE phone_number = %s AND project_id = %s",
        (phone, project_id),
    ).fetchone()
    return "absent" if row is None else row[0]


def _set_rule(conn: Any, project: Any, scope: str, window: int | None = None) -> None:
    conn.execute(
        "UPDATE projects SET dedupe_scope = %s, dedupe_window_days = %s WHERE id = %s",
        (scope, window, project.id),
    )


def test_load_row_has_the_counts_and_numbers_point_at_it(conn, factory) -> None:
    project, provider = factory.project(), factory.provider()
    factory.number(project, "+79160000001")
    result = _load(
        conn, project, ["+79160000001", "+79160000002", "+79160000002", "junk"],
        provider_id=provider.id,
    )  # fmt: skip
    row = conn.execute(
        "SELECT kind, project_id, provider_id, source, dedupe_scope, rows_read, inserted, "
        "duplicate_in_input, already_present, duplicate_elsewhere, invalid "
        "FROM number_loads WHERE id = %s",
        (result.load_id,),
    ).fetchone()
    assert row == ("api", project.id, provider.id, "test", "project", 4, 1, 1, 1, 0, 1)
    assert _source(conn, "+79160000002", project.id) == result.load_id
    assert _source(conn, "+79160000001", project.id) is None  # existing row: unknown, untouched


def test_first_load_stays_the_source_whatever_comes_later(conn, factory) -> None:
    project = factory.project()
    a = _load(conn, project, ["+79160000001"], record=LoadSource("sftp", source="inbox/a.csv"))
    b = _load(conn, project, ["+79160000001", "+79160000009"], record=LoadSource("sftp"))
    c = _load(conn, project, ["8 916 000-00-01"], record=LoadSource("api"))
    assert (b.already_present, c.already_present) == (1, 1)
    assert _source(conn, "+79160000001", project.id) == a.load_id
    assert _source(conn, "+79160000009", project.id) == b.load_id


def test_a_failed_load_leaves_no_load_row(conn, factory) -> None:
    project = factory.project()

    def chunks() -> Iterator[Any]:
        yield from chunked(["+79160000001"])
        raise RuntimeError("the file broke mid-way")

    with pytest.raises(RuntimeError):
        load_numbers(conn, project.id, chunks(), record=LoadSource("api"))
    assert conn.execute("SELECT count(*) FROM number_loads").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM phone_numbers").fetchone()[0] == 0


def test_unrecorded_load_still_works(conn, factory) -> None:
    project = factory.project()
    result = _load(conn, project, ["+79160000001"], record=None)
    assert result.load_id is None and result.inserted == 1
    assert conn.execute("SELECT count(*) FROM number_loads").fetchone()[0] == 0


def test_bad_load_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        LoadSource("ftp")


# --- dedupe scopes ----------------------------------------------------------------------------


def test_project_scope_is_todays_behaviour(conn, factory) -> None:
    project, other = factory.project(), factory.project()
    factory.number(other, "+79160000001", last_call_at=dt.datetime.now(dt.UTC))
    result = _load(conn, project, ["+79160000001"])
    assert (result.inserted, result.duplicate_elsewhere) == (1, 0)


def test_all_projects_skips_numbers_in_live_projects_only(conn, factory) -> None:
    project = factory.project()
    live = factory.project(code="live-one")
    gone = factory.project(code="gone-one")
    factory.number(live, "+79160000001")
    factory.number(gone, "+79160000002")
    factory.number(project, "+79160000003")
    factory.number(live, "+79160000003")  # here AND elsewhere: already present, not elsewhere
    conn.execute(
        "UPDATE projects SET is_deleted = true, deleted_at = now(), status = 'deleted' "
        "WHERE id = %s",
        (gone.id,),
    )
    _set_rule(conn, project, "all_projects")
    seen: list[Reject] = []
    result = _load(
        conn, project,
        ["+79160000004", "+79160000001", "+79160000002", "+79160000003", "+79160000001"],
        on_reject=seen.append,
    )  # fmt: skip
    assert (result.read, result.inserted, result.duplicate_in_input) == (5, 2, 1)
    assert (result.already_present, result.duplicate_elsewhere, result.invalid) == (1, 1, 0)
    assert _source(conn, "+79160000002", project.id) == result.load_id  # deleted: not a block
    assert _source(conn, "+79160000001", project.id) == "absent"
    assert conn.execute(
        "SELECT count(*) FROM phone_numbers WHERE phone_number = '+79160000001'"
    ).fetchone()[0] == 1  # fmt: skip
    # The report line names the other project; the reason everyone else sees does not.
    assert [(r.line, r.raw, r.report_reason) for r in seen] == [
        (2, "+79160000001", "already in project live-one")
    ]
    assert seen[0].reason == ELSEWHERE_REASON and "live-one" not in str(seen[0].public())
    assert result.rejects[0].public() == {
        "line": 2, "raw": "+79160000001", "reason": "already in another project",
    }  # fmt: skip
    assert "live-one" not in str(result.as_dict())
    loaded = conn.execute(
        "SELECT dedupe_scope, duplicate_elsewhere, already_present FROM number_loads"
    ).fetchone()
    assert loaded == ("all_projects", 1, 1)


def test_window_counts_calls_not_loads(conn, factory) -> None:
    project, other = factory.project(), factory.project(code="called-here")
    now = dt.datetime.now(dt.UTC)
    factory.number(other, "+79160000001", last_call_at=now - dt.timedelta(days=2))  # recent
    factory.number(other, "+79160000002", last_call_at=now - dt.timedelta(days=30))  # old
    factory.number(other, "+79160000003")  # loaded just now, never called: no block
    _set_rule(conn, project, "project", window=7)
    seen: list[Reject] = []
    result = _load(
        conn, project, ["+79160000001", "+79160000002", "+79160000003"], on_reject=seen.append
    )
    assert (result.inserted, result.duplicate_elsewhere) == (2, 1)
    assert [r.report_reason for r in seen] == ["already in project called-here"]


def test_window_counts_calls_in_deleted_projects_too(conn, factory) -> None:
    project, gone = factory.project(), factory.project()
    factory.number(gone, "+79160000001", last_call_at=dt.datetime.now(dt.UTC))
    conn.execute(
        "UPDATE projects SET is_deleted = true, deleted_at = now(), status = 'deleted' "
        "WHERE id = %s",
        (gone.id,),
    )
    _set_rule(conn, project, "project", window=1)
    assert _load(conn, project, ["+79160000001"]).duplicate_elsewhere == 1
    _set_rule(conn, project, "all_projects")  # without a window a deleted project blocks nothing
    assert _load(conn, project, ["+79160000001"]).inserted == 1


def test_elsewhere_rows_stream_in_line_order_past_the_reject_limit(conn, factory) -> None:
    project, other = factory.project(), factory.project(code="big")
    phones = [f"+7916{n:07d}" for n in range(3000)]
    load_numbers(conn, other.id, chunked(phones))
    _set_rule(conn, project, "all_projects")
    seen: list[Reject] = []
    result = _load(conn, project, list(reversed(phones)), on_reject=seen.append, reject_limit=5)
    assert result.duplicate_elsewhere == 3000 and result.inserted == 0
    assert len(seen) == 3000 and len(result.rejects) == 5
    assert [r.line for r in seen] == list(range(1, 3001))


def test_rule_is_checked_by_the_database(conn, factory) -> None:
    project = factory.project()
    for scope, window in (("everything", None), ("project", 0), ("project", 4000)):
        with pytest.raises(psycopg.errors.CheckViolation):
            _set_rule(conn, project, scope, window)


def test_racing_loads_of_one_number_leave_one_row_from_the_winner(
    conn, factory, database_url: str
) -> None:
    import threading

    project = factory.project()
    barrier = threading.Barrier(4)
    results: list[Any] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as c:
                barrier.wait()
                results.append(
                    load_numbers(c, project.id, chunked(["+79160000001"]), record=LoadSource("api"))
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    winners = [r for r in results if r.inserted == 1]
    assert len(winners) == 1 and sum(r.already_present for r in results) == 3
    assert _source(conn, "+79160000001", project.id) == winners[0].load_id
    counts = conn.execute(
        "SELECT sum(inserted), sum(already_present), count(*) FROM number_loads"
    ).fetchone()
    assert counts == (1, 3, 4)
