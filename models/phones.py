"""Phone-number normalisation to E.164 ("+79161234567").

Two entry points that give identical results for every input:

* ``normalize_phone(raw, region)`` - one number, returns the E.164 string or raises
  ``InvalidPhone`` (a ``ValueError``) whose ``.reason`` says why.
* ``normalize_many(values, region)`` - the bulk path for millions of numbers; returns
  ``(numbers, reasons)``, two lists aligned with the input, ``None`` where not applicable.
  It cleans a whole chunk with one ``str.translate`` over the joined text, settles the
  common shapes with an inlined classifier (slicing and set look-ups), and hands
  everything else - all rejects included - to the code ``normalize_phone`` uses. The
  classifier may only decline, never differ; hypothesis tests hold the two paths equal.

Rules, in order:

1. Input types: ``str``; non-negative ``int``; finite, integral, non-negative ``float``
   (spreadsheets: ``79161234567.0``). ``None``, NaN, ``pandas.NA`` -> "empty". ``bool``
   and other types -> "unsupported type". An ``Unreadable`` (a row its reader could not
   decode) -> its own reason, so the loader reports it with its line like any reject.
2. Separators are deleted: all whitespace (NBSP, thin and zero-width spaces included),
   dashes of every kind, ``( ) [ ] /``, and bidi marks. Nothing left -> "empty".
3. Spreadsheet floats as text: ``"79161234567.0"`` (digits, one dot, only zeros) drops the
   fraction; ``"7.9161234567E10"`` (also ``7,9161234567e+10``, with a leading ``+``) is
   expanded exactly, in text, without going through ``float``. Scientific notation must
   carry every digit: a mantissa that needs zeros appended to reach the exponent
   (``7.91612E+10``: 6 digits for an 11-digit number) is what a spreadsheet *displayed*
   after cutting the digits, and those zeros cannot be told from real ones, so it is
   rejected (``LOST_DIGITS``), never padded. Any other dot is a separator
   (``916.123.45.67``).

   Floats versus text: a ``float`` is a numeric cell (calamine reads XLSX numbers as
   float). Its value is what the workbook stored, and every integer of up to 15 digits is
   exact in binary64, so an integral float is the number, whatever format the cell was
   shown in. Only *text* can be a cut-down rendering, so only text is checked for lost
   digits; ``float("7.91612E+10")`` is never computed here.
4. One leading ``+`` or a leading ``00`` means international form: the digits must start
   with an assigned country calling code (``phonenumbers.COUNTRY_CODE_TO_REGION_CODE``)
   and keep it: ``"+44 20 7946 0958"`` -> ``"+442079460958"``. More than one ``+``, a
   ``+`` elsewhere, letters or other characters are rejected.
5. National form uses the region's country code ``cc``, national (trunk) prefix ``np``
   and national significant number (NSN) lengths, all from phonenumbers metadata, first
   match wins: ``np`` + NSN (``8 916 123-45-67``, GB ``020 7946 0958``), then ``cc`` +
   NSN without the plus (``79161234567``), then a bare NSN (``9161234567``).
   ``national_prefix_for_parsing`` patterns and dialling prefixes other than ``00`` /
   ``+`` (e.g. Russian ``810``) are deliberately not supported.
6. Validation is by length only (no per-range validity): 8-15 digits in total, and the
   NSN length must be one phonenumbers lists as possible for that country code (union
   over the regions sharing it). ``+7`` is pinned to exactly 10 NSN digits.

Reasons (``InvalidPhone.reason`` / the second list): "empty", "contains letters",
"invalid characters", "multiple '+'", "misplaced '+'", "unknown country code",
"too few digits", "too many digits", "invalid length", "not an integer",
"negative number", "not a finite number", "unsupported type", ``LOST_DIGITS``, and
whatever reason an ``Unreadable`` carries.

The metadata tables are built on first use (~50 ms) and cached per region.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata

__all__ = [
    "LOST_DIGITS",
    "InvalidPhone",
    "Unreadable",
    "normalize_many",
    "normalize_phone",
    "phone_metadata",
]

MIN_DIGITS = 8
MAX_DIGITS = 15  # ITU-T E.164

# Reasons are part of the API (stored next to rejected rows, asserted in tests).
EMPTY = "empty"
LETTERS = "contains letters"
BAD_CHARS = "invalid characters"
MULTIPLE_PLUS = "multiple '+'"
MISPLACED_PLUS = "misplaced '+'"
UNKNOWN_CC = "unknown country code"
TOO_FEW = "too few digits"
TOO_MANY = "too many digits"
BAD_LENGTH = "invalid length"
NOT_INTEGER = "not an integer"
NEGATIVE = "negative number"
NOT_FINITE = "not a finite number"
BAD_TYPE = "unsupported type"
LOST_DIGITS = (
    "digits lost to scientific notation: the spreadsheet cut the number; export the column as text"
)

# Country codes are a prefix code (no code is a prefix of another), so the first of the
# 1-, 2-, 3-digit prefixes found here is the country code.
COUNTRY_CODES: frozenset[str] = frozenset(
    str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
)

# NSN lengths forced where phonenumbers is looser than we want (RU/KZ also list 14).
_NSN_LENGTH_OVERRIDES: dict[str, frozenset[int]] = {"7": frozenset({10})}

_SEPARATORS = (
    "-()[]/"
    "\u00ad"  # soft hyphen
    "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"  # dashes and minus signs
    "\u200b\u200c\u200d\u2060\ufeff"  # zero-width characters and BOM
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e"  # bidi marks from copy-pasted numbers
)
_WHITESPACE = "".join(chr(c) for c in range(0x3000 + 1) if chr(c).isspace())
_STRIP_TABLE: dict[int, None] = dict.fromkeys(map(ord, _SEPARATORS + _WHITESPACE))

# Joins a chunk into one string for a single translate(); never deleted by the table.
_JOIN = "\x00"
assert ord(_JOIN) not in _STRIP_TABLE
_CHUNK = 65_536
# Non-ASCII separators frequent enough to keep on the bulk fast path (see _clean_joined).
_COMMON_NON_ASCII = "\u00a0\u202f\u2009\u2007\u2010\u2011\u2013\u2014\u2212\ufeff\u200b\u200e\u200f"
assert all(ord(c) in _STRIP_TABLE for c in _COMMON_NON_ASCII)

_HUGE_INT = 10**40  # far beyond 15 digits; rejected before str()

_FLOAT_TEXT = re.compile(r"([0-9]+)\.0+")
# An optional leading '+', the mantissa (dot or comma decimal), the exponent. A '-' in the
# exponent is gone by now (dashes are separators): no phone number has one anyway.
_SCI_TEXT = re.compile(r"(\+?)([0-9]+)(?:[.,]([0-9]*))?[eE]\+?([0-9]{1,3})")


class InvalidPhone(ValueError):
    """The value is not a phone number we can normalise; ``reason`` says why."""

    def __init__(self, reason: str, value: object = None) -> None:
        super().__init__(f"invalid phone number {_short_repr(value)}: {reason}")
        self.reason = reason
        self.value = value


class Unreadable:
    """A row its reader could not read (NUL byte, undecodable bytes, an over-long cell).

    Stands in for the phone value, so the row is rejected alone, with its line and
    ``reason``, by the same loader path as any invalid number; ``str()`` is the printable
    raw text shown in reject reports.
    """

    __slots__ = ("raw", "reason")

    def __init__(self, reason: str, raw: str = "") -> None:
        self.reason = reason
        self.raw = raw

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"Unreadable({self.reason!r}, {self.raw!r})"


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # int too large for str()
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


# --- metadata tables (built lazily: loading all regions takes ~50 ms) -----------------


@cache
def _cc_nsn_lengths() -> dict[str, frozenset[int]]:
    """Country code -> possible NSN lengths that also keep the total within 8-15."""
    out: dict[str, frozenset[int]] = {}
    for cc_int, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        cc = str(cc_int)
        lengths: set[int] = set()
        for region in regions:
            meta = PhoneMetadata.metadata_for_region_or_calling_code(cc_int, region)
            if meta is not None and meta.general_desc is not None:
                lengths.update(meta.general_desc.possible_length or ())
        if cc in _NSN_LENGTH_OVERRIDES:
            lengths &= _NSN_LENGTH_OVERRIDES[cc]
        out[cc] = frozenset(n for n in lengths if MIN_DIGITS <= len(cc) + n <= MAX_DIGITS)
    return out


@cache
def _intl_table() -> dict[str, frozenset[int]]:
    """First three E.164 digits -> allowed total digit counts: one look-up per number."""
    table: dict[str, frozenset[int]] = {}
    for cc, lengths in _cc_nsn_lengths().items():
        totals = frozenset(len(cc) + n for n in lengths)
        width = 3 - len(cc)
        for tail in range(10**width):
            table[cc + (str(tail).zfill(width) if width else "")] = totals
    return table


@dataclass(frozen=True, slots=True)
class _Region:
    region: str
    cc: str
    national_prefix: str  # "" when the region has none
    lengths: frozenset[int]  # NSN lengths accepted for national input
    fast: Callable[[str], str | None]  # see _make_fast


def _national(digits: str, cc: str, prefix: str, lengths: frozenset[int]) -> str | None:
    """National-form digits -> E.164, or None. Shared by both paths (rule 5)."""
    n = len(digits)
    if prefix and n - len(prefix) in lengths and digits.startswith(prefix):
        return "+" + cc + digits[len(prefix) :]
    if n - len(cc) in lengths and digits.startswith(cc):
        return "+" + digits
    if n in lengths:
        return "+" + cc + digits
    return None


@cache
def _rules(region: str) -> _Region:
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None:
        raise ValueError(f"unknown region {region!r}")
    cc = str(meta.country_code)
    prefix = meta.national_prefix or ""
    cc_lengths = _cc_nsn_lengths()[cc]
    lengths = frozenset(set(meta.general_desc.possible_length or ()) & cc_lengths)
    return _Region(region, cc, prefix, lengths, _make_fast(cc, prefix, lengths))


def _make_fast(cc: str, prefix: str, lengths: frozenset[int]) -> Callable[[str], str | None]:
    """Bulk-path classifier: the common shapes of rules 3-6 inlined for speed.

    Takes cleaned ASCII text (normalize_many guarantees both) and returns the E.164 form,
    or None to send the value to ``_explain``. It must never return a value ``_explain``
    would not; the hypothesis tests check that.
    """
    intl = _intl_table()
    empty: frozenset[int] = frozenset()
    pcc, lnp, lcc = "+" + cc, len(prefix), len(cc)
    # Rule 5 as set membership on the whole length instead of subtracting each time.
    np_lengths = frozenset(n + lnp for n in lengths) if prefix else empty
    cc_lengths = frozenset(n + lcc for n in lengths)

    def fast(s: str) -> str | None:
        if s.isdigit():
            n = len(s)
            if s[0] == "0" and s[1:2] == "0":
                return "+" + s[2:] if n - 2 in intl.get(s[2:5], empty) else None
            if n in np_lengths and s[:lnp] == prefix:
                return pcc + s[lnp:]
            if n in cc_lengths and s[:lcc] == cc:
                return "+" + s
            if n in lengths:
                return pcc + s
            return None
        if s[:1] == "+":
            return s if len(s) - 1 in intl.get(s[1:4], empty) and s[1:].isdigit() else None
        if s[-2:] == ".0" and s[:-2].isdigit():  # spreadsheet float as text
            return fast(s[:-2])
        return None

    return fast


def _region(region: str) -> _Region:
    return _rules(region.upper())


# --- the full (explaining) path -------------------------------------------------------


def _to_text(value: object) -> tuple[str | None, str | None]:
    """Input value -> (text, None) or (None, reason). Rule 1."""
    if type(value) is str:
        return value, None
    if value is None:
        return None, EMPTY
    if type(value) is Unreadable:
        return None, value.reason
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None, BAD_TYPE
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas missing values
        return None, EMPTY
    if isinstance(value, numbers.Integral):
        as_int = int(value)
        if as_int < 0:
            return None, NEGATIVE
        # str() of a huge int is slow and raises past 4300 digits.
        return (str(as_int), None) if as_int < _HUGE_INT else (None, TOO_MANY)
    if isinstance(value, float | numbers.Real):
        f = float(value)
        if math.isnan(f):
            return None, EMPTY
        if math.isinf(f):
            return None, NOT_FINITE
        if not f.is_integer():
            return None, NOT_INTEGER
        if f < 0:
            return None, NEGATIVE
        return str(int(f)), None
    if isinstance(value, str):  # str subclasses
        return str(value), None
    return None, BAD_TYPE


def _expand_scientific(m: re.Match[str]) -> tuple[str | None, str | None]:
    """'7.9161234567E10' -> '79161234567', exactly, in text (floats would round).

    Refuses (LOST_DIGITS) a mantissa that would need zeros appended: see rule 3.
    """
    sign, whole, frac, exp = m[1], m[2], m[3] or "", int(m[4])
    digits = whole + frac
    point = len(whole) + exp  # the decimal point's position in `digits` after shifting
    if point > len(digits):
        return None, LOST_DIGITS
    if digits[point:].strip("0"):
        return None, NOT_INTEGER
    return sign + digits[:point], None


def _explain_intl(d: str) -> tuple[str | None, str | None]:
    totals = _intl_table().get(d[:3], frozenset())
    if len(d) in totals:
        return "+" + d, None
    cc = next((d[:k] for k in (1, 2, 3) if d[:k] in COUNTRY_CODES), None)
    if not d:
        return None, TOO_FEW
    if cc is None:
        return None, UNKNOWN_CC
    if len(d) < MIN_DIGITS:
        return None, TOO_FEW
    if len(d) > MAX_DIGITS:
        return None, TOO_MANY
    return None, _length_reason(len(d) - len(cc), _cc_nsn_lengths()[cc])


def _length_reason(n: int, lengths: frozenset[int]) -> str:
    if not lengths:
        return BAD_LENGTH
    if n < min(lengths):
        return TOO_FEW
    if n > max(lengths):
        return TOO_MANY
    return BAD_LENGTH


def _explain(value: object, rules: _Region) -> tuple[str | None, str | None]:
    """Full rules with a reason on failure; the reference both public functions use."""
    text, reason = _to_text(value)
    if text is None:
        return None, reason
    s = text.translate(_STRIP_TABLE)
    if not s:
        return None, EMPTY
    if "." in s or "e" in s or "E" in s:  # rule 3
        if m := _FLOAT_TEXT.fullmatch(s):
            s = m[1]
        elif m := _SCI_TEXT.fullmatch(s):
            expanded, reason = _expand_scientific(m)
            if expanded is None:
                return None, reason
            s = expanded
        else:
            s = s.replace(".", "")
            if not s:
                return None, EMPTY
    intl = s[0] == "+"
    body = s[1:] if intl else s
    if "+" in body:
        return None, MULTIPLE_PLUS if intl or s.count("+") > 1 else MISPLACED_PLUS
    if not (body.isdigit() and body.isascii()):
        if not body:
            return None, TOO_FEW
        if any(c.isalpha() for c in body):
            return None, LETTERS
        return None, BAD_CHARS
    if intl:
        return _explain_intl(body)
    if body[:2] == "00":
        return _explain_intl(body[2:])
    e164 = _national(body, rules.cc, rules.national_prefix, rules.lengths)
    if e164 is not None:
        return e164, None
    return None, _length_reason(len(body), rules.lengths)


# --- public API -----------------------------------------------------------------------


def normalize_phone(raw: str | int | float, region: str = "RU") -> str:
    """Normalise one number to E.164 or raise ``InvalidPhone`` (see module docstring)."""
    e164, reason = _explain(raw, _region(region))
    if e164 is None:
        raise InvalidPhone(reason or BAD_TYPE, raw)
    return e164


def normalize_many(
    values: Iterable[object], region: str = "RU"
) -> tuple[list[str | None], list[str | None]]:
    """Normalise many numbers: ``(e164_or_None, reason_or_None)`` per input, same order.

    Same results as ``normalize_phone`` for every value, at ~2 million numbers/s.
    """
    rules = _region(region)
    fast = rules.fast
    if isinstance(values, list):
        items = values
    elif hasattr(values, "tolist"):  # numpy/pandas: native scalars take the fast path
        items: list[object] = values.tolist()
    else:
        items = list(values)
    out: list[str | None] = []
    reasons: list[str | None] = [None] * len(items)
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        # Non-str values become "" here, which fast() declines, so _explain handles them.
        texts = [v if type(v) is str else _fast_text(v) for v in chunk]
        joined = _JOIN.join(texts)
        if joined.count(_JOIN) == len(texts) - 1:
            results = list(map(fast, _clean_joined(joined).split(_JOIN)))
        else:  # some value contains the joiner itself: do this chunk one by one
            results = [None] * len(chunk)
        i = -1
        try:
            while True:
                i = results.index(None, i + 1)
                results[i], reasons[start + i] = _explain(chunk[i], rules)
        except ValueError:  # no None left after i
            pass
        out.extend(results)
    return out, reasons


def _clean_joined(joined: str) -> str:
    """translate() for a whole chunk, kept on CPython's ASCII fast path (~50x faster).

    Common non-ASCII separators are deleted first, exactly as the table would; any other
    non-ASCII character becomes "?", so fast() declines that item and _explain sees the
    original value.
    """
    if not joined.isascii():
        for ch in _COMMON_NON_ASCII:
            if ch in joined:
                joined = joined.replace(ch, "")
        if not joined.isascii():
            joined = joined.encode("ascii", "replace").decode("ascii")
    return joined.translate(_STRIP_TABLE)


def _fast_text(value: object) -> str:
    """Digits for the common numeric inputs, "" (-> full path) for anything else."""
    if type(value) is int:
        return str(value) if 0 <= value < _HUGE_INT else ""
    if type(value) is float and value >= 0 and value.is_integer():
        return str(int(value))
    return ""


def phone_metadata(e164: str, region: str = "RU") -> dict[str, Any]:
    """Region, time zones and type of one number, for the SoftPhone pop-up (no carrier).

    Uses phonenumbers per call (~10 µs): meant for single numbers, never bulk.
    """
    from phonenumbers import timezone  # loads prefix data on first use

    normalized = normalize_phone(e164, region)
    parsed = phonenumbers.parse(normalized, None)
    zones = [z for z in timezone.time_zones_for_number(parsed) if z != timezone.UNKNOWN_TIMEZONE]
    return {
        "e164": normalized,
        "country_code": parsed.country_code,
        "national_number": str(parsed.national_number),
        "region": phonenumbers.region_code_for_number(parsed),
        "time_zones": zones,
        "valid": phonenumbers.is_valid_number(parsed),
        "number_type": phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(parsed)),
    }
