"""Options that make a pytester run of the plugin fast on a 2-core CPU (tiny shapes, few samples)."""

from __future__ import annotations

import scipy.stats  # noqa: F401  (loaded before any in-process pytester run: numpy cannot be imported twice)
import torch

# torch._inductor.test_operators registers a torch library once: an in-process run that imported it first would drop
# it from sys.modules, and the next import (a later test's torch.compile) would register it twice and fail.
import torch._inductor.test_operators

from pytest_attnperf.measure.device import describe_device

CPU = describe_device(torch.device("cpu"))
FAST_OPTIONS = (
    "-p",
    "no:cacheprovider",
    "--attnperf-seqlens=64",
    "--attnperf-heads=2",
    "--attnperf-head-dim=16",
    "--attnperf-backends=eager",
    "--attnperf-min-samples=3",
    "--attnperf-warmup=1ms",
    "--attnperf-rep=5ms",
    "--attnperf-fingerprint=off",  # the CPU profiler's first start costs ~2 s; tests of it ask for it
    "--attnperf-allow-busy-cpu",  # a shared test machine is busy; the busy-CPU tests leave this out
)
