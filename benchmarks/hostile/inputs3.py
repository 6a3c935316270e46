"""Hostile-probe family `inputs3`: round 3 (issue 23), inputs, files and comparisons."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .harness import (
    BASELINE_FILE,
    Classifier,
    Ctx,
    FileContent,
    Outcome,
    Probe,
    accepts,
    baseline_with,
    big_baseline,
    crash,
    has,
    pytest_argv,
    refuses,
)


def special_file(name: str, kind: str) -> Callable[[Path, Ctx], None]:
    """Make ``name`` (tokens expanded) a FIFO, a folder or a link to /dev/zero where a baseline file should be."""

    def setup(workdir: Path, ctx: Ctx) -> None:
        target = workdir / ctx.expand(name, workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "folder":
            target.mkdir()
        else:
            os.symlink("/dev/zero", target)

    return setup


def never_hangs(*needles: str, codes: Sequence[int]) -> Classifier:
    """A hang (the probe's timeout) is the defect this family looks for; otherwise a refusal naming ``needles``."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        if outcome.timed_out:
            return "DEFECT", "hung until the probe's timeout"
        return refuses(*needles, codes=codes)(outcome)

    return classify


def no_ratio_between_problems(outcome: Outcome) -> tuple[str, str]:
    """`attnperf diff` of two entries of different problems: named as not compared, never given a ratio."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(outcome.out, r"x\d+\.\d{3}"):
        return "DEFECT", "printed a ratio between entries that measured different problems"
    if outcome.rc == 0 and has(outcome.out, r"not compared: another problem \(.*heads 2 -> 8"):
        return "clear error", ""
    return "DEFECT", f"exit {outcome.rc} without naming the entry as not compared"


ROUND3_MODEL = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}
BROKEN_FA4_FILES: dict[str, FileContent] = {
    "flash_attn/__init__.py": "",
    "flash_attn/cute/__init__.py": "from cutlass.cute.runtime import from_dlpack  # a CuTe DSL of another version\n",
    "cutlass/__init__.py": "",
    # FlashAttention-4 needs a GPU: let it past the device check, so the broken import decides on this CPU.
    "conftest.py": "import dataclasses\n\nfrom pytest_attnperf.backends.registry import REGISTRY\n\n"
    'fa4 = REGISTRY.get("flash-attn-4")\nREGISTRY.unregister("flash-attn-4")\n'
    'REGISTRY.register(dataclasses.replace(fa4, devices=frozenset({"cuda", "cpu"})))\n',
}


def model_config(**changes: object) -> str:
    import json

    return json.dumps({**ROUND3_MODEL, **changes})


def round3_input_probes() -> list[Probe]:
    h200 = baseline_with(name="NVIDIA H200", slug="nvidia-h200")
    memory = ["{attnperf}", "memory", "--model", "cfg/config.json"]
    # A table of probes, one or two lines each: kept as written.
    # fmt: off
    probes = [
        Probe("inputs3", "baselines/<slug>.yaml is a FIFO (named pipe)", pytest_argv(),
              never_hangs(r"named pipe", codes=(4,)), setup=special_file(BASELINE_FILE, "fifo"), timeout=120),
        Probe("inputs3", "`attnperf show` of a FIFO", ["{attnperf}", "show", BASELINE_FILE],
              never_hangs(r"named pipe", codes=(1,)), setup=special_file(BASELINE_FILE, "fifo"), timeout=60),
        Probe("inputs3", "`attnperf env` with baselines/<slug>.yaml a FIFO", ["{attnperf}", "env"],
              never_hangs(r"named pipe", codes=(2,)), setup=special_file(BASELINE_FILE, "fifo"), timeout=300,
              weight=5),
        Probe("inputs3", "baselines/<slug>.yaml a link to /dev/zero", pytest_argv(),
              never_hangs(r"character device", codes=(4,)), setup=special_file(BASELINE_FILE, "zero"), timeout=120),
        Probe("inputs3", "baselines/<slug>.yaml a folder", ["{attnperf}", "show", BASELINE_FILE],
              refuses(r"is a folder", codes=(1,)), setup=special_file(BASELINE_FILE, "folder")),
        Probe("inputs3", "`attnperf diff` of this CPU's file against an H200 file",
              ["{attnperf}", "diff", BASELINE_FILE, "h200.yaml"], refuses(r"two GPU models", r"--any-gpu", codes=(2,)),
              files={BASELINE_FILE: baseline_with(), "h200.yaml": h200}),
        Probe("inputs3", "`attnperf diff --any-gpu` of this CPU's file against an H200 file",
              ["{attnperf}", "diff", BASELINE_FILE, "h200.yaml", "--any-gpu"],
              accepts(r"two GPU models \(--any-gpu\)"), files={BASELINE_FILE: baseline_with(), "h200.yaml": h200}),
        Probe("inputs3", "`attnperf diff` of one entry recorded with 2 heads, then 8 (median x10)",
              ["{attnperf}", "diff", "old.yaml", "new.yaml"], no_ratio_between_problems,
              files={"old.yaml": baseline_with(), "new.yaml": baseline_with(heads="8", median="1000.0", mean="1000.0",
                                                                              min="990.0", max="1010.0")}),
        Probe("inputs3", "`attnperf diff` of a file with itself", ["{attnperf}", "diff", BASELINE_FILE, BASELINE_FILE],
              accepts(r"^no differences"), files={BASELINE_FILE: baseline_with()}),
        Probe("inputs3", "--attnperf-workloads=varlen --attnperf-q-len=1000 (context 64)",
              pytest_argv("--attnperf-workloads=varlen", "--attnperf-q-len=1000"),
              refuses(r"q_len must not exceed the context length", codes=(1,))),
        Probe("inputs3", "--attnperf-workloads=, (an empty list)", pytest_argv("--attnperf-workloads=,"),
              refuses(r"attnperf-workloads", r"names no workload", codes=(4,))),
        Probe("inputs3", "ini `attnperf_dtype =` (empty: the default)", pytest_argv(),
              accepts(r"1 passed"), files={"pytest.ini": "[pytest]\nattnperf_dtype =\n"}),
        Probe("inputs3", "`attnperf env --attnperf-device=` (empty)", ["{attnperf}", "env", "--attnperf-device="],
              refuses(r"attnperf-device", codes=(2,))),
        Probe("inputs3", "`attnperf show ''`", ["{attnperf}", "show", ""], refuses(r"file name is empty", codes=(2,))),
        Probe("inputs3", "`attnperf memory --context ''`", ["{attnperf}", "memory", "--context", ""],
              refuses(r"--context", codes=(2,))),
        Probe("inputs3", "`attnperf memory --model Llama-3-8B --context 10**30`",
              ["{attnperf}", "memory", "--model", "Llama-3-8B", "--context", "1" + "0" * 30],
              refuses(r"--context", r"larger than", codes=(2,))),
        Probe("inputs3", "`attnperf memory --model Llama-3-8B --batch 10**9`",
              ["{attnperf}", "memory", "--model", "Llama-3-8B", "--batch", "1000000000"],
              refuses(r"--batch", r"larger than", codes=(2,))),
        Probe("inputs3", "--attnperf-heads=100000", pytest_argv("--attnperf-heads=100000"),
              refuses(r"heads", r"larger than", codes=(4,))),
        Probe("inputs3", "@pytest.mark.attnperf_shape(head_dim=10**6)", pytest_argv(),
              refuses(r"head_dim", r"larger than", codes=(2, 4)),
              files={"test_a.py": "import pytest\n\n\n@pytest.mark.attnperf_shape(head_dim=10**6)\n"
                                  "def test_fwd(attnperf, attn_backend, qkv):\n    attnperf.measure(attn_backend, qkv)\n"}),
        Probe("inputs3", "PYTHONIOENCODING=ascii, `attnperf show` of a file whose GPU name is 'GPU \u00e9\u2122'",
              ["{attnperf}", "show", "gpu.yaml"], accepts(r"GPU \\xe9\\u2122"),
              files={"gpu.yaml": baseline_with(name="'GPU \u00e9\u2122'")}, env={"PYTHONIOENCODING": "ascii"},
              show=r"^gpu\.yaml: .*"),
        Probe("inputs3", "PYTHONIOENCODING=ascii, --attnperf-update into the folder 'b\u00e1sicas'",
              pytest_argv("--attnperf-update", "--attnperf-baselines=b\u00e1sicas"), accepts(r"1 passed"),
              env={"PYTHONIOENCODING": "ascii"}),
        Probe("inputs3", "FlashAttention-4 installed but broken (flash_attn.cute fails to import its CuTe DSL)",
              pytest_argv("--attnperf-backends=flash-attn-4,eager"),
              accepts(r"1 passed, 1 skipped", r"installed but cannot be imported"), files=BROKEN_FA4_FILES),
        Probe("inputs3", "a 20,000-entry baseline file (`attnperf show`)", ["{attnperf}", "show", "big.yaml"],
              accepts(r"20,000 entries|20000 entries"), files={"big.yaml": big_baseline(20_000)}, timeout=900,
              weight=30, show=r"^big\.yaml: .*"),
    ]
    bad_configs: list[tuple[str, FileContent, str]] = [
        ("head_dim: 0", model_config(head_dim=0), r"head_dim must be a positive integer"),
        ("num_key_value_heads: 0", model_config(num_key_value_heads=0), r"num_key_value_heads must be"),
        ('num_attention_heads: "32" (a string)', model_config(num_attention_heads="32"), r"num_attention_heads"),
        ("hidden_size: 4096.0 (a float)", model_config(hidden_size=4096.0), r"hidden_size must be a positive integer"),
        ("vocab_size: 10**30", model_config(vocab_size=10**30), r"vocab_size .*up to"),
        ("num_hidden_layers: null", model_config(num_hidden_layers=None), r"missing 'num_hidden_layers'"),
        ("hidden_size 4097 (not a multiple of the heads), no head_dim", model_config(hidden_size=4097),
         r"not a multiple of num_attention_heads"),
        ('tie_word_embeddings: "false" (a string)', model_config(tie_word_embeddings="false"), r"true or false"),
        ("a JSON list, not an object", "[1, 2]", r"JSON object"),
        ("invalid JSON", "{", r"not valid JSON"),
        ("Latin-1 bytes (not UTF-8)", b'{"model_type": "\xe9"}', r"not UTF-8"),
    ]
    for what, content, needle in bad_configs:
        probes.append(Probe("inputs3", f"`attnperf memory --model config.json` with {what}", memory,
                            refuses(r"config\.json", needle, codes=(1,)), files={"cfg/config.json": content}))
    # fmt: on
    return probes
