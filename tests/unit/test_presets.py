"""Model presets: the published Llama shapes, lookup, and parameter counts."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_attnperf.spec.presets import ModelPreset, _parse_preset, get_preset, preset_names

# Parameter counts implied by the published configs (no biases, untied lm_head).
EXPECTED_PARAMETERS = {
    "Llama-2-7B": 6_738_415_616,
    "Llama-2-13B": 13_015_864_320,
    "Llama-2-70B": 68_976_648_192,
    "Llama-3-8B": 8_030_261_248,
    "Llama-3-70B": 70_553_706_496,
}


def test_preset_names_lists_the_five_llamas_in_file_order() -> None:
    assert preset_names() == ("Llama-2-7B", "Llama-2-13B", "Llama-2-70B", "Llama-3-8B", "Llama-3-70B")


@pytest.mark.parametrize(("name", "expected"), EXPECTED_PARAMETERS.items())
def test_parameter_count(name: str, expected: int) -> None:
    assert get_preset(name).parameter_count() == expected


def test_parameter_counts_match_the_model_names() -> None:
    assert get_preset("Llama-2-7B").parameter_count() == pytest.approx(6.74e9, rel=1e-3)
    assert get_preset("Llama-2-70B").parameter_count() == pytest.approx(68.98e9, rel=1e-4)
    # FACTS §2: Llama-2-70B weights are 128.5 GiB in fp16.
    assert get_preset("Llama-2-70B").parameter_count() * 2 / 2**30 == pytest.approx(128.5, abs=0.05)


def test_llama_2_70b_uses_grouped_query_attention() -> None:
    preset = get_preset("Llama-2-70B")
    assert (preset.num_hidden_layers, preset.num_attention_heads, preset.num_key_value_heads, preset.head_dim) == (
        80,
        64,
        8,
        128,
    )


def test_llama_3_values() -> None:
    preset = get_preset("Llama-3-8B")
    assert preset.vocab_size == 128_256
    assert preset.intermediate_size == 14_336
    assert preset.rope_theta == 500_000.0
    assert preset.rms_norm_eps == 1e-5
    assert preset.max_position_embeddings == 8192
    assert preset.tie_word_embeddings is False


def test_tied_embeddings_drop_the_lm_head() -> None:
    preset = get_preset("Llama-2-7B")
    tied = dataclasses.replace(preset, tie_word_embeddings=True)
    assert preset.parameter_count() - tied.parameter_count() == preset.vocab_size * preset.hidden_size


@pytest.mark.parametrize("spelling", ["llama-2-70b", "LLAMA-2-70B", " Llama-2-70B "])
def test_lookup_ignores_case(spelling: str) -> None:
    assert get_preset(spelling).name == "Llama-2-70B"


def test_unknown_preset_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="unknown model preset 'Llama-4'") as error:
        get_preset("Llama-4")
    for name in preset_names():
        assert repr(name) in str(error.value)


def test_presets_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("Llama-2-7B").hidden_size = 1  # type: ignore[misc]


def test_config_kwargs_use_llama_config_names() -> None:
    kwargs = get_preset("Llama-3-70B").config_kwargs()
    assert "name" not in kwargs
    assert set(kwargs) == {field.name for field in dataclasses.fields(ModelPreset)} - {"name"}
    assert kwargs["num_key_value_heads"] == 8
    assert isinstance(kwargs["rms_norm_eps"], float)


def test_malformed_entry_is_reported_with_its_field() -> None:
    raw = dataclasses.asdict(get_preset("Llama-2-7B"))
    del raw["name"]
    del raw["head_dim"]
    with pytest.raises(ValueError, match=r"preset 'broken': missing fields \['head_dim'\]"):
        _parse_preset("broken", raw)
    raw["head_dim"] = -1
    with pytest.raises(ValueError, match="head_dim must be a positive integer"):
        _parse_preset("broken", raw)
    raw["head_dim"] = 128
    raw["num_key_value_heads"] = 5
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        _parse_preset("broken", raw)
