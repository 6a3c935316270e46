"""Parsers of option values: each turns what a user wrote (flag or ini line) into a value, or raises a
ValueError that says what is accepted."""

from __future__ import annotations

from collections.abc import Callable

from .units import parse_fraction, parse_name_list
from .workloads import MODES, parse_workload


def parse_workloads(value: object) -> tuple[str, ...]:
    names = parse_name_list(value, what="workload", example="prefill,decode")
    return tuple(dict.fromkeys(parse_workload(name) for name in names))


def choice(name: str, choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).strip()
        if text not in choices:
            raise ValueError(f"{name} {value!r} is not one of: {', '.join(choices)}")
        return text

    return parse


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean; expected true/false, yes/no, on/off or 1/0")


def parse_tolerance(value: object) -> float | str:
    """'auto' (per case from its baseline's spread) or a fraction such as 0.05 or '5%'."""
    if str(value).strip().lower() == "auto":
        return "auto"
    return parse_fraction(value)


def path_text(what: str, *, required: bool = False) -> Callable[[object], str]:
    """A parser of file/folder names: an empty name (an unset CI variable) or a NUL byte is refused."""

    def parse(value: object) -> str:
        text = str(value)
        if not text.strip():
            raise ValueError(
                f"the {what} name is empty; give a path" + ("" if required else ", or leave the option out")
            )
        if "\0" in text:
            raise ValueError(f"the {what} name {text!r} holds a NUL byte, which no path can")
        return text

    return parse


parse_mode = choice("mode", MODES)


def parse_seed(value: object) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError(f"seed {value!r} must be a non-negative integer")
    return int(str(value).strip())
