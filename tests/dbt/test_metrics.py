"""Every conversion metric equals its hand-computed value on a known fixture, after one real
`dbt build` (which must pass all its data tests).

conversion_rate = success / finished * 100, finished = success + failed + no_answer (numbers
whose last call has ended; `in_progress` is left out). Each figure below is recomputed by hand
from tests/dbt/fixture_data.py; the comments show the counts."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from tests.conftest import truncate_all
from tests.dbt.conftest import run_dbt
from tests.dbt.fixture_data import Ids, seed, ts

METRICS = (
    "total_numbers",
    "processed_numbers",
    "in_progress_numbers",
    "success_numbers",
    "failed_numbers",
    "no_answer_numbers",
    "conversion_rate",
    "call_attempts",
    "last_call_at",
)


def m(total, processed, in_progress, success, failed, no_answer, rate, attempts, last):  # noqa: ANN001, ANN201
    return dict(
        zip(
            METRICS,
            (total, processed, in_progress, success, failed, no_answer, Decimal(rate), attempts,
             ts(last) if last else None),
            strict=True,
        )
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(
    engine: Engine, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Ids, Path]]:
    truncate_all(engine)
    ids = seed(engine)
    target = tmp_path_factory.mktemp("dbt-target")
    result = run_dbt(database_url, target, "build")
    assert result.returncode == 0, result.stdout[-4000:]
    yield ids, target
    truncate_all(engine)


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def metrics_of(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in METRICS}


# mixed: 9 numbers, 2 new + 1 in_progress + 3 success + 2 failed + 1 no_answer; finished 6.
MIXED = m(9, 7, 1, 3, 2, 1, "50.00", 14, "2024-05-03T08:00:00+00:00")  # 3 / 6
ZERO = m(0, 0, 0, 0, 0, 0, "0.00", 0, None)
ALL_NEW = m(4, 0, 0, 0, 0, 0, "0.00", 0, None)
ALL_SUCCESS = m(1, 1, 0, 1, 0, 0, "100.00", 1, "2024-05-01T11:00:00+00:00")


def test_dbt_build_passes_all_tests(built: tuple[Ids, Path]) -> None:
    _, target = built
    log = (target / "dbt.log").read_text()
    assert "Completed successfully" in log
    assert " WARN=0 " in log or "WARN=0" in log


def test_one_snapshot_per_live_project_with_one_calculated_at(
    built: tuple[Ids, Path], engine: Engine
) -> None:
    ids, _ = built
    snaps = rows(engine, "SELECT * FROM project_conversions ORDER BY project_id")
    assert [s["project_id"] for s in snaps] == [ids.mixed, ids.empty, ids.all_new, ids.all_success]
    assert len({s["calculated_at"] for s in snaps}) == 1  # one run, one timestamp
    by_project = {s["project_id"]: metrics_of(s) for s in snaps}
    assert by_project[ids.mixed] == MIXED
    assert by_project[ids.empty] == ZERO  # the empty project: zeros, rate 0
    assert by_project[ids.all_new] == ALL_NEW  # nothing processed: rate 0, not NULL
    assert by_project[ids.all_success] == ALL_SUCCESS


def test_current_view_is_the_latest_snapshot(built: tuple[Ids, Path], engine: Engine) -> None:
    ids, _ = built
    current = rows(engine, "SELECT * FROM analytics.fct_project_conversion_current")
    snaps = rows(engine, "SELECT project_id, calculated_at FROM project_conversions")
    assert {r["project_id"]: r["calculated_at"] for r in current} == {
        s["project_id"]: s["calculated_at"] for s in snaps
    }
    assert {r["project_id"]: metrics_of(r) for r in current}[ids.mixed] == MIXED


def test_provider_marts(built: tuple[Ids, Path], engine: Engine) -> None:
    ids, _ = built
    overall = {
        r["provider_id"]: metrics_of(r)
        for r in rows(engine, "SELECT * FROM analytics.fct_provider_conversion_overall")
    }
    # Deleted project's two successes (provider A) are not counted.
    assert overall == {
        # A: mixed new, new, in_progress, success, no_answer + 4 all-new; finished 2.
        ids.prov_a: m(9, 3, 1, 1, 0, 1, "50.00", 7, "2024-05-02T18:00:00+00:00"),  # 1 / 2
        # B: mixed success, success, failed + all-success; finished 4.
        ids.prov_b: m(4, 4, 0, 3, 1, 0, "75.00", 7, "2024-05-03T08:00:00+00:00"),  # 3 / 4
        ids.prov_c: ZERO,  # a provider that delivered nothing still shows, with zeros
        None: m(1, 1, 0, 0, 1, 0, "0.00", 1, "2024-05-01T16:00:00+00:00"),
    }
    per_project = {
        (r["project_id"], r["provider_id"]): metrics_of(r)
        for r in rows(engine, "SELECT * FROM analytics.fct_provider_conversion")
    }
    assert per_project == {
        (ids.mixed, ids.prov_a): m(5, 3, 1, 1, 0, 1, "50.00", 7, "2024-05-02T18:00:00+00:00"),
        (ids.mixed, ids.prov_b): m(3, 3, 0, 2, 1, 0, "66.67", 6, "2024-05-03T08:00:00+00:00"),
        (ids.mixed, None): m(1, 1, 0, 0, 1, 0, "0.00", 1, "2024-05-01T16:00:00+00:00"),
        (ids.all_new, ids.prov_a): ALL_NEW,
        (ids.all_success, ids.prov_b): ALL_SUCCESS,
    }


def test_geo_marts(built: tuple[Ids, Path], engine: Engine) -> None:
    ids, _ = built
    overall = {
        r["geo_id"]: metrics_of(r)
        for r in rows(engine, "SELECT * FROM analytics.fct_geo_conversion_overall")
    }
    assert overall == {
        # X: mixed new, in_progress, success, success, no_answer + 4 all-new + all-success;
        # finished 4 (3 success + 1 no_answer).
        ids.geo_x: m(10, 5, 1, 3, 0, 1, "75.00", 9, "2024-05-02T18:00:00+00:00"),  # 3 / 4
        ids.geo_y: m(3, 2, 0, 1, 1, 0, "50.00", 4, "2024-05-03T08:00:00+00:00"),  # 1 / 2
        ids.geo_z: ZERO,
        None: m(1, 1, 0, 0, 1, 0, "0.00", 2, "2024-05-01T15:00:00+00:00"),
    }
    per_project = {
        (r["project_id"], r["geo_id"]): metrics_of(r)
        for r in rows(engine, "SELECT * FROM analytics.fct_geo_conversion")
    }
    assert per_project[(ids.mixed, ids.geo_x)] == m(
        5, 4, 1, 2, 0, 1, "66.67", 8, "2024-05-02T18:00:00+00:00"
    )  # finished 3 (2 success + 1 no_answer)
    assert per_project[(ids.mixed, ids.geo_y)] == m(
        3, 2, 0, 1, 1, 0, "50.00", 4, "2024-05-03T08:00:00+00:00"
    )
    assert set(per_project) == {
        (ids.mixed, ids.geo_x),
        (ids.mixed, ids.geo_y),
        (ids.mixed, None),
        (ids.all_new, ids.geo_x),
        (ids.all_success, ids.geo_x),
    }
    # Every mart of one run carries that run's calculated_at.
    stamps = rows(
        engine,
        "SELECT DISTINCT calculated_at FROM analytics.fct_geo_conversion UNION"
        " SELECT DISTINCT calculated_at FROM analytics.fct_provider_conversion UNION"
        " SELECT DISTINCT calculated_at FROM project_conversions",
    )
    assert len(stamps) == 1


def test_daily_call_outcomes(built: tuple[Ids, Path], engine: Engine) -> None:
    ids, _ = built
    cols = [
        "events",
        "calls_started",
        "calls",
        "results",
        "success_results",
        "failed_results",
        "no_answer_results",
        "other_results",
        "success_rate",
    ]
    got = {
        (r["project_id"], r["call_date"]): tuple(r[c] for c in cols)
        for r in rows(engine, "SELECT * FROM analytics.fct_daily_call_outcomes")
    }
    d1, d2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)
    assert got == {
        # 00:10+03:00 on the 2nd is 21:10 UTC on the 1st; the unmatched and deleted don't count.
        (ids.mixed, d1): (6, 2, 2, 2, 1, 1, 0, 0, Decimal("50.00")),
        (ids.mixed, d2): (4, 1, 1, 2, 0, 0, 1, 1, Decimal("0.00")),
        (ids.all_success, d2): (1, 0, 0, 1, 1, 0, 0, 0, Decimal("100.00")),
    }


def test_calls_in_flight_do_not_lower_the_rate(built: tuple[Ids, Path], engine: Engine) -> None:
    """The mixed project's in_progress number is neither a success nor a failure yet: the rate
    is success over finished numbers, and the counts still add up."""
    ids, _ = built
    [mixed] = rows(engine, "SELECT * FROM project_conversions WHERE project_id = :p", p=ids.mixed)
    finished = mixed["success_numbers"] + mixed["failed_numbers"] + mixed["no_answer_numbers"]
    assert finished == mixed["processed_numbers"] - mixed["in_progress_numbers"] == 6
    assert mixed["conversion_rate"] == Decimal("50.00")  # 3 / 6, not 3 / 7 (42.86)


def test_one_project_refresh_snapshots_that_project_and_refreshes_every_mart(
    built: tuple[Ids, Path], engine: Engine, database_url: str
) -> None:
    ids, target = built
    before = rows(engine, "SELECT project_id, calculated_at FROM project_conversions")
    with engine.begin() as conn:  # the all-new project gets its first call result
        conn.execute(
            text(
                "UPDATE phone_numbers SET status = 'success', call_attempts = 1"
                " WHERE id = (SELECT min(id) FROM phone_numbers WHERE project_id = :p)"
            ),
            {"p": ids.all_new},
        )
    # What a "recalculate conversion" request of that project runs (orchestration/assets/dbt.py).
    result = run_dbt(database_url, target, "build", "--vars", f"{{project_id: {ids.all_new}}}")
    assert result.returncode == 0, result.stdout[-4000:]
    after = rows(engine, "SELECT * FROM project_conversions ORDER BY calculated_at, project_id")
    new = [r for r in after if (r["project_id"], r["calculated_at"]) not in
           {(b["project_id"], b["calculated_at"]) for b in before}]  # fmt: skip
    assert [r["project_id"] for r in new] == [ids.all_new]
    assert metrics_of(new[0]) == m(4, 1, 0, 1, 0, 0, "100.00", 1, None)  # 1 success of 1 finished
    stamp = new[0]["calculated_at"]
    current = {
        r["project_id"]: r
        for r in rows(engine, "SELECT * FROM analytics.fct_project_conversion_current")
    }
    assert current[ids.all_new]["calculated_at"] == stamp
    assert current[ids.mixed]["calculated_at"] < stamp  # no new snapshot for the others
    # ...and the provider, geo and daily marts are this run's too, with the new figures.
    provider = {
        r["provider_id"]: r
        for r in rows(engine, "SELECT * FROM analytics.fct_provider_conversion_overall")
    }
    # A: now 4 processed (+ the all-new success), 2 success, finished 3 (2 success + 1 no_answer).
    assert metrics_of(provider[ids.prov_a]) == m(
        9, 4, 1, 2, 0, 1, "66.67", 8, "2024-05-02T18:00:00+00:00"
    )
    per_project = {
        (r["project_id"], r["geo_id"]): r
        for r in rows(engine, "SELECT * FROM analytics.fct_geo_conversion")
    }
    assert metrics_of(per_project[(ids.all_new, ids.geo_x)]) == m(
        4, 1, 0, 1, 0, 0, "100.00", 1, None
    )
    stamps = rows(
        engine,
        "SELECT DISTINCT calculated_at FROM analytics.fct_geo_conversion UNION"
        " SELECT DISTINCT calculated_at FROM analytics.fct_geo_conversion_overall UNION"
        " SELECT DISTINCT calculated_at FROM analytics.fct_provider_conversion UNION"
        " SELECT DISTINCT calculated_at FROM analytics.fct_provider_conversion_overall",
    )
    assert stamps == [{"calculated_at": stamp}]


def test_bad_project_var_is_a_clear_error(built: tuple[Ids, Path], database_url: str) -> None:
    _, target = built
    result = run_dbt(
        database_url, target, "run", "--select", "fct_project_conversion", "--vars",
        "{project_id: 'drop table'}",
    )  # fmt: skip
    assert result.returncode != 0
    assert "var project_id must be a project id" in result.stdout


def test_a_mart_held_by_a_reader_fails_the_build_within_the_lock_timeout(
    built: tuple[Ids, Path], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model's swap waits for readers of the old table; without a limit it would wait as long
    as they read, queueing every later reader (the API's conversion pages) behind itself."""
    _, target = built
    monkeypatch.setenv("NUMBASE_DB_LOCK_TIMEOUT_SECONDS", "1")
    release_after = 60.0
    with psycopg.connect(database_url, application_name="test-reader") as reader:
        reader.execute("SELECT 1 FROM analytics.fct_provider_conversion LIMIT 1")  # holds it
        timer = threading.Timer(release_after, reader.rollback)
        timer.start()
        started = time.monotonic()
        try:
            result = run_dbt(database_url, target, "run", "--select", "fct_provider_conversion")
        finally:
            timer.cancel()
        elapsed = time.monotonic() - started
        reader.rollback()
    assert result.returncode != 0, result.stdout[-2000:]
    assert "lock timeout" in result.stdout
    assert elapsed < release_after / 2, elapsed
