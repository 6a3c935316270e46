"""`attnperf env`: is this runner ready? The GPU, the versions, each backend proven by a tiny run, the baseline file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..gate.baselines import BaselineFileError, baseline_path, load_baseline
from ..spec.device_info import SOFTWARE_KEYS, compute_units
from ..spec.options import add_argparse_options
from ..spec.units import format_bytes
from .common import CommandError, attnperf_flags, command_device
from .project_settings import settings_here


def _probe_backend(name: str, device: Any, info: Any) -> tuple[bool, str]:
    """Run a tiny case to prove the backend really works here (catches ABI or driver mismatches)."""
    import torch

    from ..backends.registry import REGISTRY, Unsupported
    from ..measure.inputs import make_qkv
    from ..measure.memory import describe_error
    from ..spec.shapes import AttnShape

    backend = REGISTRY.get(name)
    reason = backend.unavailable_reason(info)
    if reason:
        return False, reason
    dtype = "float16" if info.is_cuda else "float32"
    shape = AttnShape(q_len=256, k_len=256, batch=1, heads=4, kv_heads=4, head_dim=64, dtype=dtype)
    reason = backend.unsupported_reason(shape, info)
    if reason:
        return False, reason
    qkv = make_qkv(shape, device=device)
    try:
        with torch.no_grad():
            output = backend.run(*qkv.call_arguments(backend.layout))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Unsupported as unsupported:
        return False, str(unsupported)
    except Exception as error:  # report the failure itself: that is what env is for
        return (
            False,
            f"installed but failed a {shape.label()} run: {describe_error(error)}",
        )
    finite = bool(torch.isfinite(output).all())
    return finite, "ok" if finite else "ran but produced NaN/Inf"


def environment_report(device_spec: str, baselines_dir: Path) -> dict[str, Any]:
    """Everything `attnperf env` prints, as data."""
    from ..backends.registry import REGISTRY
    from ..measure.device import describe_device, resolve_device

    device = resolve_device(device_spec)
    info = describe_device(device)
    backends = {}
    for name in REGISTRY.names():
        ok, reason = _probe_backend(name, device, info)
        backends[name] = {"available": ok, "reason": reason, "description": REGISTRY.get(name).description}
    path = baseline_path(baselines_dir, info.slug)
    baseline_info: dict[str, Any] = {"path": str(path), "exists": path.exists()}
    try:
        baseline = load_baseline(path)
    except BaselineFileError as error:
        baseline_info["error"] = str(error)
        baseline = None
    if baseline is not None:
        baseline_info["entries"] = len(baseline.entries)
        baseline_info["recorded_with"] = baseline.environment
        baseline_info["differences"] = {
            key: {"baseline": baseline.environment.get(key), "now": value}
            for key, value in info.software().items()
            if key in baseline.environment and baseline.environment.get(key) != value
        }
    return {"device": info.as_dict(), "backends": backends, "baseline": baseline_info}


def _print_environment(report: dict[str, Any]) -> None:
    device = report["device"]
    capability = ".".join(map(str, device["capability"])) if device["capability"] else "-"
    print(f"device       {device['name']} ({device['device']}), capability {capability}, {device['generation']}")
    print(
        f"memory       {format_bytes(device['memory_bytes'])}, {compute_units(device['sm_count'], device.get('cpu_cores'))}"
    )
    for key in SOFTWARE_KEYS:
        print(f"{key:<13}{device[key] or 'not installed'}")
    print("\nbackends")
    for name, entry in report["backends"].items():
        mark = "available  " if entry["available"] else "unavailable"
        print(f"  {name:<15} {mark}  {entry['reason'] if not entry['available'] else entry['description']}")
    baseline = report["baseline"]
    print(
        f"\nbaseline    {baseline['path']} ({'exists' if baseline['exists'] else 'missing: record it with `attnperf update`'})"
    )
    if "error" in baseline:
        print(f"            ERROR: {baseline['error']}")
    if "entries" in baseline:
        print(
            f"            {baseline['entries']} entries, recorded {baseline['recorded_with'].get('recorded_at', '?')}"
        )
        for key, change in baseline["differences"].items():
            print(f"            differs: {key} {change['baseline']} (baseline) vs {change['now']} (now)")
        if not baseline["differences"]:
            print("            same software as when the baseline was recorded")


def command_env(arguments: argparse.Namespace) -> int:
    from ..session.output_paths import OutputPathError, check_baselines_folder

    settings = settings_here(attnperf_flags(arguments))  # a bad ini value: SettingsError, exit 2
    command_device(settings.device)  # a device that is not there is an argument error, not a traceback
    try:
        check_baselines_folder(settings.baselines_dir, "--attnperf-baselines", updating=False)
    except OutputPathError as error:
        raise CommandError(str(error)) from None
    report = environment_report(settings.device, settings.baselines_dir)
    if arguments.json:
        print(json.dumps(report, indent=2))
    else:
        _print_environment(report)
    usable = any(entry["available"] for entry in report["backends"].values())
    if "error" in report["baseline"]:
        return 2
    return 0 if usable else 1


def add_environment_command(commands: Any) -> None:
    env = commands.add_parser("env", help="check this runner: GPU, versions, backends, baseline file")
    env.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_argparse_options(env, ("device", "baselines"))
