"""Known third-party warnings are filtered exactly where they are emitted, and nothing else is hidden."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings
from typing import Any

import pytest
import torch

from pytest_attnperf.backends.flash import flash_attn_4
from pytest_attnperf.measure.known_noise import (
    CREATE_BLOCK_MASK_COMPILE,
    FA4_AUX_DATA,
    JIT_SCRIPT_METHOD,
    without,
)
from pytest_attnperf.spec.shapes import AttnShape

# The message FlashAttention-4's CuTe DSL printed on an H100 (docs/results/h100/2026-12/fa4-env.txt), shortened.
FA4_MESSAGE = (
    "Argument aux_data (position 17) cannot be converted to a JitArgument for function "
    "'cutlass___call___flash_attncuteflash_fwd_sm90FlashAttentionForwardSm90_object_at__None_0125_'. Its type "
    "`<class 'flash_attn.cute.utils.AuxData'>` is not supported."
)
BLOCK_MASK_MESSAGE = (
    "_compile flag on create_block_mask was originally added to work around a torch.compile limitation. That "
    "limitation has since been addressed."
)


def _messages(caught: list[warnings.WarningMessage]) -> list[tuple[type[Warning], str]]:
    return [(w.category, str(w.message)) for w in caught]


def test_without_filters_one_message_of_one_category_and_nothing_else() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with without(FA4_AUX_DATA, CREATE_BLOCK_MASK_COMPILE):
            warnings.warn(FA4_MESSAGE, UserWarning, stacklevel=1)
            warnings.warn(BLOCK_MASK_MESSAGE, DeprecationWarning, stacklevel=1)
            warnings.warn(FA4_MESSAGE, RuntimeWarning, stacklevel=1)  # same text, another category
            warnings.warn("Argument q cannot be converted", UserWarning, stacklevel=1)  # same category, another text
        warnings.warn(FA4_MESSAGE, UserWarning, stacklevel=1)  # outside the block
    assert _messages(caught) == [
        (RuntimeWarning, FA4_MESSAGE),
        (UserWarning, "Argument q cannot be converted"),
        (UserWarning, FA4_MESSAGE),
    ]


def test_fa4_call_filters_its_cute_dsl_note_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def flash_attn_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **keywords: Any) -> Any:
        warnings.warn(FA4_MESSAGE, UserWarning, stacklevel=2)
        warnings.warn("flash-attn-4: something the user must see", UserWarning, stacklevel=2)
        return q * 2, None  # (out, lse)

    cute = types.ModuleType("flash_attn.cute")
    cute.flash_attn_func = flash_attn_func  # type: ignore[attr-defined]
    cute.flash_attn_varlen_func = flash_attn_func  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
    q = torch.ones(1, 8, 2, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        output = flash_attn_4(q, q, q, AttnShape(8, 8, heads=2, kv_heads=2, head_dim=16))
    assert torch.equal(output, q * 2)
    assert _messages(caught) == [(UserWarning, "flash-attn-4: something the user must see")]


def test_transformers_flex_calls_filter_the_block_mask_deprecation_only() -> None:
    pytest.importorskip("transformers")
    from pytest_attnperf.integrations import transformers as hf
    from pytest_attnperf.spec.presets import get_preset

    preset = hf.scaled_down(get_preset("Llama-3-8B"), kv_heads=1, head_dim=16, vocab_size=64)
    built = hf.build_model(preset, "flex_attention", dtype=torch.float32, layers=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with built.attention_context():
            warnings.warn(BLOCK_MASK_MESSAGE, DeprecationWarning, stacklevel=1)
            warnings.warn("another deprecation", DeprecationWarning, stacklevel=1)
    assert _messages(caught) == [(DeprecationWarning, "another deprecation")]


def _import_warnings(code: str) -> str:
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, check=True)
    return done.stderr


def test_torch_modules_that_warn_at_import_are_imported_quietly() -> None:
    assert "torch.jit.script_method" in _import_warnings("import torch.utils.mkldnn")  # the noise is real
    quiet = _import_warnings(
        "from pytest_attnperf.measure.known_noise import import_quietly; import_quietly(); import torch.utils.mkldnn"
    )
    assert "script_method" not in quiet
    assert JIT_SCRIPT_METHOD.category is DeprecationWarning
