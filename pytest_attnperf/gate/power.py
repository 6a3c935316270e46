"""When a case's power window is worth its time (torch-free).

The mean power while running (``measure/nvml.py``: back-to-back calls between two ticks of NVML's energy
counter, ~0.1-0.2 s a case) decides no verdict. It is recorded into a baseline (its median and its spread
between the runs) and said in a gated case's verdict next to the baseline's, where a change of power
explains a change of clock: at the power cap. So ``--attnperf-power=auto`` measures it when recording
(``--attnperf-update``, ``attnperf update``; not ``attnperf calibrate``, which stores only detection limits)
and, in a gated run, only for a case whose latency is gated against a baseline entry with a recorded power,
whose kernel is long enough to reach the cap, and whose median is slower than the baseline's by more than
``EXPLAIN_FROM``: an unchanged kernel has no change for its power to explain; ``on`` always, ``off`` never.
A case that skips it says why in its record.
"""

from __future__ import annotations

from ..spec.options import POWER_CHOICES

# Under CAP_KERNEL_MS no kernel comes near the power cap. On the H100 (700 W), over 695 measured cases (the
# three record runs and the two cost runs of docs/results/h100/2026-12/), no kernel under 1 ms drew more than
# 0.78 of the limit even back to back, and the shortest to reach 0.9 of it took 3.5 ms; on the H200 the cases
# spending most of their time power-capped start at 2-4 ms. 1 ms keeps a margin of 3.5x under the first.
# benchmarks/experiments/power_window_policy.py prints this from the reports (power-window-policy.md there).
CAP_KERNEL_MS = 1.0
# A third of the smallest latency tolerance (3 %): a median within it of the baseline's has no slowdown for its
# power to explain. On the unchanged H100 cost run this skips the window of most capped cases, its largest part.
EXPLAIN_FROM = 0.01


def power_window_skip(
    setting: str,
    *,
    recording: bool,
    baseline_median_ms: float | None,
    baseline_power_w: float | None,
    median_ms: float,
) -> str | None:
    """None to measure the power window of this case; otherwise why it is skipped (its record says it).

    ``recording``: the run writes baseline entries (update); ``baseline_median_ms``, ``baseline_power_w``: the
    recorded median and power of the baseline entry the case's latency is judged against (no median: not gated).
    """
    if setting not in POWER_CHOICES:
        raise ValueError(f"power window setting {setting!r} is not one of: {', '.join(POWER_CHOICES)}")
    if setting == "off":
        return "--attnperf-power=off"
    if setting == "on" or recording:
        return None
    if baseline_median_ms is None:
        return "auto: no baseline latency to compare it with"
    if baseline_power_w is None:
        return "auto: the baseline entry has no recorded power to compare with"
    if median_ms < CAP_KERNEL_MS:
        return f"auto: a {median_ms:.3g} ms kernel stays under the power cap (measured from {CAP_KERNEL_MS:g} ms)"
    if median_ms <= baseline_median_ms * (1 + EXPLAIN_FROM):
        return (
            f"auto: x{median_ms / baseline_median_ms:.3f} the baseline's median, no slowdown to explain "
            f"(measured from x{1 + EXPLAIN_FROM:g})"
        )
    return None
