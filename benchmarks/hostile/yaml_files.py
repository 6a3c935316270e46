"""Hostile-probe family `yaml`: YAML that attacks the parser."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .harness import (
    BASELINE_FILE,
    TEST_ID,
    Classifier,
    FileContent,
    Outcome,
    Probe,
    accepts,
    bad_baseline,
    baseline,
    baseline_then,
    baseline_with,
    crash,
    either,
    fails_test_with,
    has,
    pytest_argv,
    yaml_quote,
)


def yaml_probes() -> list[Probe]:
    probes: list[Probe] = []

    def add(what: str, content: FileContent, check: Classifier, *, via: str = "pytest", timeout: float = 90.0) -> None:
        cmd: Sequence[str] | str = pytest_argv() if via == "pytest" else ["{attnperf}", "show", BASELINE_FILE]
        if via == "show-capped":  # a memory cap, in case a fix makes the expansion itself succeed
            cmd = "ulimit -v 4000000; exec {attnperf} show baselines/{slug}.yaml"
        probes.append(
            Probe(
                "yaml",
                what + ("" if via == "pytest" else " (via `attnperf show`)"),
                cmd,
                check,
                files={BASELINE_FILE: content},
                timeout=timeout,
            )
        )

    # -- aliases, recursion, size
    laughs = "\n".join(
        [f"  lol0: &a0 [{', '.join(['lol'] * 9)}]"]
        + [f"  lol{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]" for level in range(1, 10)]
    )
    add(
        "billion laughs: 9 levels of 9 aliases in `environment` (9^9 leaves)",
        baseline_with(environment=laughs),
        either(),
        timeout=40,
    )
    add("billion laughs in `environment`", baseline_with(environment=laughs), either(), via="show-capped", timeout=40)
    add("recursive alias `loop: &r [*r]` in `environment`", baseline_with(environment="  loop: &r [*r]"), either())
    add("recursive alias `loop: &r [*r]`", baseline_with(environment="  loop: &r [*r]"), either(), via="show")
    add(
        "recursive mapping alias `loop: &r {self: *r}` in an entry's `shape`",
        baseline_then(lambda text: text.replace("    shape: {", "    shape: &r {self: *r, ", 1)),
        either(),
    )
    add(
        "5,000 nested lists `[[[…]]]` in `environment`",
        baseline_with(environment="  deep: " + "[" * 5000 + "]" * 5000),
        either("nest|deep|recurs"),
    )
    add("5,000 nested lists", baseline_with(environment="  deep: " + "[" * 5000 + "]" * 5000), either(), via="show")
    add(
        "5,000 nested flow mappings `{a: {a: …}}` in `environment`",
        baseline_with(environment="  deep: " + "{a: " * 5000 + "1" + "}" * 5000),
        either(),
    )
    add(
        "100 nested block mappings in `environment`",
        baseline_with(environment="\n".join("  " + "  " * depth + f"k{depth}:" for depth in range(100)) + " 1"),
        accepts(r"1 passed"),
    )
    add(
        "a 5 MB quoted scalar as the device name",
        baseline_with(name=yaml_quote("x" * 5_000_000)),
        accepts(r"1 passed"),
        timeout=180,
    )
    add(
        "a 50 MB file (valid entry + 50 MB of comment lines)",
        baseline_then(lambda text: text + ("# " + "x" * 97 + "\n") * (50 * 1024 * 1024 // 100)),
        either(),
        timeout=300,
    )
    add(
        "samples as a 5,000-digit integer (over Python's int-string limit)",
        baseline_with(samples="7" * 5000),
        bad_baseline("samples"),
    )
    add("samples as a 5,000-digit integer", baseline_with(samples="7" * 5000), bad_baseline("samples"), via="show")
    # -- tags
    add(
        "`!!python/object/apply:os.system [touch PWNED]` in `environment`",
        baseline_with(environment="  x: !!python/object/apply:os.system ['touch PWNED']"),
        nothing_ran(bad_baseline("constructor|python/object")),
    )
    add(
        "`!!python/name:os.system` as the device name",
        baseline_with(name="!!python/name:os.system ''"),
        bad_baseline("constructor|python/name"),
    )
    add("an unknown local tag `!foo` on the median", baseline_with(median="!foo 1.0"), bad_baseline("constructor|foo"))
    add("`!!binary` bytes as the device name", baseline_with(name="!!binary aGVsbG8="), bad_baseline("name", "string"))
    add(
        "an unquoted timestamp as `recorded_at` (YAML makes it a datetime)",
        baseline_then(
            lambda text: text.replace("recorded_at: '2026-01-01T00:00:00Z'", "recorded_at: 2026-01-01T00:00:00Z")
        ),
        bad_baseline("recorded_at"),
    )
    # -- encodings and characters
    add(
        "a Latin-1 byte (0xE9) in the device name",
        baseline_then(lambda text: text.encode("utf-8").replace(b"# written", b"# wr\xe9tten", 1)),
        bad_baseline("UTF-8"),
    )
    add(
        "the whole file in UTF-16 with a BOM",
        baseline_then(lambda text: text.encode("utf-16")),
        bad_baseline("UTF-8", line=False),
    )
    add(
        "a UTF-8 byte-order mark at the start",
        baseline_then(lambda text: b"\xef\xbb\xbf" + text.encode()),
        accepts(r"1 passed"),
    )
    add(
        "a NUL byte inside a comment",
        baseline_then(lambda text: text.replace("# written", "# wr\x00tten", 1)),
        bad_baseline("not valid YAML|special characters", line=False),
    )
    add("random binary (4 KiB of bytes 0..255)", lambda ctx: bytes(range(256)) * 16, bad_baseline("UTF-8", line=False))
    add("CRLF line endings", baseline_then(lambda text: text.replace("\n", "\r\n")), accepts(r"1 passed"))
    add("old-Mac CR-only line endings", baseline_then(lambda text: text.replace("\n", "\r")), either())
    add(
        "tab-indented entry keys",
        baseline_then(lambda text: text.replace("    backend: eager", "\tbackend: eager", 1)),
        bad_baseline("valid YAML|tab"),
    )
    add("a tab after `median:`", baseline_with(median="\t100.0"), either())
    # -- keys
    add("`entries:` twice at the top level", baseline_with(tail="entries: {}"), bad_baseline("duplicate", "entries"))
    add(
        "the same test id twice",
        lambda ctx: baseline(ctx) + baseline(ctx).split("entries:\n", 1)[1],
        bad_baseline("duplicate"),
    )
    add("`median` twice in one entry", baseline_with(median="100.0\n      median: 0.001"), bad_baseline("duplicate"))
    add(
        "a duplicate key in a flow mapping (`shape: {batch: 1, batch: 2}`)",
        baseline_then(lambda text: text.replace("shape: {batch: 1,", "shape: {batch: 1, batch: 2,", 1)),
        bad_baseline("duplicate"),
    )
    add(
        "merge key `<<: *stats` filling latency_ms from an anchor",
        baseline_then(
            lambda text: text.replace("    latency_ms:\n", "    latency_ms:\n      <<: *stats\n", 1).replace(
                "      median: 100.0\n", "", 1
            ),
            environment="  stats: &stats {median: 100.0}",
        ),
        # Aliases and merge keys are refused by design (no billion laughs, no recursion): a clear refusal is right.
        bad_baseline("merge keys"),
    )
    add(
        "merge key `<<: 5` (not a mapping)",
        baseline_then(lambda text: text.replace("    latency_ms:\n", "    latency_ms:\n      <<: 5\n", 1)),
        bad_baseline("valid YAML|merge|mapping"),
    )
    add(
        "merge key pulling an unknown statistic `p99` into latency_ms",
        baseline_then(
            lambda text: text.replace("    latency_ms:\n", "    latency_ms:\n      <<: *extra\n", 1),
            environment="  extra: &extra {p99: 3.0}",
        ),
        bad_baseline("p99"),
    )
    add(
        "merge key overriding the median with 0 (`<<` after the median)",
        baseline_then(
            lambda text: text.replace("      median: 100.0\n", "      median: 100.0\n      <<: {median: 0}\n", 1)
        ),
        either("median"),
    )
    add(
        "two YAML documents (`---` between two valid files)",
        lambda ctx: baseline(ctx) + "---\n" + baseline(ctx),
        bad_baseline("single document"),
    )
    add("`%YAML 2.0` directive", baseline_then(lambda text: "%YAML 2.0\n---\n" + text), bad_baseline("valid YAML"))
    add("an integer key at the top level (`1: x`)", baseline_with(tail="1: x"), bad_baseline("string|1"))
    add(
        "a boolean key (`yes: 1`) in latency_ms",
        baseline_with(median="100.0\n      yes: 1"),
        bad_baseline("True|string"),
    )
    add("a null key (`~: 1`) in an entry", baseline_with(peak="1000000000\n    ~: 1"), bad_baseline("None|string"))
    add(
        "an unhashable key (`? [a, b]`) in environment",
        baseline_with(environment="  ? [a, b]\n  : 1"),
        bad_baseline("hashable|valid YAML"),
    )
    add(
        "a duplicate anchor name (`&a` twice)",
        baseline_with(environment="  x: &a 1\n  y: &a 2"),
        bad_baseline("anchor"),
    )
    add("an alias to an undefined anchor (`*nope`)", baseline_with(median="*nope"), bad_baseline("nope|anchor"))
    add("a scalar document (`42`)", lambda ctx: "42\n", bad_baseline("mapping", line=False))
    add("an empty file (0 bytes)", lambda ctx: "", bad_baseline("empty", line=False))
    # -- schema_version
    for value, what in (
        ("0", "0"),
        ("2", "2 (a newer plugin)"),
        ("'1'", "the string '1'"),
        ("true", "true"),
        ("1.0", "1.0"),
        ("1" + "0" * 30, "a 31-digit integer"),
    ):
        add(f"schema_version: {what}", baseline_with(schema=value), bad_baseline("schema_version"))
    add(
        "schema_version missing",
        baseline_then(lambda text: text.replace("schema_version: 1\n", "", 1)),
        bad_baseline("schema_version"),
    )
    # -- numbers in every numeric field
    values = (
        (".nan", "NaN"),
        (".inf", "+inf"),
        ("-0.0", "-0.0"),
        ("1e400", "1e400 (a string to YAML 1.1)"),
        ("-1", "-1"),
        ("0", "0"),
        ("true", "true (a bool as a number)"),
        ("1" + "0" * 400, "10**400 (an int beyond float)"),
    )
    for field_name, key in (
        ("median", "median"),
        ("quantiles", "quantiles"),
        ("peak", "peak_bytes"),
        ("samples", "samples"),
    ):
        for value, what in values:
            text = f"[99.0, {value}, 101.0]" if field_name == "quantiles" else value
            check = peak_zero if (key, value) == ("peak_bytes", "0") else bad_baseline(key)
            add(
                f"{key}: {what}" + (" inside the list" if field_name == "quantiles" else ""),
                baseline_with(**{field_name: text}),
                check,
            )
    add("median: 1.0e+400 (overflows to inf)", baseline_with(median="1.0e+400"), bad_baseline("median"))
    add("median: -.inf", baseline_with(median="-.inf"), bad_baseline("median"))
    add("samples: a 30-digit int", baseline_with(samples="123456789012345678901234567890"), either("samples"))
    add("iqr: .nan (a statistic the gate does not use)", baseline_with(iqr=".nan"), bad_baseline("iqr"))
    # -- contents that parse but contradict the run or themselves
    add("median: 0.0", baseline_with(median="0.0"), bad_baseline("median"))
    add("empty quantiles `[]`", baseline_with(quantiles="[]"), bad_baseline("quantiles"))
    add(
        "quantiles contradicting the median (median 0.001 ms, every quantile 1000 ms; the run takes ~0.1 ms)",
        baseline_with(
            median="0.001", min="0.001", max="0.001", mean="0.001", quantiles="[" + ", ".join(["1000.0"] * 25) + "]"
        ),
        fails_test_with(
            r"regression|quantile|contradict",
            why="a 100x slower run passes: the stored quantiles are "
            "used for the significance test without checking them against the median",
        ),
    )
    add("a single quantile", baseline_with(quantiles="[100.0]"), accepts(r"1 passed"))
    add("unsorted quantiles", baseline_with(quantiles="[101.0, 99.0, 100.0]"), either())
    add("min 200 > median 100 > max 1", baseline_with(min="200.0", max="1.0"), either("min|max"))
    add("`fits: false` with a median", baseline_with(fits="false"), either())
    add(
        "`latency_ms: null` with `fits: true`",
        baseline_then(lambda text: re.sub(r"    latency_ms:\n(      .*\n)+", "    latency_ms: null\n", text)),
        accepts(r"1 passed"),
    )
    add(
        "entry recorded in mode backward (median 1000 ms) for this forward test",
        baseline_with(mode="backward", median="1000.0"),
        mismatched_entry,
    )
    add(
        "entry recorded with heads 32 and float16 for this heads-2 float32 test",
        baseline_with(heads="32", dtype="float16", median="1000.0"),
        mismatched_entry,
    )
    add(
        "entry recorded for backend flash-attn under this eager test's id",
        baseline_with(backend="flash-attn", median="1000.0"),
        mismatched_entry,
    )
    add(
        "only entries of other tests",
        baseline_then(lambda text: text.replace(TEST_ID, "test_b.py::test_other[x]")),
        accepts(r"1 passed"),
    )
    return probes


def nothing_ran(inner: Classifier) -> Classifier:
    """``inner``, and the file PWNED must not exist (a tag must never run code)."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        if (outcome.workdir / "PWNED").exists():
            return "DEFECT", "the YAML tag ran a shell command"
        return inner(outcome)

    return classify


def peak_zero(outcome: Outcome) -> tuple[str, str]:
    """peak_bytes: 0 is accepted; the next run must not fail with an infinite ratio."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(outcome.out, r"x ?inf|\+inf %"):
        return "DEFECT", "a recorded peak of 0 B makes every later peak an infinite ratio"
    return ("clear error" if outcome.rc else "acceptable"), ""


def mismatched_entry(outcome: Outcome) -> tuple[str, str]:
    """A baseline entry recorded for another mode/shape/backend must not gate this test silently."""
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    if has(
        outcome.out,
        r"(mode|shape|backend|dtype|heads).{0,80}(differ|mismatch|recorded (for|with)|not the same)"
        r"|recorded for another problem \((mode|shape|backend|dtype|heads)",
    ):
        return ("clear error" if outcome.rc else "acceptable"), ""
    return "DEFECT", (
        "compared with a baseline recorded for another mode/shape/backend without a word "
        f"(exit {outcome.rc}); a real regression up to x10,000 would pass"
    )
