"""Other tools pytest-attnperf works with: transformers models, pytest-benchmark's output."""
