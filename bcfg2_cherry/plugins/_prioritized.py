"""A directory of prioritized StructFiles, shared by Rules and Defaults.

Every ``*.xml`` file below the plugin's directory has a root element carrying an
integer ``priority``. An abstract entry is completed from the candidate elements of
the same tag (after Group/Client resolution for the client) whose name matches it;
the candidate from the file of highest priority wins, and two at that priority are a
conflict (spec/repository.md §3, §4).

Upstream runs a full XMLMatch of every file for every entry bound. Here the matched
candidates of a file are indexed once per distinct combination of the client facts
the file's conditionals look at (the groups it names that the client is in, and the
client's name when the file names it), and reused until the file changes. Genshi
templated files depend on the whole metadata object and are rendered once per
metadata object instead.
"""
import copy
import logging
import re
import string

from bcfg2_cherry.options import OptionError
from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.helpers import DirectoryBacked, StructFile
from bcfg2_cherry.plugin.interfaces import ClientRunHooks

logger = logging.getLogger(__name__)

#: How many per-client candidate indexes one file keeps before starting afresh.
MAX_INDEXES_PER_FILE = 4096


class NameTemplate(string.Template):
    """``%{name}`` / ``%name`` substitution (``%%`` is a literal ``%``)."""

    delimiter = "%"


class _Candidates:
    """The matched elements of one file for one client, by tag."""

    __slots__ = ("by_tag", "by_name", "by_path")

    def __init__(self, root):
        self.by_tag = {}
        for element in root.iter():
            if isinstance(element.tag, str) and element.get("name") is not None:
                self.by_tag.setdefault(element.tag, []).append(element)
        self.by_name = {}
        for tag, elements in self.by_tag.items():
            names = {}
            for element in elements:
                names.setdefault(element.get("name"), []).append(element)
            self.by_name[tag] = names
        self.by_path = {}
        for element in self.by_tag.get("Path", ()):
            self.by_path.setdefault(element.get("name").rstrip("/"), []).append(element)


class PriorityStructFile(StructFile):
    """A StructFile whose root carries an integer ``priority`` (else it is rejected)."""

    def __init__(self, filename, fam=None, should_monitor=False, core=None, owner=None):
        self.owner = owner
        self.priority = None
        self._groups = frozenset()
        self._clients = frozenset()
        self._indexes = {}
        StructFile.__init__(self, filename, fam=fam, should_monitor=should_monitor,
                            core=core)

    def Index(self):
        """Read the priority and forget every per-client index."""
        raw = self.xdata.get("priority")
        try:
            priority = int(raw)
        except (TypeError, ValueError):
            raise PluginExecutionError("%s: the root element needs an integer priority "
                                       "attribute (got %r)" % (self.name, raw)) from None
        self.priority = priority
        self._groups = frozenset(el.get("name") for el in self.xdata.iter("Group"))
        self._clients = frozenset(el.get("name") for el in self.xdata.iter("Client"))
        self._indexes = {}
        if self.owner is not None:
            self.owner.file_changed()

    def top_level(self):
        """``(tag, name)`` of every entry that is a direct child of the root."""
        if not self.loaded:
            return []
        return [(el.tag, el.get("name")) for el in self.xdata
                if isinstance(el.tag, str) and el.tag not in self.conditionals
                and el.get("name") is not None]

    def candidates(self, metadata):
        """The indexed XMLMatch result for this client (PluginExecutionError if the
        template fails to render)."""
        if self.template is not None:
            return _Candidates(self.XMLMatch(metadata))
        groups = metadata.groups
        key = (frozenset(g for g in self._groups if g in groups),
               metadata.hostname if metadata.hostname in self._clients else None)
        indexes = self._indexes
        found = indexes.get(key)
        if found is None:
            found = _Candidates(self.XMLMatch(metadata))
            if len(indexes) >= MAX_INDEXES_PER_FILE:
                indexes.clear()
            indexes[key] = found
        return found


class PriorityDirectory(DirectoryBacked):
    """The ``*.xml`` files of a prioritized plugin, recursively, kept current."""

    patterns = re.compile(r"^.*\.xml$")
    __child__ = PriorityStructFile

    def __init__(self, data, fam=None, owner=None):
        self.owner = owner
        self.core = getattr(owner, "core", None)
        DirectoryBacked.__init__(self, data, fam=fam)

    def create_child(self, path):
        return PriorityStructFile(path, fam=self.fam, core=self.core, owner=self.owner)

    def HandleEvent(self, event):
        before = len(self.entries)
        DirectoryBacked.HandleEvent(self, event)
        if event.code2str() == "deleted" or len(self.entries) != before:
            if self.owner is not None:
                self.owner.file_changed()


class PrioDir(Plugin, ClientRunHooks):
    """Base of Rules and Defaults: prioritized candidate lookup and application.

    Subclasses say whether names are regular expressions (``regex_enabled``),
    whether ``%{name}`` is replaced (``replace_name_enabled``) and whether the names
    of top-level entries are registered for the core's fast path
    (``register_entries``).
    """

    register_entries = True

    def __init__(self, core):
        Plugin.__init__(self, core)
        self._regex_cache = {}
        self._options = {}
        self._bad_regexes = set()
        self._generation = 0
        self._memo = None
        self.store = PriorityDirectory(self.data, fam=core.fam, owner=self)
        self.file_changed()

    # -- options (overridden)

    @property
    def regex_enabled(self):
        return False

    @property
    def replace_name_enabled(self):
        return False

    # -- files

    def file_changed(self):
        """A file was (re)loaded or removed: rebuild the fast-path table."""
        self._generation += 1
        self._memo = None
        store = getattr(self, "store", None)
        if not self.register_entries or store is None:
            return
        entries = {}
        for _, src in sorted(store.entries.items()):
            for tag, name in src.top_level():
                entries.setdefault(tag, {})[name] = self.BindEntry
        self.Entries = entries

    def sources(self):
        """The loaded files, by relative path."""
        return [(path, src) for path, src in sorted(self.store.entries.items())
                if src.loaded and src.priority is not None]

    def start_client_run(self, metadata):
        """Forget the per-metadata memo so templated files render afresh each run."""
        self._memo = None

    def _indexes(self, metadata):
        """``[(priority, file, _Candidates)]`` for this client, memoized per metadata
        object (files that fail to render are logged and skipped)."""
        memo = self._memo
        if memo is not None and memo[0] is metadata and memo[1] == self._generation:
            return memo[2]
        generation = self._generation
        result = []
        for _, src in self.sources():
            try:
                result.append((src.priority, src, src.candidates(metadata)))
            except PluginExecutionError as err:
                logger.error("%s: %s", self.name, err)
            except Exception as err:  # pylint: disable=broad-except
                logger.error("%s: cannot evaluate %s for %s: %s", self.name, src.name,
                             metadata.hostname, err)
        self._memo = (metadata, generation, result)
        return result

    # -- matching

    def _regex(self, pattern):
        compiled = self._regex_cache.get(pattern)
        if compiled is None:
            if pattern in self._bad_regexes:
                return None
            try:
                compiled = re.compile("%s$" % pattern)
            except re.error as err:
                self._bad_regexes.add(pattern)
                logger.warning("%s: %r is not a valid regular expression (%s); it "
                               "only matches itself", self.name, pattern, err)
                return None
            if len(self._regex_cache) > 10000:
                self._regex_cache.clear()
            self._regex_cache[pattern] = compiled
        return compiled

    def option(self, section, name):
        """A boolean option, re-read only when bcfg2.conf was re-read."""
        setup = self.core.setup
        cache = self._options
        if cache.get(None) is not setup.parser:
            cache.clear()
            cache[None] = setup.parser
        key = (section, name)
        if key not in cache:
            try:
                cache[key] = setup.getbool(section, name, False)
            except OptionError as err:
                logger.error("%s: %s; using false", self.name, err)
                cache[key] = False
        return cache[key]

    def _matching(self, entry, found, regex_enabled):
        """The candidates in one file's index that match ``entry``."""
        tag = entry.tag
        name = entry.get("name")
        if tag == "Path":
            exact = found.by_path.get(name.rstrip("/"), [])
        else:
            exact = found.by_name.get(tag, {}).get(name, [])
        if not regex_enabled:
            return exact
        result = []
        for candidate in found.by_tag.get(tag, ()):
            if any(candidate is other for other in exact):
                result.append(candidate)
                continue
            regex = self._regex(candidate.get("name"))
            if regex is not None and regex.match(name):
                result.append(candidate)
        return result

    def matches(self, entry, metadata, indexes=None):
        """``[(priority, file, candidate)]`` of every candidate for ``entry``."""
        if entry.get("name") is None or not isinstance(entry.tag, str):
            return []
        if indexes is None:
            indexes = self._indexes(metadata)
        regex_enabled = self.regex_enabled
        return [(priority, src, candidate) for priority, src, found in indexes
                for candidate in self._matching(entry, found, regex_enabled)]

    def choose(self, entry, metadata, indexes=None, quiet=False):
        """The one candidate that applies to ``entry`` (PluginExecutionError: none,
        or several at the highest priority)."""
        matching = self.matches(entry, metadata, indexes)
        if not matching:
            raise PluginExecutionError("No matching source for entry when retrieving "
                                       "attributes for %s:%s" %
                                       (entry.tag, entry.get("name")))
        if len(matching) == 1:
            return matching[0][2]
        top = max(priority for priority, _, _ in matching)
        best = [(src, candidate) for priority, src, candidate in matching
                if priority == top]
        if len(best) > 1:
            message = ("Found conflicting sources with same priority (%s) for %s:%s "
                       "for %s: %s" % (top, entry.tag, entry.get("name"),
                                       metadata.hostname,
                                       ", ".join(sorted(set(src.name
                                                            for src, _ in best)))))
            if quiet:
                logger.debug("%s: %s", self.name, message)
            else:
                logger.error("%s: %s", self.name, message)
            raise PluginExecutionError(message)
        return best[0][1]

    def apply(self, entry, data):
        """Copy ``data`` onto ``entry``: non-blank text, copies of its children, and
        its attributes where ``entry`` has none of that name."""
        items = data.items()
        if self.replace_name_enabled:
            name = entry.get("name")
            items = [(key, NameTemplate(value).safe_substitute(name=name))
                     for key, value in items]
        text = data.text
        if text is not None and text.strip():
            entry.text = text
        if len(data):
            for child in data:
                entry.append(copy.deepcopy(child))
        get = entry.get
        for key, value in items:
            if get(key) is None:
                entry.set(key, value)

    def BindEntry(self, entry, metadata):
        """Complete ``entry`` in place from the best candidate."""
        self.apply(entry, self.choose(entry, metadata))

    def HandlesEntry(self, entry, metadata):
        return bool(self.matches(entry, metadata))

    def HandleEntry(self, entry, metadata):
        return self.BindEntry(entry, metadata)

    def set_debug(self, debug):
        self.store.set_debug(debug)
        return Plugin.set_debug(self, debug)
