"""The JSON reports of runs (--attnperf-json) read again: exported, compared, merged, followed over time (no torch)."""
