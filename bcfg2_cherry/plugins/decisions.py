"""Decisions: whitelist and blacklist for GetDecisionList (spec/repository.md §7).

``Decisions/whitelist.xml`` and ``Decisions/blacklist.xml`` are StructFiles of
``<Decision type= name=/>`` elements; a missing (or deleted) file is an empty list.
"""
import logging
import os

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.helpers import StructFile
from bcfg2_cherry.plugin.interfaces import Decision

logger = logging.getLogger(__name__)

MODES = ("whitelist", "blacklist")


class DecisionFile(StructFile):
    """One decision list; forgets its content when the file is deleted."""

    def HandleEvent(self, event=None):
        if event is not None and event.code2str() == "deleted" and \
                os.path.normpath(event.filename) == os.path.normpath(self.name):
            self.loaded = False
            self.xdata = None
            self.entries = []
            return
        StructFile.HandleEvent(self, event)

    def get_decisions(self, metadata):
        """``[(type, name)]`` of every Decision left for this client."""
        if not self.loaded:
            return []
        return [(el.get("type"), el.get("name"))
                for el in self.XMLMatch(metadata).iter("Decision")]


class Decisions(Plugin, Decision):
    """Serves ``Decisions/whitelist.xml`` and ``Decisions/blacklist.xml``."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        self.lists = {}
        for mode in MODES:
            self.lists[mode] = DecisionFile(os.path.join(self.data, mode + ".xml"),
                                            fam=core.fam, should_monitor=True,
                                            core=core)

    @property
    def whitelist(self):
        return self.lists["whitelist"]

    @property
    def blacklist(self):
        return self.lists["blacklist"]

    def GetDecisions(self, metadata, mode):
        """The ``(type, name)`` pairs of ``mode`` (whitelist or blacklist)."""
        if mode not in self.lists:
            raise PluginExecutionError("Unknown decision mode %r" % (mode,))
        return self.lists[mode].get_decisions(metadata)
