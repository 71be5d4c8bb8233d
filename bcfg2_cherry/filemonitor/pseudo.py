"""The ``pseudo`` backend: initial events only, changes are never noticed.

For a server whose repository never changes while it runs, or to rule the
file monitor out when debugging.
"""
from .base import FileMonitor


class Pseudo(FileMonitor):
    """Reports ``exists``/``endExist`` when a monitor is added, and nothing after."""

    __priority__ = 1
