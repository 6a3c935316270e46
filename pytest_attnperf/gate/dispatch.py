"""Dispatch fingerprints, torch-free: which kernels a case ran, named so that a real change shows.

Two levels. A *family* is a kernel's name without its template arguments, parameter list, return
type, addresses and Triton/Inductor numeric suffix: it changes when SDPA picks another backend
or cuDNN another engine (the engine, knob and tile are part of a cuDNN kernel's name). The
*variant* hash covers the full names (addresses removed): it changes when the same kernel is
instantiated with other template arguments (tile sizes, causal flags).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_NUMBERED = re.compile(r"^(triton_\w+?)_\d+$")  # triton_tem_fused_0 -> triton_tem_fused
_RETURN_TYPE = re.compile(r"^(?:void|auto)\s+")
SHOWN = 60  # characters of a family name in messages


def variant_name(name: str) -> str:
    return " ".join(_ADDRESS.sub("0x?", name).split())


def _without(text: str, opening: str, closing: str) -> str:
    """``text`` without its (possibly nested) ``opening``...``closing`` groups."""
    kept, depth = [], 0
    for char in text:
        if char == opening:
            depth += 1
        elif char == closing and depth:
            depth -= 1
        elif depth == 0:
            kept.append(char)
    return "".join(kept)


def family_name(name: str) -> str:
    text = variant_name(name)
    if text.startswith(("Memset", "Memcpy")):
        return text.split(" (", 1)[0]  # "Memcpy DtoD (Device -> Device)" -> "Memcpy DtoD"
    text = text.replace("(anonymous namespace)", "{anonymous}")
    text = _without(_without(text, "(", ")"), "<", ">")
    text = _RETURN_TYPE.sub("", text.strip())
    return _NUMBERED.sub(r"\1", text).strip()


def fingerprint(names: Iterable[str]) -> dict[str, Any]:
    """{'families': [...] in launch order, 'variant': 12 hex digits, 'kernels': count}."""
    listed = list(names)
    variants = "\n".join(variant_name(name) for name in listed)
    return {
        "families": [family_name(name) for name in listed],
        "variant": hashlib.sha256(variants.encode()).hexdigest()[:12],
        "kernels": len(listed),
    }


def _short(families: Iterable[str]) -> str:
    names = list(dict.fromkeys(families))
    shown = [name if len(name) <= SHOWN else name[: SHOWN - 3] + "..." for name in names]
    return ", ".join(shown) or "no kernel"


def describe_change(recorded: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> str | None:
    """What changed between the baseline's fingerprint and this run's; None if nothing (or nothing to compare)."""
    if not recorded or not now:
        return None
    before, after = list(recorded.get("families") or []), list(now.get("families") or [])
    if before != after:
        return f"dispatch changed: {_short(before)} -> {_short(after)}"
    if recorded.get("variant") != now.get("variant"):
        return f"kernel variant changed: the same kernels ({_short(after)}) with other template arguments"
    return None
