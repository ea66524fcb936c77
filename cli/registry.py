"""`numbase registry load FILE...`: replace the numbering-plan registry from extracts."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg


def load_files(url: str, files: list[str], *, show_progress: bool) -> int:
    from tqdm import tqdm

    from models.dialing.registry import RegistryFormatError, load_registry

    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        print(f"numbase registry load: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    total = sum(Path(f).stat().st_size for f in files)
    done: dict[str, int] = {}
    with tqdm(
        total=total, unit="B", unit_scale=True, disable=not show_progress, file=sys.stderr
    ) as bar:

        def progress(name: str, read: int, _size: int) -> None:
            bar.update(read - done.get(name, 0))
            done[name] = read
            bar.set_postfix_str(name)

        try:
            with psycopg.connect(url, autocommit=True) as conn:
                result = load_registry(conn, files, loaded_by="cli", progress=progress)
        except RegistryFormatError as exc:
            bar.close()
            print(f"numbase registry load: refused, registry unchanged: {exc}", file=sys.stderr)
            return 1
    for f in result.files:
        unmapped = sum(f.unmapped_regions.values())
        print(
            f"{f.file}: {f.ranges} ranges, {f.numbers} numbers ({f.encoding})"
            + (f", {unmapped} ranges in regions without a zone: "
               + "; ".join(sorted(f.unmapped_regions)) if unmapped else "")
        )  # fmt: skip
    print(f"registry load {result.load_id}: {result.ranges} ranges")
    return 0
