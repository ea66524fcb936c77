"""Lead quality marts equal hand-computed figures on a crafted base, after a real `dbt build`
(which must pass every data test). The figures are worked out in the comments of `_seed`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.conftest import truncate_all
from tests.dbt.conftest import run_dbt


def _seed(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:

        def one(sql: str, **params: object) -> int:
            return int(conn.execute(text(sql + " RETURNING id"), params).scalar_one())

        ids: dict[str, int] = {}
        ids["p1"] = one("INSERT INTO projects (code, name) VALUES ('p1', 'P1')")
        ids["p2"] = one("INSERT INTO projects (code, name) VALUES ('p2', 'P2')")
        ids["pd"] = one(
            "INSERT INTO projects (code, name, is_deleted, deleted_at, status) "
            "VALUES ('pd', 'PD', true, now(), 'deleted')"
        )
        ids["a"] = one("INSERT INTO providers (code, name) VALUES ('a', 'A')")
        ids["x"] = one("INSERT INTO geo (region) VALUES ('X')")
        ids["y"] = one("INSERT INTO geo (region) VALUES ('Y')")

        def load(project: str, provider: str | None, at: str, cost: str | None, **c: int) -> int:
            zero = ("rows_read", "inserted", "duplicate_in_input", "already_present",
                    "duplicate_elsewhere", "invalid")  # fmt: skip
            counts = {**dict.fromkeys(zero, 0), **c}
            return one(
                "INSERT INTO number_loads (kind, project_id, provider_id, dedupe_scope, "
                "rows_read, inserted, duplicate_in_input, already_present, duplicate_elsewhere, "
                "invalid, lead_cost, created_at) VALUES ('sftp', :p, :v, 'project', :rows_read, "
                ":inserted, :duplicate_in_input, :already_present, :duplicate_elsewhere, "
                ":invalid, :cost, :at)",
                p=ids[project], v=ids[provider] if provider else None, cost=cost, at=at, **counts,
            )  # fmt: skip

        seq = iter(range(1, 100))

        def number(
            load_id: int | None, project: str, geo: str, status: str, attempts: int,
            last: str | None = None, events: tuple[str, ...] = (),
        ) -> int:  # fmt: skip
            phone = f"+7916000{next(seq):04d}"
            nid = one(
                "INSERT INTO phone_numbers (phone_number, project_id, provider_id, geo_id, "
                "status, call_attempts, last_call_at, source_load_id) "
                "VALUES (:n, :p, :v, :g, :s, :a, :l, :load)",
                n=phone, p=ids[project], v=ids["a"], g=ids[geo], s=status, a=attempts,
                l=last, load=load_id,
            )  # fmt: skip
            for at in events:
                conn.execute(
                    text(
                        "INSERT INTO call_events (event_id, event_type, phone_number, "
                        "phone_number_id, project_id, matched, payload, occurred_at) "
                        "VALUES (:e, 'call_started', :n, :i, :p, true, CAST(:j AS jsonb), :at)"
                    ),
                    {
                        "e": f"ev-{nid}-{at}",
                        "n": phone,
                        "i": nid,
                        "p": ids[project],
                        "j": json.dumps({}),
                        "at": at,
                    },  # fmt: skip
                )
            return nid

        # L1: P1/A, Monday 2024-05-06 10:00, cost 100: 10 rows = 4 + 1 + 1 + 2 + 2 invalid.
        ids["l1"] = l1 = load("p1", "a", "2024-05-06T10:00:00+00", "100.00", rows_read=10,
                              inserted=4, duplicate_in_input=1, already_present=1,
                              duplicate_elsewhere=2, invalid=2)  # fmt: skip
        number(l1, "p1", "x", "success", 2, events=("2024-05-06T12:00:00+00",))  # 2 h
        number(l1, "p1", "x", "failed", 1, events=("2024-05-06T14:00:00+00",))  # 4 h
        # dialled, no event kept: last_call_at, 24 h
        number(l1, "p1", "y", "no_answer", 3, last="2024-05-07T10:00:00+00")
        number(l1, "p1", "y", "new", 0)
        # L2: P1/A, Wednesday 2024-05-15 09:00 (week of 05-13), no cost.
        ids["l2"] = l2 = load("p1", "a", "2024-05-15T09:00:00+00", None, rows_read=2, inserted=2)
        number(l2, "p1", "x", "success", 1,
               events=("2024-05-15T11:00:00+00", "2024-05-15T10:00:00+00"))  # 1 h  # fmt: skip
        number(l2, "p1", "x", "in_progress", 1, events=("2024-05-15T12:00:00+00",))  # 3 h
        # L3: P2/A, 2024-05-07, cost 50, one number never called.
        ids["l3"] = l3 = load("p2", "a", "2024-05-07T08:00:00+00", "50.00", rows_read=1,
                              inserted=1)  # fmt: skip
        number(l3, "p2", "x", "new", 0)
        # L4: a deleted project's load: in no mart.
        l4 = load("pd", "a", "2024-05-06T10:00:00+00", "999.00", rows_read=1, inserted=1)
        number(l4, "pd", "x", "success", 1, events=("2024-05-06T10:30:00+00",))
        # L5: P1 without a provider (API), everything already present.
        ids["l5"] = load("p1", None, "2024-05-06T11:00:00+00", None, rows_read=3,
                         already_present=3)  # fmt: skip
        # A number from before loads were recorded: not lead quality.
        number(None, "p1", "x", "success", 5, events=("2024-05-06T10:00:00+00",))
        return ids


@pytest.fixture(scope="module")
def built(
    engine: Engine, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, int], Path]]:
    truncate_all(engine)
    ids = _seed(engine)
    target = tmp_path_factory.mktemp("dbt-lead-quality")
    result = run_dbt(database_url, target, "build")
    assert result.returncode == 0, result.stdout[-6000:]
    yield ids, target
    truncate_all(engine)


def _rows(engine: Engine, mart: str, order: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r) for r in conn.execute(text(f"SELECT * FROM analytics.{mart} ORDER BY {order}"))
            .mappings()
        ]  # fmt: skip


NUMBER_FIGURES = (
    "numbers", "dialled_numbers", "reached_numbers", "success_numbers", "failed_numbers",
    "no_answer_numbers", "finished_numbers", "call_attempts", "dialled_share", "reached_share",
    "conversion_rate", "attempts_per_success", "median_hours_to_first_call",
)  # fmt: skip
LOAD_FIGURES = (
    "rows_read", "inserted", "duplicate_in_input", "already_present", "duplicate_elsewhere",
    "invalid", "invalid_share", "duplicate_share",
)  # fmt: skip


def D(v: str | None) -> Decimal | None:  # noqa: N802
    return None if v is None else Decimal(v)


def nums(n, dl, rc, s, f, na, fin, att, dsh, rsh, conv, aps, med):  # noqa: ANN001, ANN201
    return dict(zip(NUMBER_FIGURES, (n, dl, rc, s, f, na, fin, att, D(dsh), D(rsh), D(conv),
                                     D(aps), D(med)), strict=True))  # fmt: skip


def loads(rows, ins, dup, pres, els, inv, ish, dsh):  # noqa: ANN001, ANN201
    return dict(zip(LOAD_FIGURES, (rows, ins, dup, pres, els, inv, D(ish), D(dsh)), strict=True))


def pick(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: row[k] for k in keys}


L1_NUMBERS = nums(4, 3, 2, 1, 1, 1, 3, 6, "75.00", "50.00", "33.33", "6.00", "4.00")
L2_NUMBERS = nums(2, 2, 1, 1, 0, 0, 1, 2, "100.00", "50.00", "100.00", "2.00", "2.00")
L3_NUMBERS = nums(1, 0, 0, 0, 0, 0, 0, 0, "0.00", "0.00", "0.00", None, None)
NONE = nums(0, 0, 0, 0, 0, 0, 0, 0, "0.00", "0.00", "0.00", None, None)


def test_build_passes_its_tests(built) -> None:  # noqa: ANN001
    _, target = built
    assert "Completed successfully" in (target / "dbt.log").read_text()


def test_per_load(built, engine: Engine) -> None:  # noqa: ANN001
    ids, _ = built
    rows = {r["load_id"]: r for r in _rows(engine, "fct_lead_quality_load", "load_id")}
    assert set(rows) == {ids["l1"], ids["l2"], ids["l3"], ids["l5"]}  # not the deleted one
    l1 = rows[ids["l1"]]
    assert pick(l1, LOAD_FIGURES) == loads(10, 4, 1, 1, 2, 2, "20.00", "40.00")
    assert pick(l1, NUMBER_FIGURES) == L1_NUMBERS
    assert (l1["lead_cost"], l1["cost_per_success"]) == (Decimal("100.00"), Decimal("100.00"))
    assert str(l1["cohort_week"]) == "2024-05-06"
    l2 = rows[ids["l2"]]
    assert pick(l2, NUMBER_FIGURES) == L2_NUMBERS and str(l2["cohort_week"]) == "2024-05-13"
    assert (l2["lead_cost"], l2["cost_per_success"]) == (None, None)
    l3 = rows[ids["l3"]]
    assert pick(l3, NUMBER_FIGURES) == L3_NUMBERS and l3["cost_per_success"] is None
    l5 = rows[ids["l5"]]
    assert pick(l5, LOAD_FIGURES) == loads(3, 0, 0, 3, 0, 0, "0.00", "100.00")
    assert pick(l5, NUMBER_FIGURES) == NONE


def test_per_provider(built, engine: Engine) -> None:  # noqa: ANN001
    ids, _ = built
    rows = {
        (r["project_id"], r["provider_id"], r["all_projects"]): r
        for r in _rows(engine, "fct_lead_quality_provider", "project_id, provider_id")
    }
    assert set(rows) == {
        (ids["p1"], ids["a"], False), (ids["p1"], None, False), (ids["p2"], ids["a"], False),
        (None, ids["a"], True), (None, None, True),
    }  # fmt: skip
    p1a = rows[(ids["p1"], ids["a"], False)]
    assert p1a["loads"] == 2
    assert pick(p1a, LOAD_FIGURES) == loads(12, 6, 1, 1, 2, 2, "16.67", "33.33")
    # 6 numbers: dialled 5, reached n1 n2 n5, medians over 2 4 24 1 3 h.
    assert pick(p1a, NUMBER_FIGURES) == nums(
        6, 5, 3, 2, 1, 1, 4, 8, "83.33", "50.00", "50.00", "4.00", "3.00"
    )
    # Only L1 has a cost: 100 over L1's one success.
    assert (p1a["lead_cost"], p1a["cost_per_success"]) == (Decimal("100.00"), Decimal("100.00"))
    every = rows[(None, ids["a"], True)]
    assert every["loads"] == 3 and every["rows_read"] == 13 and every["numbers"] == 7
    assert every["median_hours_to_first_call"] == Decimal("3.00")
    # 150 of cost over the costed loads' successes (L1: 1, L3: 0); the deleted load not at all.
    assert (every["lead_cost"], every["cost_per_success"]) == (Decimal("150.00"), Decimal("150.00"))
    assert pick(rows[(ids["p1"], None, False)], NUMBER_FIGURES) == NONE


def test_per_provider_and_geo(built, engine: Engine) -> None:  # noqa: ANN001
    ids, _ = built
    rows = {
        (r["project_id"], r["geo_id"], r["all_projects"]): r
        for r in _rows(engine, "fct_lead_quality_provider_geo", "project_id, geo_id")
    }
    assert set(rows) == {
        (ids["p1"], ids["x"], False), (ids["p1"], ids["y"], False), (ids["p2"], ids["x"], False),
        (None, ids["x"], True), (None, ids["y"], True),
    }  # fmt: skip
    assert pick(rows[(ids["p1"], ids["x"], False)], NUMBER_FIGURES) == nums(
        4, 4, 3, 2, 1, 0, 3, 5, "100.00", "75.00", "66.67", "2.50", "2.50"
    )
    assert pick(rows[(ids["p1"], ids["y"], False)], NUMBER_FIGURES) == nums(
        2, 1, 0, 0, 0, 1, 1, 3, "50.00", "0.00", "0.00", None, "24.00"
    )
    assert pick(rows[(None, ids["x"], True)], NUMBER_FIGURES) == nums(
        5, 4, 3, 2, 1, 0, 3, 5, "80.00", "60.00", "66.67", "2.50", "2.50"
    )


def test_per_weekly_cohort(built, engine: Engine) -> None:  # noqa: ANN001
    ids, _ = built
    rows = {
        (r["project_id"], r["provider_id"], str(r["cohort_week"]), r["all_projects"]): r
        for r in _rows(engine, "fct_lead_quality_cohort", "project_id, provider_id, cohort_week")
    }
    assert set(rows) == {
        (ids["p1"], ids["a"], "2024-05-06", False), (ids["p1"], ids["a"], "2024-05-13", False),
        (ids["p1"], None, "2024-05-06", False), (ids["p2"], ids["a"], "2024-05-06", False),
        (None, ids["a"], "2024-05-06", True), (None, ids["a"], "2024-05-13", True),
        (None, None, "2024-05-06", True),
    }  # fmt: skip
    assert pick(rows[(ids["p1"], ids["a"], "2024-05-06", False)], NUMBER_FIGURES) == L1_NUMBERS
    assert pick(rows[(ids["p1"], ids["a"], "2024-05-13", False)], NUMBER_FIGURES) == L2_NUMBERS
    both = rows[(None, ids["a"], "2024-05-06", True)]  # L1 + L3
    assert (both["loads"], both["rows_read"], both["numbers"]) == (2, 11, 5)
    assert both["cost_per_success"] == Decimal("150.00")


def test_marts_are_dagster_assets_downstream_of_phone_numbers() -> None:
    from dagster import AssetKey

    from orchestration.assets.dbt import conversion_refresh_job, numbase_dbt_models

    marts = {
        "fct_lead_quality_load", "fct_lead_quality_provider", "fct_lead_quality_provider_geo",
        "fct_lead_quality_cohort",
    }  # fmt: skip
    keys = {k.to_user_string(): k for k in numbase_dbt_models.keys}
    assert marts <= set(keys)
    assert numbase_dbt_models.asset_deps[keys["staging/stg_lead_numbers"]] == {
        AssetKey(["phone_numbers"])
    }
    assert numbase_dbt_models.asset_deps[keys["staging/stg_number_loads"]] == {
        AssetKey(["app", "number_loads"])
    }
    for name in marts:
        assert numbase_dbt_models.specs_by_key[keys[name]].group_name == "lead_quality"
    # Built by the same job (and so the same schedule) as the conversion marts.
    assert conversion_refresh_job.selection is not None
    checks = {c.name for c in numbase_dbt_models.check_specs}
    assert any(c.startswith("lead_counts_add_up_fct_lead_quality_cohort") for c in checks)
