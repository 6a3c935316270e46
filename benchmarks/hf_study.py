"""Add the transformers prefill/decode results of a gated run to a study document and re-render it.

Usage (here, after a GPU run): python benchmarks/hf_study.py RESULTS.json docs/results/h100
RESULTS.json is the --attnperf-json report of tests/suite/test_transformers.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pytest_attnperf.study.output import write_study


def transformers_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per prefill/decode case, in the study document's 'transformers' form."""
    rows = []
    for case in results:
        phase = (
            "prefill"
            if "::test_prefill[" in case["test_id"]
            else "decode"
            if "::test_decode[" in case["test_id"]
            else None
        )
        shape = case.get("shape") or {}
        if phase is None or "implementation" not in shape:
            continue
        rows.append(
            {
                "preset": shape["model"],
                "layers": shape["layers"],
                "attn_implementation": shape["implementation"],
                "phase": phase,
                "seqlen": case["seqlen"],
                "status": "ok" if case["fits"] else "does_not_fit",
                "reason": None if case["fits"] else case.get("reason"),
                "median_ms": case.get("median_ms"),
                "iqr_ms": case.get("iqr_ms"),
                "peak_bytes": case.get("peak_bytes"),
            }
        )
    return rows


def main(results_path: str, study_dir: str) -> int:
    folder = Path(study_dir)
    study = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    results = json.loads(Path(results_path).read_text(encoding="utf-8"))["results"]
    study["transformers"] = transformers_rows(results)
    study["transformers_command"] = (
        "bash benchmarks/gpu_session.sh hf (pytest --attnperf tests/suite/test_transformers.py)"
    )
    for path in write_study(study, folder):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
