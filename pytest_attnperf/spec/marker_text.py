"""The markers' usage and help lines: what pytest --markers shows, registered at every run's start.

Apart from :mod:`pytest_attnperf.spec.marks` (which parses the markers) so that the plugin can register them
without loading the parsers: a suite that uses no attnperf marker never imports those.
"""

from __future__ import annotations

MARKER_USAGE = {
    "attnperf_latency": "attnperf_latency(tolerance=0.1 | '10%', budget=2.5 | '2.5 ms' | '250 us', baseline=True, "
    "cuda_graph=None | True | False)",
    "attnperf_memory": "attnperf_memory(tolerance=0.05 | '5%', ceiling=2147483648 | '2 GiB' | '512 MiB', baseline=True)",
    "attnperf_equivalence": "attnperf_equivalence(rule='fa2' | 'fa3' | 'allclose', factor=2.0, rtol=1e-2, atol=2e-2)",
    "attnperf_backends": "attnperf_backends('sdpa-flash', 'flash-attn', ...)",
    "attnperf_shape": "attnperf_shape(batch=1, heads=32, kv_heads=8, head_dim=128, dtype='float16' | ['float16', "
    "'bfloat16'], causal=True, window=(256, 0), scale=None, softcap=None | 50.0, mode='forward', seqlens=[1024, 4096], "
    "workload='prefill' | 'decode' | 'paged' | 'varlen' | 'chunked', q_len=1, page_size=256, "
    "model='Llama-3-70B' | 'path/to/config.json', layer='full' | 'sliding')",
}
MARKER_HELP = {
    "attnperf_latency": "gate the median latency against the per-GPU baseline and/or an absolute budget",
    "attnperf_memory": "gate the peak memory against the per-GPU baseline and/or an absolute ceiling",
    "attnperf_equivalence": "check the output against a high-precision reference (FlashAttention's rule by default)",
    "attnperf_backends": "restrict the attn_backend parametrization of this test",
    "attnperf_shape": "set (or parametrize) the shape of the qkv inputs of this test",
}
