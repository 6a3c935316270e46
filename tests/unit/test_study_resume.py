"""Going on with a study across runs: study.json saved after each part, an earlier run's parts kept as they are,
another GPU model, software or plan refused, the atomic write, and --configs (the CPU study at toy sizes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fast_run import CPU  # noqa: F401  (loads torch and scipy before an in-process run)

import pytest_attnperf.study.output as study_output
import pytest_attnperf.study.resume as study_resume
import pytest_attnperf.study.runner as study_runner
from pytest_attnperf.cli import commands as cli
from pytest_attnperf.spec.shapes import AttnShape
from pytest_attnperf.study.markdown import render_markdown
from pytest_attnperf.study.plan import DECODE_PART, SelectionError, missing_parts, select_configs
from pytest_attnperf.study.resume import holding_folder
from pytest_attnperf.study.runner import CPU_CONFIGS

NAMES = [config.name for config in CPU_CONFIGS]  # fp32 causal d64, fp32 non-causal d64, fp32 causal d64 GQA 8:2
TOY = ["--attnperf-device=cpu", "--attnperf-seqlens=32,64", "--attnperf-backends=eager", "--attnperf-min-samples=3"]


class Cut(BaseException):
    """Stands for a time limit's kill: nothing catches it, as nothing outlives a SIGKILL."""


@pytest.fixture(autouse=True)
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(study_output, "plots_available", lambda: False)  # matplotlib's seconds are not under test


def _report(out: Path, *arguments: str) -> int:
    return cli.main(["report", *TOY, "--out", str(out), *arguments])


def _record_cases(monkeypatch: pytest.MonkeyPatch, cut_at: int | None = None) -> list[AttnShape]:
    """Every shape measured from now on; with ``cut_at``, the run is cut off as that case starts."""
    measured: list[AttnShape] = []
    measure = study_runner.measure_case

    def recording(backend: Any, shape: AttnShape, *arguments: Any) -> dict[str, Any]:
        if cut_at is not None and len(measured) + 1 == cut_at:
            raise Cut
        measured.append(shape)
        return measure(backend, shape, *arguments)

    monkeypatch.setattr(study_runner, "measure_case", recording)
    return measured


def _first_config(shape: AttnShape) -> bool:
    return shape.workload == "prefill" and shape.causal and shape.kv_heads == shape.heads


def _config_text(study: dict[str, Any], name: str) -> str:
    entry = next(config for config in study["configs"] if config["name"] == name)
    return json.dumps(entry, sort_keys=True)


def _load(out: Path) -> dict[str, Any]:
    return json.loads((out / "study.json").read_text(encoding="utf-8"))


@pytest.fixture
def cut_after_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A study cut off as the second configuration starts (two lengths x one backend per configuration)."""
    out = tmp_path / "study"
    with monkeypatch.context() as patched:
        _record_cases(patched, cut_at=3)
        with pytest.raises(Cut):
            _report(out)
    return out


def test_a_cut_off_run_leaves_its_finished_configuration_saved(cut_after_first: Path) -> None:
    study = _load(cut_after_first)
    assert [config["name"] for config in study["configs"]] == NAMES[:1]
    assert [case["seqlen"] for case in study["configs"][0]["cases"]] == [32, 64]
    assert study["complete"] is False
    assert study["missing"] == [*NAMES[1:], DECODE_PART]
    assert "decode" not in study
    assert [[part["name"] for part in run["parts"]] for run in study["runs"]] == [NAMES[:1]]
    readme = (cut_after_first / "README.md").read_text(encoding="utf-8")
    assert "**Not measured yet:** fp32 non-causal d64, fp32 causal d64 GQA 8:2, decode section" in readme
    assert not [path.name for path in cut_after_first.iterdir() if path.name.endswith(".tmp")]


def test_a_cut_off_run_has_drawn_the_plots_of_what_it_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(study_output, "plots_available", lambda: True)
    _record_cases(monkeypatch, cut_at=3)
    with pytest.raises(Cut):
        _report(tmp_path)
    drawn = sorted(path.name for path in tmp_path.glob("*.png"))
    assert drawn == ["latency-fp32-causal-d64.png", "memory-fp32-causal-d64.png"]


def test_each_save_draws_only_the_plots_of_the_parts_new_since_the_last_and_the_end_lists_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_attnperf.study import plots as study_plots

    drawn: list[list[str]] = []

    def render(study: dict[str, Any], out: Path, parts: Any = None) -> list[Path]:
        names = sorted(parts) if parts is not None else ["every part"]
        drawn.append(names)
        return [out / f"plot-{name}.png" for name in names]

    monkeypatch.setattr(study_output, "plots_available", lambda: True)
    monkeypatch.setattr(study_plots, "render_plots", render)
    assert _report(tmp_path, "--configs", "1-2") == 0
    assert drawn == [[NAMES[0]], [NAMES[1]], [DECODE_PART]]  # one part each: a save redraws nothing already drawn
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert said == [f"wrote {tmp_path / name}" for name in ("study.json", "README.md")] + [
        f"wrote {tmp_path / f'plot-{name}.png'}" for name in (*NAMES[:2], DECODE_PART)
    ]
    # Resumed (the earlier folder's copy, plots or not): its first save draws every part it holds, once.
    drawn.clear()
    assert _report(tmp_path, "--configs", "3") == 0
    assert drawn == [sorted([*NAMES[:3], DECODE_PART])]


def test_the_next_run_measures_only_what_is_missing_and_keeps_the_first_byte_for_byte(
    cut_after_first: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _load(cut_after_first)
    measured = _record_cases(monkeypatch)
    assert _report(cut_after_first) == 0
    after = _load(cut_after_first)
    assert measured, "the rest was measured"
    assert not [shape for shape in measured if _first_config(shape)]  # the kept configuration was not measured again
    assert {shape.workload for shape in measured} == {"prefill", "decode", "paged"}
    assert _config_text(after, NAMES[0]) == _config_text(before, NAMES[0])
    assert [config["name"] for config in after["configs"]] == NAMES
    assert after["complete"] is True
    assert after["missing"] == []
    assert "decode" in after
    runs = after["runs"]
    assert [[part["name"] for part in run["parts"]] for run in runs] == [NAMES[:1], [*NAMES[1:], DECODE_PART]]
    assert runs[0] == before["runs"][0]
    out = capsys.readouterr().out
    assert f"going on with {cut_after_first / 'study.json'}: keeping 'fp32 causal d64'" in out
    assert "the study is complete (3 configurations and the decode section)" in out
    readme = (cut_after_first / "README.md").read_text(encoding="utf-8")
    assert "**Measured in 2 runs**" in readme
    assert "Not measured yet" not in readme


def test_a_complete_study_run_again_measures_nothing(
    cut_after_first: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _report(cut_after_first) == 0
    done = (cut_after_first / "study.json").read_bytes()
    measured = _record_cases(monkeypatch)
    assert _report(cut_after_first) == 0
    assert measured == []
    assert (cut_after_first / "study.json").read_bytes() == done
    assert "the study is complete" in capsys.readouterr().out


def test_a_run_on_another_card_of_the_model_that_measures_nothing_changes_nothing(
    cut_after_first: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _report(cut_after_first) == 0
    done = _edited(cut_after_first, lambda s: s["gpu"].update(uuid="GPU-of-the-earlier-runs"))
    assert _report(cut_after_first) == 0
    assert _load(cut_after_first) == json.loads(done)  # the earlier runs' card is kept: this run added nothing


def test_an_interrupted_run_says_that_the_next_goes_on(
    cut_after_first: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    measure = study_runner.measure_case

    def interrupted(backend: Any, shape: AttnShape, *arguments: Any) -> dict[str, Any]:
        if shape.kv_heads != shape.heads:  # the third configuration: the second is saved by then
            raise KeyboardInterrupt
        return measure(backend, shape, *arguments)

    monkeypatch.setattr(study_runner, "measure_case", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _report(cut_after_first)
    assert [config["name"] for config in _load(cut_after_first)["configs"]] == NAMES[:2]
    assert (
        f"attnperf report: interrupted; {cut_after_first / 'study.json'} keeps the parts finished, and the same "
        "command goes on\n"
    ) in capsys.readouterr().out


def test_a_study_json_that_is_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "study.json").mkdir()
    for fresh in ((), ("--fresh",)):
        assert _report(tmp_path, *fresh) == 2
        assert capsys.readouterr().err == (
            f"attnperf report: {tmp_path / 'study.json'}: not a file, so the study cannot be saved there; "
            "choose another --out\n"
        )


def test_configs_measures_only_the_chosen_ones_and_says_what_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    measured = _record_cases(monkeypatch)
    out = tmp_path / "study"
    assert _report(out, "--configs", "fp32 CAUSAL  d64 gqa 8:2,2", "--only", "prefill") == 0
    assert {shape.workload for shape in measured} == {"prefill"}
    assert not [shape for shape in measured if _first_config(shape)]
    study = _load(out)
    assert [config["name"] for config in study["configs"]] == NAMES[1:]  # in the study's order
    assert study["missing"] == [NAMES[0], DECODE_PART]
    said = capsys.readouterr().out
    assert (
        f"missing 'fp32 causal d64', 'decode section': attnperf report --out {out} (with the same --attnperf-* "
        "options) measures only those\n"
    ) in said


def _edited(out: Path, edit: Callable[[dict[str, Any]], None]) -> bytes:
    study = _load(out)
    edit(study)
    (out / "study.json").write_text(json.dumps(study), encoding="utf-8")
    return (out / "study.json").read_bytes()


@pytest.mark.parametrize(
    ("edit", "arguments", "said"),
    [
        pytest.param(
            lambda s: s["gpu"].update(name="NVIDIA H200"),
            (),
            "it was measured on 'NVIDIA H200', this run is on ",
            id="another-gpu-model",
        ),
        pytest.param(
            lambda s: s["gpu"].update(torch="2.11.0+cu130"),
            (),
            "other software (torch 2.11.0+cu130 there, ",
            id="other-software",
        ),
        pytest.param(
            lambda s: None,
            ("--attnperf-seqlens=32,128",),
            "other context lengths (--attnperf-seqlens): [32, 64] there, [32, 128] here",
            id="other-seqlens",
        ),
        pytest.param(
            lambda s: None,
            ("--attnperf-backends=eager,sdpa-math",),
            'other backends (--attnperf-backends): ["eager"] there, ["eager", "sdpa-math"] here',
            id="other-backends",
        ),
        pytest.param(
            lambda s: s["plan"]["configs"].pop(),
            (),
            "another configuration list: "
            '["fp32 causal d64", "fp32 non-causal d64"] there, ["fp32 causal d64", "fp32 non-causal d64", ',
            id="another-configuration-list",
        ),
        pytest.param(
            lambda s: s.pop("plan"),
            (),
            "it records no study plan (it was written before attnperf report could go on with a study)",
            id="no-plan",
        ),
        pytest.param(lambda s: s.update(runs={}), (), "its runs is not a list", id="runs-not-a-list"),
        pytest.param(
            lambda s: s["configs"].append(dict(s["configs"][0])),
            (),
            "are not distinct ones of its plan",
            id="a-configuration-twice",
        ),
    ],
)
def test_another_study_is_refused_before_measuring_with_what_differs(
    cut_after_first: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], None],
    arguments: tuple[str, ...],
    said: str,
) -> None:
    kept = _edited(cut_after_first, edit)
    measured = _record_cases(monkeypatch)
    assert cli.main(["report", *TOY, *arguments, "--out", str(cut_after_first)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"attnperf report: {cut_after_first / 'study.json'}: "), error
    assert said in error
    assert error.rstrip().endswith(
        "--fresh starts the study over in that folder (replacing it), or choose another --out"
    )
    assert measured == []
    assert (cut_after_first / "study.json").read_bytes() == kept


@pytest.mark.parametrize(
    ("text", "said"),
    [
        pytest.param('{"schema": "attnperf-study/1", "configs": [', "not a readable study.json (Expecting", id="cut"),
        pytest.param("[]", "it is not a JSON object", id="a-list"),
        pytest.param('{"schema": "other/2"}', "its schema is 'other/2', not 'attnperf-study/1'", id="schema"),
        pytest.param("[" * 100_000 + "]" * 100_000, "not a readable study.json (nested too deep)", id="deep"),
    ],
)
def test_an_unreadable_study_json_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, text: str, said: str
) -> None:
    (tmp_path / "study.json").write_text(text, encoding="utf-8")
    measured = _record_cases(monkeypatch)
    assert _report(tmp_path) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"attnperf report: {tmp_path / 'study.json'}: "), error
    assert said in error
    assert measured == []
    assert (tmp_path / "study.json").read_text(encoding="utf-8") == text


def test_fresh_starts_over_in_place_of_another_study(cut_after_first: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _edited(cut_after_first, lambda s: s["gpu"].update(name="NVIDIA H200"))
    measured = _record_cases(monkeypatch)
    assert _report(cut_after_first, "--fresh", "--quick", "--only", "prefill") == 0
    assert [shape for shape in measured if _first_config(shape)]  # measured again, not kept
    study = _load(cut_after_first)
    assert study["gpu"]["name"] != "NVIDIA H200"
    assert len(study["runs"]) == 1
    assert [config["name"] for config in study["configs"]] == NAMES[:1]


def test_study_json_is_replaced_whole_so_a_kill_mid_write_leaves_the_last_one(
    cut_after_first: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cut_after_first / "study.json"
    before = path.read_bytes()
    seen: list[bytes] = []
    real_fsync = os.fsync

    def killed_after_the_data_is_written(descriptor: int) -> None:
        real_fsync(descriptor)
        seen.append(path.read_bytes())  # what a reader (or the next run) finds while the new text is written
        raise Cut

    monkeypatch.setattr(os, "fsync", killed_after_the_data_is_written)
    with pytest.raises(Cut):
        study_output.write_study({**_load(cut_after_first), "configs": []}, cut_after_first, plots=False)
    assert seen == [before]
    assert path.read_bytes() == before
    assert sorted(p.name for p in cut_after_first.iterdir()) == ["README.md", "study.json"]  # no temporary left


def test_configs_with_quick_or_only_decode_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for other, named in ((["--quick"], "--quick"), (["--only", "decode"], "--only decode")):
        assert _report(tmp_path / "r", "--configs", "1", *other) == 2
        assert capsys.readouterr().err == (
            f"attnperf report: --configs and {named} both choose the configurations to measure: give one\n"
        )
    assert not (tmp_path / "r").exists()


def test_an_unknown_configuration_lists_the_accepted_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _report(tmp_path / "r", "--configs", "fp16 causal d128") == 2
    assert capsys.readouterr().err == (
        "attnperf report: --configs 'fp16 causal d128': unknown configuration 'fp16 causal d128'; accepted: "
        "1 'fp32 causal d64', 2 'fp32 non-causal d64', 3 'fp32 causal d64 GQA 8:2'; or a range such as 2-3, "
        "comma-separated\n"
    )
    assert not (tmp_path / "r").exists()


GPU_NAMES = ["fp16 causal d128", "bf16 causal d128", "fp16 non-causal d128", "fp16 causal d64", "fp16 GQA"]


@pytest.mark.parametrize(
    ("spec", "chosen"),
    [
        ("2-5", GPU_NAMES[1:]),
        ("3", GPU_NAMES[2:3]),
        ("bf16 causal d128", GPU_NAMES[1:2]),
        (" BF16  Causal d128 ", GPU_NAMES[1:2]),
        ("5,1, 2 - 3,1", [GPU_NAMES[0], GPU_NAMES[1], GPU_NAMES[2], GPU_NAMES[4]]),
        ("fp16 GQA,4-4", GPU_NAMES[3:]),
    ],
)
def test_configs_chooses_by_number_range_or_name_in_the_studys_order(spec: str, chosen: list[str]) -> None:
    assert select_configs(spec, GPU_NAMES) == tuple(chosen)


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("0", "'0': only 1-5 exist"),
        ("6", "'6': only 1-5 exist"),
        ("2-9", "'2-9': only 1-5 exist"),
        ("5-2", "'5-2': a range that runs backwards"),
        ("", "an empty item"),
        ("1,,2", "an empty item"),
        ("-1", "unknown configuration '-1'"),
        ("fp16 causal", "unknown configuration 'fp16 causal'"),
        ("\u00b2", "unknown configuration '\u00b2'"),  # "²".isdigit() is true, but it is no number to int()
        ("\uff11", "unknown configuration '\uff11'"),  # a full-width 1: numbers are ASCII digits
    ],
)
def test_a_bad_configs_value_says_why_and_lists_the_names(spec: str, said: str) -> None:
    with pytest.raises(SelectionError) as error:
        select_configs(spec, GPU_NAMES)
    assert str(error.value).startswith(f"--configs {spec!r}: {said}; accepted: 1 'fp16 causal d128', 2 ")
    assert str(error.value).endswith("5 'fp16 GQA'; or a range such as 2-5, comma-separated")


def test_missing_parts_follow_the_plan_and_a_document_without_one_has_none() -> None:
    plan = {"configs": [{"name": "a"}, {"name": "b"}], "decode": {"model": "m"}}
    assert missing_parts({"plan": plan, "configs": [{"name": "b"}]}) == ["a", DECODE_PART]
    assert missing_parts({"plan": {**plan, "decode": None}, "configs": [{"name": "a"}, {"name": "b"}]}) == []
    assert missing_parts({"configs": []}) == []
    assert "Not measured yet" not in render_markdown({"configs": [], "runs": [{"parts": []}]})


# A real kill: the study's process sends itself SIGKILL as its second configuration starts (nothing runs after it).
KILLED_AFTER_FIRST = """
import os, signal, sys
import pytest_attnperf.study.runner as runner
from pytest_attnperf.cli import commands as cli
measure, calls = runner.measure_case, []
def measure_then_die(*arguments):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return measure(*arguments)
runner.measure_case = measure_then_die
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow  # two subprocess runs of the CPU study
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_report_goes_on_from_its_saved_study(tmp_path: Path) -> None:
    out = tmp_path / "study"
    arguments = ["report", *TOY, "--only", "prefill", "--out", str(out)]
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_FIRST, *arguments], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    first = _load(out)
    assert [config["name"] for config in first["configs"]] == NAMES[:1]
    finished = subprocess.run(
        [sys.executable, "-m", "pytest_attnperf.cli", *arguments], capture_output=True, text=True, check=True
    )
    assert f"going on with {out / 'study.json'}: keeping 'fp32 causal d64'" in finished.stdout
    assert "[  1/4] fp32 non-causal d64 | eager | 32:" in finished.stderr  # two configurations left, two cases each
    assert "missing 'decode section'" in finished.stdout
    second = _load(out)
    assert [config["name"] for config in second["configs"]] == NAMES
    assert _config_text(second, NAMES[0]) == _config_text(first, NAMES[0])


@pytest.mark.skipif(sys.platform == "win32", reason="folders are held with flock")
def test_a_second_report_into_a_folder_in_use_is_refused_and_changes_nothing(
    cut_after_first: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (cut_after_first / "study.json").read_bytes()
    measured = _record_cases(monkeypatch)
    with holding_folder(cut_after_first):  # as the first report does while it measures
        assert _report(cut_after_first) == 2
        assert _report(cut_after_first, "--fresh") == 2
    error = capsys.readouterr().err
    assert error.startswith(f"attnperf report: {cut_after_first}: another attnperf report is measuring into this")
    assert "choose another --out" in error
    assert measured == []
    assert (cut_after_first / "study.json").read_bytes() == before
    assert _report(cut_after_first, "--configs", "2") == 0  # held no more: the next goes on
    assert [config["name"] for config in _load(cut_after_first)["configs"]] == NAMES[:2]


def test_the_same_backends_and_lengths_in_another_order_are_the_same_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _report(tmp_path, "--attnperf-backends=sdpa-math,eager", "--configs", "1", "--only", "prefill") == 0
    first = _load(tmp_path)
    assert first["plan"]["backends"] == ["eager", "sdpa-math"]  # the registry's order
    assert first["plan"]["seqlens"] == [32, 64]
    again = ["--attnperf-backends=eager,sdpa-math", "--attnperf-seqlens=64,32", "--configs", "2", "--only", "prefill"]
    assert _report(tmp_path, *again) == 0, capsys.readouterr().err
    second = _load(tmp_path)
    assert [config["name"] for config in second["configs"]] == NAMES[:2]
    assert _config_text(second, NAMES[0]) == _config_text(first, NAMES[0])
    assert [(case["seqlen"], case["backend"]) for case in second["configs"][1]["cases"]] == [
        (32, "eager"),
        (32, "sdpa-math"),
        (64, "eager"),
        (64, "sdpa-math"),
    ]


def test_fresh_takes_the_earlier_studys_plots_with_it(
    cut_after_first: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    earlier = [cut_after_first / name for name in ("latency-fp32-causal-d64.png", "memory-fp32-causal-d64.png")]
    for plot in earlier:
        plot.write_bytes(b"the earlier study's plot")
    kept = cut_after_first / "my-notes.png"  # not a plot of the study's
    kept.write_bytes(b"mine")
    assert _report(cut_after_first, "--fresh", "--configs", "2", "--only", "prefill") == 0
    said = f"attnperf report: starting over (--fresh): {cut_after_first / 'study.json'} and its plots are replaced"
    assert f"{said} when a part is saved\n" in capsys.readouterr().out
    assert [config["name"] for config in _load(cut_after_first)["configs"]] == NAMES[1:2]
    assert not any(plot.exists() for plot in earlier)  # they showed numbers study.json no longer holds
    assert kept.read_bytes() == b"mine"


def test_a_folder_that_cannot_be_opened_to_hold_is_written_unguarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unlistable(path: Any, flags: int, *arguments: Any) -> int:
        raise PermissionError(13, "Permission denied", str(path))  # a folder with -wx rights, as a non-root user

    monkeypatch.setattr(study_resume.os, "open", unlistable)
    entered = []
    with holding_folder(tmp_path):
        entered.append(True)
    assert entered == [True]


def test_a_full_disk_at_a_save_is_one_line_and_keeps_the_last_whole_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write = study_output.write_study
    saves: list[int] = []

    def full_at_the_second(study: dict[str, Any], out: Path, **options: Any) -> list[Path]:
        saves.append(1)
        if len(saves) == 2:
            raise OSError(28, "No space left on device")
        return write(study, out, **options)

    monkeypatch.setattr(study_output, "write_study", full_at_the_second)
    assert _report(tmp_path, "--configs", "1-2", "--only", "prefill") == 2
    assert capsys.readouterr().err == (
        f"attnperf report: cannot save the study into {tmp_path}: No space left on device; "
        f"{tmp_path / 'study.json'} is whole as last saved, and the same command goes on from it\n"
    )
    assert [config["name"] for config in _load(tmp_path)["configs"]] == NAMES[:1]


# A scheduler's time limit: the study's process gets SIGTERM as its second configuration starts.
TERMINATED_AFTER_FIRST = KILLED_AFTER_FIRST.replace("signal.SIGKILL", "signal.SIGTERM")


@pytest.mark.slow  # a subprocess run of the CPU study
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_terminated_report_says_what_it_keeps_as_ctrl_c_does(tmp_path: Path) -> None:
    out = tmp_path / "study"
    arguments = ["report", *TOY, "--only", "prefill", "--out", str(out)]
    ended = subprocess.run([sys.executable, "-c", TERMINATED_AFTER_FIRST, *arguments], capture_output=True, text=True)
    assert ended.returncode == -signal.SIGINT, ended.stderr  # ended as an interrupt, not killed silently
    assert f"interrupted; {out / 'study.json'} keeps the parts finished, and the same command goes on" in ended.stdout
    assert [config["name"] for config in _load(out)["configs"]] == NAMES[:1]
    assert not [path.name for path in out.iterdir() if path.name.startswith(".")]  # no temporary file left
