"""A transformers model's output against the high-precision eager reference, under FlashAttention's rule."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import torch

from ..measure.equivalence import describe_mismatch, measure_equivalence
from ..measure.memory import release_memory
from ..spec.dtypes import parse_dtype
from ..spec.marks import EquivalenceSpec
from .transformers import HFModel, keep_last, token_ids


@dataclass(frozen=True)
class ModelEquivalence:
    """Last-position logits of one implementation against the high-precision eager reference."""

    implementation: str
    dtype: str
    reference_dtype: str
    seqlen: int
    max_error: float
    budget: float
    reference_error: float
    nonfinite: int
    elements: int
    message: str | None

    @property
    def passed(self) -> bool:
        return self.message is None


def _last_logits(model: Any, ids: torch.Tensor, context: contextlib.AbstractContextManager[Any]) -> torch.Tensor:
    with torch.no_grad(), context:
        return model(input_ids=ids, use_cache=False, **keep_last(model)).logits[:, -1]  # type: ignore[no-any-return]


def _eager_logits(hf: HFModel, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Logits of an eager copy of the same weights in ``dtype`` (the copy is freed before returning)."""
    twin = copy.deepcopy(hf.model).to(dtype)
    twin.set_attn_implementation("eager")
    logits = _last_logits(twin, ids, contextlib.nullcontext())
    del twin
    release_memory(hf.device)
    return logits


def check_equivalence(
    hf: HFModel, *, seqlen: int = 64, batch: int = 1, spec: EquivalenceSpec | None = None
) -> ModelEquivalence:
    """FlashAttention's rule on logits: error vs eager fp32 (fp64 for fp32 models) within factor x eager-in-dtype's."""
    rule = spec or EquivalenceSpec()
    ids = token_ids(batch, seqlen, vocab_size=hf.preset.vocab_size, seed=hf.seed, device=hf.device)
    output = _last_logits(hf.model, ids, hf.attention_context())
    high = torch.float64 if hf.dtype == torch.float32 else torch.float32
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # a TF32 reference would be as coarse as fp16
    try:
        reference = _eager_logits(hf, ids, high)
    finally:
        torch.set_float32_matmul_precision(precision)
    low = _eager_logits(hf, ids, hf.dtype)
    result = measure_equivalence(output, reference, low, rule)
    return ModelEquivalence(
        implementation=hf.implementation,
        dtype=parse_dtype(hf.dtype),
        reference_dtype=str(high).removeprefix("torch."),
        seqlen=seqlen,
        max_error=result.max_error,
        budget=result.budget,
        reference_error=result.reference_error,
        nonfinite=result.nonfinite,
        elements=result.elements,
        message=describe_mismatch(result),
    )
