"""The FlashAttention study, measured: every backend at 1K-32K per configuration, the memory frontier, and decode.

``run_study`` measures and returns the study document (a JSON-able dict) that
:mod:`pytest_attnperf.study.output` writes as JSON, Markdown and plots. Its decode section times one
new token over KV caches of growing length (dense and paged, at batch 1 and a serving batch) with
the bytes each step must move, and measures where a whole model's KV cache stops fitting.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TextIO

import torch

from ..backends.registry import REGISTRY, Backend, Unsupported
from ..gate.baselines import now_iso
from ..measure import case as measuring
from ..measure.bandwidth import copy_bandwidth_gbps
from ..measure.inputs import make_qkv, torch_dtype
from ..measure.measurement import measure
from ..measure.memory import DoesNotFit, describe_error, is_out_of_memory, release_memory
from ..session.case_runner import make_workload
from ..spec.device_info import DeviceInfo
from ..spec.options import TimingConfig
from ..spec.presets import get_preset
from ..spec.shapes import AttnShape
from .configs import CPU_CONFIGS as CPU_CONFIGS  # the study's configurations, imported from here by its callers
from .configs import CPU_STUDY_SEQLENS as CPU_STUDY_SEQLENS
from .configs import GPU_CONFIGS as GPU_CONFIGS
from .configs import StudyConfig
from .decode_plan import DecodeStudy
from .frontier import frontier_entry, fused_limit
from .memory_calculator import kv_cache_limit, model_kv_cache_bytes, weights_bytes
from .plan import DECODE_PART, finished_parts, missing_parts, study_plan

Progress = Callable[[str], None]
DEFAULT_TIMING = TimingConfig()


def stderr_progress(stream: TextIO = sys.stderr) -> Progress:
    def show(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return show


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, size: int = 8192) -> float:
    """Dense matmul TFLOP/s on this device: the ceiling each attention kernel is compared with."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    timing = measure(lambda: a @ b, device, TimingConfig(warmup_ms=50, rep_ms=200, min_samples=10))
    return 2 * size**3 / (timing.timing.median_ms * 1e-3) / 1e12


def measure_case(
    backend: Backend, shape: AttnShape, info: DeviceInfo, device: torch.device, timing: TimingConfig, seed: int
) -> dict[str, Any]:
    """One cell of a table: ok with numbers, does_not_fit, unavailable or error, with the reason."""
    case: dict[str, Any] = {
        "backend": backend.name,
        "workload": shape.workload,
        "seqlen": shape.context_len,
        "status": "ok",
        "reason": None,
        "median_ms": None,
        "iqr_ms": None,
        "min_ms": None,
        "max_ms": None,
        "samples": None,
        "tflops": None,
        "peak_share": None,
        "bytes_moved": shape.bytes_moved(),
        "gbps": None,
        "bandwidth_share": None,
        "peak_bytes": None,
        "speedup_vs_eager": None,
        "phases_ms": None,  # wall time of each step of the measurement (the cost breakdown, as in the gate's record)
    }
    reason = backend.unsupported_reason(shape, info)
    if reason:
        return {**case, "status": "unavailable", "reason": reason}
    try:
        qkv = make_qkv(shape, seed=seed, device=device)
        # The gate's own measuring path: "does not fit" (after a clean retry) and the kept samples mean the same here.
        measured = measuring.measure_case(
            make_workload(backend, qkv, "forward"),
            device,
            timing,
            flops=shape.flops(),
            bytes_moved=shape.bytes_moved(),
            free_caches=qkv.release_layouts,
        )
        del qkv
    except Unsupported as unsupported:
        return {**case, "status": "unavailable", "reason": str(unsupported)}
    except DoesNotFit as oom:
        return {**case, "status": "does_not_fit", "reason": str(oom)}
    except Exception as error:  # a crash is a result of the study, reported with its cause
        release_memory(device)
        status = "does_not_fit" if is_out_of_memory(error) else "error"  # the inputs themselves did not fit
        return {**case, "status": status, "reason": describe_error(error)}
    release_memory(device)
    if not measured.fits:
        return {**case, "status": "does_not_fit", "reason": measured.reason}
    if measured.median_ms is None or measured.timing is None:  # too few samples kept: no median to show
        return {**case, "status": "error", "reason": measured.reason}
    summary = measured.timing
    return {
        **case,
        "median_ms": measured.median_ms,
        "iqr_ms": measured.iqr_ms,
        "min_ms": summary.min_ms,
        "max_ms": summary.max_ms,
        "samples": len(summary.samples_ms),
        "tflops": measured.tflops,
        "gbps": measured.gbps,
        "peak_bytes": measured.peak_bytes,
        "phases_ms": dict(measured.phases_ms),
    }


def study_backends(names: Sequence[str] | None) -> tuple[Backend, ...]:
    """The backends a study measures, in the registry's order however they were named: the same set of backends is
    the same study, so a later run that lists them in another order goes on with it."""
    order = {name: index for index, name in enumerate(REGISTRY.names())}
    return tuple(sorted(REGISTRY.select(tuple(names) if names else None), key=lambda backend: order[backend.name]))


def plan_of(
    configs: Sequence[StudyConfig],
    seqlens: Sequence[int],
    backends: Sequence[str] | None,
    *,
    timing: TimingConfig = DEFAULT_TIMING,
    seed: int = 0,
    frontier: bool = True,
    decode: DecodeStudy | None = None,
) -> dict[str, Any]:
    """The plan run_study records for these arguments: what an earlier study.json must match to be gone on with."""
    selected = study_backends(backends)
    return study_plan(
        configs=[config.as_dict() for config in configs],
        seqlens=seqlens,
        backends=[backend.name for backend in selected],
        decode=decode,
        timing=timing,
        seed=seed,
        frontier=frontier,
    )


def run_study(
    device: torch.device,
    info: DeviceInfo,
    *,
    configs: Sequence[StudyConfig],
    seqlens: Sequence[int],
    backends: Sequence[str] | None = None,
    timing: TimingConfig = DEFAULT_TIMING,
    seed: int = 0,
    frontier: bool = True,
    decode: DecodeStudy | None = None,
    command: str = "attnperf report",
    progress: Progress | None = None,
    measure: Collection[str] | None = None,
    measure_decode: bool = True,
    previous: Mapping[str, Any] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Measure every backend x context length x configuration; add the frontier, the fused limits and decode.

    ``configs`` and ``decode`` are the whole study. ``measure`` names the configurations this call measures
    (default: all) and ``measure_decode`` whether it measures the decode section; ``previous`` is a document of
    the same study (the same plan) whose finished parts are kept as they are and not measured again.
    ``checkpoint`` gets the document after each part finishes (a configuration with its frontier, or the decode
    section), so a run cut off keeps what it finished."""
    show = progress or (lambda line: None)
    selected = study_backends(backends)
    plan = plan_of(configs, seqlens, backends, timing=timing, seed=seed, frontier=frontier, decode=decode)
    study = _start_document(previous, plan, info, command, selected)
    done = set(finished_parts(study))
    wanted = set(measure) if measure is not None else {config.name for config in configs}
    unknown = wanted - {config.name for config in configs}
    if unknown:
        raise ValueError(f"run_study: measure names configurations not in the study: {sorted(unknown)}")
    todo = [config for config in configs if config.name in wanted and config.name not in done]
    run: dict[str, Any] = {"started": now_iso(), "command": command, "uuid": info.uuid, "parts": []}

    def finish(part: str) -> None:
        if not run["parts"]:  # a run that finished nothing is not one of the study's runs
            study["runs"].append(run)
        run["parts"].append({"name": part, "finished": now_iso()})
        # The same model and software as the earlier runs (checked); the card and command of the latest run.
        study["gpu"], study["command"], study["created"] = info.as_dict(), command, run["started"]
        _order_by_plan(study, [config.name for config in configs])
        study["missing"] = missing_parts(study)
        study["complete"] = not study["missing"]
        if checkpoint is not None:
            checkpoint(study)

    if device.type == "cuda":
        for dtype in sorted({config.dtype for config in todo} - {"float32"} - set(study["matmul_peak_tflops"])):
            study["matmul_peak_tflops"][dtype] = matmul_peak_tflops(device, getattr(torch, dtype))
            show(f"matmul peak {dtype}: {study['matmul_peak_tflops'][dtype]:.0f} TFLOP/s")
    total = len(todo) * len(seqlens) * len(selected)
    count = 0
    for config in todo:
        cases = []
        for seqlen in seqlens:
            for backend in selected:
                count += 1
                case = measure_case(backend, config.shape(seqlen), info, device, timing, seed)
                cases.append(case)
                value = f"{case['median_ms']:.3g} ms" if case["status"] == "ok" else case["status"]
                show(f"[{count:>3}/{total}] {config.name} | {backend.name} | {seqlen:,}: {value}")
        _add_relative_numbers(cases, study["matmul_peak_tflops"].get(config.dtype))
        study["configs"].append({**config.as_dict(), "cases": cases})
        release_memory(device)
        free_bytes = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else info.memory_bytes
        for backend in selected:
            if frontier and backend.materializes_scores and device.type == "cuda":
                entry = frontier_entry(backend, config, device, free_bytes, cases)
                if entry:
                    study["frontier"].append(entry)
                    show(
                        f"frontier {config.name} | {backend.name}: {entry['measured_tokens']:,} tokens "
                        f"(predicted {entry['predicted_tokens']:,})"
                    )
            elif not backend.materializes_scores:
                limit = fused_limit(backend, config, free_bytes, cases)
                if limit:
                    study["fused_limits"].append(limit)
        finish(config.name)
    if decode is not None and measure_decode and DECODE_PART not in done:
        study["decode"] = run_decode(device, info, decode, selected, timing=timing, seed=seed, show=show)
        finish(DECODE_PART)
    study["missing"] = missing_parts(study)
    study["complete"] = not study["missing"]
    return study


def _start_document(
    previous: Mapping[str, Any] | None,
    plan: dict[str, Any],
    info: DeviceInfo,
    command: str,
    selected: Sequence[Backend],
) -> dict[str, Any]:
    """A new study document, or a copy of ``previous`` (of the same plan) that this run adds its parts to."""
    if previous is not None:
        if previous.get("plan") != plan:
            raise ValueError("run_study: the previous study has another plan (check it with study.resume first)")
        kept = copy.deepcopy(dict(previous))
        for key in ("frontier", "fused_limits", "runs"):
            kept[key] = list(kept.get(key) or [])
        kept["matmul_peak_tflops"] = dict(kept.get("matmul_peak_tflops") or {})
        return kept
    return {
        "schema": "attnperf-study/1",
        "command": command,
        "created": now_iso(),
        "gpu": info.as_dict(),
        "plan": plan,
        "runs": [],
        "configs": [],
        "frontier": [],
        "fused_limits": [],
        "matmul_peak_tflops": {},
        "flash_backends": [backend.name for backend in selected if backend.flash],
        "materialised_backends": [backend.name for backend in selected if backend.materializes_scores],
    }


def _order_by_plan(study: dict[str, Any], names: Sequence[str]) -> None:
    """Configurations and their frontier and fused limits in the study's order, whichever run measured them."""
    order = {name: index for index, name in enumerate(names)}
    for key, name_key in (("configs", "name"), ("frontier", "config"), ("fused_limits", "config")):
        study[key].sort(key=lambda entry: order.get(entry.get(name_key), len(order)))


def run_decode(
    device: torch.device,
    info: DeviceInfo,
    decode: DecodeStudy,
    backends: Sequence[Backend],
    *,
    timing: TimingConfig,
    seed: int,
    show: Progress,
) -> dict[str, Any]:
    """Every backend that decodes, at each batch, workload and cache length; then the KV cache frontier per batch."""
    copy = copy_bandwidth_gbps(str(device))
    preset = get_preset(decode.model)
    section: dict[str, Any] = {
        "model": preset.name,
        "layers": preset.num_hidden_layers,
        "dtype": decode.dtype,
        "page_size": decode.page_size,
        "copy_bandwidth_gbps": copy,
        "configs": [],
        "kv_frontier": [],
    }
    if copy:
        show(f"copy bandwidth: {copy:.0f} GB/s")
    for batch in decode.batches:
        for workload in decode.workloads:
            runs = [backend for backend in backends if backend.workload_reason(workload) is None]
            cases = []
            for length in decode.lengths:
                for backend in runs:
                    case = measure_case(backend, decode.shape(workload, batch, length), info, device, timing, seed)
                    if copy and case["gbps"]:
                        case["bandwidth_share"] = case["gbps"] / copy
                    cases.append(case)
                    value = f"{case['median_ms']:.3g} ms" if case["status"] == "ok" else case["status"]
                    show(f"{workload} batch {batch} | {backend.name} | {length:,}: {value}")
            _add_relative_numbers(cases, None)
            section["configs"].append({**decode.config(workload, batch), "cases": cases})
        section["kv_frontier"].append(kv_frontier(decode, batch, device, info))
    return section


def kv_frontier(decode: DecodeStudy, batch: int, device: torch.device, info: DeviceInfo) -> dict[str, Any]:
    """Where the model's weights plus its whole KV cache stop fitting: the calculator's prediction, and on a GPU
    the measured answer (bisected by allocating them, one K and one V tensor per layer as a static cache does)."""
    preset = get_preset(decode.model)
    release_memory(device)
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else info.memory_bytes
    grain = 1024
    entry: dict[str, Any] = {
        "batch": batch,
        "free_bytes": free,
        "weights_bytes": weights_bytes(preset, decode.dtype),
        "kv_bytes_per_token": model_kv_cache_bytes(preset, tokens=1, batch=batch, dtype=decode.dtype),
        "predicted_tokens": kv_cache_limit(preset, batch=batch, dtype=decode.dtype, free_bytes=free, granularity=grain),
        "measured_tokens": None,
        "first_failure_tokens": None,
    }
    if device.type == "cuda":
        predicted_steps = max(1, entry["predicted_tokens"] // grain)

        def fits(steps: int) -> bool:
            return _serving_memory_fits(decode, batch, steps * grain, device)

        low, high = 0, predicted_steps
        while fits(high):  # from the prediction up until it fails, then bisect
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        entry["measured_tokens"], entry["first_failure_tokens"] = low * grain, high * grain
    return entry


def _serving_memory_fits(decode: DecodeStudy, batch: int, tokens: int, device: torch.device) -> bool:
    preset = get_preset(decode.model)
    dtype = torch_dtype(decode.dtype)
    held: list[torch.Tensor] = []
    try:
        held.append(torch.empty(weights_bytes(preset, decode.dtype), dtype=torch.uint8, device=device))
        for kind in preset.layer_kinds():
            kept = min(tokens, preset.sliding_window) if kind == "sliding" and preset.sliding_window else tokens
            for _ in ("k", "v"):
                held.append(
                    torch.empty((batch, kept, preset.num_key_value_heads, preset.head_dim), dtype=dtype, device=device)
                )
        fits = True
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        fits = False
    held.clear()
    release_memory(device)
    return fits


def _add_relative_numbers(cases: list[dict[str, Any]], peak_tflops: float | None) -> None:
    eager = {c["seqlen"]: c["median_ms"] for c in cases if c["backend"] == "eager" and c["status"] == "ok"}
    for case in cases:
        if case["status"] != "ok":
            continue
        if case["seqlen"] in eager:
            case["speedup_vs_eager"] = eager[case["seqlen"]] / case["median_ms"]
        if peak_tflops:
            case["peak_share"] = case["tflops"] / peak_tflops
