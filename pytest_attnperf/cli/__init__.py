"""The ``attnperf`` command, apart from the pytest plugin (which never imports it): the parser and its table of
commands (commands.py), one module per family of commands, and what they share (common.py)."""

from .commands import main

__all__ = ["main"]
