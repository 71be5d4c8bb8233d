"""``Packages/sources.xml``: the Source elements, read into Source objects
(spec/packages.md §1).

The file (with its XIncludes) is monitored; every successful (re)load rebuilds the
Source list from every ``Source`` element in document order, at any depth, and asks
the plugin to (soft) load their data. A rebuilt Source whose data are identical to
an old one's (same backend and cache key) takes the old data over at once, so
clients keep being served while the reload runs. Genshi is not rendered.
"""
import logging
import os

from bcfg2_cherry.plugin.helpers import XMLFileBacked
from bcfg2_cherry.plugins.packages.source import SourceInitError

logger = logging.getLogger(__name__)


class PackagesSources(XMLFileBacked):
    """sources.xml, kept current; ``sources`` is the list of Source objects."""

    def __init__(self, filename, fam, plugin):
        self.plugin = plugin
        #: the Source objects, in document order (replaced whole on every load)
        self.sources = []
        if not os.path.exists(filename):
            logger.info("Packages: creating %s", filename)
            with open(filename, "w", encoding="utf-8") as fh:
                fh.write("<Sources/>\n")
        XMLFileBacked.__init__(self, filename, fam=fam, should_monitor=fam is not None,
                               core=plugin.core)

    def _state_attributes(self):
        return XMLFileBacked._state_attributes(self) + ["sources"]

    def Index(self):
        if self.xdata.tag != "Sources":
            logger.warning("Packages: %s: root element is %s, not Sources", self.name,
                           self.xdata.tag)
        backends = self.plugin.backends()
        old = dict(((src.__class__, src.cachekey), src) for src in self.sources)
        sources = []
        for xsource in self.xdata.iter("Source"):
            source = self.source_from_xml(xsource, backends)
            if source is None:
                continue
            previous = old.get((source.__class__, source.cachekey))
            if previous is not None:
                source.adopt(previous)
            sources.append(source)
        self.sources = sources

    def source_from_xml(self, xsource, backends):
        """A Source of the element's backend, or None (error logged)."""
        stype = xsource.get("type")
        if stype is None:
            logger.error("Packages: No type specified for source at %s, skipping",
                         xsource.get("rawurl", xsource.get("url")))
            return None
        backend = backends.get(stype.lower())
        if backend is None:
            logger.error("Packages: Unknown source type %s", stype)
            return None
        try:
            return backend.source_class(self.plugin.cachepath, xsource,
                                        timeout=self.plugin.timeout)
        except SourceInitError as err:
            logger.error("Packages: %s", err)
            return None

    def load(self):
        if not XMLFileBacked.load(self):
            return False
        logger.info("Reloading Packages plugin")
        self.plugin.sources_changed()
        return True

    def __len__(self):
        return len(self.sources)

    def __str__(self):
        return "PackagesSources: %d sources" % len(self.sources)
