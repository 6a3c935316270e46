"""The markers: each is a plain function whose signature *is* the marker's API.

A marker's arguments are evaluated into frozen specs at collection; a bad argument becomes a
:class:`MarkerError` naming the test, the marker, what was wrong and the accepted form.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pytest

from .dtypes import SHORT_NAME, parse_dtype
from .marker_text import MARKER_HELP as MARKER_HELP  # re-exported: they lived here before
from .marker_text import MARKER_USAGE as MARKER_USAGE
from .shapes import MODES
from .units import parse_duration_ms, parse_fraction, parse_int_list, parse_size, positive_int
from .workloads import parse_workload

if TYPE_CHECKING:
    from .presets import ModelPreset

EquivalenceRule = Literal["fa2", "fa3", "allclose"]


@dataclass(frozen=True)
class LatencySpec:
    """attnperf_latency: median within baseline*(1+tolerance) and/or under an absolute budget."""

    tolerance: float | None = None
    budget_ms: float | None = None
    use_baseline: bool = True
    cuda_graph: bool | None = None  # None: the run's --attnperf-cuda-graph setting


@dataclass(frozen=True)
class MemorySpec:
    """attnperf_memory: peak within baseline*(1+tolerance) and/or under an absolute ceiling."""

    tolerance: float | None = None
    ceiling_bytes: int | None = None
    use_baseline: bool = True


@dataclass(frozen=True)
class EquivalenceSpec:
    """attnperf_equivalence: FlashAttention's rule (fa2/fa3) or assert_close-style tolerances."""

    rule: EquivalenceRule = "fa2"
    factor: float = 2.0
    rtol: float = 1e-2
    atol: float = 2e-2


class MarkerError(ValueError):
    """A marker used with arguments it does not accept."""


def attnperf_latency(
    *,
    tolerance: float | str | None = None,
    budget: float | str | None = None,
    baseline: bool = True,
    cuda_graph: bool | None = None,
) -> LatencySpec:
    """Median latency within baseline * (1 + tolerance) and/or under an absolute budget ('2.5 ms').

    ``cuda_graph=True`` times replays of a captured CUDA graph: for short kernels whose launch
    overhead would otherwise dominate.
    """
    if not isinstance(baseline, bool):
        raise ValueError(f"baseline must be True or False, not {baseline!r}")
    if cuda_graph is not None and not isinstance(cuda_graph, bool):
        raise ValueError(f"cuda_graph must be True, False or None, not {cuda_graph!r}")
    tolerance_value = parse_fraction(tolerance) if tolerance is not None else None
    budget_ms = parse_duration_ms(budget) if budget is not None else None
    if not baseline and tolerance_value is not None:
        raise ValueError("tolerance compares with the baseline, but baseline=False: drop one of them")
    if not baseline and budget_ms is None:
        raise ValueError("baseline=False and no budget: nothing would be checked")
    return LatencySpec(tolerance=tolerance_value, budget_ms=budget_ms, use_baseline=baseline, cuda_graph=cuda_graph)


def attnperf_memory(
    *, tolerance: float | str | None = None, ceiling: int | str | None = None, baseline: bool = True
) -> MemorySpec:
    """Peak memory within baseline * (1 + tolerance) and/or under an absolute ceiling ('2 GiB')."""
    if not isinstance(baseline, bool):
        raise ValueError(f"baseline must be True or False, not {baseline!r}")
    tolerance_value = parse_fraction(tolerance) if tolerance is not None else None
    ceiling_bytes = parse_size(ceiling) if ceiling is not None else None
    if ceiling_bytes == 0:
        raise ValueError("a ceiling of 0 bytes can never hold: give a positive size")
    if not baseline and tolerance_value is not None:
        raise ValueError("tolerance compares with the baseline, but baseline=False: drop one of them")
    if not baseline and ceiling_bytes is None:
        raise ValueError("baseline=False and no ceiling: nothing would be checked")
    return MemorySpec(tolerance=tolerance_value, ceiling_bytes=ceiling_bytes, use_baseline=baseline)


def attnperf_equivalence(
    *, rule: str = "fa2", factor: float = 2.0, rtol: float = 1e-2, atol: float = 2e-2
) -> EquivalenceSpec:
    """Output agrees with a high-precision reference: rule 'fa2' (default), 'fa3' or 'allclose'."""
    if rule not in ("fa2", "fa3", "allclose"):
        raise ValueError(f"rule {rule!r} is not one of 'fa2', 'fa3', 'allclose'")
    for name, value in (("factor", factor), ("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
            raise ValueError(f"{name} must be a finite non-negative number, not {value!r}")
    if factor < 1:
        raise ValueError(f"factor {factor!r} below 1 would demand the kernel beat the reference's own error")
    return EquivalenceSpec(rule=rule, factor=float(factor), rtol=float(rtol), atol=float(atol))  # type: ignore[arg-type]


def attnperf_backends(*names: str) -> tuple[str, ...]:
    """Run this test only with these backends, in this order."""
    if not names:
        raise ValueError("give at least one backend name")
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"backend names are strings, not {name!r}")
    return tuple(dict.fromkeys(names))  # a repeat would be a second case under a mangled id (eager-1K_0)


@dataclass(frozen=True)
class ShapeSpec:
    """attnperf_shape: per-test shape settings; a list value parametrizes the test over it."""

    values: dict[str, tuple[Any, ...]]

    def variants(self) -> list[dict[str, Any]]:
        """The cartesian product of the listed values, one dict per test variant."""
        keys = [key for key in self.values if key != "seqlens"]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(self.values[key] for key in keys))]

    def varying(self) -> list[str]:
        return [key for key, values in self.values.items() if len(values) > 1 and key != "seqlens"]


def case_spec(spec: ShapeSpec | None, workloads: tuple[str, ...] | None) -> ShapeSpec:
    """A test's shape spec with its workloads filled in: the mark's, else decode for a marked q_len, else the option's."""
    values = dict(spec.values) if spec is not None else {}
    if "workload" not in values:
        if "q_len" in values:
            values["workload"] = ("decode",)
        elif workloads:
            values["workload"] = tuple(workloads)
    return ShapeSpec(values)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) and not _is_window(value) else (value,)


def _is_window(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _window(value: Any) -> tuple[int, int]:
    if value is None:
        return (-1, -1)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= -1 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"window {value!r} must be a (left, right) pair of ints >= -1, e.g. (256, 0); -1 means unbounded")


def _causal(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"causal must be True or False, not {value!r}")
    return value


def _scale(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"scale must be a positive finite number or None, not {value!r}")
    return float(value)


def _mode(value: Any) -> str:
    if value not in MODES:
        raise ValueError(f"mode {value!r} is not one of {', '.join(MODES)}")
    return str(value)


def _softcap(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"softcap must be a positive finite number (e.g. 50.0), not {value!r}")
    return float(value)


def _model(value: Any) -> ModelPreset:
    # The presets (and YAML) load on the first mark that names a model, not with the plugin.
    from .presets import resolve_model

    return resolve_model(value)


def _layer(value: Any) -> str:
    from .presets import LAYER_KINDS

    if value not in LAYER_KINDS:
        raise ValueError(f"layer {value!r} is not one of {', '.join(map(repr, LAYER_KINDS))}")
    return str(value)


# A model sets these itself: giving one beside it would leave two answers for the same field.
MODEL_FIELDS = ("heads", "kv_heads", "head_dim", "window", "softcap", "scale")


_SHAPE_PARSERS: dict[str, Callable[[Any], Any]] = {
    "batch": positive_int("batch"),
    "heads": positive_int("heads"),
    "kv_heads": positive_int("kv_heads"),
    "head_dim": positive_int("head_dim"),
    "dtype": parse_dtype,
    "causal": _causal,
    "window": _window,
    "scale": _scale,
    "mode": _mode,
    "workload": parse_workload,
    "q_len": positive_int("q_len"),
    "page_size": positive_int("page_size"),
    "model": _model,
    "layer": _layer,
    "softcap": _softcap,
}


def attnperf_shape(
    *,
    batch: Any = None,
    heads: Any = None,
    kv_heads: Any = None,
    head_dim: Any = None,
    dtype: Any = None,
    causal: Any = None,
    window: Any = None,
    scale: Any = None,
    mode: Any = None,
    seqlens: Any = None,
    workload: Any = None,
    q_len: Any = None,
    page_size: Any = None,
    model: Any = None,
    layer: Any = None,
    softcap: Any = None,
) -> ShapeSpec:
    """Shape of this test's inputs; a list (e.g. dtype=['float16', 'bfloat16']) parametrizes over it.

    ``workload`` is prefill, decode, paged, varlen or chunked; ``q_len`` the queries per sequence of a
    decode, chunk or varlen decode; ``page_size`` the paged cache's tokens per page. ``model`` (a preset
    name or a config.json path) sets heads, KV heads, head dim and the attention of its ``layer``
    ('full' or 'sliding': window, soft-capping, scale).
    """
    given = {
        "batch": batch,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "dtype": dtype,
        "causal": causal,
        "window": window,
        "scale": scale,
        "mode": mode,
        "workload": workload,
        "q_len": q_len,
        "page_size": page_size,
        "model": model,
        "layer": layer,
        "softcap": softcap,
    }
    values: dict[str, tuple[Any, ...]] = {}
    for key, value in given.items():
        if value is None:
            continue
        options = _as_tuple(value)
        if not options:
            raise ValueError(f"{key} is an empty list")
        values[key] = tuple(dict.fromkeys(_SHAPE_PARSERS[key](option) for option in options))  # no repeated variant
    if seqlens is not None:
        values["seqlens"] = parse_int_list(seqlens, what="context length")
    _check_combinations(values)
    return ShapeSpec(values)


def _check_combinations(values: dict[str, tuple[Any, ...]]) -> None:
    """q_len and page_size need a workload that has them; a model leaves no second source for its fields."""
    workloads = values.get("workload", ("decode",) if "q_len" in values else ())
    if "q_len" in values and set(workloads) == {"prefill"}:
        raise ValueError("q_len sets the queries of decode, paged, chunked and varlen cases; prefill has one per key")
    if "page_size" in values and workloads and "paged" not in workloads:
        raise ValueError("page_size is the paged workload's: add workload='paged' (or drop page_size)")
    if "model" not in values:
        if "layer" in values:
            raise ValueError("layer picks one of a model's layer kinds: give model= too")
        return
    clashing = [key for key in MODEL_FIELDS if key in values]
    if clashing:
        raise ValueError(f"model sets {', '.join(clashing)} itself: drop {'it' if len(clashing) == 1 else 'them'}")
    for preset in values["model"]:
        for layer in values.get("layer", (None,)):
            preset.attention(layer)  # raises when the model has no such layer


def variant_id(variant: dict[str, Any], varying: list[str]) -> str:
    """Readable id for a shape variant: the keys that vary, e.g. 'bf16-full'; '' when nothing shows.

    A workload other than prefill always shows (a decode case's id says 'decode'), and so does the
    q_len of a varlen decode; prefill never does, so prefill ids stay what they were before workloads.
    """
    parts = []
    workload = variant.get("workload", "prefill")
    if workload != "prefill":
        parts.append(workload)
        if workload == "varlen" and "q_len" in variant and "q_len" not in varying:
            parts.append(f"q{variant['q_len']}")
    for key in varying:
        value = variant[key]
        if key == "workload":
            continue
        if key == "dtype":
            parts.append(SHORT_NAME[value])
        elif key == "causal":
            parts.append("causal" if value else "full")
        elif key == "window":
            parts.append("nowin" if value == (-1, -1) else f"win{value[0]}_{value[1]}")
        elif key == "model":
            parts.append(value.name.lower())
        elif key in ("q_len", "page_size"):
            parts.append(f"{'q' if key == 'q_len' else 'page'}{value}")
        else:
            parts.append(f"{key}{value}".replace("+", "-"))
    return "-".join(parts)


MARKERS: dict[str, Callable[..., Any]] = {
    "attnperf_latency": attnperf_latency,
    "attnperf_memory": attnperf_memory,
    "attnperf_equivalence": attnperf_equivalence,
    "attnperf_backends": attnperf_backends,
    "attnperf_shape": attnperf_shape,
}


def evaluate_marker(mark: pytest.Mark, where: str) -> Any:
    """Call the marker's function with the mark's arguments; a bad argument becomes a MarkerError."""
    function = MARKERS[mark.name]
    arguments = ", ".join([repr(arg) for arg in mark.args] + [f"{key}={value!r}" for key, value in mark.kwargs.items()])
    try:
        return function(*mark.args, **mark.kwargs)
    except (TypeError, ValueError) as error:
        problem = str(error).replace(f"{function.__name__}() ", "")
        raise MarkerError(
            f"{where}: @pytest.mark.{mark.name}({arguments}): {problem}\n    accepted: @pytest.mark.{MARKER_USAGE[mark.name]}"
        ) from None


@dataclass(frozen=True)
class GateMarks:
    """The three check markers of one test, evaluated."""

    latency: LatencySpec | None
    memory: MemorySpec | None
    equivalence: EquivalenceSpec | None

    @property
    def any(self) -> bool:
        return any((self.latency, self.memory, self.equivalence))


@dataclass(frozen=True)
class ItemMarks:
    """A test's attnperf marks, evaluated once (at collection) and kept in its stash."""

    gate: GateMarks
    shape: ShapeSpec | None


ITEM_MARKS_KEY = pytest.StashKey[ItemMarks]()


def item_marks(item: pytest.Item) -> ItemMarks:
    """The evaluated marks of ``item``; a bad argument raises MarkerError (the first time only)."""
    cached = item.stash.get(ITEM_MARKS_KEY, None)
    if cached is None:
        specs: dict[str, Any] = {}
        for name in ("attnperf_latency", "attnperf_memory", "attnperf_equivalence", "attnperf_shape"):
            mark = item.get_closest_marker(name)
            specs[name] = evaluate_marker(mark, item.nodeid) if mark is not None else None
        gate = GateMarks(specs["attnperf_latency"], specs["attnperf_memory"], specs["attnperf_equivalence"])
        cached = item.stash[ITEM_MARKS_KEY] = ItemMarks(gate, specs["attnperf_shape"])
    return cached
