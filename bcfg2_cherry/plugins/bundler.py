"""Bundler: the bundles (structures) of a client (spec/repository.md §2).

``Bundler/**/*.xml`` (and deprecated ``*.genshi``); the bundle name is the file name
without its extension. A bundle is rendered (Genshi) and resolved for the client
(XMLMatch); ``independent="true"`` makes it an ``Independent`` structure; nested
``Bundle`` elements (from XInclude) are flattened; ``RequiredBundle`` pulls further
bundles in. As a StructureValidator, Bundler expands ``<Path glob=.../>`` into the
matching Path names that generators serve.
"""
import fnmatch
import logging
import os
import re

import lxml.etree

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.helpers import DirectoryBacked, StructFile
from bcfg2_cherry.plugin.interfaces import Generator, Structure, StructureValidator

logger = logging.getLogger(__name__)

#: Clients from this version on understand ``<Bundle name=.../>`` inside a bundle.
INHERIT_MODIFICATION_VERSION = (1, 4, 0, "pre", 2)
_RELEASE_RANK = {"final": 3, "rc": 2, "pre": 1}


def version_at_least(version_info, minimum):
    """Whether a client's ``version_info`` is at least ``minimum`` (a 5-tuple).

    Release levels order ``pre`` < ``rc`` < final; an unknown version (None) is older
    than everything, as upstream's comparison makes it.
    """
    if version_info is None:
        return False
    try:
        def key(value):
            value = tuple(value) + (0, 0, 0, "final", 0)[len(value):]
            return (int(value[0]), int(value[1]), int(value[2]),
                    _RELEASE_RANK.get(value[3], 0), int(value[4]))
        return key(version_info) >= key(minimum)
    except (TypeError, ValueError):
        return False


class BundleFile(StructFile):
    """One bundle file; ``bundle_name`` is its file name without extension."""

    def __init__(self, filename, fam=None, should_monitor=False, core=None):
        StructFile.__init__(self, filename, fam=fam, should_monitor=should_monitor,
                            core=core)
        self.bundle_name = re.sub(r"\.(xml|genshi)$", "", os.path.basename(filename))
        if filename.endswith(".genshi"):
            logger.warning("Bundler: %s: bundle file names ending in .genshi are "
                           "deprecated; declare the Genshi namespace in a .xml bundle "
                           "instead", filename)

    def Index(self):
        if self.xdata.get("name"):
            logger.warning("Bundler: %s: the name attribute of a bundle is deprecated "
                           "and ignored; the file name gives the bundle name",
                           self.name)


class BundleDirectory(DirectoryBacked):
    """The bundle files below ``Bundler/``, kept current; ``bundles`` by name."""

    patterns = re.compile(r"^.*\.(?:xml|genshi)$")
    __child__ = BundleFile

    def __init__(self, data, fam=None, core=None):
        self.core = core
        #: bundle name -> BundleFile (replaced, never mutated)
        self.bundles = {}
        DirectoryBacked.__init__(self, data, fam=fam)

    def HandleEvent(self, event):
        before = self.entries
        DirectoryBacked.HandleEvent(self, event)
        if self.entries is not before:
            self._reindex()

    def _reindex(self):
        bundles = {}
        for _relative, bundle in sorted(self.entries.items()):
            name = bundle.bundle_name
            if name in bundles:
                logger.warning("Bundler: bundle %s is defined by both %s and %s; "
                               "using %s", name, bundles[name].name, bundle.name,
                               bundles[name].name)
                continue
            bundles[name] = bundle
        self.bundles = bundles


class Bundler(Plugin, Structure, StructureValidator):
    """Builds a client's bundles from ``Bundler/`` and expands Path globs."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        self.store = BundleDirectory(self.data, fam=core.fam, core=core)

    @property
    def bundles(self):
        """Bundle name -> BundleFile."""
        return self.store.bundles

    def bundle_names(self):
        """The names of every bundle in the repository, sorted."""
        return sorted(self.store.bundles)

    def set_debug(self, debug):
        self.store.set_debug(debug)
        return Plugin.set_debug(self, debug)

    # -- structures

    def BuildStructures(self, metadata):
        """The client's bundles plus every bundle they require, resolved."""
        result = []
        queue = sorted(metadata.bundles)
        seen = set(queue)
        while queue:
            name = queue.pop(0)
            data = self._build_one(name, metadata)
            if data is None:
                continue
            for required in self._required(data, metadata):
                if required not in seen:
                    seen.add(required)
                    queue.append(required)
            result.append(data)
        return result

    def _build_one(self, name, metadata):
        """One bundle resolved for the client, or None (logged)."""
        bundle = self.store.bundles.get(name)
        if bundle is None:
            logger.error("Bundler: Bundle %s does not exist", name)
            return None
        if not bundle.loaded:
            logger.error("Bundler: Bundle %s is not available: %s failed to load",
                         name, bundle.name)
            return None
        try:
            data = bundle.XMLMatch(metadata)
        except Exception as err:  # pylint: disable=broad-except
            logger.error("Bundler: Failed to render bundle %s for %s: %s", name,
                         metadata.hostname, err)
            return None
        if data.get("independent", "false").lower() == "true":
            data.tag = "Independent"
            del data.attrib["independent"]
        data.set("name", name)
        for child in data.findall("Bundle"):
            if len(child):
                for element in list(child):
                    data.append(element)
            else:
                logger.warning("Bundler: useless empty Bundle element in %s", bundle.name)
            data.remove(child)
        return data

    def _required(self, data, metadata):
        """Names of the bundles ``data`` requires; RequiredBundle elements go."""
        names = []
        for child in data.findall("RequiredBundle"):
            required = child.get("name")
            if not required:
                logger.warning("Bundler: RequiredBundle without a name in bundle %s",
                               data.get("name"))
            else:
                names.append(required)
                if child.get("inherit_modification", "false") == "true":
                    if version_at_least(getattr(metadata, "version_info", None),
                                        INHERIT_MODIFICATION_VERSION):
                        lxml.etree.SubElement(data, "Bundle", name=required)
                    else:
                        logger.warning("Bundler: inherit_modification=\"true\" is only "
                                       "supported for clients starting 1.4.0pre2 (%s, "
                                       "bundle %s)", metadata.hostname,
                                       data.get("name"))
            data.remove(child)
        return names

    # -- Path globs

    def validate_structures(self, metadata, structures):
        """Replace each ``<Path glob=G/>`` by ``<Path name=N/>`` for every Path name
        N that a generator serves and that matches G."""
        globs = [el for structure in structures
                 for el in structure.iter("Path") if el.get("glob") is not None]
        if not globs:
            return
        generators = self.core.plugins_by_type(Generator)
        for pathglob in globs:
            pattern = pathglob.get("glob")
            names = []
            seen = set()
            for plugin in generators:
                paths = getattr(plugin, "Entries", {}).get("Path") or {}
                for name in sorted(paths):
                    if name not in seen and fnmatch.fnmatchcase(name, pattern):
                        seen.add(name)
                        names.append(name)
            parent = pathglob.getparent()
            for name in names:
                lxml.etree.SubElement(parent, "Path", name=name)
            parent.remove(pathglob)
