"""The SFTP folder layout: where deliveries land, where they go, and what the files are named.

Every path is relative to the SFTP root:

    inbox/<project code>/<file>                     numbers for that project
    inbox/<project code>/<provider code>/<file>     ... delivered by that provider
    inbox/.../<file>.done                           optional done-marker: <file> is complete
    processed/<same place>/<file>                   imported (a later one: <stem>.job<id>.<ext>)
    rejected/<same place>/<file>                    refused, with <file>.error.txt beside it
    rejected/<same place>/<file>.job<id>.rejects.csv  the rows an import dropped, and why
    outbox/<project code>/<name>.csv                exports (one project never sees another's)

The API (export names, import path checks), the sensors and the assets all use this module, so
the layout is decided in one place. Path functions are pure; the few that move files take any
object with the `stat / makedirs / rename / write_bytes` methods of the SFTP session.
"""

from __future__ import annotations

import posixpath
import re
import time
from typing import Any, Protocol

INBOX = "inbox"
PROCESSED = "processed"
REJECTED = "rejected"
OUTBOX = "outbox"
MAX_DEPTH = 3  # inbox/<project>/<provider>/<file>
TEMP_SUFFIXES = (".part", ".tmp", ".filepart", ".crdownload", "~")
DONE_SUFFIX = ".done"


class InboxMappingError(ValueError):
    """A path that does not follow the inbox convention (the reason is vendor-readable)."""


class MovingSession(Protocol):
    def stat(self, path: str) -> Any: ...
    def makedirs(self, path: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def write_bytes(self, remote: str, data: bytes) -> None: ...


def is_temporary(name: str) -> bool:
    """A name an upload is still using (or a hidden file): never a delivery."""
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


def is_done_marker(name: str) -> bool:
    return name.lower().endswith(DONE_SUFFIX)


def done_marker(path: str) -> str:
    """The done-marker of a data file: `<file>.done` next to it."""
    return path + DONE_SUFFIX


def parse_inbox_path(path: str) -> tuple[str, str | None]:
    """inbox/<project>[/<provider>]/<file> -> (project code, provider code or None)."""
    parts = path.split("/")
    if parts[0] != INBOX or len(parts) < 3:
        raise InboxMappingError(
            "files go into inbox/<project code>/ or inbox/<project code>/<provider code>/, "
            "not directly into inbox/"
        )
    if len(parts) > MAX_DEPTH + 1:
        raise InboxMappingError(
            "too deep: use inbox/<project code>/<file> or "
            "inbox/<project code>/<provider code>/<file>"
        )
    return parts[1], (parts[2] if len(parts) == 4 else None)


def moved_path(path: str, to: str) -> str:
    """inbox/a/b.csv -> <to>/a/b.csv (a path outside inbox/ keeps its whole path)."""
    rel = path[len(INBOX) + 1 :] if path.startswith(INBOX + "/") else path
    return f"{to}/{rel}"


def by_job(path: str, job_id: int | str) -> str:
    """a/b.csv -> a/b.job<id>.csv: the name of a later delivery of the same name. A file with
    no job (a do-not-call list, a registry extract) passes a label of its own instead."""
    label = job_id if isinstance(job_id, str) else f"job{job_id}"
    head, tail = posixpath.split(path)
    stem, dot, ext = tail.rpartition(".")
    tail = f"{stem}.{label}.{ext}" if dot and stem else f"{tail}.{label}"
    return posixpath.join(head, tail)


def arrival_label() -> str:
    """The by-job label of a file that has no job: when it was moved (UTC, to the second)."""
    return time.strftime("at%Y%m%dT%H%M%SZ", time.gmtime())


def rejects_report_path(path: str, job_id: int) -> str:
    """rejected/<place>/<file>.job<id>.rejects.csv: one report per job, never overwritten."""
    return f"{moved_path(path, REJECTED)}.job{job_id}.rejects.csv"


def free_target(sftp: MovingSession, target: str, job_id: int | str) -> str:
    """`target`, or its by-job name when an earlier file holds it (never overwrite)."""
    if sftp.stat(target) is None:
        return target
    candidate = by_job(target, job_id)
    n = 2
    while sftp.stat(candidate) is not None:  # the same job rejected/archived twice
        candidate = by_job(target, job_id) + f".{n}"
        n += 1
    return candidate


def _move(sftp: MovingSession, path: str, target: str) -> None:
    sftp.makedirs(posixpath.dirname(target))
    sftp.rename(path, target)


def _move_marker(sftp: MovingSession, path: str, target: str) -> None:
    """The done-marker travels with its file (if there is one)."""
    marker = done_marker(path)
    if sftp.stat(marker) is not None:
        sftp.rename(marker, done_marker(target))


def archive_file(sftp: MovingSession, path: str, job_id: int | str) -> str:
    """Move an imported file (and its marker) to processed/; returns the new path."""
    target = free_target(sftp, moved_path(path, PROCESSED), job_id)
    _move(sftp, path, target)
    _move_marker(sftp, path, target)
    return target


def reject_file(sftp: MovingSession, path: str, reason: str, job_id: int | str) -> str:
    """Move a file (and its marker) to rejected/ with `<new name>.error.txt`; returns the path."""
    target = free_target(sftp, moved_path(path, REJECTED), job_id)
    _move(sftp, path, target)
    _move_marker(sftp, path, target)
    sftp.write_bytes(target + ".error.txt", (reason.rstrip() + "\n").encode())
    return target


def export_stem(requested: object, project_code: str, job_id: int) -> str:
    """A safe file stem: the requested name (sanitised) or <project>-export-<job id>."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(requested or "")).strip("._")[:100]
    stem = stem.removesuffix(".csv")
    return stem or f"{project_code}-export-{job_id}"


def export_path(project_code: str, stem: str) -> str:
    """outbox/<project code>/<stem>.csv: a project's exports live in its own folder."""
    return f"{OUTBOX}/{project_code}/{stem}.csv"


# Do-not-call drop folders (sensors/dnc_inbox.py): inbox/_dnc/<file> (global) and
# inbox/<project code>/_dnc/<file>; the numbering-plan registry (sensors/registry_inbox.py):
# inbox/_registry/<file>. The number-file sensor leaves them alone.
DNC_FOLDER = "_dnc"
REGISTRY_FOLDER = "_registry"


def is_registry_path(path: str) -> bool:
    parts = path.split("/")
    return len(parts) >= 3 and parts[1] == REGISTRY_FOLDER


def is_dnc_path(path: str) -> bool:
    parts = path.split("/")
    return len(parts) >= 3 and (
        parts[1] == DNC_FOLDER or (len(parts) >= 4 and parts[2] == DNC_FOLDER)
    )
