"""Defaults: default attributes for bound entries (spec/repository.md §4).

``Defaults/**/*.xml``, root ``<Defaults priority="N">``, shaped like Rules; names are
always regular expressions. Defaults binds nothing: as a GoalValidator it visits
every direct child of every structure after binding and copies the best candidate's
attributes where the entry has none. No candidate, or a conflict, leaves the entry
as it is.
"""
import logging

from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.interfaces import GoalValidator
from bcfg2_cherry.plugins._prioritized import PrioDir

logger = logging.getLogger(__name__)


class Defaults(PrioDir, GoalValidator):
    """Applies ``Defaults/`` to every entry of a bound configuration."""

    register_entries = False

    @property
    def regex_enabled(self):
        return True

    @property
    def replace_name_enabled(self):
        """``[defaults] replace_name``, as for Rules."""
        return self.option("defaults", "replace_name")

    def HandlesEntry(self, entry, metadata):
        """Defaults binds nothing."""
        return False

    def validate_goals(self, metadata, config):
        """Apply the defaults to every direct child of every structure."""
        indexes = self._indexes(metadata)
        if not indexes:
            return
        for structure in config:
            for entry in structure:
                if not isinstance(entry.tag, str):
                    continue
                try:
                    data = self.choose(entry, metadata, indexes, quiet=True)
                except PluginExecutionError:
                    continue
                self.apply(entry, data)
