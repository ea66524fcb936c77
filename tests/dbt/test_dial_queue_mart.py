"""fct_dial_queue_daily (a real `dbt build`) agrees with the API's queue state on the same base,
keeps one row per project and day across runs, and uses the Python rules' defaults."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from models.dialing import queue_rules, queue_state
from models.dialing.policy import PolicyConfig
from models.tables import DncEntry, Project, ProjectDialingRules
from orchestration.dbt_env import DBT_PROJECT_DIR
from tests.dbt.conftest import run_dbt

ALL_DAY = PolicyConfig(workday=(0, 1440), dayoff=(0, 1440))
MSK = {"timezone": "Europe/Moscow", "timezone_source": "registry"}
SELECT = ("--select", "+fct_dial_queue_daily", "--indirect-selection", "cautious")


def _relation(engine: Engine) -> str:
    with engine.connect() as conn:
        schema = conn.scalar(
            text("SELECT table_schema FROM information_schema.tables "
                 "WHERE table_name = 'fct_dial_queue_daily'")
        )  # fmt: skip
    assert schema, "the mart was not built"
    return f'"{schema}".fct_dial_queue_daily'


@pytest.fixture
def mart_engine(db: Engine) -> Iterator[Engine]:
    yield db
    with db.begin() as conn:  # an incremental table outlives the truncation of the app tables
        for (schema,) in conn.execute(
            text("SELECT table_schema FROM information_schema.tables "
                 "WHERE table_name = 'fct_dial_queue_daily'")
        ):  # fmt: skip
            conn.execute(text(f'DROP TABLE IF EXISTS "{schema}".fct_dial_queue_daily'))


def test_defaults_in_dbt_vars_match_python() -> None:
    cfg = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    d = queue_rules.DEFAULTS
    assert cfg["dial_queue_default_max_attempts"] == d.max_attempts
    assert cfg["dial_queue_default_min_gap_seconds"] == d.min_gap_seconds
    finals = sorted(o for o in queue_rules.OUTCOMES if d.is_final(o))
    assert sorted(cfg["dial_queue_default_final_outcomes"]) == finals


def test_mart_matches_the_queue_state(
    mart_engine: Engine, database_url: str, session: Session, factory, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    project = factory.project()
    strict = factory.project()
    session.add(ProjectDialingRules(
        project_id=strict.id, max_attempts=1, min_gap_seconds=0,
        hand_out_order="fresh_first",
        outcomes={**queue_rules.DEFAULTS.outcomes_json(),
                  "busy": {"final": True, "retry_seconds": 0}},
    ))  # fmt: skip
    session.commit()
    for p in (project, strict):
        factory.number(p, **MSK)
        factory.number(p, status="success", **MSK)
        factory.number(p, status="failed", **MSK)
        factory.number(p, status="no_answer", result_data={"outcome": "busy"}, **MSK)
        factory.number(p, call_attempts=1, status="no_answer", **MSK)
        factory.number(p, call_attempts=5, status="no_answer", **MSK)
        factory.number(p, status="no_answer", next_attempt_at=now + dt.timedelta(hours=1), **MSK)
        factory.number(p, status="no_answer", last_call_at=now - dt.timedelta(seconds=30), **MSK)
        factory.number(p, status="in_progress", leased_by="a",
                       leased_until=now + dt.timedelta(minutes=5), **MSK)  # fmt: skip
        factory.number(p, timezone_source="unknown")
        listed = factory.number(p, **MSK)
        session.add(DncEntry(project_id=p.id, phone_number=listed.phone_number, reason="x"))
    session.commit()

    for _ in range(2):  # a second run the same day replaces the day's rows
        result = run_dbt(database_url, tmp_path / "target", "build", *SELECT)
        assert result.returncode == 0, result.stdout[-4000:]
    with mart_engine.connect() as conn:
        rows = {
            r["project_id"]: dict(r)
            for r in conn.execute(text(f"SELECT * FROM {_relation(mart_engine)}")).mappings()
        }
    assert set(rows) == {project.id, strict.id}
    for p in (project, strict):
        proj = session.get(Project, p.id)
        assert proj is not None
        api = queue_state.state(session, proj, queue_rules.load(session, p.id), now, ALL_DAY)
        row = rows[p.id]
        assert row["snapshot_date"] == now.date()
        c = api.counts
        assert (row["total_numbers"], row["final_numbers"], row["dnc_numbers"],
                row["exhausted_numbers"], row["leased_numbers"], row["waiting_retry_numbers"],
                row["ready_numbers"]) == (
            api.total, c["final"], c["dnc"], c["exhausted"], c["leased"], c["waiting_retry"],
            c["eligible"] + c["outside_hours"])  # fmt: skip
    # The strict project's rules differ from the defaults, and the mart saw that.
    assert rows[strict.id]["exhausted_numbers"] > rows[project.id]["exhausted_numbers"]
    assert rows[strict.id]["final_numbers"] > rows[project.id]["final_numbers"]
