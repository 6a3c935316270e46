"""The study's configurations: one table each (a dtype, masking, head dim and head grouping), on a GPU and on a CPU
(no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..spec.shapes import AttnShape


@dataclass(frozen=True)
class StudyConfig:
    """One table of the study: a dtype, masking, head dim and head grouping."""

    name: str
    dtype: str
    causal: bool
    head_dim: int
    heads: int = 32
    kv_heads: int = 32
    batch: int = 1

    def shape(self, seqlen: int) -> AttnShape:
        return AttnShape(
            q_len=seqlen,
            k_len=seqlen,
            batch=self.batch,
            heads=self.heads,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            dtype=self.dtype,
            causal=self.causal,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "causal": self.causal,
            "batch": self.batch,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
        }


GPU_CONFIGS = (
    StudyConfig("fp16 causal d128", "float16", True, 128),
    StudyConfig("bf16 causal d128", "bfloat16", True, 128),
    StudyConfig("fp16 non-causal d128", "float16", False, 128),
    StudyConfig("fp16 causal d64", "float16", True, 64, heads=64, kv_heads=64),
    StudyConfig("fp16 causal d128 GQA 32:8", "float16", True, 128, kv_heads=8),
)
# The study on a CPU sweeps more lengths than a CPU main job's smoke run (spec.options.CPU_SEQLENS).
CPU_STUDY_SEQLENS = (128, 256, 512, 1024)
CPU_CONFIGS = (
    StudyConfig("fp32 causal d64", "float32", True, 64, heads=8, kv_heads=8),
    StudyConfig("fp32 non-causal d64", "float32", False, 64, heads=8, kv_heads=8),
    StudyConfig("fp32 causal d64 GQA 8:2", "float32", True, 64, heads=8, kv_heads=2),
)
