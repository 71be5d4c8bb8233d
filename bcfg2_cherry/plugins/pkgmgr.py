"""Pkgmgr: Package entries from prioritized XML package lists (spec/repository.md §16).

``Pkgmgr/**/*.xml``, root ``<PackageList priority="N" [type= uri= ...]>`` holding
``Package`` elements inside nested ``Group``/``Client`` conditionals (``negate="true"``
inverts one; nesting is AND). The semantics are those of upstream's package lists:

- Every element hands its attributes (except ``name``) down to children that lack
  them, before anything else: packages carry the list's ``type``, ``uri``,
  ``priority``, and even a ``negate`` of an enclosing Group (which also negates
  nested Groups that do not say otherwise).
- ``simplefile`` gives ``url`` = ``uri/simplefile``; ``file`` gives ``url`` =
  ``uri/file`` (with ``multiarch`` archs and ``srcs``: one URL per arch,
  ``%(arch)s``/``%(src)s`` filled in). ``type="rpm"``/``"encap"`` packages with a
  ``file`` take name, version (and arch) from the file name.
- For a client, a file's packages are collected from the top down: a package met in
  a deeper or later conditional replaces one of the same name met before (no
  conflict inside a file). Across files the candidate from the highest priority
  wins; two files at that priority are a conflict.
- Binding copies the package's attributes onto the entry, *overwriting* (unlike
  Rules), and appends copies of its children (``Instance``, ``Ignore``).
- ``name:arch1,arch2`` entries bind as ``name`` and keep only the ``Instance``
  children of those archs (altsrc ``libfoo:i386,i686``).
- Every package name in any file is on the core's fast path, whatever conditional
  it sits in. Other named elements (not Group/Client/Package) are bound the same
  way under their own tag.
"""
import copy
import logging
import re

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.helpers import DirectoryBacked, XMLFileBacked
from bcfg2_cherry.plugin.interfaces import Generator

logger = logging.getLogger(__name__)

#: ``name:arch1,arch2`` (matched from the start only, as upstream)
FUZZY = re.compile(r"(?P<name>.*):(?P<alist>\S+(,\S+)*)")
#: package types whose name, version (and arch) come from the ``file`` name
SPLITTERS = {
    "rpm": re.compile(r"^(.*/)?(?P<name>[\w\+\d\.]+(-[\w\+\d\.]+)*)-"
                      r"(?P<version>[\w\d\.]+-([\w\d\.]+))\.(?P<arch>\S+)\.rpm$"),
    "encap": re.compile(r"^(?P<name>[\w-]+)-(?P<version>[\w\d\.+-]+).encap.*$"),
}
CONDITIONALS = ("Group", "Client")
#: How many per-client package tables one file keeps before starting afresh.
MAX_TABLES_PER_FILE = 4096


def lookup_name(key):
    """The name a lookup of ``key`` uses: ``name`` for ``name:archs``, else ``key``."""
    if isinstance(key, str):
        match = FUZZY.match(key)
        if match:
            return match.group("name")
    return key


class FuzzyDict(dict):
    """A dict in which ``name:arch1,arch2`` finds ``name``."""

    def __contains__(self, key):
        return dict.__contains__(self, lookup_name(key))

    def __getitem__(self, key):
        return dict.__getitem__(self, lookup_name(key))

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default


class _Node:
    """One PackageList, Group or Client: its own entries and its conditionals."""

    __slots__ = ("test", "contents", "children")

    def __init__(self, test):
        #: (tag, name, negate) of the conditional, None for the root
        self.test = test
        #: tag -> {name: data}; data are attributes plus ``__text__``/``__children__``
        self.contents = {}
        self.children = []

    def applies(self, metadata):
        if self.test is None:
            return True
        tag, name, negate = self.test
        if tag == "Client":
            found = name == metadata.hostname
        else:
            found = name in metadata.groups
        return found != negate

    def collect(self, metadata, tables):
        """Merge the entries of this node and its applicable descendants into
        ``tables`` (tag -> FuzzyDict), later ones replacing earlier ones."""
        if not self.applies(metadata):
            return
        for tag, entries in self.contents.items():
            tables.setdefault(tag, FuzzyDict()).update(entries)
        for child in self.children:
            child.collect(metadata, tables)


def _inherit(element):
    """Copy ``element``'s attributes (but ``name``) to children lacking them."""
    for child in element:
        if not isinstance(child.tag, str):
            continue
        for key, value in element.attrib.items():
            if key != "name" and key not in child.attrib:
                child.set(key, value)


def _children(element):
    return [child for child in element if isinstance(child.tag, str)]


class PackageListFile(XMLFileBacked):
    """One package list: its priority, its conditional tree and the names it holds."""

    def __init__(self, filename, fam=None, core=None, owner=None):
        self.owner = owner
        self.priority = None
        self.root = None
        #: tag -> set of names registered for the fast path
        self.names = {}
        self._groups = frozenset()
        self._clients = frozenset()
        self._tables = {}
        XMLFileBacked.__init__(self, filename, fam=fam, core=core)

    def Index(self):
        """Read the priority and build the conditional tree."""
        raw = self.xdata.get("priority")
        try:
            priority = int(raw)
        except (TypeError, ValueError):
            raise PluginExecutionError("Got bogus priority %s for file %s" %
                                       (raw, self.name)) from None
        names = {}
        root = copy.deepcopy(self.xdata)
        self.root = self._build(root, None, names)
        self.priority = priority
        self.names = names
        self._groups = frozenset(el.get("name") for el in root.iter("Group"))
        self._clients = frozenset(el.get("name") for el in root.iter("Client"))
        self._tables = {}
        if self.owner is not None:
            self.owner.files_changed()

    def _build(self, element, test, names):
        _inherit(element)
        node = _Node(test)
        for child in _children(element):
            if child.tag == "Package":
                continue
            if child.tag in CONDITIONALS:
                negate = child.get("negate", "false").lower() == "true"
                node.children.append(
                    self._build(child, (child.tag, child.get("name"), negate), names))
                continue
            name = child.get("name")
            if name is None:
                continue
            data = dict(child.attrib)
            if child.text:
                data["__text__"] = child.text
            if _children(child):
                data["__children__"] = _children(child)
            node.contents.setdefault(child.tag, {})[name] = data
            names.setdefault(child.tag, set()).add(name)
        packages = node.contents.setdefault("Package", {})
        for pkg in element.iterchildren("Package"):
            self._add_package(pkg, packages, names.setdefault("Package", set()))
        return node

    def _add_package(self, pkg, packages, names):
        """Record one Package element (upstream's url and file-name rules)."""
        name = pkg.get("name")
        kids = _children(pkg)
        if name is not None:
            names.add(name)
            packages[name] = {"__children__": kids} if kids else {}
        if pkg.get("simplefile") is not None:
            if name is None:
                logger.error("%s: Package with simplefile %s has no name; skipped",
                             self.name, pkg.get("simplefile"))
                return
            pkg.set("url", "%s/%s" % (pkg.get("uri"), pkg.get("simplefile")))
            packages[name].update(pkg.attrib)
            return
        if pkg.get("file") is not None:
            try:
                pkg.set("url", self._file_url(pkg))
            except (KeyError, ValueError, TypeError, IndexError) as err:
                logger.error("%s: cannot build the URL of Package %s: %s", self.name,
                             name or pkg.get("file"), err)
                return
        splitter = SPLITTERS.get(pkg.get("type"))
        if splitter is not None and pkg.get("file") is not None:
            match = splitter.match(pkg.get("file"))
            if not match:
                logger.error("Failed to match pkg %s", pkg.get("file"))
                return
            pkgname = match.group("name")
            data = match.groupdict()
            data.update(pkg.attrib)
            if kids:
                data["__children__"] = kids
            packages[pkgname] = data
            names.add(pkgname)
        elif name is not None:
            packages[name].update(pkg.attrib)

    @staticmethod
    def _file_url(pkg):
        uri, filename = pkg.get("uri"), pkg.get("file")
        if pkg.get("multiarch") is None:
            return "%s/%s" % (uri, filename)
        archs = pkg.get("multiarch").split()
        srcs = pkg.get("srcs", pkg.get("multiarch")).split()
        return " ".join("%s/%s" % (uri, filename % {"src": srcs[idx], "arch": arch})
                        for idx, arch in enumerate(archs))

    def tables(self, metadata):
        """tag -> FuzzyDict of the entries that apply to this client."""
        groups = metadata.groups
        key = (frozenset(g for g in self._groups if g in groups),
               metadata.hostname if metadata.hostname in self._clients else None)
        found = self._tables.get(key)
        if found is None:
            found = {}
            self.root.collect(metadata, found)
            if len(self._tables) >= MAX_TABLES_PER_FILE:
                self._tables.clear()
            self._tables[key] = found
        return found


class PackageListDirectory(DirectoryBacked):
    """The ``*.xml`` files below ``Pkgmgr/``, recursively, kept current."""

    patterns = re.compile(r"^.*\.xml$")

    def __init__(self, data, fam=None, owner=None):
        self.owner = owner
        self.core = getattr(owner, "core", None)
        DirectoryBacked.__init__(self, data, fam=fam)

    def create_child(self, path):
        return PackageListFile(path, fam=self.fam, core=self.core, owner=self.owner)

    def HandleEvent(self, event):
        before = self.entries
        DirectoryBacked.HandleEvent(self, event)
        if self.entries is not before and self.owner is not None:
            self.owner.files_changed()


class Pkgmgr(Plugin, Generator):
    """Binds Package entries from the package lists in ``Pkgmgr/``."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        self.store = None
        self.store = PackageListDirectory(self.data, fam=core.fam, owner=self)
        self.files_changed()

    def sources(self):
        """The loaded package lists, by relative path."""
        if self.store is None:
            return []
        return [(path, src) for path, src in sorted(self.store.entries.items(),
                                                    key=lambda item: item[0])
                if src.loaded and src.root is not None]

    def files_changed(self):
        """A list was (re)loaded or removed: rebuild the fast-path table."""
        entries = {}
        for _, src in self.sources():
            for tag, names in src.names.items():
                table = entries.setdefault(tag, FuzzyDict())
                for name in names:
                    table[name] = self.BindEntry
        self.Entries = entries

    def choose(self, entry, metadata):
        """The data of the best package list's entry for ``entry``."""
        name = entry.get("name")
        matching = []
        for _, src in self.sources():
            table = src.tables(metadata).get(entry.tag)
            if table is not None and name in table:
                matching.append((src, table))
        if not matching:
            raise PluginExecutionError("No matching source for entry when retrieving "
                                       "attributes for %s(%s)" % (entry.tag, name))
        top = max(src.priority for src, _ in matching)
        best = [(src, table) for src, table in matching if src.priority == top]
        if len(best) > 1:
            message = ("Found conflicting sources with same priority (%s) for %s:%s "
                       "for %s: %s" % (top, entry.tag, name, metadata.hostname,
                                       ", ".join(src.name for src, _ in best)))
            logger.error(message)
            raise PluginExecutionError(message)
        table = best[0][1]
        if dict.__contains__(table, name):
            return dict.__getitem__(table, name)
        return table[name]

    def BindEntry(self, entry, metadata):
        """Bind ``entry`` in place; ``name:archs`` keeps only those Instances."""
        pname = entry.get("name")
        data = self.choose(entry, metadata)
        if "__text__" in data:
            entry.text = data["__text__"]
        for child in data.get("__children__", ()):
            entry.append(copy.deepcopy(child))
        for key, value in data.items():
            if not key.startswith("__"):
                entry.set(key, value)
        match = FUZZY.match(pname) if pname else None
        if match:
            arches = match.group("alist").split(",")
            for inst in entry.findall("Instance"):
                if inst.get("arch") not in arches:
                    entry.remove(inst)

    def HandlesEntry(self, entry, metadata):
        """Package entries whose name before the first ``:`` is a known package."""
        return (entry.tag == "Package" and
                (entry.get("name") or "").split(":")[0] in
                self.Entries.get("Package", {}).keys())

    def HandleEntry(self, entry, metadata):
        return self.BindEntry(entry, metadata)

    def set_debug(self, debug):
        if self.store is not None:
            self.store.set_debug(debug)
        return Plugin.set_debug(self, debug)
