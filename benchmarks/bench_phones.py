"""Throughput of phone normalisation: ``python benchmarks/bench_phones.py [--n 1000000]``.

Generates a deterministic mix of messy numbers (~5 % garbage) and times
``normalize_many`` (best of 3) against the per-number ``normalize_phone`` loop and
``phonenumbers.parse`` + ``format_number`` on smaller samples.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import phonenumbers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from models.phones import InvalidPhone, normalize_many, normalize_phone  # noqa: E402

GARBAGE_SHARE = 0.05


def _ru_formats(d: str) -> list[object]:
    """One Russian NSN (10 digits) rendered the ways call-center bases carry it."""
    a, b, c, e = d[:3], d[3:6], d[6:8], d[8:]
    return [
        f"8 ({a}) {b}-{c}-{e}",
        f"+7 {a} {b} {c} {e}",
        f"7{d}",
        d,
        f"8-{a}-{b}-{c}-{e}",
        f"7{d}.0",  # CSV export of a float column
        float(f"7{d}"),  # spreadsheet cell
        int(f"7{d}"),
        f"+7({a}){b}-{c}-{e}",
        f"8\u00a0{a}\u00a0{b}\u00a0{c}\u00a0{e}",
        f"8{d}",
        f"007{d}",
    ]


def _garbage(rng: random.Random, d: str) -> object:
    choices: list[object] = [
        "",
        None,
        float("nan"),
        f"8{d}1",  # too many digits
        d[:6],  # too few digits
        f"++7{d}",
        f"8 {d[:3]} abc {d[3:]}",
        "n/a",
        f"+999{d}",  # unknown country code
        f"{d[:5]}x{d[5:]}",
    ]
    return rng.choice(choices)


def generate(n: int, seed: int = 20240601) -> list[object]:
    rng = random.Random(seed)
    out: list[object] = []
    for _ in range(n):
        d = str(rng.randint(9_000_000_000, 9_999_999_999))
        r = rng.random()
        if r < GARBAGE_SHARE:
            out.append(_garbage(rng, d))
        elif r < GARBAGE_SHARE + 0.02:
            out.append(rng.choice([f"+44 20 {d[:4]} {d[4:8]}", f"+1 (212) 555-{d[:4]}"]))
        elif r < GARBAGE_SHARE + 0.03:
            out.append(f"7.{d}E10")
        else:
            out.append(rng.choice(_ru_formats(d)))
    return out


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def per_number(values: list[object]) -> list[str | None]:
    out: list[str | None] = []
    for v in values:
        try:
            out.append(normalize_phone(v))  # type: ignore[arg-type]
        except InvalidPhone:
            out.append(None)
    return out


def with_phonenumbers(values: list[object]) -> list[str | None]:
    out: list[str | None] = []
    e164 = phonenumbers.PhoneNumberFormat.E164
    for v in values:
        try:
            parsed = phonenumbers.parse(str(v), "RU")
            out.append(phonenumbers.format_number(parsed, e164))
        except phonenumbers.NumberParseException:
            out.append(None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="numbers for normalize_many")
    args = parser.parse_args()

    values = generate(args.n)
    normalize_many(values[:1000])  # build the metadata tables outside the timing

    bulk = best_of(lambda: normalize_many(values))
    bulk_rate = args.n / bulk
    valid, reasons = normalize_many(values)
    bad = sum(r is not None for r in reasons)
    print(f"python {sys.version.split()[0]}, phonenumbers {phonenumbers.__version__}")
    print(f"input: {args.n:,} numbers, {bad / args.n:.1%} rejected")
    print(f"normalize_many          {bulk:8.3f} s  {bulk_rate:>12,.0f} numbers/s")

    loop_n = min(100_000, args.n)
    loop = best_of(lambda: per_number(values[:loop_n]))
    loop_rate = loop_n / loop
    print(
        f"normalize_phone loop    {loop:8.3f} s  {loop_rate:>12,.0f} numbers/s"
        f"  ({loop_n:,} sample; bulk is {bulk_rate / loop_rate:.1f}x)"
    )

    pn_n = min(20_000, args.n)
    pn = best_of(lambda: with_phonenumbers(values[:pn_n]))
    pn_rate = pn_n / pn
    print(
        f"phonenumbers parse+fmt  {pn:8.3f} s  {pn_rate:>12,.0f} numbers/s"
        f"  ({pn_n:,} sample; bulk is {bulk_rate / pn_rate:.1f}x)"
    )
    # Sanity check, not a benchmark: where both produce a number, do they match? Floats,
    # "E10" text and the "00" prefix are left out: phonenumbers misreads them under RU
    # (it appends ".0" digits and only knows 810 as Russia's international prefix).
    ours, theirs = valid[:pn_n], with_phonenumbers(values[:pn_n])
    plain = [
        (a, b)
        for v, a, b in zip(values[:pn_n], ours, theirs, strict=True)
        if a and b and isinstance(v, str) and "." not in v and "E" not in v and v[:2] != "00"
    ]
    same = sum(a == b for a, b in plain)
    print(f"same result as phonenumbers on plain formats: {same:,}/{len(plain):,}")


if __name__ == "__main__":
    main()
