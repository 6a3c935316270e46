"""The parsers and formatters of the values users type: sizes, durations, tolerances, lists."""

from __future__ import annotations

import argparse
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_attnperf.spec.units import (
    argparse_type,
    format_bytes,
    format_ms,
    parse_duration_ms,
    parse_fraction,
    parse_int_list,
    parse_name_list,
    parse_positive_int,
    parse_size,
)

# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 GiB", 2 * 1024**3),
        ("512 MiB", 512 * 1024**2),
        ("1.5 GB", 1_500_000_000),
        ("2GiB", 2 * 1024**3),
        ("  2 GiB  ", 2 * 1024**3),
        ("1 TiB", 1024**4),
        ("4 KiB", 4096),
        ("3 kB", 3000),
        ("7 B", 7),
        ("2147483648", 2147483648),
        (2147483648, 2147483648),
        (0, 0),
    ],
)
def test_parse_size_accepts(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2 gib", "did you mean 'GiB'?"),
        ("2 mib", "did you mean 'MiB'?"),
        ("1 kb", "did you mean 'kB'?"),
        ("2 parsecs", "unknown size unit 'parsecs'"),
        ("-1 MiB", "cannot read '-1 MiB' as a size"),
        ("", "cannot read '' as a size"),
        ("GiB", "cannot read 'GiB' as a size"),
        (-1, "size -1 is negative"),
        (True, "True is not a size"),
        (1.5, "1.5 is not a size"),
        (None, "None is not a size"),
    ],
)
def test_parse_size_refuses_with_the_accepted_forms(text: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as error:
        parse_size(text)
    assert "expected a byte count" in str(error.value)
    assert "'2 GiB'" in str(error.value)  # the accepted forms are spelled out


@given(number=st.integers(min_value=0, max_value=2**20), unit=st.sampled_from(["B", "KiB", "MiB", "GiB", "TiB"]))
def test_whole_binary_sizes_parse_exactly(number: int, unit: str) -> None:
    factor = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    assert parse_size(f"{number} {unit}") == parse_size(f"{number}{unit}") == number * factor


@given(num_bytes=st.integers(min_value=1024, max_value=2**50))
def test_formatted_sizes_parse_back_within_their_rounding(num_bytes: int) -> None:
    # format_bytes keeps three significant digits: the round trip is within 0.5 %.
    assert parse_size(format_bytes(num_bytes)) == pytest.approx(num_bytes, rel=5e-3)


def test_unknown_unit_without_a_near_miss_offers_no_guess() -> None:
    with pytest.raises(ValueError, match="unknown size unit") as error:
        parse_size("2 parsecs")
    assert "did you mean" not in str(error.value)


@pytest.mark.parametrize(
    ("num_bytes", "expected"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (100 * 1024, "100 KiB"),
        (8 * 1024**2, "8 MiB"),
        (int(33.1 * 1024**3), "33.1 GiB"),
        (5 * 1024**4, "5 TiB"),
        (2048 * 1024**4, "2048 TiB"),
    ],
)
def test_format_bytes(num_bytes: int | None, expected: str) -> None:
    assert format_bytes(num_bytes) == expected


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        (2.5, 2.5),
        (3, 3.0),
        ("2.5", 2.5),
        ("2.5 ms", 2.5),
        ("2.5ms", 2.5),
        ("250 us", 0.25),
        ("250 µs", 0.25),
        ("1 s", 1000.0),
        ("1e-3 s", 1.0),
        ("1e-6", 1e-6),
    ],
)
def test_parse_duration_ms_accepts(value: object, expected_ms: float) -> None:
    assert parse_duration_ms(value) == pytest.approx(expected_ms, rel=1e-12)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "must be positive"),
        (-1.0, "must be positive"),
        (math.inf, "must be positive and finite"),
        (math.nan, "must be positive and finite"),
        ("0 ms", "must be positive"),
        ("2.5 minutes", "unknown duration unit 'minutes'"),
        ("fast", "cannot read 'fast' as a duration"),
        ("-2 ms", "cannot read '-2 ms' as a duration"),
        (True, "True is not a duration"),
        ([2.5], "[2.5] is not a duration"),
    ],
)
def test_parse_duration_ms_refuses(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as error:
        parse_duration_ms(value)
    assert "'250 us', '2.5 ms', '1 s'" in str(error.value)


@pytest.mark.parametrize(
    ("milliseconds", "expected"),
    [(None, "-"), (0.05, "50 us"), (0.1, "0.1 ms"), (2.5, "2.5 ms"), (123.4, "123 ms"), (1e-6, "0.001 us")],
)
def test_format_ms(milliseconds: float | None, expected: str) -> None:
    assert format_ms(milliseconds) == expected


# ---------------------------------------------------------------- tolerances


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10%", 0.1), (" 10 % ", 0.1), (0.1, 0.1), ("0.1", 0.1), (0, 0.0), ("0%", 0.0), (10, 10.0), ("1000%", 10.0)],
)
def test_parse_fraction_accepts(value: object, expected: float) -> None:
    assert parse_fraction(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-0.1, "out of range"),
        ("-5%", "out of range"),
        (10.5, "out of range"),
        ("2000%", "out of range"),
        ("nan", "out of range"),
        (math.inf, "out of range"),
        ("abc", "cannot read 'abc' as a tolerance"),
        ("%", "cannot read '%' as a tolerance"),
        (True, "True is not a tolerance"),
        (None, "cannot read None as a tolerance"),
    ],
)
def test_parse_fraction_refuses(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as error:
        parse_fraction(value)
    assert "a fraction such as 0.1 or a percentage such as '10%', from 0 to 10" in str(error.value)


def test_parse_fraction_upper_bound_is_inclusive_and_configurable() -> None:
    assert parse_fraction(0.5, upper=0.5) == 0.5
    with pytest.raises(ValueError, match=r"from 0 to 0\.5"):
        parse_fraction(math.nextafter(0.5, 1.0), upper=0.5)


# ---------------------------------------------------------------- integers and lists


@pytest.mark.parametrize(("value", "expected"), [(1, 1), ("4096", 4096), ("4K", 4096), ("4k", 4096), (" 16 ", 16)])
def test_parse_positive_int_accepts(value: object, expected: int) -> None:
    assert parse_positive_int(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "must be at least 1"),
        ("0", "must be at least 1"),
        ("0K", "must be at least 1"),
        (-3, "must be at least 1"),
        ("-3", "is not a positive integer"),
        (1.5, "is not a positive integer"),
        (True, "is not a positive integer"),
        ("4 K", "is not a positive integer"),
        ("four", "is not a positive integer"),
    ],
)
def test_parse_positive_int_refuses_naming_what(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as error:
        parse_positive_int(value, what="heads")
    assert str(error.value).startswith(f"heads {value!r}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1K,4K", (1024, 4096)),
        ("1024, 4096 16384", (1024, 4096, 16384)),
        ("64", (64,)),
        ("4K,4096,1K", (4096, 1024)),  # repeats dropped, first order kept
        ([64, "1K"], (64, 1024)),
        (128, (128,)),
    ],
)
def test_parse_int_list_accepts(value: object, expected: tuple[int, ...]) -> None:
    assert parse_int_list(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0", "context length '0' must be at least 1"),
        ("1K,0", "context length '0' must be at least 1"),
        ("", "context length list '' is empty"),
        (" , ", "is empty"),
        ([], "is empty"),
        ("abc", "context length 'abc' is not a positive integer"),
    ],
)
def test_parse_int_list_refuses(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_int_list(value, what="context length")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eager", ("eager",)),
        ("sdpa-flash,flash-attn", ("sdpa-flash", "flash-attn")),
        ("a, b c", ("a", "b", "c")),
        (["x", "y"], ("x", "y")),
        ("eager,eager,sdpa-math,eager", ("eager", "sdpa-math")),  # repeats would make ids like eager-64_0
    ],
)
def test_parse_name_list(value: object, expected: tuple[str, ...]) -> None:
    assert parse_name_list(value) == expected


@pytest.mark.parametrize("value", ["", ",", " , ,", []])
def test_parse_name_list_refuses_an_empty_list(value: object) -> None:
    # An unset CI variable (--attnperf-backends=$BACKENDS) must not skip every test and exit 0.
    with pytest.raises(ValueError, match=re.escape("names no backend; expected e.g. 'sdpa-flash,flash-attn'")):
        parse_name_list(value)


@pytest.mark.parametrize("value", [3, ["a", 1], None])
def test_parse_name_list_refuses_non_names(value: object) -> None:
    with pytest.raises(ValueError, match="is not a list of names"):
        parse_name_list(value)


# ---------------------------------------------------------------- argparse adapter


def test_argparse_type_turns_value_errors_into_clean_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="prog")
    parser.add_argument("--size", type=argparse_type(parse_size, "size"))
    assert parser.parse_args(["--size", "2 GiB"]).size == 2 * 1024**3
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--size", "2 gib"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --size: unknown size unit 'gib' in '2 gib' (did you mean 'GiB'?)" in err
    assert "Traceback" not in err


def test_argparse_type_keeps_a_readable_name() -> None:
    assert argparse_type(parse_size).__name__ == "parse_size"
    assert argparse_type(parse_size, "size").__name__ == "size"
