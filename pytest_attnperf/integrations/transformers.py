"""transformers' ``attn_implementation`` under the same gate: models from presets or a local config.json, prefill
and decode.

Each preset family is built with its own config class (Llama, Mistral, Qwen2, Gemma-2); a user's
config.json with whatever its ``model_type`` names. Seeded random weights, few layers, nothing
downloaded. transformers is imported lazily: it is the optional extra ``pytest-attnperf[hf]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..backends.builtin import sdpa_refused
from ..measure.inputs import torch_dtype
from ..measure.known_noise import CREATE_BLOCK_MASK_COMPILE, without
from ..spec.dtypes import parse_dtype
from ..spec.presets import ModelPreset, resolve_model

INSTALL_HINT = "pip install 'pytest-attnperf[hf]'"
SDPA_BACKENDS: dict[str, SDPBackend] = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}
IMPLEMENTATIONS: tuple[str, ...] = (
    "eager",
    "sdpa",
    *(f"sdpa:{name}" for name in SDPA_BACKENDS),
    "flash_attention_2",
    "flash_attention_3",
    "flex_attention",
)
# Where the function each transformers name must dispatch to lives (eager: the model's own module).
_EXPECTED_FUNCTIONS = {
    "sdpa": ("transformers.integrations.sdpa_attention", "sdpa_attention_forward"),
    "flash_attention_2": ("transformers.integrations.flash_attention", "flash_attention_forward"),
    "flash_attention_3": ("transformers.integrations.flash_attention", "flash_attention_forward"),
    "flex_attention": ("transformers.integrations.flex_attention", "flex_attention_forward"),
}
_FLEX_RECOMPILE_LIMIT = 256
# flash_attention_2 and _3 share one wrapper; the package its kernels come from tells them apart.
_FLASH_PACKAGES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


class UnknownImplementation(ValueError):
    """An implementation name this module does not know."""


class Unavailable(Exception):
    """transformers (or torch, for a pinned SDPA backend) refused the implementation; the text is their reason."""


def parse_implementation(name: str) -> tuple[str, SDPBackend | None]:
    """'sdpa:flash' -> ('sdpa', SDPBackend.FLASH_ATTENTION); 'eager' -> ('eager', None)."""
    if name not in IMPLEMENTATIONS:
        accepted = ", ".join(repr(known) for known in IMPLEMENTATIONS)
        raise UnknownImplementation(f"unknown attention implementation {name!r}; expected one of {accepted}")
    base, _, backend = name.partition(":")
    return base, SDPA_BACKENDS[backend] if backend else None


def import_transformers() -> Any:
    """The transformers module, or ImportError naming the extra to install."""
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"transformers is not importable ({error}): {INSTALL_HINT}") from None
    return transformers


def scaled_down(
    preset: ModelPreset, *, kv_heads: int = 2, head_dim: int = 32, vocab_size: int = 512, window: int = 64
) -> ModelPreset:
    """A tiny preset with the same attention layout, for CPUs and CI.

    MHA or GQA with the same group size; a sliding window capped at ``window`` tokens so a CPU's short
    sequences still reach it; Gemma-2's query scaling kept at 1/sqrt(head_dim), its soft-capping as is.
    """
    group = preset.num_attention_heads // preset.num_key_value_heads
    hidden = kv_heads * group * head_dim
    scalar = preset.query_pre_attn_scalar
    return dataclasses.replace(
        preset,
        name=f"{preset.name}-tiny",
        hidden_size=hidden,
        num_attention_heads=kv_heads * group,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab_size,
        intermediate_size=max(1, round(hidden * preset.intermediate_size / preset.hidden_size)),
        sliding_window=min(preset.sliding_window, window) if preset.sliding_window else preset.sliding_window,
        query_pre_attn_scalar=max(1, round(scalar * head_dim / preset.head_dim)) if scalar else scalar,
    )


def model_config(preset: ModelPreset, *, layers: int = 2) -> Any:
    """transformers' config of ``preset`` (its family's class, or its config.json's model_type) with ``layers`` layers."""
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers must be a positive integer, got {layers!r}")
    transformers = import_transformers()
    fields = {**preset.config_kwargs(), "num_hidden_layers": layers}
    if isinstance(fields.get("layer_types"), list):
        fields["layer_types"] = fields["layer_types"][:layers]  # one entry per layer that is built
    family = preset.family_info
    if preset.config_json is None and family is not None:
        return getattr(transformers, family.config_class)(**fields)
    model_type = fields.pop("model_type", preset.family)
    for bookkeeping in ("architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path"):
        fields.pop(bookkeeping, None)
    try:
        return transformers.AutoConfig.for_model(model_type, **fields)
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"transformers cannot build a {model_type!r} config from {preset.name}: {error}") from None


@dataclass(frozen=True)
class HFModel:
    """A built model and what it was built as: preset, implementation, dtype, device."""

    model: Any
    preset: ModelPreset
    implementation: str
    dtype: torch.dtype
    device: torch.device
    layers: int
    seed: int

    @property
    def attn_implementation(self) -> str:
        """The name transformers knows ('sdpa' for every pinned SDPA backend)."""
        return parse_implementation(self.implementation)[0]

    def attention_context(self) -> contextlib.AbstractContextManager[Any]:
        """What each call runs under: the SDPA backend pin, or flex_attention's recompile headroom."""
        name, backend = parse_implementation(self.implementation)
        if backend is not None:
            return sdpa_kernel([backend])
        if name == "flex_attention":
            # Each new length or layout recompiles flex_attention; past dynamo's limit (8) it quietly runs
            # unfused, materialising every score, and would be timed as such.
            return _flex_context()
        return contextlib.nullcontext()

    def describe(self, **lengths: int) -> dict[str, Any]:
        """What a result records as its shape: model layout, implementation, dtype and lengths."""
        preset = self.preset
        return {
            "model": preset.name,
            "family": preset.family,
            "implementation": self.implementation,
            "layers": self.layers,
            "heads": preset.num_attention_heads,
            "kv_heads": preset.num_key_value_heads,
            "head_dim": preset.head_dim,
            "hidden": preset.hidden_size,
            "dtype": parse_dtype(self.dtype),
            **lengths,
        }


@contextlib.contextmanager
def _flex_context() -> Iterator[None]:
    config: Any = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    # transformers' flex masks call create_block_mask(_compile=True), which torch deprecates: once per call.
    with (
        config.patch(**{limit: max(getattr(config, limit), _FLEX_RECOMPILE_LIMIT)}),
        without(CREATE_BLOCK_MASK_COMPILE),
    ):
        yield


def build_model(
    preset: ModelPreset | str,
    implementation: str,
    *,
    layers: int = 2,
    dtype: torch.dtype | str = torch.float16,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> HFModel:
    """Random seeded weights on ``device`` in ``dtype``, eval mode; Unavailable with transformers' reason if refused."""
    name, backend = parse_implementation(implementation)
    transformers = import_transformers()
    chosen = resolve_model(preset)
    config = model_config(chosen, layers=layers)
    model_dtype = torch_dtype(dtype)
    target = torch.device(device)
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    # from_config takes `dtype` since transformers 4.56 and warns about the older `torch_dtype`.
    version = tuple(int(part) for part in re.findall(r"\d+", transformers.__version__)[:2])
    dtype_keyword = "dtype" if version >= (4, 56) else "torch_dtype"
    # Seed inside a fork so the run's global RNG state is the same afterwards.
    with torch.random.fork_rng(devices=[target.index] if target.type == "cuda" else []):
        torch.manual_seed(seed)
        try:
            with target:  # create and initialise the weights on the device itself
                model = transformers.AutoModelForCausalLM.from_config(
                    config, attn_implementation=name, **{dtype_keyword: model_dtype}
                )
        except (ImportError, ValueError) as error:
            raise Unavailable(f"transformers refused attn_implementation={name!r}: {error}") from None
    built = HFModel(model.eval(), chosen, implementation, model_dtype, target, layers, seed)
    if backend is not None:
        _probe_pinned(built)
    return built


def _probe_pinned(built: HFModel) -> None:
    """Run a tiny forward under the SDPA pin; torch's own reasons when no kernel of that backend can run."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            prefill(built, 16)()
        except RuntimeError as error:
            if not sdpa_refused(error):
                raise
            reasons = "; ".join(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
            raise Unavailable(f"torch refused SDPA backend {built.implementation!r}: {reasons or error}") from None


def token_ids(batch: int, length: int, *, vocab_size: int, seed: int, device: torch.device) -> torch.Tensor:
    """Seeded token ids from a local CPU generator: the same ids on every machine, no global RNG touched."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(vocab_size, (batch, length), generator=generator).to(device)


def keep_last(model: Any) -> dict[str, int]:
    """The forward keyword that computes logits for the last position only, when the model has it."""
    # logits_to_keep=1 computes the vocab projection for the last position only.
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def cache_keyword(model: Any) -> str:
    """The forward keyword that takes the KV cache: ``cache`` where the model's forward has it, else the older
    ``past_key_values`` (transformers renamed it in 5.24 and warns about the old name, removal announced for 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefill(hf: HFModel, seqlen: int, batch: int = 1) -> Callable[[], torch.Tensor]:
    """Time to first token: one forward over ``seqlen`` seeded tokens (cache filled, as generate does)."""
    ids = token_ids(batch, seqlen, vocab_size=hf.preset.vocab_size, seed=hf.seed, device=hf.device)
    keep = keep_last(hf.model)

    def run() -> torch.Tensor:
        with torch.no_grad(), hf.attention_context():
            output = hf.model(input_ids=ids, use_cache=True, **keep)
        return output.logits[:, -1]  # type: ignore[no-any-return]

    return run


class DecodeStep:
    """One new-token step over a KV cache of exactly ``cache_len`` tokens; repeatable, so it can be timed."""

    def __init__(self, hf: HFModel, cache_len: int, batch: int = 1) -> None:
        if cache_len < 1:
            raise ValueError(f"cache_len must be at least 1, got {cache_len}")
        self.hf, self.cache_len = hf, cache_len
        ids = token_ids(batch, cache_len + 1, vocab_size=hf.preset.vocab_size, seed=hf.seed, device=hf.device)
        self.next_ids = ids[:, cache_len:]
        self.keep = keep_last(hf.model)
        self.cache: Any = import_transformers().DynamicCache()
        self.cache_keyword = cache_keyword(hf.model)
        # Filled once with SDPA, whatever is measured: O(S) memory (an eager prefill may not fit where an
        # eager decode step does) and no recompiles of flex_attention for the fill's shapes. A model that
        # refuses SDPA (Gemma-2: its soft-capping) is filled with the implementation it was built with.
        fill = "sdpa" if _accepts(hf.model, "sdpa") else str(hf.model.config._attn_implementation)
        with torch.no_grad(), _implementation(hf.model, fill), without(CREATE_BLOCK_MASK_COMPILE):
            hf.model(input_ids=ids[:, :cache_len], use_cache=True, **self.keep, **{self.cache_keyword: self.cache})

    def __call__(self) -> torch.Tensor:
        with torch.no_grad(), self.hf.attention_context():
            output = self.hf.model(
                input_ids=self.next_ids, use_cache=True, **self.keep, **{self.cache_keyword: self.cache}
            )
        # Drop the token this step appended. A negative count means "remove" both before transformers 5.18
        # (where a positive one was the length to keep) and after (where a positive one raises).
        self.cache.crop(-1)
        return output.logits[:, -1]  # type: ignore[no-any-return]


def decode(hf: HFModel, cache_len: int, batch: int = 1) -> DecodeStep:
    """Fill a DynamicCache with ``cache_len`` seeded tokens (untimed), return the repeatable one-token step."""
    return DecodeStep(hf, cache_len, batch)


def _accepts(model: Any, name: str) -> bool:
    """Whether transformers lets this model switch to attn_implementation ``name`` (it checks the architecture)."""
    original = model.config._attn_implementation
    try:
        model.set_attn_implementation(name)
    except (ValueError, ImportError):
        return False
    model.set_attn_implementation(original)
    return True


@contextlib.contextmanager
def _implementation(model: Any, name: str) -> Iterator[None]:
    """Temporarily switch the model's attn_implementation (transformers validates both switches)."""
    original = model.config._attn_implementation
    model.set_attn_implementation(name)  # a no-op when it already is
    try:
        yield
    finally:
        model.set_attn_implementation(original)


# ---------------------------------------------------------------- did the requested implementation run?


@dataclass(frozen=True)
class DispatchCheck:
    """Which attention functions one run called, against the one asked for."""

    requested: str
    configured: str
    expected_function: str
    calls: dict[str, int]
    expected_calls: int
    flash_package: str | None = None

    @property
    def message(self) -> str | None:
        """What went wrong, or None when every attention call went to the requested implementation."""
        expected = parse_implementation(self.requested)[0]
        problems = []
        if self.configured != expected:
            problems.append(f"transformers configured the model with attn_implementation={self.configured!r}")
        total = sum(self.calls.values())
        if total == 0:
            problems.append("no attention layer dispatched through transformers' attention interface")
        elif self.expected_calls != total:
            called = ", ".join(f"{name} ({count} calls)" for name, count in self.calls.items())
            problems.append(f"the attention layers called {called}, not only {self.expected_function}")
        wanted = _FLASH_PACKAGES.get(expected)
        if wanted and self.flash_package is not None and self.flash_package != wanted:
            problems.append(f"transformers ran flash kernels from {self.flash_package!r}, not from {wanted!r}")
        return f"asked for {self.requested}, but {'; '.join(problems)}" if problems else None

    @property
    def ok(self) -> bool:
        return self.message is None


def _expected_function(hf: HFModel) -> Callable[..., Any]:
    name = hf.attn_implementation
    if name == "eager":
        return sys.modules[type(hf.model).__module__].eager_attention_forward  # type: ignore[no-any-return]
    module, attribute = _EXPECTED_FUNCTIONS[name]
    return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


@contextlib.contextmanager
def count_attention_calls(model: Any) -> Iterator[Counter[Callable[..., Any]]]:
    """Count calls per attention function: every entry of ALL_ATTENTION_FUNCTIONS and each module's eager one."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    interface: Any = ALL_ATTENTION_FUNCTIONS
    calls: Counter[Callable[..., Any]] = Counter()

    def counting(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[function] += 1
            return function(*args, **kwargs)

        return counted

    # Layers look the function up at each call: a registered name through the interface, eager (the
    # fallback) as a global of the model's module. Swap both for counting versions, then put them back.
    originals = {key: interface[key] for key in list(interface)}
    modules: set[Any] = {sys.modules[type(module).__module__] for module in model.modules()}
    eager = {module: module.eager_attention_forward for module in modules if hasattr(module, "eager_attention_forward")}
    try:
        for key, function in originals.items():
            interface[key] = counting(function)  # a local override on the shared instance
        for module, function in eager.items():
            module.eager_attention_forward = counting(function)
        yield calls
    finally:
        for key, function in originals.items():
            del interface[key]
            if interface.get(key) is not function:
                interface[key] = function
        for module, function in eager.items():
            module.eager_attention_forward = function


def check_dispatch(hf: HFModel, run: Callable[[], object] | None = None) -> DispatchCheck:
    """Run ``run`` (default: a 16-token prefill) once, counting the attention functions the layers call."""
    expected = _expected_function(hf)
    with count_attention_calls(hf.model) as calls:
        (run or prefill(hf, 16))()
    flash = getattr(sys.modules.get("transformers.modeling_flash_attention_utils"), "_flash_fn", None)
    return DispatchCheck(
        requested=hf.implementation,
        configured=str(hf.model.config._attn_implementation),
        expected_function=expected.__name__,
        calls={f"{function.__module__}.{function.__qualname__}": count for function, count in calls.items()},
        expected_calls=calls.get(expected, 0),
        flash_package=flash.__module__.split(".")[0] if hf.attn_implementation in _FLASH_PACKAGES and flash else None,
    )


def forward_flops(preset: ModelPreset, *, layers: int, batch: int, new_tokens: int, cached_tokens: int = 0) -> float:
    """Matmul FLOPs of one forward: projections and MLP per token, causal attention, the last position's logits."""
    q_width, kv_width = preset.num_attention_heads * preset.head_dim, preset.num_key_value_heads * preset.head_dim
    weights = 2 * preset.hidden_size * (q_width + kv_width) + 3 * preset.hidden_size * preset.intermediate_size
    pairs = new_tokens * cached_tokens + new_tokens * new_tokens / 2  # causal half (FACTS §2)
    attention = 4.0 * preset.num_attention_heads * preset.head_dim * pairs
    return batch * (layers * (2.0 * weights * new_tokens + attention) + 2.0 * preset.hidden_size * preset.vocab_size)
