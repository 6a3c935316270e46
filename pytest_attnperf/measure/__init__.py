"""Measuring on a device (imports torch): device detection, guards, inputs, reference, timing, memory, the runner."""
