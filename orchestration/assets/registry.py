"""The numbering-plan registry loaded from SFTP (`inbox/_registry/`, sensors/registry_inbox.py):
all files of the drop replace the registry in one transaction (models/dialing/registry.py),
then move to processed/_registry/<load id>/; a bad file moves the whole drop to
rejected/_registry/ with the reason (file and line) and the registry stays as it was."""
# No `from __future__ import annotations`: Dagster reads the Config annotation at runtime.

import posixpath
import tempfile
from pathlib import Path

import psycopg
from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)

from models.dialing.registry import RegistryFormatError, load_registry
from models.sftp_layout import PROCESSED, REJECTED, moved_path
from orchestration.assets.common import SFTP_RETRY
from orchestration.resources import PostgresResource, SFTPResource
from sensors.registry_inbox import REGISTRY_JOB


class RegistryFilesConfig(Config):
    paths: list[str]


@asset(
    group_name="dialing",
    retry_policy=SFTP_RETRY,
    description="The numbering-plan registry (numbering_ranges): ranges, operator, region and "
    "zones, replaced whole from the extracts dropped in inbox/_registry/.",
)
def numbering_plan_registry(
    context: AssetExecutionContext,
    config: RegistryFilesConfig,
    sftp: SFTPResource,
    postgres: PostgresResource,
) -> MaterializeResult:
    with tempfile.TemporaryDirectory() as tmp:
        local: list[Path] = []
        with sftp.session() as s:
            for path in config.paths:
                if s.stat(path) is None:
                    raise Failure(f"{path} is no longer in the inbox", allow_retries=False)
                target = Path(tmp) / posixpath.basename(path)
                s.download(path, target)
                local.append(target)

        def progress(name: str, done: int, size: int) -> None:
            if done == size:
                context.log.info(f"{name}: read {size} bytes")

        try:
            with psycopg.connect(postgres.url(), autocommit=True) as conn:
                result = load_registry(conn, local, loaded_by=ACTOR, progress=progress)
        except RegistryFormatError as exc:
            _move_all(sftp, config.paths, REJECTED, error=str(exc))
            raise Failure(f"registry unchanged: {exc}", allow_retries=False) from None
    _move_all(sftp, config.paths, PROCESSED, sub=str(result.load_id))
    metadata: dict[str, object] = {"load_id": result.load_id, "ranges": result.ranges}
    for f in result.files:
        metadata[f"{f.file}: ranges"] = f.ranges
        metadata[f"{f.file}: encoding"] = f.encoding
    unmapped = {name: n for f in result.files for name, n in f.unmapped_regions.items()}
    metadata["regions without a zone"] = MetadataValue.md(
        "\n".join(f"- {name}: {n} ranges" for name, n in sorted(unmapped.items())) or "none"
    )
    context.log.info(f"registry load {result.load_id}: {result.ranges} ranges")
    return MaterializeResult(metadata=metadata)  # type: ignore[arg-type]


ACTOR = "system:dagster"


def _move_all(
    sftp: SFTPResource, paths: list[str], to: str, *, sub: str = "", error: str = ""
) -> None:
    with sftp.session() as s:
        for path in paths:
            if s.stat(path) is None:
                continue
            target = moved_path(path, to)
            if sub:
                head, tail = posixpath.split(target)
                target = posixpath.join(head, sub, tail)
            s.makedirs(posixpath.dirname(target))
            s.rename(path, target)
            if error:
                s.write_bytes(target + ".error.txt", (error + "\n").encode())


registry_load_job = define_asset_job(
    REGISTRY_JOB, selection=[numbering_plan_registry], tags={"numbase/kind": "registry"}
)
