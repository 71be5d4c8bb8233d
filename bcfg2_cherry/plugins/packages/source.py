"""One ``Source`` of sources.xml: its repositories, its parsed tables and their cache
(spec/packages.md §1, §2.2, §2.3, §3, §4).

The parsed tables live in one ``SourceData`` object that a load replaces whole, so a
client run always sees either the old or the new data of a source, never a mix.
"""
import hashlib
import json
import logging
import os
import pickle
import re
import sys

from bcfg2_cherry.plugin.base import Debuggable
from bcfg2_cherry.plugins.packages.fetch import DEFAULT_TIMEOUT, FailureLog, \
    FetchError, fetch_to_file
from bcfg2_cherry.state import atomic_write

logger = logging.getLogger(__name__)

#: Repository name from a URL: the last path part (``RPMS.x`` -> ``x``, ``pulp/repos/x``)
REPO_RE = re.compile(r"(?:pulp/repos/|/RPMS\.|/)([^/]+)/?$")
#: Tag of the private state-file format (bump when SourceData changes)
STATE_FORMAT = "bcfg2_cherry-packages-1"

failures = FailureLog()


class SourceInitError(Exception):
    """A Source element cannot be used; it is skipped with this message."""


def _true(value, default):
    if value is None:
        return default
    return value.strip().lower() == "true"


def _intern_all(names):
    return tuple(sys.intern(name) for name in names)


class SourceData:
    """The parsed tables of one source.

    ``deps``/``recommends``: arch (or ``global``) -> package -> tuple of symbols;
    ``provides``: arch -> symbol -> frozenset of packages; ``pkgnames``: every
    package; ``essential``: packages marked essential; ``groups``: package groups;
    ``extra``: backend-specific tables.
    """

    def __init__(self, pkgnames=frozenset(), deps=None, recommends=None, provides=None,
                 essential=frozenset(), groups=None, extra=None):
        self.pkgnames = frozenset(pkgnames)
        self.deps = deps if deps is not None else {"global": {}}
        self.recommends = recommends if recommends is not None else {"global": {}}
        self.provides = provides if provides is not None else {"global": {}}
        self.essential = frozenset(essential)
        self.groups = groups or {}
        self.extra = extra or {}


EMPTY = SourceData()


def collapse(per_arch, names):
    """Tables per arch -> tables with the entries equal for every arch under
    ``global`` (upstream's ``process_files``); missing entries count as empty."""
    result = {"global": {}}
    for arch in per_arch:
        result[arch] = {}
    for name in names:
        values = set()
        for table in per_arch.values():
            values.add(tuple(table.get(name, ())))
        if len(values) == 1:
            result["global"][name] = _intern_all(values.pop())
        else:
            for arch, table in per_arch.items():
                result[arch][name] = _intern_all(table.get(name, ()))
    return result


def collapse_provides(per_arch):
    """symbol -> providers per arch, collapsed like ``collapse`` but counting only the
    arches that have the symbol."""
    result = {"global": {}}
    for arch in per_arch:
        result[arch] = {}
    symbols = set()
    for table in per_arch.values():
        symbols.update(table)
    for symbol in symbols:
        values = set(frozenset(table[symbol]) for table in per_arch.values()
                     if symbol in table)
        if len(values) == 1:
            result["global"][sys.intern(symbol)] = values.pop()
        else:
            for arch, table in per_arch.items():
                result[arch][sys.intern(symbol)] = frozenset(table.get(symbol, ()))
    return result


class Source(Debuggable):
    """Base of the backend sources: attributes, applicability, URLs, cache, queries."""

    #: ``type`` given to Package entries of this source
    ptype = None
    #: the sources.xml ``type`` (lower case)
    stype = None

    def __init__(self, cachepath, xsource, timeout=DEFAULT_TIMEOUT):
        Debuggable.__init__(self, name=self.__class__.__module__)
        self.cachepath = cachepath
        self.timeout = timeout
        self.data = EMPTY
        #: the state file's identity when it was last read or written
        self._state_stat = None
        self._init_attributes(xsource)
        if not self.url and not self.rawurl:
            raise SourceInitError("%s source has neither url nor rawurl, skipping" %
                                  self.stype)
        self.cachefile = os.path.join(self.cachepath, "cache-%s" % self.cachekey)
        self.url_map = self._build_url_map()

    # -- attributes

    def _init_attributes(self, xsource):
        def texts(tag):
            return [(el.text or "").strip() for el in xsource.findall(tag)]
        if xsource.get("pulp_id"):
            raise SourceInitError("Pulp source %s is not supported, skipping" %
                                  xsource.get("pulp_id"))
        self.components = texts("Component")
        self.arches = texts("Arch")
        self.blacklist = frozenset(texts("Blacklist"))
        self.whitelist = frozenset(texts("Whitelist"))
        self.blacklist_list = texts("Blacklist")
        self.whitelist_list = texts("Whitelist")
        self.gpgkeys = texts("GPGKey")
        self.debsrc = xsource.get("debsrc", "false") == "true"
        self.essential = _true(xsource.get("essential"), True)
        self.recommended = _true(xsource.get("recommended"), False)
        self.server_options = {}
        self.client_options = {}
        for opts in xsource.findall("Options"):
            values = dict((key, value) for key, value in opts.attrib.items()
                          if key not in ("clientonly", "serveronly"))
            if not _true(opts.get("clientonly"), False):
                self.server_options.update(values)
            if not _true(opts.get("serveronly"), False):
                self.client_options.update(values)
        self.rawurl = xsource.get("rawurl", "")
        if self.rawurl and not self.rawurl.endswith("/"):
            self.rawurl += "/"
        self.url = xsource.get("url", "")
        if self.url and not self.url.endswith("/"):
            self.url += "/"
        if self.rawurl:
            self.url = ""
        self.version = xsource.get("version", "")
        self.name = xsource.get("name")
        #: (tag, name, negated) of every enclosing Group/Client, innermost first
        self.conditions = []
        #: names of the enclosing (not negated) Groups, innermost first
        self.groups = []
        for el in xsource.iterancestors():
            if el.tag not in ("Group", "Client"):
                continue
            negate = _true(el.get("negate"), False)
            self.conditions.append((el.tag, el.get("name"), negate))
            if el.tag == "Group" and not negate:
                self.groups.append(el.get("name"))

    @property
    def cachekey(self):
        """Identifies the parsed state: type, version, components, URLs, arches."""
        key = json.dumps([self.stype, self.version, self.components, self.url,
                          self.rawurl, self.arches])
        return hashlib.md5(key.encode("utf-8")).hexdigest()

    def _build_url_map(self):
        result = []
        for arch in self.arches:
            if self.rawurl:
                settings = [dict(version=self.version, component=None, arch=arch,
                                 debsrc=self.debsrc, baseurl=self.rawurl,
                                 url=self.rawurl)]
            else:
                settings = [dict(version=self.version, component=comp, arch=arch,
                                 debsrc=self.debsrc, baseurl=self.url,
                                 url="%s%s/%s/%s/" % (self.url, self.version, comp,
                                                      arch))
                            for comp in self.components]
            for setting in settings:
                setting["name"] = self.get_repo_name(setting)
            result.extend(settings)
        return result

    def get_repo_name(self, url_map):
        """The repository name used in generated configs (§6.2)."""
        if self.name:
            return self.name
        if url_map["component"]:
            name = url_map["component"]
        else:
            match = REPO_RE.search(url_map["url"])
            if match:
                name = match.group(1)
                if self.groups:
                    name = "%s-%s" % (self.groups[0], name)
            elif self.groups:
                name = self.groups[0]
            else:
                name = url_map["url"]
        return re.sub(r"[^A-Za-z0-9-_.:]", "-", name)

    def __repr__(self):
        return "%s at %s" % (self.__class__.__name__, self.rawurl or self.url)

    # -- applicability

    def arch_groups(self, metadata):
        """The source's arches the client is in, in document order."""
        return [arch for arch in self.arches if arch in metadata.groups]

    def applies(self, metadata):
        """Every enclosing Group/Client holds and one Arch is a client group."""
        if not self.arch_groups(metadata):
            return False
        for tag, name, negate in self.conditions:
            if tag == "Group":
                found = name in metadata.groups
            else:
                found = name == metadata.hostname
            if found == negate:
                return False
        return True

    def get_arches(self, metadata):
        return ["global"] + self.arch_groups(metadata)

    # -- URLs and files

    @property
    def urls(self):
        """The metadata URLs to download (backends)."""
        return []

    def escape_url(self, url):
        """Local file of a downloaded URL: ``<cache>/<URL with / as @>``."""
        return os.path.join(self.cachepath, url.replace("/", "@"))

    @property
    def files(self):
        return [self.escape_url(url) for url in self.urls]

    def download(self, url):
        """Fetch one URL into the cache; FetchError on failure (logged once)."""
        path = self.escape_url(url)
        self.logger.info("Packages: Updating %s", url)
        try:
            fetch_to_file(url, path, timeout=self.timeout)
        except (FetchError, OSError) as err:
            failures.failed(url, str(err), self.logger)
            raise FetchError(str(err)) from None
        failures.succeeded(url)
        return path

    def update(self):
        """Download every metadata file of this source."""
        for url in self.urls:
            self.download(url)

    def read_files(self):
        """Parse the downloaded files into a new SourceData (backends)."""
        return EMPTY

    # -- state

    def adopt(self, other):
        """Take over the loaded data of an equal source (same cache key)."""
        self.data = other.data
        self._state_stat = other._state_stat  # pylint: disable=protected-access

    def _stat(self):
        try:
            st = os.stat(self.cachefile)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load_state(self):
        with open(self.cachefile, "rb") as fh:
            tag, key, data = pickle.load(fh)
        if tag != STATE_FORMAT or key != self.cachekey or \
                not isinstance(data, SourceData):
            raise ValueError("not a state file of this source")
        self.data = data
        self._state_stat = self._stat()

    def save_state(self, data):
        atomic_write(self.cachefile, pickle.dumps((STATE_FORMAT, self.cachekey, data),
                                                  protocol=pickle.HIGHEST_PROTOCOL))
        self._state_stat = self._stat()

    def _parse(self):
        data = self.read_files()
        self.data = data
        try:
            self.save_state(data)
        except OSError as err:
            self.logger.error("Packages: cannot write %s: %s", self.cachefile, err)

    def setup_data(self, force_update=False):
        """Soft load: parsed state, else the downloaded files, else download; hard
        load (``force_update``): download and parse. Failures keep the current data."""
        if not force_update:
            stat = self._stat()
            if stat is not None:
                if stat == self._state_stat and self.data is not EMPTY:
                    return True
                try:
                    self.load_state()
                    return True
                except Exception as err:  # pylint: disable=broad-except
                    self.logger.error("Packages: Cachefile %s load failed: %s",
                                      self.cachefile, err)
                    self.logger.error("Falling back to file read")
                try:
                    self._parse()
                    return True
                except Exception as err:  # pylint: disable=broad-except
                    self.logger.error("Packages: File read failed: %s", err)
                    self.logger.error("Falling back to file download")
        try:
            self.update()
            self._parse()
            return True
        except Exception as err:  # pylint: disable=broad-except
            if not isinstance(err, FetchError):
                self.logger.error("Packages: Failed to load data for %s: %s", self, err,
                                  exc_info=self.debug_flag)
            else:
                self.logger.error("Packages: Failed to load data for %s", self)
        if self.data is EMPTY and all(os.path.exists(f) for f in self._local_files()):
            try:
                self._parse()
                self.logger.warning("Packages: %s: using the files downloaded before",
                                    self)
                return False
            except Exception:  # pylint: disable=broad-except
                pass
        self.logger.error("Some Packages will be missing")
        return False

    def _local_files(self):
        """Downloaded files read_files needs, for the offline fallback."""
        return self.files or [self.cachefile + ".none"]

    # -- queries

    @property
    def essentialpkgs(self):
        return self.data.essential if self.essential else frozenset()

    def is_package(self, metadata, package):
        return (package in self.data.pkgnames and package not in self.blacklist and
                (not self.whitelist or package in self.whitelist))

    def get_deps(self, metadata, package, recommended=None):
        """Dependency symbols of ``package`` for this client's arches (and the
        recommended ones when enabled, by the entry or by the source)."""
        data = self.data
        result = []
        if (recommended is None and self.recommended) or \
                (recommended is not None and recommended.lower() == "true"):
            for arch in self.get_arches(metadata):
                result.extend(data.recommends.get(arch, {}).get(package, ()))
        for arch in self.get_arches(metadata):
            result.extend(data.deps.get(arch, {}).get(package, ()))
        return result

    def get_provides(self, metadata, package):
        for arch in self.get_arches(metadata):
            found = self.data.provides.get(arch, {}).get(package)
            if found:
                return found
        return ()

    def get_vpkgs(self, metadata):
        """symbol -> set of providers, for ``global`` and the client's arches."""
        result = {}
        for arch in self.get_arches(metadata):
            table = self.data.provides.get(arch)
            if table is None:
                self.logger.debug("%s provides no packages for %s", self, arch)
                continue
            for symbol, providers in table.items():
                if symbol in result:
                    result[symbol] = result[symbol] | providers
                else:
                    result[symbol] = providers
        return result

    def get_group(self, metadata, group, ptype=None):
        return []

    def unknown_filter(self, package):
        """Unknown names never reported (APT choices)."""
        return package.startswith("choice")

    def filter_unknown(self, unknown):
        unknown.difference_update([name for name in unknown
                                   if self.unknown_filter(name)])
