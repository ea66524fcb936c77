"""Throughput of the time-zone lookup alone (no database): ``python benchmarks/bench_timezones.py
[--n 1000000] [--ranges 400000]``.

Builds a synthetic registry shaped like the real one (`--ranges` non-overlapping DEF/ABC
ranges with one-zone, multi-zone and unmapped regions), a deterministic mix of numbers (97 %
+7 9xx, 2 % +7 fixed lines outside the registry, 1 % foreign), and times
`stage_fragments` (the function the bulk loader and the back-fill call per chunk) in chunks of
50,000, best of 5, interleaved with a physical baseline: a plain numpy `searchsorted` of
the same numbers (already int64) over the same range starts. Goal: >= 1,000,000 numbers/s
(issue 14). Numbers outside +7 cost one libphonenumber parse per distinct number (~75k/s:
their number type can depend on every digit), so the foreign share drives the rate. The
loader's end-to-end cost with the lookup on is measured by `benchmarks/bench_dialing.py`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from models.dialing.resolve import (  # noqa: E402
    RangeIndex,
    _fragment_text,
    national_numbers,
    stage_fragments,
)
from models.dialing.zonesets import normalised, set_id  # noqa: E402

ZONES = [("Europe/Moscow",), ("Asia/Yekaterinburg",), ("Asia/Novosibirsk",),
         normalised(("Asia/Yakutsk", "Asia/Khandyga", "Asia/Ust-Nera")), None]  # fmt: skip
CHUNK = 50_000


def synthetic_registry(n_ranges: int, rng: random.Random) -> RangeIndex:
    """`n_ranges` ranges tiling 900 0000000 .. 999 9999999 with random widths."""
    span = 10**9
    cuts = sorted(rng.sample(range(1, span), n_ranges - 1))
    starts = np.array([0, *cuts], dtype=np.int64) + 9 * 10**9
    ends = np.append(starts[1:] - 1, 9 * 10**9 + span - 1)
    zones = [ZONES[rng.randrange(len(ZONES))] for _ in range(n_ranges)]
    return RangeIndex(
        load_id=1,
        starts=starts,
        ends=ends,
        fragments=tuple(_fragment_text(i, z, "registry") for i, z in enumerate(zones)),
        ids=tuple(range(n_ranges)),
        has_zones=np.array([z is not None for z in zones]),
        sets={set_id(z): z for z in zones if z and len(z) > 1},
    )


def numbers(n: int, rng: random.Random) -> list[str]:
    out = []
    foreign = ["+1312555", "+4420794", "+4915112", "+3361234"]
    for _ in range(n):
        r = rng.random()
        if r < 0.97:
            out.append(f"+79{rng.randrange(10**9):09d}")
        elif r < 0.99:
            out.append(f"+74{rng.randrange(10**9):09d}")
        else:
            out.append(rng.choice(foreign) + f"{rng.randrange(10**4):04d}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--ranges", type=int, default=400_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; best counts")
    args = parser.parse_args()
    rng = random.Random(14)
    index = synthetic_registry(args.ranges, rng)
    phones = numbers(args.n, rng)
    stage_fragments(phones[:CHUNK], index, None, {})  # warm-up: libphonenumber metadata
    # Physical baseline, same arrays: the national numbers already int64, one plain
    # searchsorted per chunk (no string parsing, no end check, no fragments).
    national = national_numbers(phones)
    chunks = [phones[lo : lo + CHUNK] for lo in range(0, len(phones), CHUNK)]
    nat_chunks = [national[lo : lo + CHUNK] for lo in range(0, len(phones), CHUNK)]
    best = base_best = float("inf")
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        started = time.perf_counter()
        seen: dict[int, tuple[str, ...]] = {}
        for chunk in chunks:
            stage_fragments(chunk, index, None, seen)
        best = min(best, time.perf_counter() - started)
        started = time.perf_counter()
        for nat in nat_chunks:
            np.searchsorted(index.starts, nat, side="right")
        base_best = min(base_best, time.perf_counter() - started)
    rate, base_rate = args.n / best, args.n / base_best
    print(f"lookup: {args.n:,} numbers against {args.ranges:,} ranges in {best:.3f} s "
          f"= {rate:,.0f} numbers/s (best of {args.repeat}; aim >= 1,000,000)")  # fmt: skip
    print(f"baseline, plain numpy searchsorted of the same int64 numbers: {base_best:.3f} s "
          f"= {base_rate:,.0f} numbers/s")  # fmt: skip
    print(f"ratio lookup : searchsorted = {rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
