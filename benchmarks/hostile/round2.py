"""Hostile-probe family `round2`: round 2 (issue 12), added in the robustness branch."""

from __future__ import annotations

from .harness import (
    BASELINE_FILE,
    FAST,
    PYTEST_INI,
    STANDARD_TEST,
    Probe,
    accepts,
    baseline_with,
    big_baseline,
    fails_test_with,
    pytest_argv,
    refuses,
    shell,
)
from .markers import marker_probe
from .options import written_to
from .paths import output_path

ROUND2_CONFTEST = """\
from pytest_attnperf import register_backend
from pytest_attnperf.measure.reference import eager_attention


def _eager(q, k, v, shape):
    return eager_attention(q, k, v, causal=shape.causal, window=shape.window, scale=shape.scale)


@register_backend("raw-write")
def raw_write(q, k, v, shape):
    q.data[0, 0, 0, 0] += 1.0  # through .data: no version bump, as a kernel writing through a pointer
    return _eager(q, k, v, shape)


@register_backend("returns-tuple")
def returns_tuple(q, k, v, shape):
    out = _eager(q, k, v, shape)
    return out, out
"""


def round2_probes() -> list[Probe]:
    ok = {BASELINE_FILE: baseline_with()}
    no_ini = {"proj/test_a.py": STANDARD_TEST, "shared/keep": ""}
    spaced = refuses("written with a space", r"--attnperf-baselines=\.\./shared", codes=(4,))
    # A table of probes, one or two lines each: kept as written.
    # fmt: off
    return [
        Probe("round2", "--attnperf-baselines ../shared (space), no ini file: the rootdir would move",
              pytest_argv("--attnperf-baselines", "../shared", "test_a.py"), spaced, project=False, cwd="proj",
              files=no_ini),
        Probe("round2", "PYTEST_ADDOPTS='--attnperf-baselines ../shared' (space), no ini file",
              pytest_argv("test_a.py"), spaced, project=False, cwd="proj", files=no_ini,
              env={"PYTEST_ADDOPTS": "--attnperf-baselines ../shared"}),
        Probe("round2", "--attnperf-baselines ../shared (space) with pytest.ini in the project: rootdir unchanged",
              pytest_argv("--attnperf-baselines", "../shared", "test_a.py"), accepts(r"1 passed"), project=False,
              cwd="proj", files={**no_ini, "proj/pytest.ini": PYTEST_INI}),
        Probe("round2", "`attnperf update --attnperf-baselines bl` (space: forwarded as --attnperf-baselines=bl)",
              ["{attnperf}", "update", "--attnperf-baselines", "bl", *FAST, "-p", "no:cacheprovider"],
              written_to("bl/{slug}.yaml", expected=True, defect="the update did not write into bl/")),
        Probe("round2", "ini `attnperf_baselines = ../bl` in cfg/pytest.ini, run with -c cfg/pytest.ini --rootdir=.",
              pytest_argv("-c", "cfg/pytest.ini", "--rootdir=.", "test_a.py", "--attnperf-update"),
              written_to("bl/{slug}.yaml", expected=True, defect="an ini path was not taken from the ini file's folder"),
              files={"cfg/pytest.ini": "[pytest]\nattnperf_baselines = ../bl\n"}),
        Probe("round2", "--attnperf-json=r.json without --attnperf", pytest_argv("--attnperf-json=r.json", attnperf=False),
              refuses("--attnperf-json needs --attnperf", codes=(4,))),
        Probe("round2", "--attnperf-report=study without --attnperf",
              pytest_argv("--attnperf-report=study", attnperf=False), refuses("--attnperf-report needs --attnperf", codes=(4,))),
        Probe("round2", "--attnperf-markdown= (empty)", pytest_argv("--attnperf-markdown="),
              refuses("attnperf-markdown", "empty", codes=(4,))),
        Probe("round2", "--attnperf-report= (empty)", pytest_argv("--attnperf-report="),
              refuses("attnperf-report", "empty", codes=(4,))),
        Probe("round2", "--attnperf-kv-heads=16 with the CPU's default 8 heads",
              pytest_argv("--attnperf-kv-heads=16", drop=("--attnperf-heads",)),
              refuses("kv-heads=16", "multiple of kv_heads", codes=(4,))),
        marker_probe("@pytest.mark.attnperf_shape(heads=1)", refuses(r"test_m", "--attnperf-kv-heads"),
                     extra=("--attnperf-kv-heads=2",), family="round2",
                     label="attnperf_shape(heads=1) with --attnperf-kv-heads=2 (used to be lowered to 1)"),
        Probe("round2", "--attnperf-mode=fwd", pytest_argv("--attnperf-mode=fwd"), refuses("mode", "fwd", codes=(4,))),
        Probe("round2", "registered backend writing to q through .data (no version bump), then eager",
              pytest_argv("--attnperf-backends=raw-write,eager"), fails_test_with("raw-write", "modified its input", "1 passed"),
              files={"conftest.py": ROUND2_CONFTEST}),
        Probe("round2", "registered backend returning a tuple, --attnperf-mode=backward",
              pytest_argv("--attnperf-backends=returns-tuple", "--attnperf-mode=backward"),
              fails_test_with("returns-tuple", "tuple", defect_if="AttributeError"), files={"conftest.py": ROUND2_CONFTEST}),
        Probe("round2", "--attnperf-json=/proc/version (a file the kernel will not let anyone write)",
              pytest_argv("--attnperf-json=/proc/version"), output_path(r"/proc/version"), files=ok),
        Probe("round2", "--attnperf-report=/dev/null (a device where a folder should be)",
              pytest_argv("--attnperf-report=/dev/null"), output_path(r"/dev/null"), files=ok),
        Probe("round2", "--attnperf-markdown=/dev/stdout, stdout a pipe (a special file that works: control)",
              shell(pytest_argv("--attnperf-markdown=/dev/stdout")) + " | cat; exit ${PIPESTATUS[0]}",
              accepts(r"1 passed", r"## attnperf on"), files=ok),
        Probe("round2", "report --out test_a.py (a file where the folder should be)",
              ["{attnperf}", "report", "--quick", "--attnperf-seqlens=64", "--out", "test_a.py"], refuses(r"test_a\.py", codes=(2,))),
        Probe("round2", "memory --model llama-2-70b > /dev/full (standard output on a full disk)",
              "{attnperf} memory --model llama-2-70b > /dev/full", refuses(r"standard output", "No space", codes=(1,))),
        Probe("round2", "show <2,000-entry file> > /dev/full", "{attnperf} show big.yaml > /dev/full",
              refuses(r"standard output", "No space", codes=(1,)), files={"big.yaml": big_baseline(2000)}, timeout=300,
              weight=4),
    ]
    # fmt: on
