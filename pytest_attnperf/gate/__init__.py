"""The verdict, torch-free: checks, statistics, baselines and the per-case result record."""
