"""What the study's decode section measures: a model's attention layer, one new token per sequence, caches of
growing length, dense and paged, at batch 1 and a serving batch (no torch import)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..spec.presets import get_preset
from ..spec.shapes import AttnShape


@dataclass(frozen=True)
class DecodeStudy:
    """The decode section: one layer of ``model``, one new token per sequence, over caches of ``lengths``."""

    model: str
    dtype: str
    batches: tuple[int, ...]  # batch 1 and a serving batch
    lengths: tuple[int, ...]
    page_size: int
    workloads: tuple[str, ...] = ("decode", "paged")

    def shape(self, workload: str, batch: int, length: int) -> AttnShape:
        attention = get_preset(self.model).attention()
        page_size = self.page_size if workload == "paged" else None
        return AttnShape(1, length, batch=batch, dtype=self.dtype, workload=workload, page_size=page_size, **attention)  # type: ignore[arg-type]

    def with_lengths(self, lengths: tuple[int, ...]) -> DecodeStudy:
        """The same section over caches of ``lengths`` (the report's --attnperf-seqlens)."""
        if not lengths:
            raise ValueError("the decode section needs at least one cache length")
        return dataclasses.replace(self, lengths=tuple(lengths))

    def config(self, workload: str, batch: int) -> dict[str, Any]:
        shape = self.shape(workload, batch, self.lengths[0])
        name = f"{'paged decode' if workload == 'paged' else 'decode'}, batch {batch}"
        described = {
            key: shape.as_dict()[key] for key in ("workload", "batch", "heads", "kv_heads", "head_dim", "dtype")
        }
        return {"name": name, "causal": True, **described, "page_size": shape.page_size}


# One layer of Llama-3-8B (32 query heads, 8 KV heads, head_dim 128): the model one GPU serves alone.
GPU_DECODE = DecodeStudy("Llama-3-8B", "bfloat16", (1, 16), (1024, 2048, 4096, 8192, 16384, 32768, 131072), 256)
CPU_DECODE = DecodeStudy("Llama-3-8B", "float32", (1, 4), (256, 1024, 4096), 16)
