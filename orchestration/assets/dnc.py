"""Do-not-call files from SFTP drop folders (sensors/dnc_inbox.py), one partition per file:
parsed like number files (orchestration/parsers.py), listed through models/dialing/dnc.py in one
transaction with its audit row, then archived to processed/. A file that cannot be read is moved
to rejected/ with the reason and changes nothing."""
# No `from __future__ import annotations`: Dagster reads the Config annotation at runtime.

import posixpath
import tempfile
import time
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    Config,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)
from sqlalchemy import text

from models.bulk import BulkLoadError
from models.db import make_engine
from models.dialing import dnc
from models.sftp_access import live_project
from models.sftp_layout import archive_file, arrival_label, reject_file
from orchestration.assets.common import SFTP_RETRY
from orchestration.parsers import ParseError, parse_file
from orchestration.resources import PostgresResource, SFTPResource
from sensors.dnc_inbox import DNC_JOB, DNC_PARTITIONS, dnc_scope

dnc_files = DynamicPartitionsDefinition(name=DNC_PARTITIONS)
SOURCE = "sftp"
ACTOR = "system:dagster"


class DncFileConfig(Config):
    size: int = 0
    mtime: int = 0


@asset(
    partitions_def=dnc_files,
    group_name="dialing",
    retry_policy=SFTP_RETRY,
    description="A do-not-call file dropped in inbox/_dnc/ (global) or inbox/<project>/_dnc/.",
)
def dnc_list_file(
    context: AssetExecutionContext,
    config: DncFileConfig,
    sftp: SFTPResource,
    postgres: PostgresResource,
) -> MaterializeResult:
    path = context.partition_key
    started = time.perf_counter()
    code = dnc_scope(path)
    project_id = None
    if code is not None:
        with postgres.connect("numbase-dnc", autocommit=True) as conn:
            project = live_project(conn, code=code)
        if project is None:
            _reject(sftp, path, f"no live project with code {code!r}")
        project_id = project[0] if project else None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / posixpath.basename(path)
        with sftp.session() as s:
            if s.stat(path) is None:
                return MaterializeResult(metadata={"skipped": "file no longer in the inbox"})
            s.download(path, local)
        reason = f"SFTP file {posixpath.basename(path)}"
        engine = make_engine(postgres.url(), pool_size=None)
        try:
            with engine.begin() as conn:
                result = dnc.add_bulk(
                    conn, project_id=project_id,
                    chunks=parse_file(local, region=postgres.phone_region),
                    reason=reason, source=SOURCE, expires_at=None, added_by=None,
                    region=postgres.phone_region, reject_limit=20,
                )  # fmt: skip
                conn.execute(
                    text(
                        "INSERT INTO audit_log (actor, action, entity_type, entity_id, changes)"
                        " VALUES (:actor, 'dnc_bulk_add', 'dnc_list', :project, "
                        "CAST(:changes AS jsonb))"
                    ),
                    {"actor": ACTOR, "project": project_id, "changes": _changes(path, result)},
                )
        except (ParseError, BulkLoadError, UnicodeDecodeError) as exc:
            _reject(sftp, path, f"cannot read the file: {exc}")
        finally:
            engine.dispose()
    with sftp.session() as s:  # after commit: a retry finds the same numbers listed already
        if s.stat(path) is not None:
            archive_file(s, path, arrival_label())
    context.log.info(
        f"{path}: read {result.read}, listed {result.added} new, {result.updated} updated, "
        f"invalid {result.invalid}"
    )
    return MaterializeResult(
        metadata={
            "scope": "global" if project_id is None else f"project {code}",
            "rows_read": result.read,
            "added": result.added,
            "updated": result.updated,
            "invalid": result.invalid,
            "seconds": round(time.perf_counter() - started, 3),
            "first_rejects": MetadataValue.md(
                "\n".join(f"- line {r.line}: `{r.raw}` {r.reason}" for r in result.rejects)
                or "none"
            ),
        }
    )


def _changes(path: str, result: dnc.DncBulkResult) -> str:
    import json

    return json.dumps({"file": path, "read": result.read, "added": result.added,
                       "updated": result.updated, "invalid": result.invalid})  # fmt: skip


def _reject(sftp: SFTPResource, path: str, reason: str) -> None:
    with sftp.session() as s:
        if s.stat(path) is not None:
            reject_file(s, path, f"{path}: {reason}", arrival_label())
    raise Failure(description=reason, allow_retries=False)


dnc_import_job = define_asset_job(
    DNC_JOB,
    selection=[dnc_list_file],
    partitions_def=dnc_files,
    description="Load one do-not-call file from SFTP (a partition of dnc_list_file).",
    tags={"numbase/kind": "dnc_import"},
)
