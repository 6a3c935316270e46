"""The repo's own attention suite: every backend at every context length under the three markers.

Runs only with ``pytest --attnperf``; on a GPU at 1K, 4K, 16K and 32K, on a CPU at small sizes.
"""

from __future__ import annotations

import pytest

from pytest_attnperf import QKV, AttnPerf, Backend


@pytest.mark.attnperf_equivalence
@pytest.mark.attnperf_latency
@pytest.mark.attnperf_memory
def test_forward(attnperf: AttnPerf, attn_backend: Backend, qkv: QKV) -> None:
    result = attnperf.measure(attn_backend, qkv)
    if result.fits:
        assert result.median_ms is not None
        assert result.median_ms > 0
        assert result.equivalence_passed is True
