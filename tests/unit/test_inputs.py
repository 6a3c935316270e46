"""Seeded inputs (same seed, same bits, anywhere) and the attention shape: validation and FLOPs."""

from __future__ import annotations

import hashlib
import math
import re
import struct

import pytest
import torch

from pytest_attnperf.measure.inputs import make_qkv, seeded_normal, torch_dtype
from pytest_attnperf.measure.reference import band_mask
from pytest_attnperf.spec.dtypes import parse_dtype
from pytest_attnperf.spec.shapes import AttnShape

SMALL = AttnShape(q_len=8, k_len=8, batch=1, heads=2, kv_heads=1, head_dim=4, dtype="float32")
# Computed once from pytest_attnperf.measure.inputs (splitmix64 + four 16-bit uniforms); any machine, any
# torch version must reproduce these bits, or baselines recorded elsewhere compare different inputs.
SMALL_Q_SHA256 = "622471394d49e033040b1b7f22e87b55708dcb77ecddaab214ac9f46984d66e0"
SMALL_Q_FP16_SHA256 = "b0896a3a27ebcad2e4e5373660c385ab0e9b823a1d2bf04d74da327f7a7a47e8"
MASK64 = (1 << 64) - 1


def _reference_normal(seed: int, stream: int, index: int) -> float:
    """The documented generator in plain Python integers: splitmix64, four 16-bit uniforms, * sqrt(3)."""
    key = (seed * 0x100000001B3 + stream * 0x1F3) & ((1 << 62) - 1)
    z = (index + key + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    total = sum((z >> shift) & 0xFFFF for shift in (0, 16, 32, 48))
    sqrt3 = struct.unpack("f", struct.pack("f", math.sqrt(3.0)))[0]
    # The product of a 19-bit and a 24-bit mantissa is exact in a double; one rounding to float32 follows.
    return float(struct.unpack("f", struct.pack("f", (total / 65536.0 - 2.0) * sqrt3))[0])


def _sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


# ---------------------------------------------------------------- seeded inputs


def test_pinned_bits_of_a_small_query() -> None:
    assert _sha256(make_qkv(SMALL, seed=0).q) == SMALL_Q_SHA256


def test_pinned_bits_in_float16() -> None:
    shape = AttnShape(q_len=8, k_len=8, batch=1, heads=2, kv_heads=1, head_dim=4, dtype="float16")
    assert _sha256(make_qkv(shape, seed=0).q) == SMALL_Q_FP16_SHA256


@pytest.mark.parametrize(("seed", "stream"), [(0, 0), (0, 1), (0, 2), (7, 0), (2**40 + 3, 2)])
def test_every_element_follows_the_documented_generator(seed: int, stream: int) -> None:
    tensor = seeded_normal((3, 37), seed=seed, stream=stream, dtype=torch.float32, device=torch.device("cpu"))
    expected = [_reference_normal(seed, stream, index) for index in range(3 * 37)]
    assert tensor.flatten().tolist() == expected


def test_same_seed_gives_identical_bits() -> None:
    first, second = make_qkv(SMALL, seed=3), make_qkv(SMALL, seed=3)
    for a, b in ((first.q, second.q), (first.k, second.k), (first.v, second.v)):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_different_seeds_and_streams_differ() -> None:
    zero, one = make_qkv(SMALL, seed=0), make_qkv(SMALL, seed=1)
    assert not torch.equal(zero.q, one.q)
    assert not torch.equal(zero.k, one.k)
    # q, k and v of one seed are independent streams, not copies.
    assert not torch.equal(zero.q[:, :1], zero.k)
    assert not torch.equal(zero.k, zero.v)


def test_lower_precision_inputs_are_the_float32_values_rounded() -> None:
    shape32 = AttnShape(q_len=16, k_len=16, heads=2, kv_heads=2, head_dim=8, dtype="float32")
    for dtype in ("float16", "bfloat16"):
        low = make_qkv(AttnShape(q_len=16, k_len=16, heads=2, kv_heads=2, head_dim=8, dtype=dtype), seed=5)
        assert torch.equal(low.q, make_qkv(shape32, seed=5).q.to(low.q.dtype))


def test_values_are_roughly_standard_normal() -> None:
    values = seeded_normal((1 << 16,), seed=0, stream=0, dtype=torch.float32, device=torch.device("cpu"))
    assert abs(float(values.mean())) < 0.02
    assert float(values.std()) == pytest.approx(1.0, abs=0.02)
    # Sum of four uniforms: bounded by 2*sqrt(3) and symmetric, about 68 % within one sigma.
    assert float(values.abs().max()) <= 2 * math.sqrt(3) + 1e-6
    assert float((values.abs() < 1).float().mean()) == pytest.approx(0.68, abs=0.03)


def test_global_rng_is_neither_read_nor_written() -> None:
    state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    after_seed = torch.random.get_rng_state()
    make_qkv(SMALL, seed=0)
    assert torch.equal(torch.random.get_rng_state(), after_seed)
    torch.random.set_rng_state(state)


def test_qkv_shapes_dtype_and_layouts() -> None:
    shape = AttnShape(q_len=8, k_len=12, batch=2, heads=4, kv_heads=2, head_dim=16, dtype="bf16")
    qkv = make_qkv(shape, seed=1)
    assert qkv.q.shape == (2, 4, 8, 16)
    assert qkv.k.shape == qkv.v.shape == (2, 2, 12, 16)
    assert qkv.q.dtype == torch.bfloat16
    assert qkv.device == torch.device("cpu")
    assert all(a is b for a, b in zip(qkv.in_layout("bhsd"), (qkv.q, qkv.k, qkv.v), strict=True))
    q, k, _ = qkv.in_layout("bshd")
    assert q.shape == (2, 8, 4, 16)
    assert q.is_contiguous()
    assert torch.equal(q.transpose(1, 2), qkv.q)
    assert qkv.in_layout("bshd")[1] is k  # made once, reused
    qkv.release_layouts()
    assert qkv.in_layout("bshd")[1] is not k


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"heads": 3, "kv_heads": 2}, "heads (3) must be a multiple of kv_heads (2)"),
        ({"window": (-2, 0)}, "window (-2, 0) must hold sizes >= 0, or -1 for unbounded"),
        ({"window": (0, -5)}, "must hold sizes >= 0"),
        ({"q_len": 0}, "q_len must be a positive integer, got 0"),
        ({"head_dim": True}, "head_dim must be a positive integer, got True"),
        ({"batch": 1.0}, "batch must be a positive integer, got 1.0"),
        ({"scale": 0.0}, "scale must be a positive finite number, got 0.0"),
        ({"scale": math.nan}, "scale must be a positive finite number"),
        ({"dtype": "float64"}, "unsupported dtype 'float64'; expected one of float16, bfloat16, float32"),
    ],
)
def test_impossible_shapes_are_refused(fields: dict[str, object], fragment: str) -> None:
    arguments: dict[str, object] = {"q_len": 16, "k_len": 16, "heads": 4, "kv_heads": 4, **fields}
    with pytest.raises(ValueError, match=re.escape(fragment)):
        AttnShape(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("fp16", "float16"),
        ("half", "float16"),
        ("BF16", "bfloat16"),
        ("float", "float32"),
        (torch.bfloat16, "bfloat16"),
        (" float32 ", "float32"),
    ],
)
def test_parse_dtype_aliases(value: object, expected: str) -> None:
    assert parse_dtype(value) == expected


def test_parse_dtype_refuses_others() -> None:
    with pytest.raises(ValueError, match=r"unsupported dtype torch\.float64"):
        parse_dtype(torch.float64)


def test_shape_normalises_dtype_and_window() -> None:
    shape = AttnShape(q_len=4, k_len=4, dtype="bf16", window=[8, 0])  # type: ignore[arg-type]
    assert shape.dtype == "bfloat16"
    assert torch_dtype(shape.dtype) == torch.bfloat16
    assert shape.window == (8, 0)
    assert shape.with_seqlen(32).q_len == shape.with_seqlen(32).k_len == 32
    assert shape.seqlen == 4


def test_flops_full_attention() -> None:
    shape = AttnShape(q_len=1024, k_len=2048, batch=2, heads=4, kv_heads=4, head_dim=64, causal=False)
    assert shape.flops() == 4 * 2 * 4 * 1024 * 2048 * 64


def test_causal_halves_the_flops() -> None:
    full = AttnShape(q_len=4096, k_len=4096, heads=32, kv_heads=32, head_dim=128, causal=False)
    causal = AttnShape(q_len=4096, k_len=4096, heads=32, kv_heads=32, head_dim=128, causal=True)
    assert causal.flops() == full.flops() / 2


@pytest.mark.parametrize(("mode", "factor"), [("forward", 1.0), ("backward", 2.5), ("forward+backward", 3.5)])
def test_mode_factors(mode: str, factor: float) -> None:
    shape = AttnShape(q_len=512, k_len=512, heads=8, kv_heads=2, head_dim=64)
    assert shape.flops(mode) == shape.flops("forward") * factor  # type: ignore[arg-type]


def test_grouped_query_attention_costs_as_many_flops_as_full_heads() -> None:
    gqa = AttnShape(q_len=256, k_len=256, heads=8, kv_heads=2, head_dim=64)
    mha = AttnShape(q_len=256, k_len=256, heads=8, kv_heads=8, head_dim=64)
    assert gqa.flops() == mha.flops()


@pytest.mark.parametrize(
    ("q_len", "k_len", "causal", "window"),
    [
        (8, 8, True, (3, 0)),
        (8, 8, False, (2, 2)),
        (8, 8, False, (-1, 1)),
        (8, 8, False, (1, -1)),
        (6, 10, True, (2, -1)),
        (10, 6, False, (0, 0)),
        (16, 16, False, (4, 0)),
    ],
)
def test_windowed_flops_count_exactly_the_attended_pairs(
    q_len: int, k_len: int, causal: bool, window: tuple[int, int]
) -> None:
    shape = AttnShape(q_len=q_len, k_len=k_len, heads=1, kv_heads=1, head_dim=1, causal=causal, window=window)
    mask = band_mask(q_len, k_len, causal=causal, window=window, device=torch.device("cpu"))
    assert mask is not None
    assert shape.attended_pairs() == int(mask.sum())
    assert shape.flops() == 4 * int(mask.sum())


def test_label_and_dict() -> None:
    shape = AttnShape(q_len=1024, k_len=1024, heads=32, kv_heads=8, head_dim=128, window=(256, 0))
    assert shape.label() == "fp16-causal-win256_0-b1-h32kv8-d128"
    assert shape.as_dict() == {
        "workload": "prefill",
        "batch": 1,
        "heads": 32,
        "kv_heads": 8,
        "q_len": 1024,
        "k_len": 1024,
        "head_dim": 128,
        "dtype": "float16",
        "causal": True,
        "window": [256, 0],
        "scale": None,
    }


def test_input_bytes() -> None:
    shape = AttnShape(q_len=1024, k_len=2048, batch=2, heads=8, kv_heads=2, head_dim=64, dtype="float16")
    assert shape.input_bytes() == 2 * 2 * 64 * (8 * 1024 + 2 * 2 * 2048)
