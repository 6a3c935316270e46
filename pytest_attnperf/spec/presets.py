"""Llama-shaped model presets, loaded from the package's ``presets.yaml``.

Field names match transformers' ``LlamaConfig`` so a preset can become a config with
``LlamaConfig(**preset.config_kwargs())``; the numbers are those published in each model's
Hugging Face ``config.json``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

_PRESETS_FILE = "presets.yaml"
_INT_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
)
_FLOAT_FIELDS = ("rms_norm_eps", "rope_theta")
_BOOL_FIELDS = ("tie_word_embeddings",)


@dataclass(frozen=True)
class ModelPreset:
    """One decoder-only Llama-shaped model: the LlamaConfig fields that set its sizes."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool

    def parameter_count(self) -> int:
        """Number of weights: embeddings, per-layer attention/MLP/norms, final norm, lm_head unless tied."""
        hidden = self.hidden_size
        q_width = self.num_attention_heads * self.head_dim
        kv_width = self.num_key_value_heads * self.head_dim
        # Llama has no biases: q, k, v, o projections and the gated MLP are plain matrices.
        attention = hidden * q_width + 2 * hidden * kv_width + q_width * hidden
        mlp = 3 * hidden * self.intermediate_size
        norms = 2 * hidden
        per_layer = attention + mlp + norms
        embeddings = self.vocab_size * hidden
        lm_head = 0 if self.tie_word_embeddings else self.vocab_size * hidden
        return embeddings + self.num_hidden_layers * per_layer + hidden + lm_head

    def config_kwargs(self) -> dict[str, Any]:
        """The fields as keyword arguments for ``transformers.LlamaConfig`` (everything but ``name``)."""
        fields = dataclasses.asdict(self)
        del fields["name"]
        return fields


def _field_names() -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(ModelPreset) if field.name != "name")


def _parse_preset(name: str, raw: object) -> ModelPreset:
    """Validate one YAML entry; a malformed file is a packaging bug, so say exactly what is wrong."""
    where = f"{_PRESETS_FILE}: preset {name!r}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of LlamaConfig fields, not {type(raw).__name__}")
    expected = set(_field_names())
    missing = sorted(expected - raw.keys())
    unknown = sorted(set(raw) - expected)
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown}")
    values: dict[str, Any] = {"name": name}
    for key in _INT_FIELDS:
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{where}: {key} must be a positive integer, got {value!r}")
        values[key] = value
    for key in _FLOAT_FIELDS:
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{where}: {key} must be a positive number, got {value!r}")
        values[key] = float(value)
    for key in _BOOL_FIELDS:
        if not isinstance(raw[key], bool):
            raise ValueError(f"{where}: {key} must be true or false, got {raw[key]!r}")
        values[key] = raw[key]
    if values["num_attention_heads"] % values["num_key_value_heads"]:
        raise ValueError(f"{where}: num_attention_heads must be a multiple of num_key_value_heads")
    return ModelPreset(**values)


@functools.cache
def _load_presets() -> dict[str, ModelPreset]:
    """Read and validate presets.yaml once."""
    text = resources.files(__package__ or "pytest_attnperf").joinpath(_PRESETS_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or not isinstance(document.get("presets"), dict):
        raise ValueError(f"{_PRESETS_FILE} must hold a top-level 'presets' mapping")
    presets: dict[str, ModelPreset] = {}
    for name, raw in document["presets"].items():
        if not isinstance(name, str):
            raise ValueError(f"{_PRESETS_FILE}: preset names must be strings, got {name!r}")
        if name.lower() in {existing.lower() for existing in presets}:
            # Lookup is case-insensitive, so two names differing only in case would shadow each other.
            raise ValueError(f"{_PRESETS_FILE}: duplicate preset name {name!r}")
        presets[name] = _parse_preset(name, raw)
    return presets


def preset_names() -> tuple[str, ...]:
    """Names of the available presets, in file order."""
    return tuple(_load_presets())


def get_preset(name: str) -> ModelPreset:
    """The preset called ``name`` (case-insensitive); ``ValueError`` listing the accepted names otherwise."""
    wanted = name.strip().lower()
    for preset_name, preset in _load_presets().items():
        if preset_name.lower() == wanted:
            return preset
    accepted = ", ".join(repr(known) for known in preset_names())
    raise ValueError(f"unknown model preset {name!r}; expected one of {accepted} (case does not matter)")
