"""benchmarks/render_results.py: the docs' GPU figures are generated from docs/results, and --check keeps them so."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from benchmark_scripts import BENCHMARKS, load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = BENCHMARKS / "render_results.py"


render = load_script("render_results")  # puts benchmarks/ on sys.path for the package render/ it runs
figures = importlib.import_module("render.figures")
kinds = importlib.import_module("render.kinds")
source = importlib.import_module("render.source")

FIDELITY = """\
# Timing fidelity on a GPU

| backend | length | plugin (CUDA events) | do_bench (median) | ratio |
|---|---|---|---|---|
| eager | 1024 | 0.4354 | 0.4363 | 0.998 |
| flex | 16384 | 5.1583 | 5.3403 | 0.966 |
| sdpa-flash | 32768 | 24.7210 | 28.2260 | 0.876 |
| eager | 32768 | does not fit | - | - |
"""
REGION = "<!-- results:fidelity-summary h100 -->\n<!-- /results:fidelity-summary -->\n"


def repo(tmp_path: Path, readme: str, doc: str = "# Notes\n\nNothing measured here.\n") -> Path:
    """A repository with one result file, a README and one docs page."""
    (tmp_path / "docs" / "results" / "h100").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "h100" / "fidelity.md").write_text(FIDELITY, encoding="utf-8")
    (tmp_path / "README.md").write_text(readme, encoding="utf-8")
    (tmp_path / "docs" / "notes.md").write_text(doc, encoding="utf-8")
    return tmp_path


def check(root: Path) -> tuple[int, list[str]]:
    lines: list[str] = []
    status = render.run(root, check=True, out=lines.append)
    return status, lines


def rendered(root: Path) -> str:
    assert render.run(root, check=False, out=lambda _: None) == 0
    return (root / "README.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------- the repository itself


def test_the_repository_docs_match_their_data() -> None:
    status, lines = check(ROOT)
    assert status == 0, "\n".join(lines)
    assert lines == []


def test_the_script_reads_files_only_without_torch() -> None:
    code = (
        "import runpy, sys; sys.argv = ['render_results.py', '--check']\n"
        "try:\n"
        f"    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    print('exit', stop.code, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.stdout.strip().splitlines()[-1] == "exit 0 False", result.stdout + result.stderr


# ---------------------------------------------------------------- regions


def test_a_fresh_region_passes_and_names_its_source_and_command(tmp_path: Path) -> None:
    root = repo(tmp_path, f"# Project\n\n{REGION}")
    text = rendered(root)
    assert "within ±3 % for 1 of the 3 cases that fit" in text
    assert "flex 16K ×0.966" in text
    assert "sdpa-flash 32K ×0.876" in text
    assert "[docs/results/h100/fidelity.md](docs/results/h100/fidelity.md)" in text
    assert "`bash benchmarks/gpu_session.sh fidelity`" in text
    assert check(root) == (0, [])
    assert rendered(root) == text  # rendering again changes nothing


def test_a_stale_region_fails_naming_it_with_a_diff(tmp_path: Path) -> None:
    root = repo(tmp_path, f"# Project\n\n{REGION}")
    text = rendered(root).replace("×0.966", "×0.996")
    (root / "README.md").write_text(text, encoding="utf-8")
    status, lines = check(root)
    assert status == 1
    assert (
        lines[0]
        == "README.md: stale generated region(s): results:fidelity-summary; run `python benchmarks/render_results.py`"
    )
    (typed,) = [line for line in text.splitlines() if "×0.996" in line]
    diff = lines[1].splitlines()
    assert "-" + typed in diff
    assert "+" + typed.replace("×0.996", "×0.966") in diff
    assert (root / "README.md").read_text(encoding="utf-8") == text  # --check changes nothing


def test_links_are_relative_to_the_page(tmp_path: Path) -> None:
    root = repo(tmp_path, "# Project\n", doc=f"# Notes\n\n{REGION}")
    render.run(root, check=False, out=lambda _: None)
    assert "[docs/results/h100/fidelity.md](results/h100/fidelity.md)" in (root / "docs" / "notes.md").read_text()


def test_an_inline_region_stays_on_its_line_with_its_source(tmp_path: Path) -> None:
    root = repo(
        tmp_path, "# Project\n\nIn short: <!-- results:fidelity-summary h100 --><!-- /results:fidelity-summary -->\n"
    )
    lines = rendered(root).splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("In short: <!-- results:fidelity-summary h100 -->The plugin's medians agree")
    assert lines[2].endswith("(`bash benchmarks/gpu_session.sh fidelity`).</sub><!-- /results:fidelity-summary -->")
    assert check(root) == (0, [])


def test_a_renderer_of_several_lines_cannot_be_inline(tmp_path: Path) -> None:
    root = repo(tmp_path, "# Project\n\nSee <!-- results:fidelity h100 --><!-- /results:fidelity -->.\n")
    status, lines = check(root)
    assert status == 1
    assert lines == [
        "README.md:3: results:fidelity: cannot render: results:fidelity renders several lines; give it lines of its own"
    ]


@pytest.mark.parametrize(
    ("region", "message"),
    [
        pytest.param(
            "<!-- results:no-such h100 -->\n<!-- /results:no-such -->\n",
            "README.md:3: results:no-such: cannot render: unknown region kind 'no-such'; the accepted names: cost, ",
            id="unknown-kind",
        ),
        pytest.param(
            "<!-- results:fidelity-summary h200 -->\n<!-- /results:fidelity-summary -->\n",
            "README.md:3: results:fidelity-summary: cannot render: no result folder docs/results/h200",
            id="missing-folder",
        ),
        pytest.param(
            "<!-- results:fidelity-summary -->\n<!-- /results:fidelity-summary -->\n",
            "README.md:3: results:fidelity-summary: cannot render: results:fidelity-summary needs exactly one result folder",
            id="no-folder",
        ),
        pytest.param(
            "<!-- results:fidelity-summary h100 -->\n",
            "README.md:3: results:fidelity-summary has no <!-- /results:fidelity-summary -->",
            id="unclosed",
        ),
    ],
)
def test_a_bad_region_fails_naming_file_and_line(tmp_path: Path, region: str, message: str) -> None:
    root = repo(tmp_path, f"# Project\n\n{region}")
    status, lines = check(root)
    assert status == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(message), lines


def test_a_missing_result_file_fails(tmp_path: Path) -> None:
    root = repo(tmp_path, "# Project\n\n<!-- results:ncu h100 -->\n<!-- /results:ncu -->\n")
    status, lines = check(root)
    assert status == 1
    assert lines == ["README.md:3: results:ncu: cannot render: docs/results/h100/ncu-fidelity.md does not exist"]


# ---------------------------------------------------------------- the table of region kinds


def test_an_unknown_region_name_lists_every_accepted_name(tmp_path: Path) -> None:
    root = repo(
        tmp_path,
        "# Project\n",
        doc="# Notes\n\n<!-- results:fidelity-sumary h100 -->\n<!-- /results:fidelity-sumary -->\n",
    )
    status, (line,) = check(root)
    assert status == 1
    prefix = "docs/notes.md:3: results:fidelity-sumary: cannot render: unknown region kind 'fidelity-sumary'; "
    assert line == prefix + f"the accepted names: {', '.join(sorted(kinds.KINDS))}"
    assert "fidelity-summary" in sorted(kinds.KINDS)


def _first_file(name: str) -> str:
    first = next(iter(kinds.KINDS[name].files))
    return (
        "cost/cost-{before,after}-{cold,warm}.json do not exist" if name == "gate-cost" else f"{first} does not exist"
    )


@pytest.mark.parametrize("name", sorted(kinds.KINDS))
def test_each_kind_names_its_missing_data_file(tmp_path: Path, name: str) -> None:
    (tmp_path / "docs" / "results" / "h100").mkdir(parents=True)
    (tmp_path / "README.md").write_text(
        f"# P\n\n<!-- results:{name} h100 -->\n<!-- /results:{name} -->\n", encoding="utf-8"
    )
    assert check(tmp_path) == (
        1,
        [f"README.md:3: results:{name}: cannot render: docs/results/h100/{_first_file(name)}"],
    )


def test_a_file_option_names_the_file_it_points_at(tmp_path: Path) -> None:
    (tmp_path / "docs" / "results" / "h100").mkdir(parents=True)
    region = "<!-- results:suite-prefill h100 baseline=record/nvidia-b200.yaml stage=record -->"
    (tmp_path / "README.md").write_text(f"{region}\n<!-- /results:suite-prefill -->\n", encoding="utf-8")
    assert check(tmp_path)[1] == [
        "README.md:1: results:suite-prefill: cannot render: docs/results/h100/record/nvidia-b200.yaml does not exist"
    ]


def test_every_file_of_the_table_names_the_command_that_makes_it() -> None:
    used_in_docs = set()
    for doc in (ROOT / "README.md", *(ROOT / "docs").glob("*.md")):
        used_in_docs |= set(re.findall(r"<!-- results:[\w-]+ [^>]*\bstage=(\w+)", doc.read_text(encoding="utf-8")))
    stages = {stage for kind in kinds.KINDS.values() for stage in kind.files.values()}
    assert all(kind.files and all(kind.files.values()) for kind in kinds.KINDS.values())
    assert set(kinds.STAGE_COMMANDS) <= stages | used_in_docs, "a command no row and no region uses"
    assert all(kind.render.__doc__ for kind in kinds.KINDS.values()), "each kind's function says what it writes"


def test_a_new_kind_is_one_row_and_one_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def warm_up(ctx: object, data: dict[str, float]) -> list[str]:
        """The warm-up time."""
        return [f"Warm-up: {data['warmup_ms']} ms."]

    monkeypatch.setitem(kinds.KINDS, "warm-up", source.Kind(warm_up, {"warmup.json": "warmup"}))
    (tmp_path / "docs" / "results" / "h100").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "h100" / "warmup.json").write_text('{"warmup_ms": 25}', encoding="utf-8")
    (tmp_path / "README.md").write_text("<!-- results:warm-up h100 -->\n<!-- /results:warm-up -->\n", encoding="utf-8")
    assert rendered(tmp_path) == (
        "<!-- results:warm-up h100 -->\nWarm-up: 25 ms.\n\n<sub>Generated by `python benchmarks/render_results.py` "
        "from [docs/results/h100/warmup.json](docs/results/h100/warmup.json) (`bash benchmarks/gpu_session.sh warmup`)."
        "</sub>\n<!-- /results:warm-up -->\n"
    )


def test_a_kind_reading_a_file_its_row_does_not_list_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def sneaky(ctx: source.Context, data: str) -> list[str]:
        """Reads a file its row does not name."""
        return [ctx.read("fidelity.md")[:5]]

    monkeypatch.setitem(kinds.KINDS, "sneaky", source.Kind(sneaky, {"notes.txt": "notes"}))
    root = repo(tmp_path, "<!-- results:sneaky h100 -->\n<!-- /results:sneaky -->\n")
    (root / "docs" / "results" / "h100" / "notes.txt").write_text("x", encoding="utf-8")
    assert check(root)[1] == [
        "README.md:1: results:sneaky: cannot render: fidelity.md is not among the files of its row of KINDS: "
        "add it with the stage that writes it"
    ]


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "docs" / "results" / "h100").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "h100" / "gate-simulation.json").write_text("{trials: 3", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "<!-- results:gate-simulation h100 -->\n<!-- /results:gate-simulation -->\n", encoding="utf-8"
    )
    (line,) = check(tmp_path)[1]
    assert line.startswith(
        "README.md:1: results:gate-simulation: cannot render: docs/results/h100/gate-simulation.json: not valid JSON"
    )


# ---------------------------------------------------------------- typed-in GPU figures


def test_a_typed_in_figure_outside_a_region_fails_with_file_line_and_text(tmp_path: Path) -> None:
    root = repo(tmp_path, f"# Project\n\n{REGION}\nThe kernel took 0.423 ms on the H100.\n")
    rendered(root)
    status, lines = check(root)
    assert status == 1
    line = (root / "README.md").read_text(encoding="utf-8").splitlines().index("The kernel took 0.423 ms on the H100.")
    assert lines == [
        f"README.md:{line + 1}: GPU figure outside a generated region (0.423 ms): The kernel took 0.423 ms on the H100."
    ]


def test_figures_in_docs_pages_are_checked_too(tmp_path: Path) -> None:
    root = repo(tmp_path, "# Project\n", doc="# Notes\n\n22 of 24 cases agree.\n")
    assert check(root) == (
        1,
        ["docs/notes.md:3: GPU figure outside a generated region (22 of 24): 22 of 24 cases agree."],
    )


def test_result_files_are_data_not_prose(tmp_path: Path) -> None:
    root = repo(tmp_path, "# Project\n")
    assert check(root) == (0, [])  # docs/results/h100/fidelity.md is full of figures, and is not scanned


@pytest.mark.parametrize(
    "line",
    [
        "median 0.423 ms",
        "59.1 µs at 1K",
        "62.5 us",
        "took 31–35 s",
        "3.7 s of kernel time",
        "377 TFLOP/s",
        "78.4 GiB free",
        "+0 B after each try",
        "20,736 tokens",
        "12 % faster",
        "−0.72 %",
        "highest ratio ×1.093",
        "x3.779 (+277.9 %)",
        "speedup 7.2×",
        "22 of the 24 cases",
        "caught 0/20",
        "94 passed, 10 skipped",
        "ratios 0.955 to 1.017",
    ],
)
def test_what_counts_as_a_gpu_figure(line: str) -> None:
    assert figures.typed_in_figures(Path("README.md"), line), line


@pytest.mark.parametrize(
    "line",
    [
        "Llama-2-70B and Llama-3-8B, 2 layers",
        "NVIDIA H100 80GB HBM3",
        "torch 2.11.0+cu130, flash-attn 2.8.3.post2",
        "1K, 4K, 16K and 32K; B=1 H=32 D=128",
        "the default tolerance is 10 % (`--attnperf-latency-tolerance`), transformers 25%",
        "the ±3 % target",
        "a warm-up of 25 ms and 100 ms of sampling",
        "`attnperf_latency(budget='2.5 ms')` and `ceiling='2 GiB'`",
        "a budget of 2 × 2⁻¹⁶ × max|ref|",
        "see [the log](results/h100/main-job-0.374ms.log)",
        "<!-- 0.5 ms in a comment -->",
    ],
)
def test_what_is_not_a_gpu_figure(line: str) -> None:
    assert figures.typed_in_figures(Path("README.md"), line) == []


def test_code_blocks_are_skipped_but_program_output_is_not(tmp_path: Path) -> None:
    code = "```python\n@pytest.mark.attnperf_memory(ceiling='2 GiB')  # 0.5 ms\n```\n"
    output = "```text\nmedian 0.236 ms vs baseline 62.5 us\n```\n"
    assert figures.typed_in_figures(Path("README.md"), code) == []
    (problem,) = figures.typed_in_figures(Path("README.md"), output)
    assert str(problem).startswith("README.md:2: GPU figure outside a generated region (0.236 ms, 62.5 us)")


def test_the_allowlist_is_short_and_says_why() -> None:
    assert len(figures.ALLOWED) <= 12
    assert all(len(reason) > 10 for _, _, reason in figures.ALLOWED)


# ---------------------------------------------------------------- the clock-aware gate's results


VALIDATION = {
    "default_tolerance": "auto",
    "sensitivity": [
        {"case": "flex 16K", "intended": 0.05, "injected": 0.0512, "detected": 20, "trials": 20, "false_alarms": 0,
         "false_alarm_trials": 20, "tolerance": 0.03},
        {"case": "eager 4K", "injected": 0.0488, "detected": 19, "trials": 20, "false_alarms": 1,
         "false_alarm_trials": 20, "tolerance": 0.034},
    ],
    "gated_runs": {"runs": 10, "failed": 0},
}  # fmt: skip


def test_gate_validation_renders_issue_15s_form(tmp_path: Path) -> None:
    import json

    (tmp_path / "docs" / "results" / "h200").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "h200" / "gate-validation.json").write_text(
        json.dumps(VALIDATION), encoding="utf-8"
    )
    (tmp_path / "README.md").write_text(
        "<!-- results:gate-validation h200 -->\n<!-- /results:gate-validation -->\n", encoding="utf-8"
    )
    text = rendered(tmp_path)
    assert "| flex 16K | +5 % | +5.1 % | 20 of 20 | 0 of 20 | 3.0 % |" in text
    assert "| eager 4K | – | +4.9 % | 19 of 20 | 1 of 20 | 3.4 % |" in text  # a file without the intended level
    assert "Gated runs of the whole suite on an unchanged build: 0 failed of 10." in text
    assert "(`bash benchmarks/gpu_session.sh sensitivity`)" in text


def test_gate_validation_reads_another_file_of_the_folder(tmp_path: Path) -> None:
    import json

    folder = tmp_path / "docs" / "results" / "h200"
    folder.mkdir(parents=True)
    (folder / "gate-validation-rejudged.json").write_text(json.dumps(VALIDATION), encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "<!-- results:gate-validation h200 file=gate-validation-rejudged.json -->\n<!-- /results:gate-validation -->\n",
        encoding="utf-8",
    )
    text = rendered(tmp_path)
    assert "| flex 16K | +5 % | +5.1 % | 20 of 20 | 0 of 20 | 3.0 % |" in text
    assert "gate-validation-rejudged.json" in text
    assert "rejudge_sensitivity.py" in text


LIVE = {
    "injected_units": "wall time (injected_cycles: time x SM clock)",
    "sensitivity": [
        {"case": "flash-attn 32K", "row": "power", "intended": None, "injected": 0.086, "injected_cycles": 0.003,
         "detected": 5, "trials": 5, "false_alarms": 0, "false_alarm_trials": 5, "tolerance": 0.03},
        {"case": "flash-attn 32K", "row": "plus3", "intended": 0.03, "injected": 0.031, "injected_cycles": None,
         "detected": 4, "trials": 5, "false_alarms": 0, "false_alarm_trials": 5, "tolerance": 0.03,
         "tolerance_max": 0.045},
    ],
    "gated_runs": {"runs": 5, "failed": 0, "through_pytest": True},
    "recorded_on": ["GPU-a"],
    "gated_on": ["GPU-b"],
}  # fmt: skip


def test_the_live_validation_renders_wall_time_and_cycles_and_names_the_cards(tmp_path: Path) -> None:
    import json

    folder = tmp_path / "docs" / "results" / "h100"
    folder.mkdir(parents=True)
    (folder / "gate-validation-live.json").write_text(json.dumps(LIVE), encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "<!-- results:gate-validation h100 file=gate-validation-live.json -->\n<!-- /results:gate-validation -->\n",
        encoding="utf-8",
    )
    text = rendered(tmp_path)
    assert "| case | row | delivered (wall time) | in cycles |" in text
    assert "| flash-attn 32K | power-heavier | +8.6 % | +0.3 % | 5 of 5 | 0 of 5 | 3.0 % |" in text
    assert "| flash-attn 32K | +3 % work | +3.1 % | – | 4 of 5 | 0 of 5 | 3.0–4.5 % |" in text  # two units' lines
    assert "5 gated runs through `pytest --attnperf`, on another card than the one that recorded them" in text
    assert "gate_validation_live.py all" in text


def test_the_summary_table_is_read_with_and_without_the_clock_column() -> None:
    old = "test_forward[eager-1K]  eager  1024  0.374 ms  23  137 MiB  0.517 ms  x0.724  ok"
    new = "test_forward[eager-1K]  eager  1024  0.374 ms  23  137 MiB  0.517 ms  x0.724  x0.701  ok"
    assert source.attnperf_rows(old)[0]["verdict"] == "ok"
    (row,) = source.attnperf_rows(new)
    assert (row["at_clock"], row["verdict"]) == ("x0.701", "ok")


H200_BASELINE = """\
schema_version: 2
device: {name: NVIDIA H200, slug: nvidia-h200, memory_bytes: 150109880320}
environment: {}
entries:
  tests/suite/test_attention.py::test_forward[eager-1K]:
    {backend: eager, mode: forward, fits: true, runs: 3, latency_ms: {median: 0.4}, peak_bytes: 134217728,
     shape: {batch: 1, heads: 32, head_dim: 128, dtype: float16, k_len: 1024, q_len: 1024, workload: prefill}}
  tests/suite/test_attention.py::test_forward[flash-attn-1K]:
    {backend: flash-attn, mode: forward, fits: true, runs: 3, latency_ms: {median: 0.05}, peak_bytes: 8388608,
     shape: {batch: 1, heads: 32, head_dim: 128, dtype: float16, k_len: 1024, q_len: 1024, workload: prefill}}
  tests/suite/test_attention.py::test_forward[eager-32K]:
    {backend: eager, mode: forward, fits: false,
     shape: {batch: 1, heads: 32, head_dim: 128, dtype: float16, k_len: 32768, q_len: 32768, workload: prefill}}
  tests/suite/test_attention.py::test_forward[flash-attn-32K]:
    {backend: flash-attn, mode: forward, fits: true, runs: 3, latency_ms: {median: 23.0}, peak_bytes: 272629760,
     shape: {batch: 1, heads: 32, head_dim: 128, dtype: float16, k_len: 32768, q_len: 32768, workload: prefill}}
"""


def test_the_h200_answer_and_frontier_come_from_the_recorded_baselines(tmp_path: Path) -> None:
    folder = tmp_path / "docs" / "results" / "h200" / "record"
    folder.mkdir(parents=True)
    (folder / "nvidia-h200.yaml").write_text(H200_BASELINE, encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "<!-- results:h200-prefill h200 -->\n<!-- /results:h200-prefill -->\n\n"
        "<!-- results:h200-frontier h200 -->\n<!-- /results:h200-frontier -->\n",
        encoding="utf-8",
    )
    text = rendered(tmp_path)
    assert "| `eager` | 0.400 ms · 128 MiB | does not fit |" in text
    assert "| `flash-attn` | 50.0 µs · 8.00 MiB | 23.0 ms · 260 MiB |" in text
    assert "1K: 8.0× faster, 16× less memory; 32K: standard attention does not fit, `flash-attn` runs." in text
    assert "`eager` fits at 1K (peak 128 MiB) and no longer at 32K" in text


def test_gate_cost_renders_each_cost_json_of_the_folder(tmp_path: Path) -> None:
    import json

    folder = tmp_path / "docs" / "results" / "h100" / "cost"
    folder.mkdir(parents=True)
    phases = {"first_call": 50.0, "peak_call": 1.0, "warmup": 10.0, "sampling": 40.0, "timing_other": 2.0,
              "fingerprint": 4.0, "reference": 8.0, "equivalence": 3.0, "tests_other": 5.0, "outside_tests": 1.0}  # fmt: skip
    before = {"wall_s": 138.0, "sampled_kernel_s": 18.5, "startup_s": 14.0, "phases_s": phases, "lead_spin_s": 20.0,
              "cache": "cold", "cases": 124}  # fmt: skip
    (folder / "cost-before-cold.json").write_text(json.dumps(before), encoding="utf-8")
    (folder / "cost-after-warm.json").write_text(
        json.dumps({**before, "wall_s": 60.0, "cache": "warm", "compile_cache": {"graph_hits": 21, "graph_misses": 1}}),
        encoding="utf-8",
    )
    (tmp_path / "README.md").write_text(
        "<!-- results:gate-cost h100 -->\n<!-- /results:gate-cost -->\n", encoding="utf-8"
    )
    text = rendered(tmp_path)
    assert "| before | cold | 124 | 138.0 | 18.5 | 14.0 | 50.0 | 10.0 | 40.0 | 11.0 | 4.0 | 9.0 | 20.0 | 7.5× |" in text
    assert "| after | warm (1 of 22 graphs compiled) | 124 | 60.0 |" in text  # a changed code path compiled anew
    assert "cost-before-cold.json" in text
    assert "benchmarks/gate_cost.py" in text
    (folder / "cost-after-warm.json").write_text(json.dumps({"wall_s": 1}), encoding="utf-8")
    status, lines = check(tmp_path)
    assert status == 1
    assert any("cost-after-warm.json: not a gate_cost.py cost.json" in line for line in lines)


HOSTILE_PROBE = """\
# Hostile probe of pytest-attnperf

- runs (the rows of a family come from the latest run of it):
  - 2026-12-02 01:54 UTC (10.7 min), pytest-attnperf at commit 9dd6a8f: `python benchmarks/hostile_probe.py`; families yaml (2 probes)
  - 2026-12-07 10:42 UTC (2.1 min), pytest-attnperf at commit abc1234: `python benchmarks/hostile_probe.py --only inputs3 --merge`; families inputs3 (3 probes)
- machine: X
- 5 probes: **3 clear error, 1 acceptable, 1 DEFECT**

| # | family | input | what happened | verdict |
|---:|---|---|---|---|
| 1 | yaml | a \\| pipe | exit 4: refused | clear error |
| 2 | yaml | a BOM | exit 0: 1 passed | acceptable |
| 3 | inputs3 | a FIFO | exit 4: is a named pipe | clear error |
| 4 | inputs3 | a folder | exit 1: is a folder | clear error |
| 5 | inputs3 | diff of two problems | exit 0: x10.000 | **DEFECT** |
"""


def test_the_hostile_probe_counts_per_family_name_the_run_of_each(tmp_path: Path) -> None:
    folder = tmp_path / "docs" / "results" / "cpu"
    folder.mkdir(parents=True)
    (folder / "hostile-probe.md").write_text(HOSTILE_PROBE, encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "<!-- results:hostile-probe-families cpu families=inputs3 -->\n<!-- /results:hostile-probe-families -->\n\n"
        "<!-- results:hostile-probe-families cpu -->\n<!-- /results:hostile-probe-families -->\n",
        encoding="utf-8",
    )
    text = rendered(tmp_path)
    assert "| inputs3 | 3 | 2 | 0 | **1** | 2026-12-07 10:42 UTC, commit abc1234 |" in text
    assert "| yaml | 2 | 1 | 1 | 0 | 2026-12-02 01:54 UTC, commit 9dd6a8f |" in text  # the second region: every family
    assert text.count("| yaml |") == 1
    assert "benchmarks/hostile_probe.py" in text
    (tmp_path / "README.md").write_text(
        "<!-- results:hostile-probe-families cpu families=round9 -->\n<!-- /results:hostile-probe-families -->\n",
        encoding="utf-8",
    )
    status, lines = check(tmp_path)
    assert status == 1
    assert any("no probes of the families round9" in line for line in lines)
