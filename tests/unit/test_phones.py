"""E.164 normalisation: the rule table, rejections with reasons, and property tests that
the per-number and bulk paths agree exactly."""

from __future__ import annotations

import ast
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from models import phones
from models.phones import InvalidPhone, normalize_many, normalize_phone, phone_metadata

REGIONS = ["RU", "GB", "US", "DE", "KZ", "FR", "IT", "NU"]
# PHONES_EXAMPLES=20000 for a deeper run; 300 keeps the suite at a few seconds.
PROPERTY = settings(
    max_examples=int(os.environ.get("PHONES_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def single(value: object, region: str = "RU") -> tuple[str | None, str | None]:
    """normalize_phone as (e164, None) or (None, reason)."""
    try:
        return normalize_phone(value, region), None  # type: ignore[arg-type]
    except InvalidPhone as exc:
        return None, exc.reason


def both(value: object, region: str = "RU") -> tuple[str | None, str | None]:
    """Both paths for one value; fails if they disagree."""
    one = single(value, region)
    values, reasons = normalize_many([value], region)
    assert (values[0], reasons[0]) == one, value
    return one


RU_CANONICAL = "+79161234567"


@pytest.mark.parametrize(
    "raw",
    [
        "8 (916) 123-45-67",
        "+7 916 123 45 67",
        "79161234567",
        "9161234567",
        "8-916-123-45-67",
        "79161234567.0",
        79161234567.0,
        79161234567,
        9161234567,
        89161234567.0,
        "7.9161234567E10",
        "7.9161234567e+10",
        "+7(916)123-45-67",
        "8\u00a0916\u00a0123\u00a045\u00a067",
        "  +7 916 123-45-67\t",
        "8.916.123.45.67",
        "8/916/123 45 67",
        "0079161234567",
        "+7 (916) 123\u201345\u201367",
        "\ufeff89161234567",
    ],
)
def test_russian_formats(raw: object) -> None:
    assert both(raw) == (RU_CANONICAL, None)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+44 20 7946 0958", "RU", "+442079460958"),
        ("0044 20 7946 0958", "RU", "+442079460958"),
        ("+1 (212) 555-0100", "RU", "+12125550100"),
        ("+49 30 123456", "RU", "+4930123456"),
        ("+33 1 23 45 67 89", "RU", "+33123456789"),
        ("+7 701 234 56 78", "RU", "+77012345678"),  # Kazakhstan shares +7
        ("88001234567", "RU", "+78001234567"),  # toll-free: 8 trunk + 800
        ("8001234567", "RU", "+78001234567"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("07911 123456", "GB", "+447911123456"),
        ("442079460958", "GB", "+442079460958"),
        ("(212) 555-0100", "US", "+12125550100"),
        ("1-212-555-0100", "US", "+12125550100"),
        ("01 23 45 67 89", "FR", "+33123456789"),
        ("+7 (916) 123-45-67", "gb", "+79161234567"),  # region is case-insensitive
        ("+7 916 123 45 67", "US", "+79161234567"),
    ],
)
def test_other_countries_and_regions(raw: str, region: str, expected: str) -> None:
    assert both(raw, region) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("()--", "empty"),
        (None, "empty"),
        (math.nan, "empty"),
        ("abc", "contains letters"),
        ("8 916 abc 45 67", "contains letters"),
        ("8916123456x7", "contains letters"),
        ("n/a", "contains letters"),
        ("123", "too few digits"),
        ("916123456", "too few digits"),
        ("+7 916 123 45 6", "too few digits"),
        ("+", "too few digits"),
        ("+1234", "too few digits"),
        ("891612345678", "too many digits"),
        ("+7 916 123 45 678", "too many digits"),
        ("+44 1234 5678 9012 345", "too many digits"),
        ("91612345678", "too many digits"),
        ("+999 123 456 789", "unknown country code"),
        ("+0 916 123 45 67", "unknown country code"),
        ("00999123456789", "unknown country code"),
        ("++79161234567", "multiple '+'"),
        ("+7+9161234567", "multiple '+'"),
        ("7+9161234567", "misplaced '+'"),
        ("8#916#1234567", "invalid characters"),
        ("\u0669\u0661\u0666\u0661\u0662\u0663\u0664\u0665\u0666\u0667", "invalid characters"),
        ("89161234567\x00", "invalid characters"),
        (7916123456.5, "not an integer"),
        ("7.91612345675E9", "not an integer"),
        (-79161234567, "negative number"),
        (-79161234567.0, "negative number"),
        (math.inf, "not a finite number"),
        pytest.param(10**5000, "too many digits", id="huge-int"),
        (1e300, "too many digits"),
        (True, "unsupported type"),
        (b"89161234567", "unsupported type"),
        ([89161234567], "unsupported type"),
    ],
)
def test_garbage_is_rejected_with_reason(raw: object, reason: str) -> None:
    assert both(raw) == (None, reason)


def test_invalid_phone_is_a_value_error_with_reason() -> None:
    with pytest.raises(ValueError) as info:
        normalize_phone("12")
    assert isinstance(info.value, InvalidPhone)
    assert info.value.reason == "too few digits"
    assert "'12'" in str(info.value)


def test_unknown_region_is_a_plain_value_error() -> None:
    for call in (lambda: normalize_phone("9161234567", "XX"), lambda: normalize_many([], "XX")):
        with pytest.raises(ValueError) as info:
            call()
        assert not isinstance(info.value, InvalidPhone)


def test_normalize_many_shapes() -> None:
    assert normalize_many([]) == ([], [])
    values, reasons = normalize_many(iter(["89161234567", "x", None, 79161234567.0]))
    assert values == [RU_CANONICAL, None, None, RU_CANONICAL]
    assert reasons == [None, "contains letters", "empty", None]


def test_normalize_many_numpy_and_pandas_values() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    series = pd.Series([79161234567.0, math.nan, 9161234567.0])
    assert normalize_many(series)[0] == [RU_CANONICAL, None, RU_CANONICAL]
    assert normalize_many([np.int64(79161234567), pd.NA, np.True_]) == (
        [RU_CANONICAL, None, None],
        [None, "empty", "unsupported type"],
    )


def test_chunking_and_joiner_collisions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phones, "_CHUNK", 3)
    raw = ["89161234567", "8\x009161234567", "+44 20 7946 0958", "x", "", "9161234567", "7"]
    expected = [single(v) for v in raw]
    values, reasons = normalize_many(raw)
    assert list(zip(values, reasons, strict=True)) == expected


def test_phone_metadata() -> None:
    ru = phone_metadata("8 (916) 123-45-67")
    assert ru["e164"] == RU_CANONICAL
    assert ru["region"] == "RU"
    assert ru["country_code"] == 7
    assert "Europe/Moscow" in ru["time_zones"]
    gb = phone_metadata("+442079460958")
    assert (gb["region"], gb["time_zones"], gb["valid"]) == ("GB", ["Europe/London"], True)
    with pytest.raises(InvalidPhone):
        phone_metadata("nope")


def test_country_codes_are_prefix_free() -> None:
    # The country-code scan relies on it: no code is a prefix of another.
    codes = phones.COUNTRY_CODES
    assert not [a for a in codes for b in codes if a != b and b.startswith(a)]


def test_models_layer_imports_nothing_from_upper_layers() -> None:
    tree = ast.parse(Path(phones.__file__).read_text())
    modules = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    top = {m.split(".")[0] for m in modules}
    assert not top & {"api", "orchestration", "sensors", "cli"}


# --- property tests -------------------------------------------------------------------

SEPARATORS = [" ", "-", "(", ")", ".", "/", "\u00a0", "\u2013", "\t", "\u202f"]

# Characters the rules treat specially, plus some they must reject.
messy_text = st.text(
    alphabet=st.sampled_from(list("0123456789+.eE ()-/x") + ["\u00a0", "\x00", "\u0663", "\u2013"]),
    max_size=24,
)


@st.composite
def number_like(draw: st.DrawFn) -> str:
    """Digit runs with prefixes, separators and float tails: mostly near-valid numbers."""
    digits = draw(st.text(alphabet="0123456789", min_size=0, max_size=17))
    out = []
    for ch in digits:
        if draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from(SEPARATORS)))
        out.append(ch)
    prefix = draw(st.sampled_from(["", "", "+", "00", "8", "7", "+7", "++", "0"]))
    suffix = draw(st.sampled_from(["", "", ".0", ".00", "E10", ",5E+9", "e+10", ".5", "+"]))
    return prefix + "".join(out) + suffix


any_value = st.one_of(
    number_like(),
    messy_text,
    st.text(max_size=20),
    st.integers(min_value=-(10**16), max_value=10**17),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1e16).map(float.__floor__).map(float),
    st.none(),
    st.booleans(),
)


@PROPERTY
@given(values=st.lists(any_value, max_size=30), region=st.sampled_from(REGIONS))
@example(values=["89161234567", "8\x009161234567", "7.9161234567E10"], region="RU")
def test_both_paths_agree(values: list[object], region: str) -> None:
    expected = [single(v, region) for v in values]
    got, reasons = normalize_many(values, region)
    assert list(zip(got, reasons, strict=True)) == expected


@st.composite
def rendered_russian(draw: st.DrawFn) -> tuple[object, str]:
    nsn = draw(st.from_regex(r"[1-9][0-9]{9}", fullmatch=True))
    a, b, c, d = nsn[:3], nsn[3:6], nsn[6:8], nsn[8:]
    sep = draw(st.sampled_from(SEPARATORS[:2] + SEPARATORS[4:] + [""]))
    formats: list[object] = [
        f"+7 {a} {b}{sep}{c}{sep}{d}",
        f"8 ({a}) {b}-{c}-{d}",
        f"8{sep}{a}{sep}{b}{sep}{c}{sep}{d}",
        f"+7({a}){b}{sep}{c}{sep}{d}",
        f"7{nsn}",
        f"8{nsn}",
        nsn,
        f"007{nsn}",
        f"7{nsn}.0",
        f"7.{nsn}E10",
        int("7" + nsn),
        int(nsn),
        float("7" + nsn),
        float("8" + nsn),
    ]
    return draw(st.sampled_from(formats)), "+7" + nsn


@PROPERTY
@given(case=st.lists(rendered_russian(), min_size=1, max_size=20))
def test_valid_russian_numbers_in_any_format(case: list[tuple[object, str]]) -> None:
    raw = [r for r, _ in case]
    canonical = [c for _, c in case]
    assert [single(r)[0] for r in raw] == canonical
    assert normalize_many(raw) == (canonical, [None] * len(raw))


@PROPERTY
@given(value=any_value, region=st.sampled_from(REGIONS), other=st.sampled_from(REGIONS))
@example(value="020 7946 0958", region="GB", other="RU")
def test_idempotent(value: object, region: str, other: str) -> None:
    e164, _ = single(value, region)
    if e164 is not None:
        # E.164 output is international form, so the region no longer matters.
        assert both(e164, region) == (e164, None)
        assert both(e164, other) == (e164, None)


# --- scientific notation that lost digits (issue 12.1) --------------------------------

LOST = phones.LOST_DIGITS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # What a spreadsheet shows for a number column: the digits are gone, never pad them.
        ("7.91612E+10", (None, LOST)),  # was stored as +79161200000
        ("7.92E+10", (None, LOST)),  # was +79200000000
        ("8.91612E+10", (None, LOST)),  # was the same wrong number as 7.91612E+10
        ("7,91612E+10", (None, LOST)),  # comma decimal: was "misplaced '+'"
        ("7,91612e+10", (None, LOST)),
        ("7.91612e10", (None, LOST)),
        ("7.91612E+010", (None, LOST)),
        ("+7.91612E+10", (None, LOST)),
        (" 7.91612E+10 ", (None, LOST)),
        ("8E+10", (None, LOST)),
        ("7.9161234567E+11", (None, LOST)),  # one digit short of the exponent
        # Every digit present: the number.
        ("79161234567.0", (RU_CANONICAL, None)),
        (79161234567.0, (RU_CANONICAL, None)),  # a numeric XLSX cell (calamine: float)
        ("7.9161234567E+10", (RU_CANONICAL, None)),
        ("7,9161234567E+10", (RU_CANONICAL, None)),
        ("7.9161234567e10", (RU_CANONICAL, None)),
        ("7.91612345670E+10", (RU_CANONICAL, None)),  # trailing zero after the point
        ("+7.9161234567E+10", (RU_CANONICAL, None)),
        ("79161234567E0", (RU_CANONICAL, None)),
        ("7.91612345675E+10", (None, "not an integer")),
        # A float is what the workbook stored, not a rendering of it: exact, accepted.
        (7.91612e10, ("+79161200000", None)),
    ],
)
def test_scientific_notation_that_lost_digits_is_rejected(
    raw: object, expected: tuple[str | None, str | None]
) -> None:
    assert both(raw) == expected


@st.composite
def cut_scientific(draw: st.DrawFn) -> tuple[str, str, str]:
    """(digits, the number rounded to fewer significant digits in E-notation, full E-notation).

    Rendered the ways spreadsheets and CSV writers do: dot or comma decimal, e or E, with or
    without '+' and a zero-padded exponent, trailing zeros of the mantissa kept or dropped.
    """
    from decimal import ROUND_HALF_EVEN, Context, Decimal

    digits = draw(st.from_regex(r"[1-9][0-9]{7,14}", fullmatch=True))
    n = len(digits)
    k = draw(st.integers(1, n - 1))
    cut = Context(prec=k, rounding=ROUND_HALF_EVEN).plus(Decimal(digits))
    e, sign = draw(st.sampled_from("eE")), draw(st.sampled_from(["+", ""]))
    comma, width = draw(st.booleans()), draw(st.sampled_from([1, 2, 3]))
    strip, lead = draw(st.booleans()), draw(st.sampled_from(["", "+", " "]))

    def render(value: Decimal, places: int, strip: bool) -> str:
        mantissa, exp = f"{value:.{places}E}".split("E")
        if strip and "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        if comma:
            mantissa = mantissa.replace(".", ",")
        return f"{lead}{mantissa}{e}{sign}{int(exp):0{width}d}"

    return digits, render(cut, k - 1, strip), render(Decimal(digits), n - 1, False)


@PROPERTY
@given(case=cut_scientific(), region=st.sampled_from(REGIONS))
@example(case=("79161234567", "7.91612E+10", "7.9161234567E+10"), region="RU")
@example(case=("99999999999", "1.00E+11", "9.9999999999E+10"), region="RU")
def test_no_padded_scientific_notation_is_ever_accepted(
    case: tuple[str, str, str], region: str
) -> None:
    digits, cut, full = case
    assert both(cut, region) == (None, LOST)
    assert normalize_many([cut, digits, cut], region)[1][::2] == [LOST, LOST]
    # The same number with every digit is read as the digits themselves.
    lead = "+" if full.lstrip().startswith("+") else ""
    assert both(full, region) == both(lead + digits, region)
