"""transformers models from presets: offline building, the dispatch proof, equivalence, prefill and decode (CPU)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import json
import socket
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from pytest_attnperf.integrations import transformers as hf
from pytest_attnperf.integrations.hf_equivalence import check_equivalence
from pytest_attnperf.plugin import SKIP_REASON
from pytest_attnperf.spec.presets import ModelPreset, get_preset

transformers = pytest.importorskip("transformers")
from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

# The real layouts at toy sizes: Llama-2-7B is MHA (hidden 64, 2 heads), Llama-3-8B is GQA (4 query heads, 1 KV head).
MHA = hf.scaled_down(get_preset("Llama-2-7B"), kv_heads=2, head_dim=32, vocab_size=256)
GQA = hf.scaled_down(get_preset("Llama-3-8B"), kv_heads=1, head_dim=16, vocab_size=256)
INTERFACE: Any = ALL_ATTENTION_FUNCTIONS  # transformers' registry of attention functions, untyped
INSTALLED = {name: importlib.util.find_spec(name) is not None for name in ("flash_attn", "flash_attn_interface")}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub and no network: HF_HUB_OFFLINE is set and any socket connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def build(implementation: str = "sdpa", preset: ModelPreset = MHA, **options: Any) -> hf.HFModel:
    return hf.build_model(preset, implementation, **{"dtype": torch.float32, **options})


@contextlib.contextmanager
def registered(name: str, function: Callable[..., Any]) -> Iterator[None]:
    """Make transformers dispatch ``name`` to ``function`` (a local override), as a plugin or kernel hub could."""
    INTERFACE[name] = function
    try:
        yield
    finally:
        del INTERFACE[name]


def leaky_attention(
    module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any, **kwargs: Any
) -> Any:
    """SDPA without the causal mask: every position sees the future."""
    return sdpa_attention_forward(module, query, key, value, None, **{**kwargs, "is_causal": False})


def nan_attention(
    module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any, **kwargs: Any
) -> Any:
    output, weights = sdpa_attention_forward(module, query, key, value, mask, **kwargs)
    return output * float("nan"), weights


# ---------------------------------------------------------------- building


def test_model_is_built_from_the_preset_offline_in_eval_mode() -> None:
    built = build("sdpa", GQA, layers=3)
    config = built.model.config
    heads = (config.num_attention_heads, config.num_key_value_heads, config.head_dim)
    assert (config.hidden_size, *heads) == (64, 4, 1, 16)
    assert (config.vocab_size, config.intermediate_size, config.num_hidden_layers) == (256, 224, 3)
    assert len(built.model.model.layers) == 3
    assert config._attn_implementation == "sdpa"
    assert built.model.training is False
    assert {parameter.dtype for parameter in built.model.parameters()} == {torch.float32}
    assert built.device == torch.device("cpu")


def test_model_config_keeps_the_published_fields_but_the_layer_count() -> None:
    config = hf.model_config(get_preset("Llama-2-70B"))
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (2, 64, 8)
    assert (config.hidden_size, config.intermediate_size, config.vocab_size) == (8192, 28672, 32000)
    with pytest.raises(ValueError, match="layers must be a positive integer, got 0"):
        hf.model_config(MHA, layers=0)


@pytest.mark.parametrize(("name", "group"), [("Llama-2-7B", 1), ("Llama-3-8B", 4), ("Llama-2-70B", 8)])
def test_scaled_down_keeps_the_attention_layout(name: str, group: int) -> None:
    tiny = hf.scaled_down(get_preset(name))
    assert tiny.name == f"{name}-tiny"
    assert tiny.num_attention_heads // tiny.num_key_value_heads == group
    assert tiny.hidden_size == tiny.num_attention_heads * tiny.head_dim


def test_weights_are_seeded_without_touching_the_global_rng() -> None:
    before = torch.get_rng_state()
    first, again, other = build(seed=1), build("eager", seed=1), build(seed=2)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first.model.lm_head.weight, again.model.lm_head.weight)  # same seed, any implementation
    assert not torch.equal(first.model.lm_head.weight, other.model.lm_head.weight)


def test_dtype_is_applied() -> None:
    built = build(dtype="bf16")
    assert built.dtype == torch.bfloat16
    assert {parameter.dtype for parameter in built.model.parameters()} == {torch.bfloat16}


def test_unknown_implementation_names_the_accepted_ones() -> None:
    expected = (
        "unknown attention implementation 'flash'; expected one of 'eager', 'sdpa', 'sdpa:flash', 'sdpa:efficient', "
        "'sdpa:cudnn', 'sdpa:math', 'flash_attention_2', 'flash_attention_3', 'flex_attention'"
    )
    with pytest.raises(hf.UnknownImplementation) as raised:
        build("flash")
    assert str(raised.value) == expected


@pytest.mark.parametrize(
    "implementation",
    [
        pytest.param(
            "flash_attention_2", marks=pytest.mark.skipif(INSTALLED["flash_attn"], reason="flash-attn is here")
        ),
        pytest.param(
            "flash_attention_3", marks=pytest.mark.skipif(INSTALLED["flash_attn_interface"], reason="FA3 is here")
        ),
    ],
)
def test_flash_attention_refusal_carries_transformers_own_reason(implementation: str) -> None:
    with pytest.raises((ImportError, ValueError)) as direct:
        transformers.AutoModelForCausalLM.from_config(hf.model_config(MHA), attn_implementation=implementation)
    with pytest.raises(hf.Unavailable) as refused:
        build(implementation)
    assert str(refused.value) == f"transformers refused attn_implementation={implementation!r}: {direct.value}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the efficient backend can run")
def test_pinned_sdpa_backend_that_cannot_run_is_refused_with_torchs_reason() -> None:
    with pytest.raises(hf.Unavailable, match=r"^torch refused SDPA backend 'sdpa:efficient': No viable backend"):
        build("sdpa:efficient")


def test_pinned_backend_is_held_during_each_call() -> None:
    built = build("sdpa:math")
    with built.attention_context():
        assert not torch.backends.cuda.flash_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()


# ---------------------------------------------------------------- the requested implementation really ran


@pytest.mark.parametrize("implementation", ["eager", "sdpa", "sdpa:math"])
def test_dispatch_check_passes_when_the_requested_function_runs(implementation: str) -> None:
    check = hf.check_dispatch(build(implementation))
    assert check.ok, check.message
    assert check.expected_calls == 2  # one per decoder layer
    assert list(check.calls.values()) == [2]


def test_dispatch_check_catches_a_model_built_with_another_implementation() -> None:
    claimed = dataclasses.replace(build("sdpa"), implementation="eager")
    assert hf.check_dispatch(claimed).message == (
        "asked for eager, but transformers configured the model with attn_implementation='sdpa'; the attention "
        "layers called transformers.integrations.sdpa_attention.sdpa_attention_forward (2 calls), not only "
        "eager_attention_forward"
    )


def test_dispatch_check_catches_a_quiet_swap_behind_the_same_name() -> None:
    built = build("sdpa")
    with registered("sdpa", leaky_attention):
        check = hf.check_dispatch(built)
        assert ALL_ATTENTION_FUNCTIONS["sdpa"] is leaky_attention  # the override survives the counting
    assert check.configured == "sdpa"
    assert check.message == (
        f"asked for sdpa, but the attention layers called {__name__}.leaky_attention (2 calls), "
        "not only sdpa_attention_forward"
    )


def test_dispatch_check_catches_the_config_changed_after_building() -> None:
    built = build("sdpa")
    built.model.config._attn_implementation = "eager"
    message = hf.check_dispatch(built).message
    assert message is not None
    assert "modeling_llama.eager_attention_forward (2 calls)" in message


def test_counting_puts_every_attention_function_back() -> None:
    eager = modeling_llama.eager_attention_forward
    before = {key: ALL_ATTENTION_FUNCTIONS[key] for key in ALL_ATTENTION_FUNCTIONS}
    hf.check_dispatch(build("eager"))
    assert {key: ALL_ATTENTION_FUNCTIONS[key] for key in ALL_ATTENTION_FUNCTIONS} == before
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa_attention_forward
    assert modeling_llama.eager_attention_forward is eager


# ---------------------------------------------------------------- equivalence


@pytest.mark.parametrize("preset", [MHA, GQA], ids=["mha", "gqa"])
@pytest.mark.parametrize(("dtype", "reference"), [("float32", "float64"), ("bfloat16", "float32")])
def test_sdpa_agrees_with_the_eager_reference(preset: ModelPreset, dtype: str, reference: str) -> None:
    result = check_equivalence(build("sdpa", preset, dtype=dtype), seqlen=48)
    assert result.passed, result.message
    assert (result.dtype, result.reference_dtype, result.nonfinite) == (dtype, reference, 0)
    assert result.reference_error > 0
    # FlashAttention's rule: twice the input-dtype reference's error; fp32 inputs get the fp32 floor.
    if dtype == "float32":
        assert result.budget >= 2.0 * result.reference_error
    else:
        assert result.budget == 2.0 * result.reference_error
    assert result.max_error <= result.budget


def test_equivalence_catches_attention_without_its_causal_mask() -> None:
    built = build("sdpa")
    with registered("sdpa", leaky_attention):
        result = check_equivalence(built, seqlen=48)
    assert not result.passed
    assert result.message is not None
    assert result.message.startswith(f"max |out - ref| = {result.max_error:.3g} exceeds")
    assert result.max_error > 100 * result.budget


def test_equivalence_counts_nan_outputs() -> None:
    built = build("sdpa")
    with registered("sdpa", nan_attention):
        result = check_equivalence(built, seqlen=16, batch=2)
    assert result.nonfinite == result.elements == 2 * MHA.vocab_size
    count = result.elements
    assert result.message == f"{count} of {count} output elements are NaN or Inf (first at index (0, 0))"


# ---------------------------------------------------------------- workloads


def test_prefill_returns_the_last_positions_logits_deterministically() -> None:
    built = build("sdpa")
    run = hf.prefill(built, 20, batch=2)
    first = run()
    assert first.shape == (2, MHA.vocab_size)
    assert torch.equal(first, run())
    ids = hf.token_ids(2, 20, vocab_size=MHA.vocab_size, seed=built.seed, device=built.device)
    with torch.no_grad():
        full = built.model(input_ids=ids, use_cache=False).logits[:, -1]
    torch.testing.assert_close(first, full)


def test_decode_step_is_repeatable_at_the_same_cache_length() -> None:
    built = build("eager", GQA)
    step = hf.decode(built, 24, batch=2)
    assert step.cache.get_seq_length() == 24
    first = step()
    assert step.cache.get_seq_length() == 24
    assert torch.equal(first, step())
    assert step.cache.get_seq_length() == 24
    # The step is the next token of the 25-token prefix; the fill used SDPA but left the model eager.
    assert built.model.config._attn_implementation == "eager"
    torch.testing.assert_close(first, hf.prefill(built, 25, batch=2)(), rtol=1e-4, atol=1e-5)
    check = hf.check_dispatch(built, step)
    assert check.ok, check.message


def _cache_deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "past_key_values" in str(w.message)]


@pytest.mark.skipif(
    "cache" not in inspect.signature(modeling_llama.LlamaForCausalLM.forward).parameters,
    reason="this transformers predates the `cache` keyword (5.24)",
)
def test_decode_passes_the_cache_by_its_current_name_and_warns_nothing() -> None:
    built = build("eager", GQA)
    assert hf.cache_keyword(built.model) == "cache"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step = hf.decode(built, 24)
        step()
    assert _cache_deprecations(caught) == []
    assert step.cache.get_seq_length() == 24


def test_decode_falls_back_to_past_key_values_where_forward_has_no_cache_keyword() -> None:
    """A transformers before 5.24: its forward takes ``past_key_values`` (forced here on a real model)."""
    built = build("eager", GQA)
    expected = hf.decode(built, 24)()
    real_forward = built.model.forward
    seen: list[str] = []

    def older_forward(
        input_ids: Any = None, past_key_values: Any = None, use_cache: Any = None, logits_to_keep: int = 0
    ) -> Any:
        seen.append("past_key_values" if past_key_values is not None else "none")
        # The old keyword itself, into the real model (transformers 5.24+ still accepts it, with a FutureWarning).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return real_forward(
                input_ids=input_ids, past_key_values=past_key_values, use_cache=use_cache, logits_to_keep=logits_to_keep
            )

    built.model.forward = older_forward  # what the model is called through: nn.Module.__call__ -> self.forward
    assert hf.cache_keyword(built.model) == "past_key_values"
    step = hf.decode(built, 24)
    assert seen == ["past_key_values"]  # the fill got the cache
    assert torch.equal(step(), expected)
    assert step.cache.get_seq_length() == 24


def test_decode_needs_a_cache() -> None:
    with pytest.raises(ValueError, match="cache_len must be at least 1, got 0"):
        hf.decode(build(), 0)


def test_token_ids_are_seeded_locally() -> None:
    before = torch.get_rng_state()
    ids = hf.token_ids(2, 50, vocab_size=7, seed=3, device=torch.device("cpu"))
    assert torch.equal(ids, hf.token_ids(2, 50, vocab_size=7, seed=3, device=torch.device("cpu")))
    assert not torch.equal(ids, hf.token_ids(2, 50, vocab_size=7, seed=4, device=torch.device("cpu")))
    assert int(ids.min()) >= 0
    assert int(ids.max()) < 7
    assert torch.equal(torch.get_rng_state(), before)


def test_forward_flops_of_one_token_are_twice_the_matmul_weights() -> None:
    preset = get_preset("Llama-2-7B")
    embeddings, norms = preset.vocab_size * preset.hidden_size, (2 * 32 + 1) * preset.hidden_size
    matmul_weights = preset.parameter_count() - embeddings - norms
    attention = 32 * 4 * preset.num_attention_heads * preset.head_dim * 0.5  # one query, its own key
    flops = hf.forward_flops(preset, layers=32, batch=1, new_tokens=1)
    assert flops == pytest.approx(2 * matmul_weights + attention)
    assert hf.forward_flops(preset, layers=32, batch=3, new_tokens=1) == pytest.approx(3 * flops)


# ---------------------------------------------------------------- every family, and a user's config.json


@pytest.mark.parametrize(
    ("name", "config_class"),
    [("Mistral-7B", "MistralConfig"), ("Qwen2.5-72B", "Qwen2Config"), ("Gemma-2-9B", "Gemma2Config")],
)
def test_each_family_is_built_with_its_own_config_class(name: str, config_class: str) -> None:
    tiny = hf.scaled_down(get_preset(name))
    built = build("eager", tiny, layers=2)
    config = built.model.config
    assert type(config).__name__ == config_class
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (
        tiny.num_attention_heads,
        tiny.num_key_value_heads,
        32,
    )
    assert hf.check_dispatch(built).ok
    assert check_equivalence(built, seqlen=80).passed  # past the scaled window of 64 where there is one


def test_gemma_2_keeps_its_soft_capping_and_query_scale_and_refuses_sdpa_with_transformers_reason() -> None:
    tiny = hf.scaled_down(get_preset("Gemma-2-9B"))
    assert (tiny.attn_logit_softcapping, tiny.query_pre_attn_scalar, tiny.sliding_window) == (50.0, 32, 64)
    config = hf.model_config(tiny, layers=4)
    assert config.layer_types == ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]
    with pytest.raises(hf.Unavailable, match="transformers refused attn_implementation='sdpa': Gemma2ForCausalLM"):
        build("sdpa", tiny)


def test_a_decode_step_over_a_sliding_window_model() -> None:
    built = build("sdpa", hf.scaled_down(get_preset("Mistral-7B")))
    step = hf.decode(built, 100)  # beyond the window of 64
    assert torch.equal(step(), step())


def test_a_users_config_json_builds_offline(tmp_path: Any) -> None:
    config = {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "_name_or_path": "my-org/qwen-mini",
        "transformers_version": "4.43.1",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 256,
        "rope_theta": 1000000.0,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 4,
        "tie_word_embeddings": True,
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    built = hf.build_model(str(tmp_path), "sdpa", layers=2, dtype=torch.float32)
    assert type(built.model.config).__name__ == "Qwen2Config"
    assert built.model.config.num_hidden_layers == 2
    assert built.model.config.tie_word_embeddings is True  # the file's own fields, not a preset's defaults
    assert built.preset.name == "my-org/qwen-mini"
    assert check_equivalence(built, seqlen=32).passed


def test_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'pytest-attnperf\[hf\]'$"):
        hf.import_transformers()


# ---------------------------------------------------------------- the fixture, in a pytest run

# hf_model comes with the plugin; a conftest that imported it would make it the project's own fixture.
CONFTEST = "import pytest_attnperf  # noqa: F401\n"
FIXTURE_TESTS = """
import pytest
from pytest_attnperf.integrations.transformers import prefill

MODELS = [("Llama-2-7B", "eager"), ("Llama-2-7B", "flash_attention_2"), ("Llama-2-7B", "nope"),
          {"preset": "Llama-3-8B", "implementation": "sdpa", "layers": 1},
          {"preset": "Llama-3-8B", "implementation": "sdpa", "layers": 0}]

@pytest.mark.attnperf_latency(budget="60 s", baseline=False)
@pytest.mark.parametrize("hf_model", MODELS, indirect=True, ids=["eager", "fa2", "nope", "gqa", "no-layers"])
def test_model(attnperf, hf_model):
    assert hf_model.preset.name.endswith("-tiny") and hf_model.model.dtype.is_floating_point
    result = attnperf.measure_workload(prefill(hf_model, 32), name="hf-" + hf_model.implementation, seqlen=32)
    assert result.fits and result.median_ms > 0
"""
FAST = (
    "-p",
    "no:cacheprovider",
    "--attnperf-device=cpu",
    "--attnperf-min-samples=3",
    "--attnperf-warmup=1ms",
    "--attnperf-rep=5ms",
)


def test_fixture_is_skipped_without_attnperf(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_models=FIXTURE_TESTS)
    reprec = pytester.inline_run(*FAST)
    skipped = reprec.listoutcomes()[1]
    assert len(skipped) == 5
    assert {report.longrepr[2] for report in skipped} == {f"Skipped: {SKIP_REASON}"}  # type: ignore[index]


def test_fixture_builds_skips_with_transformers_reason_and_rejects_unknown_names(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_models=FIXTURE_TESTS)
    # With flash-attn installed transformers accepts flash_attention_2 for a CPU model (it only warns).
    reprec = pytester.inline_run("--attnperf", *FAST, *(("-k", "not fa2") if INSTALLED["flash_attn"] else ()))
    passed, skipped, failed = reprec.listoutcomes()
    assert sorted(report.nodeid.split("[")[1] for report in passed) == ["eager]", "gqa]"]
    if not INSTALLED["flash_attn"]:
        assert len(skipped) == 1
        assert "transformers refused attn_implementation='flash_attention_2': " in skipped[0].longrepr[2]  # type: ignore[index]
    assert [report.nodeid.split("[")[1] for report in failed] == ["nope]", "no-layers]"]
    assert "[nope]: unknown attention implementation 'nope'; expected one of 'eager'" in failed[0].longreprtext
    assert failed[1].longreprtext.endswith("[no-layers]: layers must be a positive integer, got 0")


def test_fixture_without_transformers_names_the_extra(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST + "import sys\nsys.modules['transformers'] = None\n")
    pytester.makepyfile(test_models=FIXTURE_TESTS)
    reprec = pytester.inline_run("--attnperf", *FAST)
    skipped = reprec.listoutcomes()[1]
    assert len(skipped) == 5  # the bad parameters too: a missing extra comes first
    assert all(report.longrepr[2].endswith("pip install 'pytest-attnperf[hf]'") for report in skipped)  # type: ignore[index]
