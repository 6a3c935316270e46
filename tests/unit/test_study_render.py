"""Tests for rendering the study document as Markdown, PNG plots and JSON."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from pytest_attnperf.study.document import render_json
from pytest_attnperf.study.markdown import render_markdown
from pytest_attnperf.study.plots import render_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEQLENS = (1024, 4096, 16384)


def _case(backend: str, seqlen: int, status: str, **numbers: float | None) -> dict[str, Any]:
    """One synthetic case; numbers left out are None, as the producer writes them."""
    case: dict[str, Any] = {"backend": backend, "seqlen": seqlen, "status": status, "reason": None}
    for key in ("median_ms", "iqr_ms", "min_ms", "max_ms", "tflops", "peak_share", "peak_bytes", "speedup_vs_eager"):
        case[key] = numbers.get(key)
    return case


@pytest.fixture
def study() -> dict[str, Any]:
    """A small, clearly synthetic study: round made-up numbers, not measurements."""
    cases = [
        _case("eager", 1024, "ok", median_ms=1.0, tflops=10.0, peak_share=0.02, peak_bytes=1 << 28),
        _case("eager", 4096, "ok", median_ms=16.0, tflops=10.0, peak_share=0.02, peak_bytes=1 << 32),
        {**_case("eager", 16384, "does_not_fit"), "reason": "CUDA out of memory: tried to allocate 64.0 GiB"},
        _case("sdpa-flash", 1024, "ok", median_ms=0.25, tflops=40.0, peak_share=0.08, peak_bytes=1 << 23),
        _case("sdpa-flash", 4096, "ok", median_ms=2.0, tflops=80.0, peak_share=0.16, peak_bytes=1 << 25),
        _case("sdpa-flash", 16384, "ok", median_ms=30.0, tflops=85.0, peak_share=0.17, peak_bytes=1 << 27),
        _case("flash-attn", 1024, "ok", median_ms=0.5, tflops=20.0, peak_share=0.04, peak_bytes=1 << 23),
        _case("flash-attn", 4096, "ok", median_ms=1.6, tflops=100.0, peak_share=0.2, peak_bytes=1 << 25),
        _case("flash-attn", 16384, "ok", median_ms=25.0, tflops=102.0, peak_share=0.204, peak_bytes=1 << 27),
        *[
            {**_case("flash-attn-3", n, "unavailable"), "reason": "flash_attn_interface is not installed"}
            for n in SEQLENS
        ],
        {**_case("broken", 4096, "error"), "reason": "RuntimeError: synthetic | failure"},
    ]
    return {
        "schema": "attnperf-study/1",
        "command": "attnperf report --out docs/results",
        "created": "2000-01-01T00:00:00Z",
        "gpu": {
            "name": "Synthetic GPU 1",
            "device": "cuda:0",
            "capability": [9, 0],
            "generation": "Hopper",
            "memory_bytes": 80 << 30,
            "sm_count": 100,
            "driver": "1.2.3",
            "cuda": "13.0",
            "cudnn": "91900",
            "torch": "9.9.9",
            "triton": None,
            "flash_attn": None,
        },
        "matmul_peak_tflops": {"float16": 500.0},
        "configs": [
            {
                "name": "fp16 causal d128",
                "dtype": "float16",
                "causal": True,
                "batch": 1,
                "heads": 8,
                "kv_heads": 8,
                "head_dim": 128,
                "cases": cases,
            }
        ],
        "frontier": [
            {
                "backend": "eager",
                "config": "fp16 causal d128",
                "measured_tokens": 12_288,
                "first_failure_tokens": 12_544,
                "predicted_tokens": 12_032,
                "naive_tokens": 15_104,
                "gap_fraction": -0.0208,
                "free_bytes": 79 << 30,
                "explanation": "Synthetic: three N×N buffers | not two.",
                "predicted_items": [["scores", 40 << 30], ["probabilities", 20 << 30]],
            }
        ],
        "fused_limits": [
            {"backend": "flash-attn", "config": "fp16 causal d128", "max_tokens": 1_000_000, "statement": "Fits 1M."}
        ],
        "transformers": [
            {
                "preset": "tiny-synthetic",
                "layers": 2,
                "attn_implementation": impl,
                "phase": "prefill",
                "seqlen": 4096,
                "status": status,
                "reason": reason,
                "median_ms": median,
                "iqr_ms": None,
                "peak_bytes": 1 << 30 if median else None,
            }
            for impl, status, reason, median in [
                ("eager", "ok", None, 12.0),
                ("sdpa", "ok", None, 6.0),
                ("flash_attention_2", "unavailable", "flash-attn package missing", None),
            ]
        ],
    }


def test_markdown_puts_the_answer_first(study: dict[str, Any]) -> None:
    markdown = render_markdown(study)
    glance = markdown.index("## At a glance")
    assert glance < markdown.index("### Latency") < markdown.index("## Memory frontier")
    answer = markdown[glance : markdown.index("## fp16 causal d128")]
    # Fastest flash: sdpa-flash at 1K (1.0/0.25), flash-attn at 4K (16/1.6); eager does not fit at 16K.
    assert "| 1K | 1 ms | 0.25 ms (sdpa-flash) | **4.00×** |" in answer
    assert "| 4K | 16 ms | 1.6 ms (flash-attn) | **10.0×** |" in answer
    assert "| 16K | **does not fit** | 25 ms (flash-attn) | – |" in answer
    assert "**4.00×–10.0×** as fast as off from 1K to 4K" in answer
    assert "**12,288 tokens** measured (first failure at 12,544); the memory model predicted 12,032" in answer


def test_markdown_header_names_gpu_versions_and_command(study: dict[str, Any]) -> None:
    markdown = render_markdown(study)
    assert markdown.startswith("# Attention study: FlashAttention on vs off on Synthetic GPU 1\n")
    assert "compute capability 9.0" in markdown
    assert "cuDNN 9.19.0" in markdown
    assert "`attnperf report --out docs/results`" in markdown
    assert "triton" not in markdown.split("## At a glance")[0]  # None versions are left out


def test_markdown_cells_show_time_throughput_and_share_of_peak(study: dict[str, Any]) -> None:
    markdown = render_markdown(study)
    assert "| eager | 1 ms (10.0 TFLOP/s, 2.00%) | 16 ms (10.0 TFLOP/s, 2.00%) | **does not fit** |" in markdown
    assert "| sdpa-flash | 8 MiB, 4.00× | 32 MiB, 8.00× |" in markdown  # speedup derived when not given
    assert "| eager | 256 MiB, 1.00× | 4 GiB, 1.00× | **does not fit** |" in markdown


def test_markdown_lists_each_reason_once(study: dict[str, Any]) -> None:
    markdown = render_markdown(study)
    assert "| flash-attn-3 | n/a | n/a | n/a |" in markdown
    assert markdown.count("flash\\_attn\\_interface is not installed") == 1
    assert "- *n/a* — flash-attn-3: flash\\_attn\\_interface is not installed" in markdown
    assert "- *error* — broken (4K): RuntimeError: synthetic \\| failure" in markdown
    assert "- *does not fit* — eager (16K): CUDA out of memory: tried to allocate 64.0 GiB" in markdown
    assert "| broken | – | error | – |" in markdown


def test_markdown_frontier_fused_and_transformers(study: dict[str, Any]) -> None:
    markdown = render_markdown(study)
    row = "| eager | 12,032 | 15,104 | 12,288 | 12,544 | -2.08% | Synthetic: three N×N buffers \\| not two. |"
    assert row in markdown
    assert "- **eager** at 12,032 tokens: scores 40 GiB + probabilities 20 GiB = 60 GiB of 79 GiB free" in markdown
    assert "- **flash-attn** (fp16 causal d128): Fits 1M." in markdown
    assert "### tiny-synthetic, 2 layers" in markdown
    assert "| eager · prefill | 12 ms, 1 GiB |" in markdown
    assert "| flash\\_attention\\_2 · prefill | n/a |" in markdown


def test_markdown_tolerates_missing_optional_keys(study: dict[str, Any]) -> None:
    for key in ("matmul_peak_tflops", "frontier", "fused_limits", "transformers", "command", "created"):
        del study[key]
    study["gpu"] = {"name": "cpu", "capability": None, "generation": "CPU", "memory_bytes": None}
    markdown = render_markdown(study)
    assert "| eager | 1 ms (10.0 TFLOP/s) | 16 ms (10.0 TFLOP/s) | **does not fit** |" in markdown
    assert "%" not in markdown.split("### Latency")[1].split("### Peak memory")[0]
    for absent in ("## Memory frontier", "## How far fused", "## transformers", "Largest context"):
        assert absent not in markdown


@pytest.mark.parametrize("document", [{}, {"configs": []}, {"configs": [{"name": "empty", "cases": []}]}])
def test_markdown_of_an_empty_study_still_renders(document: dict[str, Any]) -> None:
    markdown = render_markdown(document)
    assert markdown.startswith("# Attention study")
    assert "## At a glance" in markdown


def test_json_is_sorted_and_refuses_nan(study: dict[str, Any]) -> None:
    text = render_json(study)
    assert json.loads(text) == study
    assert text.index('"command"') < text.index('"configs"') < text.index('"schema"')
    broken = copy.deepcopy(study)
    broken["configs"][0]["cases"][0]["median_ms"] = math.nan
    with pytest.raises(ValueError, match="JSON compliant"):
        render_json(broken)


def test_plots_are_pngs_and_figures_are_closed(study: dict[str, Any], tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    second = copy.deepcopy(study["configs"][0])
    second["name"] = "BF16 / d64 (GQA)"
    study["configs"].append(second)
    paths = render_plots(study, tmp_path / "plots")
    assert [path.name for path in paths] == [
        "latency-fp16-causal-d128.png",
        "memory-fp16-causal-d128.png",
        "latency-bf16-d64-gqa.png",
        "memory-bf16-d64-gqa.png",
    ]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 1000
    assert plt.get_fignums() == []


def test_plots_tolerate_missing_optional_keys(study: dict[str, Any], tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    for key in ("matmul_peak_tflops", "frontier", "gpu"):
        del study[key]
    study["configs"].append({"name": "", "cases": []})  # nothing measured, no name: still two files
    paths = render_plots(study, tmp_path)
    assert [path.name for path in paths][2:] == ["latency-config-2.png", "memory-config-2.png"]
    assert all(path.read_bytes().startswith(PNG_SIGNATURE) for path in paths)
    assert plt.get_fignums() == []


def test_a_plot_cut_off_mid_save_leaves_the_last_whole_one(
    study: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    first = render_plots(study, tmp_path)
    before = {path: path.read_bytes() for path in first}

    def cut_off(figure: Figure, target: Any, *arguments: Any, **options: Any) -> None:
        target.write(PNG_SIGNATURE)  # the first bytes, then the time limit
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", cut_off)
    with pytest.raises(KeyboardInterrupt):
        render_plots(study, tmp_path)
    assert {path: path.read_bytes() for path in first} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in first)  # no temp file
