"""When a delivered file is whole, and what identifies it.

Whole: a text file (CSV/TSV) ends with a line terminator - a stalled or cut upload almost always
stops mid-line, and a prefix that happens to end on a line break is caught by the settle time;
an XLSX (zip) file carries its end-of-central-directory record, which a zip writer puts last;
an XLS (OLE) file cannot be judged cheaply and relies on the settle time. A vendor who writes a
done-marker (`<file>.done`, models/sftp_layout.py) says the file is whole, and then none of this
is needed. Identity: the sha256 of the bytes, not name + size + mtime.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

ZIP_MAGIC = b"PK\x03\x04"
ZIP_END = b"PK\x05\x06"  # end of central directory (22 bytes + a comment of up to 64 KiB)
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
HEAD_BYTES = 8
ZIP_TAIL_BYTES = 22 + 65_535


def tail_bytes_needed(head: bytes) -> int:
    """How much of the file's end `incomplete_reason` must see."""
    return ZIP_TAIL_BYTES if head.startswith(ZIP_MAGIC) else 1


def incomplete_reason(head: bytes, tail: bytes, size: int) -> str | None:
    """Why a file of `size` bytes starting with `head` and ending with `tail` is not whole."""
    if size == 0 or head.startswith(OLE_MAGIC):
        return None  # an empty file is refused by the parser with its own reason
    if head.startswith(ZIP_MAGIC):
        if ZIP_END in tail:
            return None
        return "the XLSX file ends before its zip directory: it is truncated (upload incomplete)"
    if tail[-1:] in (b"\n", b"\r"):
        return None
    return (
        "the last line has no line terminator: the file is truncated (upload incomplete); "
        "numbase never imports part of a file"
    )


def local_incomplete_reason(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
        fh.seek(max(0, size - tail_bytes_needed(head)))
        return incomplete_reason(head, fh.read(), size)


def sha256_of(blocks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    with path.open("rb") as fh:
        return sha256_of(iter(lambda: fh.read(block), b""))
