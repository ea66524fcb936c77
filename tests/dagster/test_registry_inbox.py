"""The registry from SFTP (inbox/_registry/): all files of a drop load together through a real
Dagster run, counts per file in the metadata; a bad file refuses the drop and the old registry
stays; the number-import sensor leaves the folder alone."""

from __future__ import annotations

from typing import Any

from dagster import RunRequest

from sensors.inbox import sftp_inbox_sensor
from sensors.registry_inbox import REGISTRY_JOB, registry_inbox_sensor
from tests.dagster.conftest import Harness
from tests.dialing.conftest import ABC_CP1251, DEF_UTF8


def _run(harness: Harness, request: RunRequest) -> Any:
    return harness.defs.resolve_job_def(REGISTRY_JOB).execute_in_process(
        run_config=request.run_config, instance=harness.instance, raise_on_error=False
    )


def test_a_drop_loads_whole_and_a_bad_one_changes_nothing(harness: Harness) -> None:
    harness.upload("inbox/_registry/DEF-9xx.csv", DEF_UTF8.read_bytes())
    harness.upload("inbox/_registry/ABC-3xx-4xx.csv", ABC_CP1251.read_bytes())
    harness.tick(sftp_inbox_sensor)
    assert not harness.tick(sftp_inbox_sensor).run_requests
    assert not harness.tick(registry_inbox_sensor).run_requests  # settling
    [request] = harness.tick(registry_inbox_sensor).run_requests
    result = _run(harness, request)
    assert result.success
    meta = result.asset_materializations_for_node("numbering_plan_registry")[0].metadata
    assert meta["ranges"].value == 9
    assert meta["DEF-9xx.csv: ranges"].value == 6
    assert meta["ABC-3xx-4xx.csv: encoding"].value == "cp1251"
    assert harness.scalar("SELECT count(*) FROM numbering_ranges") == 9
    load_id = harness.scalar("SELECT max(id) FROM registry_loads")
    assert harness.exists(f"processed/_registry/{load_id}/DEF-9xx.csv")
    # A bad drop: refused whole, moved to rejected/ with the line, the registry unchanged.
    bad = "АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН\n916;x;1;1;Оп;Москва;1\n"
    harness.upload("inbox/_registry/DEF-new.csv", bad.encode())
    harness.tick(registry_inbox_sensor)
    [request] = harness.tick(registry_inbox_sensor).run_requests
    assert not _run(harness, request).success
    assert "DEF-new.csv, line 2" in harness.read("rejected/_registry/DEF-new.csv.error.txt")
    assert harness.scalar("SELECT count(*) FROM numbering_ranges") == 9
