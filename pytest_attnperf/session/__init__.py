"""One ``pytest --attnperf`` run, under the hooks: its state (state.py), each case measured (case_runner.py) and
gated (case_gate.py, deferral.py), and its end (end.py: baselines, detection limits, report files), with what they
need on the way (cost, output paths, option spelling, the processes of ``attnperf update``)."""
