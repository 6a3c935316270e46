"""The study's decode section: measured on the CPU at toy sizes, rendered from a synthetic GPU document, and the
KV cache frontier tied to the memory calculator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fast_run import CPU

from pytest_attnperf.cli.commands import build_parser
from pytest_attnperf.spec.options import TimingConfig
from pytest_attnperf.spec.presets import get_preset
from pytest_attnperf.study.decode_plan import GPU_DECODE, DecodeStudy
from pytest_attnperf.study.markdown import render_markdown
from pytest_attnperf.study.memory_calculator import kv_cache_limit, model_kv_cache_bytes, weights_bytes
from pytest_attnperf.study.plots import render_plots
from pytest_attnperf.study.runner import run_study

GiB = 1 << 30
TOY = DecodeStudy("Llama-3-8B", "float32", batches=(1, 2), lengths=(64, 128), page_size=16)
FAST = TimingConfig(warmup_ms=1, rep_ms=3, min_samples=3)


def test_the_gpu_plan_covers_1k_to_128k_at_batch_1_and_a_serving_batch() -> None:
    assert GPU_DECODE.lengths[0] == 1024
    assert 32768 in GPU_DECODE.lengths
    assert GPU_DECODE.lengths[-1] == 131072
    assert GPU_DECODE.batches == (1, 16)
    shape = GPU_DECODE.shape("paged", 16, 4096)
    assert (shape.q_len, shape.k_len, shape.heads, shape.kv_heads, shape.page_size) == (1, 4096, 32, 8, 256)


def test_kv_cache_limit_is_the_calculators_kv_cache_beside_the_weights() -> None:
    llama = get_preset("Llama-3-8B")
    free = 140 * GiB
    per_token = model_kv_cache_bytes(llama, tokens=1, batch=16, dtype="bfloat16")
    assert per_token == 2 * 32 * 8 * 128 * 2 * 16  # K and V, 32 layers, 8 KV heads, head_dim 128, bf16, 16 sequences
    limit = kv_cache_limit(llama, batch=16, dtype="bfloat16", free_bytes=free, granularity=1024)
    room = free - weights_bytes(llama, "bfloat16")
    assert limit == room // per_token // 1024 * 1024
    assert kv_cache_limit(llama, batch=1, dtype="bfloat16", free_bytes=weights_bytes(llama, "bfloat16")) == 0
    # Only sliding layers past the window: the cache stops growing, so no length is too long.
    mistral = get_preset("Mistral-7B")
    assert kv_cache_limit(mistral, batch=1, dtype="bfloat16", free_bytes=40 * GiB) > 1 << 40


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    """The decode section measured on this CPU: eager and SDPA's math kernel, two batches, two lengths."""
    return run_study(
        torch.device("cpu"), CPU, configs=(), seqlens=(), backends=("eager", "sdpa-math"), timing=FAST, decode=TOY
    )


@pytest.mark.slow
def test_the_decode_section_measures_each_batch_and_workload(measured: dict[str, Any]) -> None:
    decode = measured["decode"]
    assert decode["model"] == "Llama-3-8B"
    assert decode["copy_bandwidth_gbps"] is None  # measured on CUDA only
    names = [config["name"] for config in decode["configs"]]
    assert names == ["decode, batch 1", "paged decode, batch 1", "decode, batch 2", "paged decode, batch 2"]
    dense, paged = decode["configs"][2], decode["configs"][3]
    assert {case["backend"] for case in dense["cases"]} == {"eager", "sdpa-math"}
    assert {case["backend"] for case in paged["cases"]} == {"eager"}  # SDPA has no block table
    case = next(c for c in dense["cases"] if c["backend"] == "eager" and c["seqlen"] == 128)
    assert case["status"] == "ok"
    assert case["bytes_moved"] == 4 * 128 * (2 * 1 * 32 * 2 + 2 * 128 * 8 * 2)
    assert case["gbps"] == pytest.approx(case["bytes_moved"] / case["median_ms"] / 1e6)
    frontier = decode["kv_frontier"][1]
    assert frontier["batch"] == 2
    assert frontier["measured_tokens"] is None  # a CPU's RAM is not bisected
    predicted = kv_cache_limit(get_preset("Llama-3-8B"), batch=2, dtype="float32", free_bytes=CPU.memory_bytes)
    assert frontier["predicted_tokens"] == predicted


@pytest.mark.slow
def test_the_measured_section_renders(measured: dict[str, Any], tmp_path: Path) -> None:
    markdown = render_markdown(measured)
    assert "## Decode: one new token over a KV cache" in markdown
    assert "**decode, batch 2**:" in markdown
    assert "fit up to" in markdown
    assert "by the memory calculator (not measured on this device)" in markdown
    plots = render_plots(measured, tmp_path)
    assert tmp_path / "decode-decode-batch-1.png" in plots
    assert tmp_path / "decode-paged-decode-batch-2.png" in plots


def _case(backend: str, seqlen: int, median_ms: float | None, **extra: Any) -> dict[str, Any]:
    status = "ok" if median_ms is not None else extra.pop("status", "unavailable")
    gbps = extra.pop("gbps", None)
    return {"backend": backend, "seqlen": seqlen, "status": status, "median_ms": median_ms, "gbps": gbps, **extra}


def test_a_gpu_document_renders_on_vs_off_bandwidth_and_the_frontier() -> None:
    """Synthetic, round numbers: the rendering, not a measurement."""
    cases = [
        _case("eager", 1024, 0.1, gbps=40.0),
        _case("eager", 131072, None, status="does_not_fit", reason="CUDA out of memory"),
        _case("flash-attn", 1024, 0.01, gbps=400.0, bandwidth_share=0.1),
        _case("flash-attn", 131072, 0.5, gbps=2000.0, bandwidth_share=0.5),
    ]
    study = {
        "schema": "attnperf-study/1",
        "gpu": {"name": "Synthetic GPU"},
        "configs": [],
        "flash_backends": ["flash-attn"],
        "decode": {
            "model": "Llama-3-8B",
            "layers": 32,
            "copy_bandwidth_gbps": 4000.0,
            "configs": [
                {"name": "decode, batch 16", "workload": "decode", "batch": 16, "heads": 32, "kv_heads": 8}
                | {"head_dim": 128, "dtype": "bfloat16", "causal": True, "cases": cases},
            ],
            "kv_frontier": [
                {
                    "batch": 16,
                    "free_bytes": 100 * GiB,
                    "weights_bytes": 15 * GiB,
                    "kv_bytes_per_token": 2 << 20,
                    "predicted_tokens": 43008,
                    "measured_tokens": 41984,
                    "first_failure_tokens": 43008,
                }
            ],
        },
    }
    markdown = render_markdown(study)
    assert "measured copy bandwidth of 4,000 GB/s" in markdown
    assert "| 1K | 0.1 ms | 10 us (flash-attn) | 400 GB/s, 10.0% of copy | **10.0×** | fits |" in markdown
    assert (
        "| 128K | **does not fit** | 0.5 ms (flash-attn) | 2,000 GB/s, 50.0% of copy | – | **does not fit** |"
        in markdown
    )
    assert "whole model's KV cache (measured)" in markdown
    assert (
        "- **batch 16**: Llama-3-8B's weights (15 GiB) and its KV cache (32 layers, 2 MiB per token of context)"
        in markdown
    )
    assert (
        "fit up to **41,984 tokens** measured (first failure at 43,008); the memory calculator predicts 43,008 (+2.44%)"
        in markdown
    )
    assert "| flash-attn | 10 us (400 GB/s, 10.0% of copy) | 0.5 ms (2,000 GB/s, 50.0% of copy) |" in markdown
    assert "- *does not fit* — eager (128K): CUDA out of memory" in markdown


def test_attnperf_report_can_leave_out_either_section() -> None:
    parser = build_parser()
    assert parser.parse_args(["report", "--only", "decode"]).only == "decode"
    assert parser.parse_args(["report"]).only is None
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "--only", "training"])
