"""The repo's own attention suite: every backend at every context length under the three markers, for the
prompt (prefill) and for inference: decode over a KV cache, a paged cache, variable-length batches and
chunked prefill.

Runs only with ``pytest --attnperf``; on a GPU at 1K, 4K, 16K and 32K, on a CPU at small sizes. The plugin
already fails a case whose output disagrees with the reference or whose time or memory regressed; the
assertions here check what it does not: that the case measured is the one asked for, that the kernel
left its inputs (the KV cache above all) as it found them, and, on a GPU, FlashAttention's memory claim.
"""

from __future__ import annotations

import pytest
import torch

from pytest_attnperf import QKV, AttnPerf, Backend
from pytest_attnperf.gate.results import CaseRecord
from pytest_attnperf.spec.dtypes import dtype_bytes

INFERENCE = ["decode", "paged", "varlen", "chunked"]


@pytest.mark.attnperf_equivalence
@pytest.mark.attnperf_latency
@pytest.mark.attnperf_memory
def test_forward(
    attnperf: AttnPerf, attn_backend: Backend, qkv: QKV, context_len: int, request: pytest.FixtureRequest
) -> None:
    """The prompt: every query over every key (the workloads of --attnperf-workloads, prefill by default)."""
    result = _measure_untouched(attnperf, attn_backend, qkv, context_len, request)
    shape = qkv.shape
    if result.fits and qkv.device.type == "cuda" and shape.q_len == shape.k_len and result.peak_bytes is not None:
        # FlashAttention's point, measured: a fused kernel never holds the score matrix, a materialising one does.
        scores = shape.batch * shape.heads * shape.q_len * shape.k_len * dtype_bytes(shape.dtype)
        if attn_backend.materializes_scores:
            assert result.peak_bytes >= scores, f"{attn_backend.name} claims to materialise scores but peaked lower"
        else:
            assert result.peak_bytes < scores, f"{attn_backend.name} used a score matrix's worth of memory"


@pytest.mark.attnperf_equivalence
@pytest.mark.attnperf_latency
@pytest.mark.attnperf_memory
@pytest.mark.attnperf_shape(workload=INFERENCE)
def test_inference(
    attnperf: AttnPerf, attn_backend: Backend, qkv: QKV, context_len: int, request: pytest.FixtureRequest
) -> None:
    """One decode step (paged or not), a packed varlen batch, a chunk of a prefill, each over the context."""
    _measure_untouched(attnperf, attn_backend, qkv, context_len, request)


def _measure_untouched(
    attnperf: AttnPerf, backend: Backend, qkv: QKV, context_len: int, request: pytest.FixtureRequest
) -> CaseRecord:
    """Measure, and check the case is the one its id names and its inputs came back unchanged."""
    shape = qkv.shape
    case_id = request.node.callspec.id
    assert f"-{backend.name}-" in f"-{case_id}"
    assert case_id.startswith(f"{shape.workload}-") != (shape.workload == "prefill")  # the id says the workload
    assert shape.k_len == context_len
    before = _fingerprint(qkv)
    result = attnperf.measure(backend, qkv)
    assert result.seqlen == context_len
    assert _fingerprint(qkv) == before, f"{backend.name} wrote into its inputs (an in-place cache update?)"
    if result.fits:
        assert result.median_ms is not None
        assert result.median_ms > 0
    return result


def _fingerprint(qkv: QKV) -> list[tuple[float, float]]:
    """Two sums per input tensor, in float64: any write into q, k, v, the pages or the index changes them."""
    with torch.no_grad():
        return [(float(t.double().sum()), float(t.double().square().sum())) for t in qkv.tensors()]
