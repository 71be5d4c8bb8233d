"""``info.xml``: the attributes of the entry (spec/repository.md §5.5).

A StructFile with ``Group``, ``Client`` and ``Path`` conditionals (``Path`` holds
when its ``name`` is the entry's real name, i.e. before altsrc). The first ``Info``
that applies gives all its attributes; none applying is a bind error.
"""
import logging

from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.helpers import StructFile
from bcfg2_cherry.plugins.cfg.base import ALL, CfgInfo

logger = logging.getLogger(__name__)


def _path_holds(element, metadata, entry, *args):
    return entry.get("realname", entry.get("name")) == element.get("name")


class CfgInfoXML(CfgInfo, StructFile):
    """``info.xml`` in the entry's directory (no inheritance from parents)."""

    __basenames__ = ("info.xml",)
    conditionals = dict(StructFile.conditionals, Path=_path_holds)  # noqa: RUF012
    encryption = False

    def __init__(self, name, specific, cfg):
        StructFile.__init__(self, name, fam=cfg.core.fam, core=cfg.core)
        self.specific = ALL
        self.cfg = cfg
        #: attribute dicts of the top-level Info elements when nothing is conditional
        self.static = None
        self._warned = False

    def _state_attributes(self):
        return StructFile._state_attributes(self) + ["static"]

    def Index(self):
        self._warned = False
        if self.template is not None or any(
                isinstance(el.tag, str) and el.tag in self.conditionals
                for el in self.xdata.iter()):
            self.static = None
        else:
            self.static = [dict(el.attrib) for el in self.xdata if el.tag == "Info"]

    def _matching(self, elements, metadata, entry, found):
        """Append the attributes of every applying Info (Match order) to ``found``."""
        for element in elements:
            tag = element.tag
            if not isinstance(tag, str):
                continue
            if tag in self.conditionals:
                if self._holds(element, metadata, (entry,)):
                    self._matching(element, metadata, entry, found)
            elif tag == "Info":
                found.append(element.attrib)

    def infos(self, entry, metadata):
        """The attributes of every Info that applies, in document order."""
        if not self.loaded:
            raise PluginExecutionError("Cfg: %s could not be loaded" % self.name)
        if self.static is not None:
            return self.static
        found = []
        self._matching(self.render(metadata), metadata, entry, found)
        return found

    def bind_info_to_entry(self, entry, metadata):
        infos = self.infos(entry, metadata)
        if not infos:
            raise PluginExecutionError("Cfg: no Info in %s applies to %s for %s" % (
                self.name, entry.get("realname", entry.get("name")), metadata.hostname))
        if len(infos) > 1 and not self._warned:
            self._warned = True
            logger.warning("Cfg: several Info elements of %s apply to %s for %s; the "
                           "first one is used", self.name, entry.get("name"),
                           metadata.hostname)
        for key, value in infos[0].items():
            entry.set(key, value)

