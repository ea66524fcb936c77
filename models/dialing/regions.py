"""Registry region names -> the federal subject's name and IANA zone(s), from `regions.json`.

The registry spells one subject many ways ("Республика Саха /Якутия/", "Ханты - Мансийский -
Югра АО", "Москва и Московская обл."), so names are compared as a *set of significant words*:
case, ё/е, punctuation, word order and generic words ("г.", "область", "республика", "АО")
do not count. A name the curated table does not know, made of parts it does know
("X и Y", "X|Y"), maps to the union of the parts' zones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

# Words that say what kind of subject it is, not which one.
_GENERIC = frozenset(
    {
        "г", "гор", "город", "обл", "область", "республика", "респ", "край", "автономный",
        "автономная", "авт", "округ", "ао", "аобл", "федерального", "значения", "народная",
    }
)  # fmt: skip
_NON_WORD = re.compile(r"[^0-9a-zа-я]+")
_PARTS = re.compile(r"\s+и\s+|[|;,]", re.IGNORECASE)


@dataclass(frozen=True)
class Subject:
    name: str
    zones: tuple[str, ...]


def _key(name: str) -> frozenset[str]:
    words = _NON_WORD.sub(" ", name.lower().replace("ё", "е")).split()
    return frozenset(w for w in words if w not in _GENERIC)


@cache
def _table() -> dict[frozenset[str], Subject]:
    data = json.loads(resources.files("models.dialing").joinpath("regions.json").read_text("utf-8"))
    table: dict[frozenset[str], Subject] = {}
    for entry in data["subjects"]:
        subject = Subject(entry["name"], tuple(entry["zones"]))
        for spelling in (entry["name"], *entry["aliases"]):
            key = _key(spelling)
            other = table.get(key)
            if other is not None and other != subject:
                raise ValueError(f"regions.json: {spelling!r} matches both {other.name!r} and "
                                 f"{subject.name!r}")  # fmt: skip
            table[key] = subject
    return table


def subjects() -> list[Subject]:
    """Every distinct subject of the table (combined entries like "Москва и ..." included)."""
    return sorted(set(_table().values()), key=lambda s: s.name)


def match_region(name: str | None) -> Subject | None:
    """The subject a registry region name means, or None when the table cannot tell."""
    if not name or not name.strip():
        return None
    table = _table()
    found = table.get(_key(name))
    if found is not None:
        return found
    parts = [p for p in _PARTS.split(name) if p.strip()]
    if len(parts) < 2:
        return None
    matched = [table.get(_key(p)) for p in parts]
    if any(m is None for m in matched):
        return None
    zones: list[str] = []
    for m in matched:
        assert m is not None
        zones.extend(z for z in m.zones if z not in zones)
    return Subject(name.strip(), tuple(zones))
