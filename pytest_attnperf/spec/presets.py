"""Model presets (``presets.yaml``) and users' own ``config.json`` files: the shapes kernel tests and models take.

A preset belongs to a *family* (llama, mistral, qwen2, gemma2): the family says which transformers
config class builds it, which extra fields it has (Mistral's sliding window, Qwen2's windowed
layers, Gemma-2's soft-capping and query scaling), which layers attend locally, and what its weights
hold (Qwen2's q/k/v biases, Gemma-2's four norms per layer). Field names are transformers' own, so
a preset becomes a config with ``<family config class>(**preset.config_kwargs())``; the numbers
are those published in each model's Hugging Face ``config.json``.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bounds import CONFIG_BOUNDS

_PRESETS_FILE = "presets.yaml"
COMMON_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "rms_norm_eps",
    "rope_theta",
    "max_position_embeddings",
    "tie_word_embeddings",
)
_INT_FIELDS = frozenset(
    {
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "max_position_embeddings",
        "max_window_layers",
        "sliding_window",
        "query_pre_attn_scalar",
    }
)
_FLOAT_FIELDS = frozenset({"rms_norm_eps", "rope_theta", "attn_logit_softcapping", "final_logit_softcapping"})
_BOOL_FIELDS = frozenset({"tie_word_embeddings", "use_sliding_window"})
_NULLABLE = frozenset({"sliding_window", "attn_logit_softcapping", "final_logit_softcapping"})
LAYER_KINDS = ("full", "sliding")


@dataclass(frozen=True)
class Family:
    """What a model family adds to the common decoder fields, and what it implies about weights."""

    name: str
    config_class: str  # transformers' config class
    fields: tuple[str, ...] = ()  # required beyond COMMON_FIELDS
    qkv_bias: bool = False  # q, k and v projections carry biases (Qwen2)
    norms_per_layer: int = 2  # RMSNorm weight vectors per decoder layer (Gemma-2 has four)


FAMILIES: dict[str, Family] = {
    "llama": Family("llama", "LlamaConfig"),
    "mistral": Family("mistral", "MistralConfig", ("sliding_window",)),
    "qwen2": Family(
        "qwen2", "Qwen2Config", ("use_sliding_window", "sliding_window", "max_window_layers"), qkv_bias=True
    ),
    "gemma2": Family(
        "gemma2",
        "Gemma2Config",
        ("sliding_window", "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping"),
        norms_per_layer=4,
    ),
}
_FAMILY_FIELDS = frozenset(field for family in FAMILIES.values() for field in family.fields)


@dataclass(frozen=True)
class ModelPreset:
    """One decoder-only model: the config fields that set its sizes and its attention."""

    name: str
    family: str
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
    sliding_window: int | None = None
    use_sliding_window: bool | None = None
    max_window_layers: int | None = None
    query_pre_attn_scalar: int | None = None
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    layer_types: tuple[str, ...] | None = None  # 'full' / 'sliding' per layer, when a config.json lists them
    config_json: str | None = None  # a user's own config.json, verbatim: the model is built from it

    @property
    def family_info(self) -> Family | None:
        return FAMILIES.get(self.family)

    def layer_kinds(self) -> tuple[str, ...]:
        """'full' or 'sliding' for each layer, by the family's rule (transformers' own)."""
        layers = range(self.num_hidden_layers)
        if self.layer_types is not None:
            return self.layer_types
        window = self.sliding_window is not None
        if self.family == "mistral" and window:
            return tuple("sliding" for _ in layers)
        if self.family == "qwen2" and window and self.use_sliding_window:
            return tuple("sliding" if i >= (self.max_window_layers or 0) else "full" for i in layers)
        if self.family == "gemma2" and window:
            return tuple("sliding" if (i + 1) % 2 else "full" for i in layers)  # layers 0, 2, 4, ... are local
        return tuple("full" for _ in layers)

    def default_layer(self) -> str:
        """The layer kind a kernel test takes unless told: full attention where the model has any."""
        return "full" if "full" in self.layer_kinds() else "sliding"

    def attention(self, layer: str | None = None) -> dict[str, Any]:
        """The attention of one layer kind as AttnShape fields: heads, KV heads, head dim, window, soft-cap, scale."""
        kind = layer or self.default_layer()
        if kind not in LAYER_KINDS:
            raise ValueError(f"layer {kind!r} is not one of {', '.join(map(repr, LAYER_KINDS))}")
        if kind not in self.layer_kinds():
            has = ", ".join(sorted(set(self.layer_kinds())))
            raise ValueError(f"{self.name} has no {kind}-attention layers (it has: {has})")
        window = (self.sliding_window - 1, 0) if kind == "sliding" and self.sliding_window else (-1, -1)
        return {
            "heads": self.num_attention_heads,
            "kv_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            # transformers' sliding overlay lets a query see itself and the sliding_window - 1 keys before it.
            "window": window,
            "softcap": self.attn_logit_softcapping,
            "scale": self.query_pre_attn_scalar**-0.5 if self.query_pre_attn_scalar else None,
        }

    def parameter_count(self) -> int:
        """Number of weights: embeddings, per-layer attention/MLP/norms, final norm, lm_head unless tied."""
        hidden = self.hidden_size
        q_width = self.num_attention_heads * self.head_dim
        kv_width = self.num_key_value_heads * self.head_dim
        family = self.family_info or Family(self.family, "")
        # q, k, v, o projections and the gated MLP are plain matrices; Qwen2 adds q/k/v biases.
        attention = hidden * q_width + 2 * hidden * kv_width + q_width * hidden
        if family.qkv_bias:
            attention += q_width + 2 * kv_width
        mlp = 3 * hidden * self.intermediate_size
        norms = family.norms_per_layer * hidden
        per_layer = attention + mlp + norms
        embeddings = self.vocab_size * hidden
        lm_head = 0 if self.tie_word_embeddings else self.vocab_size * hidden
        return embeddings + self.num_hidden_layers * per_layer + hidden + lm_head

    def config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the family's transformers config class.

        A preset from a config.json gives the file's own fields, with the sizes this preset holds written
        over the ones it has (so a scaled-down copy builds a scaled-down model).
        """
        family = self.family_info
        names = COMMON_FIELDS + (family.fields if family else ())
        own = {name: getattr(self, name) for name in names}
        if self.config_json is None:
            return own
        fields = dict(json.loads(self.config_json))
        always = ("num_key_value_heads", "head_dim")  # the file may leave them to defaults a scaled copy must not use
        fields.update({name: value for name, value in own.items() if name in fields or name in always})
        return fields


def _check_value(where: str, key: str, value: object) -> Any:
    if key in _NULLABLE and value is None:
        return None
    if key in _INT_FIELDS:
        bound = CONFIG_BOUNDS.get(key)
        within = f" up to {bound:,}" if bound else ""
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or (bound and value > bound):
            raise ValueError(f"{where}: {key} must be a positive integer{within}, got {value!r}")
        return value
    if key in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{where}: {key} must be a positive number, got {value!r}")
        return float(value)
    if key in _BOOL_FIELDS and not isinstance(value, bool):
        raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _parse_preset(name: str, raw: object) -> ModelPreset:
    """Validate one YAML entry; a malformed file is a packaging bug, so say exactly what is wrong."""
    where = f"{_PRESETS_FILE}: preset {name!r}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of config fields, not {type(raw).__name__}")
    family = FAMILIES.get(raw.get("family"))  # type: ignore[arg-type]
    if family is None:
        raise ValueError(f"{where}: family must be one of {', '.join(FAMILIES)}, got {raw.get('family')!r}")
    expected = {"family", *COMMON_FIELDS, *family.fields}
    missing = sorted(expected - raw.keys())
    unknown = sorted(set(raw) - expected)
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown} (family {family.name})")
    values = {key: _check_value(where, key, value) for key, value in raw.items()}
    if values["num_attention_heads"] % values["num_key_value_heads"]:
        raise ValueError(f"{where}: num_attention_heads must be a multiple of num_key_value_heads")
    return ModelPreset(name=name, **values)


@functools.cache
def _load_presets() -> dict[str, ModelPreset]:
    """Read and validate presets.yaml once."""
    # Imported here, not at load: the plugin imports this module into every pytest run, and YAML costs ~20 ms.
    from importlib import resources

    import yaml

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
    raise ValueError(
        f"unknown model preset {name!r}; expected one of {accepted} (case does not matter), "
        "or the path of a config.json"
    )


def _rope_theta(config: dict[str, Any]) -> float:
    for holder in (config, config.get("rope_parameters") or {}, config.get("rope_scaling") or {}):
        if isinstance(holder, dict) and holder.get("rope_theta") is not None:
            return holder["rope_theta"]  # type: ignore[no-any-return]  # checked with the other fields
    return 10000.0  # transformers' default; only the built model uses it, and it reads the file itself


# What a missing or null key of a config.json means: transformers' own defaults. A 0 (or a negative, a string,
# a float, a list) is not a default: it is refused, naming the file, the key and the accepted form.
_DEFAULTS: dict[str, Any] = {"rms_norm_eps": 1e-6, "max_position_embeddings": 4096, "tie_word_embeddings": False}
_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def _read_config(file: Path, where: str) -> dict[str, Any]:
    try:
        data = file.read_bytes()
    except OSError as error:
        raise ValueError(f"{where}: cannot be read ({error.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{where}: is not UTF-8 text (byte {error.start}); a config.json is UTF-8 JSON") from None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{where}: is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(
            f"{where}: expected a JSON object (a transformers config.json), found a {type(config).__name__}"
        )
    if not isinstance(config.get("model_type"), str):
        raise ValueError(
            f"{where}: expected a transformers config.json with a 'model_type' string, found {config.get('model_type')!r}"
        )
    return config


def preset_from_config(path: Path | str) -> ModelPreset:
    """A preset from a local ``config.json`` (or a folder holding one): no download, the file's own fields.

    A key that is missing or null takes transformers' default (``num_key_value_heads``: as many as the query
    heads; ``head_dim``: hidden_size / num_attention_heads); any other value must be of the key's form.
    """
    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    where = f"model config {str(file)!r}"
    config = _read_config(file, where)
    for key in _REQUIRED:
        if config.get(key) is None:
            raise ValueError(f"{where}: missing {key!r} (a decoder-only model's config.json has it)")
    sizes = {key: _check_value(where, key, config[key]) for key in _REQUIRED}
    heads, hidden = sizes["num_attention_heads"], sizes["hidden_size"]
    head_dim = config.get("head_dim")
    if head_dim is None and hidden % heads:
        raise ValueError(
            f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}, and no head_dim is "
            "given: give head_dim (a positive integer)"
        )
    values: dict[str, Any] = {
        "family": config["model_type"],
        **sizes,
        "num_key_value_heads": heads if config.get("num_key_value_heads") is None else config["num_key_value_heads"],
        "head_dim": hidden // heads if head_dim is None else head_dim,
        "rope_theta": _rope_theta(config),
    }
    values.update({key: default if config.get(key) is None else config[key] for key, default in _DEFAULTS.items()})
    values.update({key: config[key] for key in _FAMILY_FIELDS if config.get(key) is not None})
    values = {key: _check_value(where, key, value) for key, value in values.items()}
    if values["num_attention_heads"] % values["num_key_value_heads"]:
        raise ValueError(
            f"{where}: num_attention_heads ({heads}) must be a multiple of num_key_value_heads "
            f"({values['num_key_value_heads']})"
        )
    layer_types = config.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or not all(isinstance(kind, str) for kind in layer_types):
            raise ValueError(f"{where}: layer_types must be a list of strings, one per layer, got {layer_types!r}")
        if len(layer_types) != values["num_hidden_layers"]:
            raise ValueError(
                f"{where}: layer_types lists {len(layer_types)} layers, num_hidden_layers is {values['num_hidden_layers']}"
            )
        values["layer_types"] = tuple("sliding" if "sliding" in kind else "full" for kind in layer_types)
    name = config.get("_name_or_path") or file.parent.name or file.stem
    return ModelPreset(name=str(name), config_json=json.dumps(config, sort_keys=True), **values)


def resolve_model(model: str | ModelPreset) -> ModelPreset:
    """A preset by name (case-insensitive) or a local config.json path (file or folder)."""
    if isinstance(model, ModelPreset):
        return model
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a preset name or a config.json path, not {model!r}")
    path = Path(model).expanduser()
    if model.strip().lower() in {name.lower() for name in preset_names()} or not (
        path.is_file() or (path / "config.json").is_file()
    ):
        return get_preset(model)
    return preset_from_config(path)
