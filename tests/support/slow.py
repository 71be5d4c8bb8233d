"""A plugin that makes start-up slow (``BCFG2_TEST_SLOW_START`` seconds, default 2), so
tests can see what a server answers before its plugins are loaded."""
import os
import time

from bcfg2_cherry.plugin import Plugin


class SlowStart(Plugin):
    """Sleeps while being loaded; does nothing else."""

    create = False

    def __init__(self, core):
        Plugin.__init__(self, core)
        time.sleep(float(os.environ.get("BCFG2_TEST_SLOW_START", "2")))
