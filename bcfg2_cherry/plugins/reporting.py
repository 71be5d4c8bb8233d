"""Reporting: keep what clients report after their runs.

Upstream's Reporting plugin hands statistics to a Django database; this one stores the
raw document (spec/repository.md §11 allows it): the latest upload of each client as
``Reporting/<client>.xml``, with the server's receive time added to its Statistics
element as upstream does. Files are written atomically from the plugin's own thread, so
a slow disk never holds up a client's RecvStats.
"""
import logging
import os
import time

from bcfg2_cherry.plugin.interfaces import ThreadedStatistics
from bcfg2_cherry.state import atomic_write
from bcfg2_cherry.xml import tostring

logger = logging.getLogger(__name__)

__all__ = ["Reporting"]


class Reporting(ThreadedStatistics):
    """The latest statistics document of each client, one file per client."""

    def path_for(self, hostname):
        """Where the latest statistics of ``hostname`` are kept."""
        if not hostname or "/" in hostname or hostname.startswith("."):
            raise ValueError("unsafe client name for a file: %r" % (hostname,))
        return os.path.join(self.data, hostname + ".xml")

    def handle_statistic(self, metadata, data):
        try:
            path = self.path_for(metadata.hostname)
        except ValueError as err:
            logger.error("Reporting: not storing statistics: %s", err)
            return
        for stats in data.findall("Statistics"):
            stats.set("time", time.asctime())
        atomic_write(path, tostring(data, pretty=True), mode=0o600)
        logger.debug("Reporting: stored statistics of %s", metadata.hostname)
