"""Model presets: the published shapes of four families, lookup, parameter counts, layers, users' config.json."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from pytest_attnperf.spec.presets import (
    FAMILIES,
    _parse_preset,
    get_preset,
    preset_from_config,
    preset_names,
    resolve_model,
)

# Parameter counts implied by the published configs. Llama and Mistral: no biases, untied lm_head; Qwen2.5:
# q/k/v biases (72.7B, as Qwen publishes); Gemma-2: four norms per layer and tied embeddings (9.24B).
EXPECTED_PARAMETERS = {
    "Llama-2-7B": 6_738_415_616,
    "Llama-2-13B": 13_015_864_320,
    "Llama-2-70B": 68_976_648_192,
    "Llama-3-8B": 8_030_261_248,
    "Llama-3-70B": 70_553_706_496,
    "Mistral-7B": 7_241_732_096,
    "Qwen2.5-72B": 72_706_203_648,
    "Gemma-2-9B": 9_241_705_984,
}


def test_preset_names_in_file_order() -> None:
    assert preset_names() == (
        "Llama-2-7B",
        "Llama-2-13B",
        "Llama-2-70B",
        "Llama-3-8B",
        "Llama-3-70B",
        "Mistral-7B",
        "Qwen2.5-72B",
        "Gemma-2-9B",
    )


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


def test_config_kwargs_are_the_family_config_fields() -> None:
    kwargs = get_preset("Llama-3-70B").config_kwargs()
    assert "name" not in kwargs
    assert "family" not in kwargs
    assert kwargs["num_key_value_heads"] == 8
    assert isinstance(kwargs["rms_norm_eps"], float)
    assert "sliding_window" not in kwargs  # LlamaConfig has none
    gemma = get_preset("Gemma-2-9B").config_kwargs()
    assert {key: gemma[key] for key in FAMILIES["gemma2"].fields} == {
        "sliding_window": 4096,
        "query_pre_attn_scalar": 256,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
    }
    assert get_preset("Mistral-7B").config_kwargs()["sliding_window"] == 4096
    qwen = get_preset("Qwen2.5-72B").config_kwargs()
    assert (qwen["use_sliding_window"], qwen["max_window_layers"]) == (False, 70)


def _raw(name: str) -> dict[str, object]:
    preset = get_preset(name)
    family = FAMILIES[preset.family]
    keys = ("family", "hidden_size", *preset.config_kwargs())
    return {key: getattr(preset, key) for key in keys} | {"family": family.name}


def test_malformed_entry_is_reported_with_its_field() -> None:
    raw = _raw("Llama-2-7B")
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


def test_a_family_field_where_it_does_not_belong_is_named() -> None:
    raw = _raw("Llama-2-7B") | {"sliding_window": 4096}
    with pytest.raises(ValueError, match=r"unknown fields \['sliding_window'\] \(family llama\)"):
        _parse_preset("broken", raw)
    with pytest.raises(ValueError, match=r"missing fields \['sliding_window'\].*\(family mistral\)"):
        _parse_preset("broken", _raw("Llama-2-7B") | {"family": "mistral"})
    with pytest.raises(ValueError, match="family must be one of llama, mistral, qwen2, gemma2, got 'gpt2'"):
        _parse_preset("broken", _raw("Llama-2-7B") | {"family": "gpt2"})


# ---------------------------------------------------------------- attention per layer


def test_gemma_2_alternates_local_and_global_layers_as_transformers_does() -> None:
    gemma = get_preset("Gemma-2-9B")
    kinds = gemma.layer_kinds()
    assert len(kinds) == 42
    assert kinds[:4] == ("sliding", "full", "sliding", "full")  # layer i is local when (i + 1) % 2
    assert gemma.attention("full") == {
        "heads": 16,
        "kv_heads": 8,
        "head_dim": 256,
        "window": (-1, -1),
        "softcap": 50.0,
        "scale": 1 / 16,  # query_pre_attn_scalar ** -0.5
    }
    # transformers' sliding overlay: a query sees itself and the 4095 keys before it.
    assert gemma.attention("sliding")["window"] == (4095, 0)
    assert gemma.default_layer() == "full"


def test_mistral_slides_in_every_layer_and_qwen_in_none() -> None:
    mistral, qwen = get_preset("Mistral-7B"), get_preset("Qwen2.5-72B")
    assert set(mistral.layer_kinds()) == {"sliding"}
    assert mistral.attention()["window"] == (4095, 0)
    assert (qwen.attention()["heads"], qwen.attention()["kv_heads"]) == (64, 8)
    assert set(qwen.layer_kinds()) == {"full"}  # use_sliding_window: false
    windowed = dataclasses.replace(qwen, use_sliding_window=True)
    assert windowed.layer_kinds()[69:71] == ("full", "sliding")  # from max_window_layers (70) on


def test_a_layer_kind_the_model_lacks_is_refused_with_what_it_has() -> None:
    with pytest.raises(ValueError, match=r"Llama-3-70B has no sliding-attention layers \(it has: full\)"):
        get_preset("Llama-3-70B").attention("sliding")
    with pytest.raises(ValueError, match="Mistral-7B has no full-attention layers"):
        get_preset("Mistral-7B").attention("full")


# ---------------------------------------------------------------- a user's own config.json


def _write_config(folder: Path, **fields: object) -> Path:
    config = {
        "model_type": "mistral",
        "_name_or_path": "my-org/my-mistral",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 3,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
        "sliding_window": 64,
        "rope_theta": 1e6,
        **fields,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder / "config.json"


def test_a_config_json_becomes_a_preset_with_its_own_fields(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "model")
    preset = resolve_model(str(path))
    assert (preset.name, preset.family, preset.head_dim) == ("my-org/my-mistral", "mistral", 32)  # head_dim: 256 / 8
    assert preset.attention()["window"] == (63, 0)
    assert preset.config_kwargs()["rope_theta"] == 1e6  # the file itself, verbatim, builds the model
    assert resolve_model(str(tmp_path / "model")) == preset  # the folder that holds it works too
    assert preset_from_config(path).parameter_count() > 0


def test_a_config_json_of_another_family_takes_its_layer_types(tmp_path: Path) -> None:
    path = _write_config(
        tmp_path / "other",
        model_type="olmo3",
        sliding_window=16,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    )
    preset = resolve_model(str(path))
    assert preset.layer_kinds() == ("sliding", "sliding", "full")
    assert preset.attention("sliding")["window"] == (15, 0)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "is not valid JSON"),
        ("[1, 2]", "expected a JSON object \\(a transformers config.json\\), found a list"),
        ('{"hidden_size": 4}', "expected a transformers config.json with a 'model_type'"),
        ('{"model_type": "llama", "hidden_size": 4}', "missing 'intermediate_size'"),
    ],
)
def test_a_bad_config_json_is_named_with_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "config.json").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"model config '{tmp_path / 'config.json'}': .*{problem}"):
        resolve_model(str(tmp_path / "config.json"))


def test_a_config_json_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(b'{"model_type": "\xe9"}')
    with pytest.raises(ValueError, match=r"is not UTF-8 text \(byte 16\); a config.json is UTF-8 JSON"):
        preset_from_config(tmp_path / "config.json")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        # zeros were taken as "not given": another shape was measured than the file describes
        ({"head_dim": 0}, "head_dim must be a positive integer up to 4,096, got 0"),
        ({"num_key_value_heads": 0}, "num_key_value_heads must be a positive integer up to 4,096, got 0"),
        ({"num_attention_heads": 0}, "num_attention_heads must be a positive integer up to 4,096, got 0"),
        ({"head_dim": -64}, "head_dim must be a positive integer up to 4,096, got -64"),
        ({"head_dim": True}, "head_dim must be a positive integer up to 4,096, got True"),
        ({"num_attention_heads": "8"}, "num_attention_heads must be a positive integer up to 4,096, got '8'"),
        ({"hidden_size": 256.0}, "hidden_size must be a positive integer up to 1,048,576, got 256.0"),
        ({"num_hidden_layers": [3]}, "num_hidden_layers must be a positive integer up to 4,096, got [3]"),
        ({"vocab_size": 10**30}, "vocab_size must be a positive integer up to 16,777,216, got 10000"),
        ({"vocab_size": None}, "missing 'vocab_size'"),
        ({"hidden_size": 260}, "hidden_size 260 is not a multiple of num_attention_heads 8, and no head_dim is given"),
        ({"rms_norm_eps": 0}, "rms_norm_eps must be a positive number, got 0"),
        ({"rms_norm_eps": "1e-6"}, "rms_norm_eps must be a positive number, got '1e-6'"),
        ({"max_position_embeddings": 0}, "max_position_embeddings must be a positive integer up to 2,147,483,648"),
        ({"tie_word_embeddings": "false"}, "tie_word_embeddings must be true or false, got 'false'"),
        ({"rope_theta": "big"}, "rope_theta must be a positive number, got 'big'"),
        ({"sliding_window": 0}, "sliding_window must be a positive integer up to 2,147,483,648, got 0"),
        ({"layer_types": "full"}, "layer_types must be a list of strings, one per layer, got 'full'"),
        ({"layer_types": ["full_attention"]}, "layer_types lists 1 layers, num_hidden_layers is 3"),
        ({"num_key_value_heads": 3}, "num_attention_heads (8) must be a multiple of num_key_value_heads (3)"),
        ({"model_type": 3}, "expected a transformers config.json with a 'model_type' string, found 3"),
    ],
)
def test_a_bad_value_in_a_config_json_is_refused_naming_the_key_and_the_form(
    tmp_path: Path, fields: dict[str, object], problem: str
) -> None:
    path = _write_config(tmp_path, **fields)
    with pytest.raises(ValueError, match=re.escape(f"model config '{path}': {problem}")):
        preset_from_config(path)


def test_a_missing_or_null_size_takes_transformers_default(tmp_path: Path) -> None:
    preset = preset_from_config(_write_config(tmp_path, num_key_value_heads=None, max_position_embeddings=None))
    assert (preset.num_key_value_heads, preset.head_dim, preset.max_position_embeddings) == (8, 32, 4096)


def test_an_unknown_name_that_is_no_file_lists_the_presets_and_the_path_form() -> None:
    with pytest.raises(ValueError, match=r"unknown model preset 'Llama-9'.*or the path of a config.json"):
        resolve_model("Llama-9")
