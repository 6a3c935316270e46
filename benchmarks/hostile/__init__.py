"""The probes of benchmarks/hostile_probe.py: ``harness`` (the test project, a probe, its classifiers, how one
runs) and one module per family of hostile inputs (``FAMILIES`` in the script names them)."""
