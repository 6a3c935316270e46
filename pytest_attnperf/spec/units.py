"""Parsers and formatters for the values users type: sizes, durations, fractions, lists.

Each parser raises ``ValueError`` with the accepted forms in its message, so the same
function serves argparse (wrapped by :func:`argparse_type`), ini keys and marker arguments.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import TypeVar

from .bounds import check_size

T = TypeVar("T")

_BINARY_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_DECIMAL_UNITS = {"kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_SIZE_UNITS = {**_BINARY_UNITS, **_DECIMAL_UNITS}
SIZE_FORMS = (
    "a byte count such as 2147483648, or a number and a unit: '512 MiB', '2 GiB', '1.5 GB' "
    "(units B, KiB, MiB, GiB, TiB, kB, MB, GB, TB; case matters)"
)
_SIZE_RE = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]+)?\s*$")

_DURATION_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
DURATION_FORMS = "a number of milliseconds such as 2.5, or a number and a unit: '250 us', '2.5 ms', '1 s'"
_DURATION_RE = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>[a-zµ]+)?\s*$")


def parse_size(value: object) -> int:
    """Parse a memory size (int bytes, or text with a unit) into bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; expected {SIZE_FORMS}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size {value} is negative; expected {SIZE_FORMS}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size; expected {SIZE_FORMS}")
    match = _SIZE_RE.match(value)
    if match is None:
        raise ValueError(f"cannot read {value!r} as a size; expected {SIZE_FORMS}")
    unit = match.group("unit") or "B"
    if unit not in _SIZE_UNITS:
        hint = next((u for u in _SIZE_UNITS if u.lower() == unit.lower()), None)
        did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
        raise ValueError(f"unknown size unit {unit!r} in {value!r}{did_you_mean}; expected {SIZE_FORMS}")
    return round(float(match.group("number")) * _SIZE_UNITS[unit])


def format_bytes(num_bytes: float | None) -> str:
    """Binary units with three significant digits: 8.00 MiB, 33.1 GiB."""
    if num_bytes is None:
        return "-"
    magnitude = abs(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        scale = _BINARY_UNITS[unit]
        if magnitude < scale * 1024 or unit == "TiB":
            scaled = num_bytes / scale
            if unit == "B":
                return f"{int(num_bytes)} B"
            return f"{scaled:.0f} {unit}" if abs(scaled) >= 100 else f"{scaled:.3g} {unit}"
    raise AssertionError("unreachable")


def parse_duration_ms(value: object) -> float:
    """Parse a duration (number = milliseconds, or text with us/ms/s) into milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; expected {DURATION_FORMS}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            raise ValueError(f"cannot read {value!r} as a duration; expected {DURATION_FORMS}")
        unit = match.group("unit") or "ms"
        if unit not in _DURATION_UNITS:
            raise ValueError(f"unknown duration unit {unit!r} in {value!r}; expected {DURATION_FORMS}")
        number = float(match.group("number")) * _DURATION_UNITS[unit]
    else:
        raise ValueError(f"{value!r} is not a duration; expected {DURATION_FORMS}")
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"duration {value!r} must be positive and finite; expected {DURATION_FORMS}")
    return number


def format_ms(milliseconds: float | None) -> str:
    """Milliseconds with three significant digits, switching to us below 0.1 ms."""
    if milliseconds is None:
        return "-"
    if milliseconds < 0.1:
        return f"{milliseconds * 1e3:.3g} us"
    return f"{milliseconds:.3g} ms"


def parse_fraction(value: object, *, upper: float = 10.0) -> float:
    """Parse a tolerance: a fraction such as 0.1, or a percentage text such as '10%'."""
    forms = f"a fraction such as 0.1 or a percentage such as '10%', from 0 to {upper:g}"
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a tolerance; expected {forms}")
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            number = float(value.strip()[:-1]) / 100.0
        elif isinstance(value, (int, float, str)):
            number = float(value)
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"cannot read {value!r} as a tolerance; expected {forms}") from None
    if not math.isfinite(number) or not 0.0 <= number <= upper:
        raise ValueError(f"tolerance {value!r} is out of range; expected {forms}")
    return number


def parse_positive_int(value: object, *, what: str = "value") -> int:
    """Parse a strictly positive integer (no floats, no bools), no larger than ``what``'s bound (spec/bounds.py)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not a positive integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[0-9]+[kK]\s*", value):
        number = int(value.strip()[:-1]) * 1024
    else:
        raise ValueError(f"{what} {value!r} is not a positive integer (e.g. 4096 or 4K)")
    if number <= 0:
        raise ValueError(f"{what} {value!r} must be at least 1")
    return check_size(what, number)  # a size beyond any real run (10**30 tokens) is a typo, not a request


def positive_int(what: str) -> Callable[[object], int]:
    """A parser of positive integers whose errors name ``what``."""

    def parse(value: object) -> int:
        return parse_positive_int(value, what=what)

    parse.__name__ = what
    return parse


def parse_int_list(value: object, *, what: str = "value") -> tuple[int, ...]:
    """Parse '1024,4K,16384' (or a list) into positive integers, keeping order, dropping repeats."""
    items: list[object]
    if isinstance(value, str):
        items = [part for part in re.split(r"[,\s]+", value.strip()) if part]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise ValueError(f"{what} list {value!r} is empty; expected e.g. '1024,4096,16384'")
    numbers = [parse_positive_int(item, what=what) for item in items]
    return tuple(dict.fromkeys(numbers))


def parse_name_list(value: object, *, what: str = "backend", example: str = "sdpa-flash,flash-attn") -> tuple[str, ...]:
    """Parse 'a,b c' (or a list) into names, keeping order, dropping repeats; an empty list is refused."""
    names: tuple[str, ...]
    if isinstance(value, str):
        names = tuple(part for part in re.split(r"[,\s]+", value.strip()) if part)
    elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        names = tuple(value)
    else:
        raise ValueError(f"{value!r} is not a list of names; expected e.g. {example!r}")
    if not names:
        # An unset CI variable (--attnperf-backends=$BACKENDS) must not become a green run that measured nothing.
        raise ValueError(f"the list {value!r} names no {what}; expected e.g. {example!r}")
    return tuple(dict.fromkeys(names))


def argparse_type(parser: Callable[[str], T], name: str | None = None) -> Callable[[str], T]:
    """Wrap a ValueError-raising parser so argparse reports a clean usage error."""

    def parse(text: str) -> T:
        try:
            return parser(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = name or str(getattr(parser, "__name__", "value"))
    return parse
