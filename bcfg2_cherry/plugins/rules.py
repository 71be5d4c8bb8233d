"""Rules: complete abstract entries from prioritized XML rule files
(spec/repository.md §3).

``Rules/**/*.xml``, root ``<Rules priority="N">``. The names of top-level entries are
registered for the core's fast path; entries inside Group/Client conditionals (and,
with ``[rules] regex = true``, regular-expression names, or Paths that differ by a
trailing ``/``) are found through ``HandlesEntry``. The best candidate's attributes
are copied only where the bundle entry has none; equal top priorities conflict.
"""
import logging

from bcfg2_cherry.plugin.interfaces import Generator
from bcfg2_cherry.plugins._prioritized import PrioDir

logger = logging.getLogger(__name__)


class Rules(PrioDir, Generator):
    """Binds entries from ``Rules/``."""

    @property
    def regex_enabled(self):
        """``[rules] regex``: names are regular expressions (anchored at the end)."""
        return self.option("rules", "regex")

    @property
    def replace_name_enabled(self):
        """``[rules] replace_name``: ``%{name}`` in attribute values becomes the
        entry's name."""
        return self.option("rules", "replace_name")
