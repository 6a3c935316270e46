"""Attention backends: the registry (torch-free) and the built-in implementations (loaded on first use)."""
