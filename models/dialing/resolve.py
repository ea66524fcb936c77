"""A number's time zone, in stages, most certain first (docs/dialing-rules.md):

1. ``geo``: the number's geo row names a real IANA zone (set by hand: it wins);
2. ``registry``: its national number lies in a numbering-plan range whose region has one zone;
3. ``libphonenumber``: libphonenumber gives exactly one zone (Russian fixed lines, most foreign
   countries);
4. ``ambiguous``: several candidate zones (a registry region spanning zones, or libphonenumber's
   country-wide list, e.g. every +7 mobile outside the registry) — kept as a
   ``timezone_set_id`` (models/dialing/zonesets.py), ``timezone`` stays NULL;
5. ``unknown``: nothing.

Region and operator come from the registry range whatever stage decides the zone.

The lookup is vectorised: the current registry is held as sorted numpy arrays (cached per
registry load) and a whole chunk is matched with one ``searchsorted``; libphonenumber answers
are memoised by number prefix. The result per number is a ready COPY fragment, so the bulk loader
writes it into its staging table and its one INSERT joins ``numbering_ranges`` by id.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import phonenumbers
import psycopg
from phonenumbers import tzdata as pn_tzdata

from models.dialing.zonesets import normalised, set_id

_UNKNOWN_ZONE = "Etc/Unknown"
# Columns the resolution adds to a staging table, in COPY order.
_NULL = "\\N"  # COPY text's NULL
STAGE_COLUMNS = ("range_id", "tz", "tz_source", "tz_set_id")
STAGE_COLUMN_DDL = "range_id bigint, tz text, tz_source text, tz_set_id bigint"


def _fragment_text(range_id: int | None, zones: tuple[str, ...] | None, source_one: str) -> str:
    """The four stage fields (tab-separated COPY text) for a number with these zones."""
    rid = "\\N" if range_id is None else str(range_id)
    if not zones:
        return f"{rid}\t\\N\tunknown\t\\N"
    if len(zones) == 1:
        return f"{rid}\t{zones[0]}\t{source_one}\t\\N"
    return f"{rid}\t\\N\tambiguous\t{set_id(zones)}"


# Cached, so a million rows share a handful of strings.
_fragment = lru_cache(maxsize=65_536)(_fragment_text)


@lru_cache(maxsize=4096)
def is_zone(name: str | None) -> bool:
    """Whether `name` is an IANA zone this machine knows (geo rows are free text)."""
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


# Memo of libphonenumber's number-type decision (unknown / country-wide / geographic); the zone
# itself is then a plain prefix-table lookup. The memo key is as many leading characters as
# libphonenumber's type patterns look at: Russian ranges (+7 3/4/8/9) are typed by their first
# 3 national digits (key '+7' + 4 digits), Kazakh ones (+7 6/7) by up to 5 (key '+7' + 6).
# Elsewhere the type can depend on every digit (e.g. Indonesia), so the key is the whole
# number: exact, at libphonenumber's own speed (~75k/s) for the foreign minority.
# tests/dialing/test_timezones.py sweeps random numbers against libphonenumber itself.
_KIND_KEY_CHARS = {"+73": 6, "+74": 6, "+78": 6, "+79": 6, "+7": 8}
_KIND_MEMO: dict[tuple[str, int], tuple[str, ...] | None] = {}
_KIND_MEMO_MAX = 50_000
_GEOGRAPHIC: tuple[str, ...] | None = None  # memo value meaning "look the prefix up"


def _number_kind(phone: str) -> tuple[str, ...] | None:
    try:
        numobj = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return ()
    ntype = phonenumbers.number_type(numobj)
    if ntype == phonenumbers.PhoneNumberType.UNKNOWN:
        return ()
    if not phonenumbers.is_number_type_geographical(ntype, numobj.country_code):
        return _zones_of_prefix(str(numobj.country_code))
    return _GEOGRAPHIC


def _zones_of_prefix(digits: str) -> tuple[str, ...]:
    data = pn_tzdata.TIMEZONE_DATA
    for n in range(min(pn_tzdata.TIMEZONE_LONGEST_PREFIX, len(digits)), 0, -1):
        zones = data.get(digits[:n])
        if zones is not None:
            return tuple(z for z in zones if z != _UNKNOWN_ZONE)
    return ()


def _memo_kind(phone: str) -> tuple[str, ...] | None:
    """libphonenumber's number-type decision for `phone`, memoised by its key prefix: the zones
    when they do not depend on the rest of the number, else _GEOGRAPHIC."""
    depth = _KIND_KEY_CHARS.get(phone[:3]) or _KIND_KEY_CHARS.get(phone[:2]) or len(phone)
    key = (phone[:depth], len(phone))
    if key in _KIND_MEMO:
        return _KIND_MEMO[key]
    kind = _number_kind(phone)
    if len(_KIND_MEMO) >= _KIND_MEMO_MAX:
        _KIND_MEMO.clear()
    _KIND_MEMO[key] = kind
    return kind


def libphonenumber_zones(phone: str) -> tuple[str, ...]:
    """libphonenumber's zones for an E.164 number, as `time_zones_for_number` gives them, at
    dictionary speed: the number-type decision (which costs a parse) is memoised by prefix."""
    kind = _memo_kind(phone)
    return _zones_of_prefix(phone[1:]) if kind is None else kind


def _tail(zones: tuple[str, ...], sets_seen: dict[int, tuple[str, ...]] | None) -> str:
    """The stage fields after the range id for libphonenumber's `zones`."""
    if len(zones) > 1:
        zones = normalised(zones)
        if sets_seen is not None:
            sets_seen[set_id(zones)] = zones
    return _fragment(None, zones, "libphonenumber")[len(_NULL) :]


# How many national digits of a +7 number libphonenumber's zone table looks at (3 today).
_SEVEN_TZ_DIGITS = max(len(k) for k in pn_tzdata.TIMEZONE_DATA if k.startswith("7")) - 1


def _memo_key_of_national(national: np.ndarray) -> np.ndarray:
    """`_memo_kind`'s key for 12-character +7 numbers, from their national numbers: the first
    4 national digits for +7 3/4/8/9, else the first 6 (offset so the two never collide)."""
    short = np.isin(national // 10**9, (3, 4, 8, 9))
    return np.where(short, national // 10**6, national // 10**4 + 10**7)


@dataclass(frozen=True)
class RangeIndex:
    """The registry in memory: sorted, non-overlapping [starts, ends] of +7 national numbers."""

    load_id: int | None
    starts: np.ndarray
    ends: np.ndarray
    fragments: tuple[str, ...]  # per range: the stage fields when its zones decide
    ids: tuple[int, ...]
    has_zones: np.ndarray  # bool per range
    sets: dict[int, tuple[str, ...]]  # the multi-zone sets of the ranges

    @classmethod
    def empty(cls) -> RangeIndex:
        e = np.empty(0, dtype=np.int64)
        return cls(None, e, e, (), (), np.empty(0, dtype=bool), {})

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def fragment_array(self) -> np.ndarray:
        arr = self.__dict__.get("_fragment_array")
        if arr is None:
            arr = np.array(self.fragments, dtype=object)
            object.__setattr__(self, "_fragment_array", arr)
        return arr

    @property
    def id_text_array(self) -> np.ndarray:
        """The range ids as COPY text, plus NULL last (so position -1 gathers NULL)."""
        arr = self.__dict__.get("_id_text_array")
        if arr is None:
            arr = np.array([*map(str, self.ids), _NULL], dtype=object)
            object.__setattr__(self, "_id_text_array", arr)
        return arr

    def match(self, national: np.ndarray) -> np.ndarray:
        """Per national number (-1 for none), the index of its range, or -1."""
        if not len(self.ids):
            return np.full(len(national), -1, dtype=np.int64)
        # Sorted needles let searchsorted start each search from the last (half the time
        # of random order against a registry-sized table, sort included).
        order = np.argsort(national, kind="stable")
        pos = np.empty(len(national), dtype=np.int64)
        pos[order] = np.searchsorted(self.starts, national[order], side="right") - 1
        safe = np.clip(pos, 0, None)
        hit = (pos >= 0) & (national >= 0) & (national <= self.ends[safe])
        return np.where(hit, pos, -1)


_INDEX_CACHE: dict[tuple[Any, ...], RangeIndex] = {}


def current_index(conn: psycopg.Connection[Any]) -> RangeIndex:
    """The current registry as a RangeIndex, cached per registry load.

    Reading `numbering_ranges` here takes its ACCESS SHARE lock until the caller's transaction
    ends, so a registry swap (TRUNCATE) waits and the range ids stay valid for the caller's
    INSERT."""
    row = conn.execute(
        "SELECT r.load_id, l.loaded_at FROM numbering_ranges r "
        "JOIN registry_loads l ON l.id = r.load_id LIMIT 1"
    ).fetchone()
    if row is None:
        return RangeIndex.empty()
    load_id = int(row[0])
    # The load's time too: ids restart after a TRUNCATE ... RESTART IDENTITY (tests, restores).
    key = (f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}", load_id, row[1])
    cached = _INDEX_CACHE.get(key)
    if cached is not None:
        return cached
    # Zones as one text (IANA names have no commas): a registry has a few hundred distinct
    # zone lists, so each is parsed and formatted once (1.3-2.2 s -> 0.86 s for 392k ranges).
    rows = conn.execute(
        "SELECT id, range_from, range_to, array_to_string(zones, ',') FROM numbering_ranges "
        "WHERE country = '7' ORDER BY range_from"
    ).fetchall()
    by_text: dict[str | None, tuple[tuple[str, ...] | None, str]] = {}
    for text in {r[3] for r in rows}:
        zones = _zones(text.split(",")) if text else None
        by_text[text] = (zones, _fragment_text(None, zones, "registry")[len(_NULL) :])
    index = RangeIndex(
        load_id=load_id,
        starts=np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
        ends=np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)),
        fragments=tuple([f"{r[0]}{by_text[r[3]][1]}" for r in rows]),
        ids=tuple([r[0] for r in rows]),
        has_zones=np.fromiter((bool(r[3]) for r in rows), dtype=bool, count=len(rows)),
        sets={set_id(z): z for z, _ in by_text.values() if z and len(z) > 1},
    )
    _INDEX_CACHE.clear()  # one registry is current at a time
    _INDEX_CACHE[key] = index
    return index


def _zones(zones: Sequence[str] | None) -> tuple[str, ...] | None:
    if not zones:
        return None
    return (zones[0],) if len(zones) == 1 else normalised(zones)


_POW10 = 10 ** np.arange(9, -1, -1, dtype=np.int64)


def national_numbers(phones: Sequence[str | None]) -> np.ndarray:
    """+7 national numbers as int64 (10 digits after +7), -1 for anything else."""
    if phones:
        # Vectorised (2.4x the comprehension): the characters as a fixed-width code array.
        # One more column than '+7' + 10 digits, so a longer string is seen, not truncated.
        # None (the loader's invalid rows) reads as '' (-1, like the comprehension).
        text = phones if None not in phones else [p or "" for p in phones]
        codes = np.array(text, dtype="U13").view(np.uint32).reshape(len(phones), 13)
        digits = codes[:, 2:12].astype(np.int64) - 48
        plus7 = (codes[:, 0] == 43) & (codes[:, 1] == 55) & (codes[:, 12] == 0)
        ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
        if bool((ok | ~plus7 | (codes[:, 11] == 0)).all()):  # else: int()'s own rules, below
            return np.where(plus7 & ok, digits @ _POW10, -1)
    return np.array(
        [int(p[2:]) if p and p[:2] == "+7" and len(p) == 12 else -1 for p in phones],
        dtype=np.int64,
    )


def stage_fragments(
    phones: Sequence[str | None],
    index: RangeIndex,
    geo_zone: str | None = None,
    sets_seen: dict[int, tuple[str, ...]] | None = None,
) -> list[str]:
    """Per normalised phone (None: skipped, ''), its four stage fields as COPY text.
    Candidate sets met are added to `sets_seen` (for `zonesets.ensure_sets`)."""
    if sets_seen is not None:
        sets_seen.update(index.sets)
    national = national_numbers(phones)
    pos = index.match(national)
    n = len(phones)
    if geo_zone is not None:
        ids = index.ids
        rids = [str(ids[i]) if i >= 0 else _NULL for i in pos.tolist()]
        tail = f"\t{geo_zone}\tgeo\t{_NULL}"
        return ["" if not p else r + tail for p, r in zip(phones, rids, strict=True)]
    # Registry hits with zones: one numpy gather of ready-made fragments.
    decided = pos >= 0
    if len(index.ids):
        decided &= index.has_zones[np.clip(pos, 0, None)]
        out = index.fragment_array[np.where(decided, pos, 0)]
    else:
        out = np.full(n, "", dtype=object)
    undecided = np.flatnonzero(~decided)
    rest = undecided
    plus7 = undecided[national[undecided] >= 0]
    if len(plus7):
        # +7 numbers outside a zoned range: libphonenumber's answer for most of them (every
        # mobile) depends only on the memo key, so it is taken once per key and joined to the
        # range id in numpy; geographic ones (fixed lines) are grouped next.
        keys, first, inverse = np.unique(
            _memo_key_of_national(national[plus7]), return_index=True, return_inverse=True
        )
        tails = np.empty(len(keys), dtype=object)
        by_key = np.zeros(len(keys), dtype=bool)
        for j, k in enumerate(first.tolist()):
            zones = _memo_kind(phones[int(plus7[k])])  # type: ignore[arg-type]  # +7: a str
            if zones is not _GEOGRAPHIC:
                tails[j], by_key[j] = _tail(zones, sets_seen), True
        grouped = by_key[inverse]
        chosen = plus7[grouped]
        out[chosen] = index.id_text_array[pos[chosen]] + tails[inverse[grouped]]
        # Geographic +7 numbers: libphonenumber's prefix table for +7 is at most
        # _SEVEN_TZ_DIGITS national digits deep, so one answer per such prefix is exact.
        geographic = plus7[~grouped]
        if len(geographic):
            keys, first, inverse = np.unique(
                national[geographic] // 10 ** (10 - _SEVEN_TZ_DIGITS),
                return_index=True,
                return_inverse=True,
            )
            tails = np.array(
                [
                    _tail(_zones_of_prefix(phones[int(geographic[k])][1:]), sets_seen)  # type: ignore[index]
                    for k in first.tolist()
                ],
                dtype=object,
            )
            out[geographic] = index.id_text_array[pos[geographic]] + tails[inverse]
        rest = undecided[national[undecided] < 0]
    ids = index.ids
    positions = pos[rest].tolist()
    for k, i in zip(rest.tolist(), positions, strict=True):  # not +7: per number, memoised
        phone = phones[k]
        if not phone:
            out[k] = ""
            continue
        zones = libphonenumber_zones(phone)
        if len(zones) > 1:
            zones = normalised(zones)
            if sets_seen is not None:
                sets_seen[set_id(zones)] = zones
        out[k] = _fragment(ids[i] if i >= 0 else None, zones, "libphonenumber")
    return out.tolist()


@dataclass(frozen=True)
class Resolution:
    """One number's answer, for single-number paths and tests."""

    timezone: str | None
    source: str
    set_id: int | None
    candidates: tuple[str, ...] | None
    range_id: int | None


def resolve_one(phone: str, index: RangeIndex, geo_zone: str | None = None) -> Resolution:
    seen: dict[int, tuple[str, ...]] = {}
    rid, tz, source, sid = stage_fragments([phone], index, geo_zone, seen)[0].split("\t")
    set_key = None if sid == "\\N" else int(sid)
    return Resolution(
        timezone=None if tz == "\\N" else tz,
        source=source,
        set_id=set_key,
        candidates=seen[set_key] if set_key is not None else None,
        range_id=None if rid == "\\N" else int(rid),
    )


def geo_zone(conn: psycopg.Connection[Any], geo_id: int | None) -> str | None:
    """The geo row's zone when it names a real IANA zone (else the later stages decide)."""
    if geo_id is None:
        return None
    row = conn.execute("SELECT timezone FROM geo WHERE id = %s", (geo_id,)).fetchone()
    zone = row[0] if row else None
    return zone if is_zone(zone) else None


def columns_for(conn: psycopg.Connection[Any], phone: str, geo_id: int | None) -> dict[str, Any]:
    """The dialing columns of one number about to be inserted (the single-number paths)."""
    seen: dict[int, tuple[str, ...]] = {}
    frag = stage_fragments([phone], current_index(conn), geo_zone(conn, geo_id), seen)[0]
    rid, tz, source, sid = frag.split("\t")
    from models.dialing.zonesets import ensure_sets

    ensure_sets(conn, seen)
    region = operator = None
    if rid != "\\N":
        row = conn.execute(
            "SELECT region, operator FROM numbering_ranges WHERE id = %s", (int(rid),)
        ).fetchone()
        if row is not None:
            region, operator = row
    return {
        "timezone": None if tz == "\\N" else tz,
        "timezone_source": source,
        "timezone_set_id": None if sid == "\\N" else int(sid),
        "region": region,
        "operator": operator,
    }


def columns_for_session(session: Any, phone: str, geo_id: int | None) -> dict[str, Any]:
    """`columns_for` inside a SQLAlchemy session's transaction (its psycopg connection)."""
    return columns_for(session.connection().connection.driver_connection, phone, geo_id)
