"""What the inbox holds and which files a tick should judge (the sensor's pure part).

The cursor remembers, per path, the size and mtime last seen and since when they held still,
and which (size, mtime) a run was requested for; paths that left the inbox are forgotten, so
the cursor stays as small as the inbox.
"""

from __future__ import annotations

import posixpath
import stat
from dataclasses import dataclass
from typing import Any

from models.sftp_layout import INBOX, MAX_DEPTH, done_marker, is_done_marker, is_temporary


@dataclass(frozen=True)
class InboxFile:
    path: str  # relative to the SFTP root: inbox/...
    size: int
    mtime: int

    @property
    def key(self) -> list[int]:
        return [self.size, self.mtime]

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.path)


def list_inbox(sftp: Any) -> tuple[list[InboxFile], set[str]]:
    """(data files, done-marker paths) under inbox/, at most MAX_DEPTH folders down."""
    out: list[InboxFile] = []
    markers: set[str] = set()
    todo = [(INBOX, 0)]
    while todo:
        folder, depth = todo.pop()
        for entry in sftp.listdir_attr(folder):
            name = entry.filename
            if is_temporary(name):
                continue
            path = f"{folder}/{name}"
            if entry.st_mode is not None and stat.S_ISDIR(entry.st_mode):
                if depth < MAX_DEPTH:
                    todo.append((path, depth + 1))
            elif entry.st_mode is None or stat.S_ISREG(entry.st_mode):
                if is_done_marker(name):
                    markers.add(path)
                else:
                    out.append(InboxFile(path, int(entry.st_size or 0), int(entry.st_mtime or 0)))
    return sorted(out, key=lambda f: f.path), markers


def plan_tick(
    cursor: dict[str, Any], files: list[InboxFile], markers: set[str], now: float, settle: float
) -> tuple[list[tuple[InboxFile, bool, float]], list[InboxFile], dict[str, Any]]:
    """Pure part of a tick: ([(file, has marker, still since)] ready to judge, requested files
    still in the inbox, new cursor).

    cursor = {"seen": {path: [size, mtime, still since]}, "requested": {path: [size, mtime]}};
    paths that left the inbox are forgotten, so the cursor stays as small as the inbox.
    """
    seen = cursor.get("seen", {})
    requested = cursor.get("requested", {})
    ready: list[tuple[InboxFile, bool, float]] = []
    lingering: list[InboxFile] = []
    new_seen: dict[str, list[Any]] = {}
    for f in files:
        prev = seen.get(f.path)
        still = prev is not None and prev[:2] == f.key
        since = float(prev[2]) if still and len(prev) > 2 else now
        new_seen[f.path] = [*f.key, since]
        if requested.get(f.path) == f.key:
            lingering.append(f)
            continue
        marked = done_marker(f.path) in markers
        if marked or (still and now - since >= settle):
            ready.append((f, marked, since))
    present = {f.path for f in files}
    new_cursor = {
        "seen": new_seen,
        "requested": {p: k for p, k in requested.items() if p in present},
    }
    return ready, lingering, new_cursor
