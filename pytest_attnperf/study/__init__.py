"""The FlashAttention study: the measured sweep, its Markdown and plots, and the memory models."""
