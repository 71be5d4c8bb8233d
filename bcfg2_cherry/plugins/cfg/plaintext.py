"""Plain files: the content is the file (spec/repository.md §5.2, priority 100)."""
from bcfg2_cherry.plugins.cfg.base import StaticGenerator


class CfgPlaintextGenerator(StaticGenerator):
    """``<basename>[.G<prio>_<group>|.H_<host>]`` with nothing after: served as is."""

    __priority__ = 100
