"""The dbt project as Dagster assets: every model an asset, every dbt test an asset check.

The manifest is prepared ahead of time (`make dbt-manifest`, run by `make install`; or
`dagster-dbt project prepare-and-package --file orchestration/assets/dbt.py`), not on every load
of the code location; a missing or stale manifest (a model changed since) is rebuilt once, here.

One job, one op: every run is a `dbt build` of every model - the schedule, the refresh after an
import and a "recalculate conversion" request alike, so the provider, geo and daily marts are
never older than the project figure (a one-project request used to refresh only the snapshot).
The op's config carries a one-project filter (the `project_id` dbt var: only that project gets
a new snapshot) and the conversion request a run serves, which the op marks running ->
completed/failed. Cost: a one-project run was ~90% dbt start-up already (4.3 s vs 5.4 s for
everything on 10M numbers, docs/benchmarks.md).
"""

import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    Config,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)
from dagster._utils import run_with_concurrent_update_guard
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from pydantic import Field

from orchestration.assets.imports import phone_numbers as phone_numbers_import
from orchestration.dbt_env import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_env, dbt_environment
from orchestration.resources import PostgresResource
from sensors import conversion_requests
from sensors.conversion_refresh import build_refresh_after_import_sensor

log = logging.getLogger(__name__)

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

# The SFTP import asset loads phone_numbers: the dbt source `app.phone_numbers` maps onto its key,
# so lineage shows imports feeding conversion and the refresh sensor follows them.
PHONE_NUMBERS_UPSTREAM_KEY = phone_numbers_import.key
OP_NAME = "numbase_dbt"
REFRESH_JOB_NAME = "conversion_refresh_job"
PARTIAL_PARSE = "partial_parse.msgpack"
DBT_POOL = "numbase_dbt"

_SOURCE_SUFFIXES = (".sql", ".yml", ".yaml", ".md")


def _newest_source_mtime(project_dir: Path) -> float:
    paths = [project_dir / "dbt_project.yml"]
    for folder in ("models", "macros", "tests"):
        paths.extend(p for p in (project_dir / folder).rglob("*") if p.suffix in _SOURCE_SUFFIXES)
    return max(p.stat().st_mtime for p in paths if p.exists())


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=str(DBT_EXECUTABLE))


def ensure_manifest(project: DbtProject = DBT_PROJECT) -> Path:
    """The manifest path, after a `dbt parse` if it is missing or older than the project files."""
    manifest = project.manifest_path
    if not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(
        project.project_dir
    ):
        log.info("preparing the dbt manifest (dbt parse) at %s", manifest)
        # A lock file keeps concurrent loaders (code server, run workers) from parsing at once.
        run_with_concurrent_update_guard(manifest, _parse, project=project)
    return manifest


def _parse(project: DbtProject) -> None:
    # The venv's own dbt: PATH may not include the venv (make, `numbase up`).
    dbt_resource().cli(["parse", "--quiet"], target_path=project.target_path).wait()


class NumbaseDbtTranslator(DagsterDbtTranslator):
    """Models keep their names as keys; app-table sources are `app/<table>`, except
    `phone_numbers`, which is the SFTP import asset itself."""

    def __init__(self, phone_numbers_key: AssetKey = PHONE_NUMBERS_UPSTREAM_KEY) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))
        self.phone_numbers_key = phone_numbers_key

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            if dbt_resource_props["name"] == "phone_numbers":
                return self.phone_numbers_key
            return AssetKey(["app", dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        layer = fqn[1] if len(fqn) > 2 else "marts"
        if "lead_quality" in fqn:  # models/*/lead_quality/: their own groups in the UI
            return "lead_quality" if layer == "marts" else "lead_quality_staging"
        return "conversion" if layer == "marts" else "conversion_staging"


TRANSLATOR = NumbaseDbtTranslator()


class DbtBuildConfig(Config):
    project_id: int | None = Field(
        default=None, description="Snapshot only this project (dbt var project_id)."
    )
    conversion_request_id: int | None = Field(
        default=None, description="The conversion_requests row this run serves (set by the sensor)."
    )


def _build_args(config: DbtBuildConfig) -> list[str]:
    args = ["build"]
    if config.project_id is not None:
        args += ["--vars", json.dumps({"project_id": config.project_id})]
    return args


@dbt_assets(
    manifest=ensure_manifest(),
    project=DBT_PROJECT,
    dagster_dbt_translator=TRANSLATOR,
    name=OP_NAME,
    # Two dbt runs at once would collide on dbt's temporary relations (x__dbt_tmp): give the
    # pool a limit of 1 (dagster.yaml `concurrency: {pools: {default_limit: 1}}`).
    pool=DBT_POOL,
)
def numbase_dbt_models(
    context: AssetExecutionContext,
    dbt: DbtCliResource,
    postgres: PostgresResource,
    config: DbtBuildConfig,
) -> Iterator[Any]:
    url = postgres.url()
    request_id = config.conversion_request_id
    if request_id is not None:
        conversion_requests.mark_running(url, request_id, context.run.run_id)
    try:
        if config.project_id is not None:
            conversion_requests.check_project(url, config.project_id)
        with dbt_environment(dbt_env(url)):
            invocation = dbt.cli(_build_args(config), context=context)
        yield from invocation.stream()
        _keep_partial_parse(invocation.target_path)
        # Per-run artifacts would pile up (a run every 15 minutes); a failed run keeps them.
        shutil.rmtree(invocation.target_path, ignore_errors=True)
    except BaseException as exc:
        if request_id is not None:
            conversion_requests.mark_finished(url, request_id, error=_describe(exc))
        raise
    if request_id is not None:
        conversion_requests.mark_finished(url, request_id)


def _keep_partial_parse(run_target: Path) -> None:
    """Keep this run's parse state for the next runs.

    dbt's partial-parse state is only valid for the connection it was made with (host, port,
    database...), and the one `make dbt-manifest` prepares has no database yet; dagster-dbt
    copies target/partial_parse.msgpack into each run, so refreshing it after a run spares the
    next runs a full parse (about 1.3 s of CPU each).
    """
    source = run_target / PARTIAL_PARSE
    if not source.exists():
        return
    dest = DBT_PROJECT.project_dir / DBT_PROJECT.target_path / PARTIAL_PARSE
    tmp = dest.with_name(f"{PARTIAL_PARSE}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)  # atomic: concurrent runs read a whole file
    except OSError as exc:  # a read-only deployment: only a little slower
        log.warning("could not keep dbt partial-parse state: %s", exc)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:4000]


# Every model (and its tests), for every run: the schedule, the refresh after imports and
# every recalculation request (config.project_id: only that project gets a snapshot).
conversion_refresh_job = define_asset_job(
    REFRESH_JOB_NAME,
    selection=AssetSelection.assets(numbase_dbt_models),
    description="dbt build of every conversion model: snapshot, provider/geo marts, daily calls "
    "(a new snapshot for one project only when config.project_id is set).",
)


def conversion_refresh_schedule(cron: str) -> ScheduleDefinition:
    """The periodic refresh: numbers also change through the API and SoftPhone, outside Dagster."""
    return ScheduleDefinition(
        name="conversion_refresh_schedule",
        job=conversion_refresh_job,
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Refresh every conversion model (NUMBASE_CONVERSION_CRON).",
    )


def conversion_definitions(cron: str | None = None) -> Definitions:
    """Everything conversion adds to the code location (merged in orchestration/definitions.py)."""
    if cron is None:
        from models.settings import load_settings

        cron = load_settings().conversion_cron
    return Definitions(
        assets=[numbase_dbt_models],
        jobs=[conversion_refresh_job],
        schedules=[conversion_refresh_schedule(cron)],
        sensors=[
            build_refresh_after_import_sensor(PHONE_NUMBERS_UPSTREAM_KEY, conversion_refresh_job),
            conversion_requests.build_conversion_request_sensor(
                job=conversion_refresh_job, op_name=OP_NAME
            ),
            conversion_requests.build_conversion_request_failure_sensor([conversion_refresh_job]),
        ],
        resources={"dbt": dbt_resource()},
    )
