"""POSIXCompat and ServiceCompat: old-style entries for pre-1.3 clients
(spec/repository.md §15).

Both are GoalValidators that leave clients of version 1.3.0 or newer (any 1.3.0
pre-release counts) alone and rewrite the bound configuration of older clients and of
clients whose version is unknown.
"""
import logging

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.interfaces import GoalValidator

logger = logging.getLogger(__name__)

#: The first client version that understands the new entry formats.
NEW_STYLE = (1, 3, 0, "", 0)


def needs_compat(metadata):
    """True unless the client declared a version of 1.3.0 (or a pre-release) or newer."""
    info = getattr(metadata, "version_info", None)
    if not info:
        return True
    try:
        return not info >= NEW_STYLE
    except TypeError:
        logger.debug("Cannot compare version %r of %s", info, metadata.hostname)
        return True


class POSIXCompat(Plugin, GoalValidator):
    """Copies ``mode`` to ``perms`` on Path entries for pre-1.3 clients."""

    create = False

    def validate_goals(self, metadata, config):
        """Every direct child Path of a structure with ``mode`` gets ``perms``."""
        if not needs_compat(metadata):
            return
        for structure in config:
            for entry in structure:
                if entry.tag == "Path" and "mode" in entry.attrib:
                    entry.set("perms", entry.get("mode"))


class ServiceCompat(Plugin, GoalValidator):
    """Turns ``restart``/``install`` into the old Service ``mode`` for pre-1.3 clients."""

    create = False
    #: (restart, install) -> old-style mode
    mode_map = {("true", "true"): "default",
                ("interactive", "true"): "interactive_only",
                ("false", "false"): "manual"}

    def validate_goals(self, metadata, config):
        """Every Service/BoundService at any depth gets ``mode``."""
        if not needs_compat(metadata):
            return
        for entry in config.iter("Service", "BoundService"):
            key = (entry.get("restart", "true").lower(),
                   entry.get("install", "true").lower())
            mode = self.mode_map.get(key)
            if mode is None:
                logger.info("Could not map restart and install settings of %s:%s to "
                            "an old-style Service mode for %s; using 'manual'",
                            entry.tag, entry.get("name"), metadata.hostname)
                mode = "manual"
            entry.set("mode", mode)
