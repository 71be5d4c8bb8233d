"""The Packages plugin (spec/packages.md): completes each client's package list from
repository metadata, binds Package entries, generates APT/Yum repository configs.

Loads (sources.xml events, ``Packages.Reload``, ``Packages.Refresh``) run in one
background thread, one at a time; the caller waits for at most ``[packages]
load_wait`` seconds and clients are served from the data already loaded meanwhile.
Client runs never touch the network: resolution reads only in-memory tables, GPG
keys only files in the cache.
"""
import collections.abc
import glob
import logging
import os
import shutil
import threading
import time
import uuid

import lxml.etree

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import PluginInitError
from bcfg2_cherry.plugin.interfaces import ClientRunHooks, Connector, Generator, \
    Metadata, StructureValidator
from bcfg2_cherry.plugins.packages.apt import AptCollection, AptSource
from bcfg2_cherry.plugins.packages.collection import Collection, ResultCache
from bcfg2_cherry.plugins.packages.fetch import DEFAULT_TIMEOUT, FailureLog, \
    FetchError, fetch_to_file
from bcfg2_cherry.plugins.packages.pac import PacCollection, PacSource
from bcfg2_cherry.plugins.packages.pkgng import PkgngCollection, PkgngSource
from bcfg2_cherry.plugins.packages.sources import PackagesSources
from bcfg2_cherry.plugins.packages.yum import YumCollection, YumSource

logger = logging.getLogger(__name__)


class Backend:
    """A backend: its name in ``[packages] backends`` and its classes."""

    def __init__(self, name, source_class, collection_class):
        self.name = name
        self.source_class = source_class
        self.collection_class = collection_class


#: sources.xml ``type`` -> backend
BACKENDS = {
    "yum": Backend("Yum", YumSource, YumCollection),
    "apt": Backend("Apt", AptSource, AptCollection),
    "pac": Backend("Pac", PacSource, PacCollection),
    "pkgng": Backend("Pkgng", PkgngSource, PkgngCollection),
}
DEFAULT_BACKENDS = ("Yum", "Apt", "Pac", "Pkgng")
TRUE = ("1", "yes", "true", "on", "enabled")
FALSE = ("0", "no", "false", "off", "disabled", "")
#: default of ``[packages] load_wait`` (seconds a file event or RMI call waits)
DEFAULT_LOAD_WAIT = 10.0
#: how long a child of the multiprocessing core waits for the parent's load
CHILD_WAIT = 600.0
#: clients whose collection is kept during their run before the table starts afresh
MAX_CLIENTS = 10000
GENERATION = ".generation"

key_failures = FailureLog()


class OnDemandDict(collections.abc.Mapping):
    """A mapping whose values are computed by their getter on first access."""

    def __init__(self, **getters):
        self._getters = getters
        self._values = {}

    def __getitem__(self, key):
        if key not in self._values:
            self._values[key] = self._getters[key]()
        return self._values[key]

    def __iter__(self):
        return iter(self._getters)

    def __len__(self):
        return len(self._getters)

    def __repr__(self):
        return "OnDemandDict(%s)" % ", ".join(sorted(self._getters))


class Loader:
    """Runs the plugin's loads in one thread; requests made meanwhile coalesce
    (a pending hard load absorbs soft ones)."""

    def __init__(self, plugin):
        self.plugin = plugin
        self._cond = threading.Condition()
        self._pending = None
        self._requested = 0
        self._done = 0
        self._stopping = False
        self._thread = None

    def request(self, force, wait):
        """Ask for a load; wait up to ``wait`` seconds; True when it finished."""
        with self._cond:
            if self._stopping:
                return False
            self._pending = bool(force) or bool(self._pending)
            self._requested += 1
            mine = self._requested
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="PackagesLoader")
                self._thread.start()
            self._cond.notify_all()
            deadline = time.monotonic() + max(wait, 0)
            while self._done < mine:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def idle(self, timeout=None):
        """Wait until every requested load is done; True when it is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._done < self._requested:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _run(self):
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                force = self._pending
                self._pending = None
                target = self._requested
            try:
                self.plugin.load(force)
            except Exception:  # pylint: disable=broad-except
                logger.exception("Packages: load failed")
            with self._cond:
                self._done = max(self._done, target)
                self._cond.notify_all()

    def stop(self):
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


class Packages(Plugin, StructureValidator, Generator, Connector, ClientRunHooks):
    """Resolves package dependencies and binds Package entries from repository
    metadata described in ``Packages/sources.xml``."""

    conflicts = ["Pkgmgr"]
    __rmi__ = Plugin.__rmi__ + ["Refresh", "Reload"]
    __child_rmi__ = Plugin.__child_rmi__ + [("Refresh", "child_reload"),
                                            ("Reload", "child_reload")]

    def __init__(self, core):
        Plugin.__init__(self, core)
        setup = core.setup
        self._warned = set()
        self._warned_lock = threading.Lock()
        #: where downloads, parsed state and GPG keys are kept
        self.cachepath = setup.getpath("packages", "cache",
                                       os.path.join(self.data, "cache"))
        self.keypath = os.path.join(self.cachepath, "keys")
        try:
            os.makedirs(self.keypath, exist_ok=True)
        except OSError as err:
            raise PluginInitError("Packages: cannot create the cache %s: %s" %
                                  (self.keypath, err)) from None
        self.timeout = self._float_option("timeout", DEFAULT_TIMEOUT)
        self.load_wait = self._float_option("load_wait", DEFAULT_LOAD_WAIT)
        self._results = {}
        self._clients = {}
        self._loaded_sources = None
        self._loader = Loader(self)
        self._check_legacy()
        self.sources_file = PackagesSources(os.path.join(self.data, "sources.xml"),
                                            core.fam, self)

    # -- options

    def _float_option(self, name, default):
        raw = self.core.setup.get("packages", name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
            if value < 0:
                raise ValueError("negative")
            return value
        except ValueError:
            logger.error("Packages: [packages] %s = %s is not a number of seconds; "
                         "using %s", name, raw, default)
            return default

    def _warn_once(self, key, level, message, *args):
        with self._warned_lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logger.log(level, message, *args)

    def _switch(self, name):
        raw = self.core.setup.get("packages", name, None)
        if raw is None:
            return True
        value = raw.strip().lower()
        if value in TRUE:
            return True
        if value in FALSE:
            return False
        self._warn_once(("switch", name, raw), logging.ERROR,
                        "Packages: [packages] %s = %s is not a boolean; leaving it on",
                        name, raw)
        return True

    @property
    def metadata_enabled(self):
        """``[packages] metadata``: fetch and parse repository metadata."""
        return self._switch("metadata")

    @property
    def resolver_enabled(self):
        """``[packages] resolver`` (off when ``metadata`` is off)."""
        return self.metadata_enabled and self._switch("resolver")

    @property
    def version(self):
        """``[packages] version``, copied verbatim onto entries."""
        value = self.core.setup.get("packages", "version", "auto")
        if value not in ("auto", "any"):
            self._warn_once(("version", value), logging.ERROR,
                            "Packages: [packages] version = %s is neither auto nor any;"
                            " using it as given", value)
        return value

    @property
    def apt_config(self):
        return self.core.setup.getpath(
            "packages", "apt_config",
            "/etc/apt/sources.list.d/bcfg2-packages-generated-sources.list")

    @property
    def yum_config(self):
        return self.core.setup.getpath("packages", "yum_config",
                                       "/etc/yum.repos.d/bcfg2.repo")

    @property
    def gpg_keypath(self):
        """``[packages:yum] gpg_keypath``: the client directory of GPG keys."""
        return self.core.setup.get("packages:yum", "gpg_keypath", "/etc/pki/rpm-gpg")

    def backends(self):
        """sources.xml type -> Backend, for the names in ``[packages] backends``."""
        names = self.core.setup.getlist("packages", "backends", DEFAULT_BACKENDS)
        wanted = set(name.strip().lower() for name in names)
        return dict((stype, backend) for stype, backend in BACKENDS.items()
                    if backend.name.lower() in wanted)

    def _check_legacy(self):
        if os.path.exists(os.path.join(self.data, "packages.conf")):
            logger.warning("Packages: %s is ignored; its options belong in bcfg2.conf "
                           "[packages], [packages:yum] and [packages:pulp] (see Bcfg2's "
                           "tools/upgrade/1.3/migrate_configs.py)",
                           os.path.join(self.data, "packages.conf"))
        setup = self.core.setup
        magic = setup.get("packages", "magic_groups", None)
        if magic is not None and magic.strip().lower() in TRUE:
            logger.warning("Packages: [packages] magic_groups is no longer supported "
                           "and ignored: a source applies by its Group/Client and Arch "
                           "alone")
        yumlibs = setup.get("packages:yum", "use_yum_libraries", None)
        if yumlibs is not None and yumlibs.strip().lower() in TRUE:
            logger.warning("Packages: [packages:yum] use_yum_libraries is not "
                           "supported; using the builtin Yum parser")
        legacy = os.path.join(self.data, "config.xml")
        if os.path.exists(legacy) and \
                not os.path.exists(os.path.join(self.data, "sources.xml")):
            raise PluginInitError(
                "Packages: %s is the pre-1.2 format, which is not read; convert it to "
                "sources.xml with Bcfg2's tools/upgrade/1.2/packages-convert.py" % legacy)

    def warn_no_yum(self):
        self._warn_once("yumlibs", logging.WARNING,
                        "GPGKeys were specified for yum sources in sources.xml, but no "
                        "yum libraries were found; GPG key version/release data cannot "
                        "be determined automatically (manage gpg-pubkey packages "
                        "manually)")

    # -- sources and loading

    @property
    def sources(self):
        """The current Source objects, in sources.xml order."""
        return self.sources_file.sources

    def sources_changed(self):
        """sources.xml (or an included file) was (re)loaded: soft load."""
        if not self._loader.request(False, self.load_wait):
            logger.warning("Packages: still loading repository data after %ss; "
                           "continuing in the background", self.load_wait)

    def Refresh(self):
        """Packages.Refresh() => True: download and parse every source and key."""
        if not self._loader.request(True, self.load_wait):
            logger.warning("Packages: Refresh still running after %ss; continuing in "
                           "the background", self.load_wait)
        return True

    def Reload(self):
        """Packages.Reload() => True: load the sources from the cache (downloading
        only what is missing)."""
        if not self._loader.request(False, self.load_wait):
            logger.warning("Packages: Reload still running after %ss; continuing in "
                           "the background", self.load_wait)
        return True

    def child_reload(self, *_):
        """In a child of the multiprocessing core: wait for the parent's load to
        finish (its generation mark changes), then soft-load what it wrote."""
        before = self._generation()

        def wait_and_load():
            deadline = time.monotonic() + CHILD_WAIT
            while self.running and time.monotonic() < deadline:
                if self._generation() != before:
                    break
                time.sleep(0.2)
            if self.running:
                self._loader.request(False, 0)
        threading.Thread(target=wait_and_load, daemon=True,
                         name="PackagesChildReload").start()
        return True

    def wait_idle(self, timeout=None):
        """Wait until no load is pending or running (for tools and tests)."""
        return self._loader.idle(timeout)

    def _generation(self):
        try:
            with open(os.path.join(self.cachepath, GENERATION), encoding="utf-8") as fh:
                return fh.read()
        except OSError:
            return None

    def load(self, force_update=False):
        """Set up every source's data (hard: download everything), clean the
        cache, fetch GPG keys and expire every cached result."""
        sources = list(self.sources)
        start = time.monotonic()
        if self.metadata_enabled:
            for source in sources:
                if not self.running:
                    return
                source.setup_data(force_update)
        self._clean_cache(sources)
        self._load_gpg_keys(sources, force_update)
        self._results = {}
        self._clients = {}
        if self._loaded_sources is not self.sources_file.sources:
            self._loaded_sources = self.sources_file.sources
            self.core.expire_caches_by_type(Metadata)
        try:
            with open(os.path.join(self.cachepath, GENERATION), "w",
                      encoding="utf-8") as fh:
                fh.write(uuid.uuid4().hex)
        except OSError as err:
            logger.error("Packages: cannot write %s: %s", GENERATION, err)
        logger.info("Packages: %s %d sources in %.2fs",
                    "refreshed" if force_update else "loaded", len(sources),
                    time.monotonic() - start)

    def _clean_cache(self, sources):
        keep = set(source.cachefile for source in sources)
        keep.update(source.cachefile for source in self.sources)
        for path in glob.glob(os.path.join(self.cachepath, "cache-*")):
            if path in keep:
                continue
            try:
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError as err:
                logger.error("Packages: Could not remove cache file %s: %s", path, err)

    def local_key(self, url):
        """Where the GPG key at ``url`` is kept in the cache."""
        return os.path.join(self.keypath, os.path.basename(url.rstrip("/")))

    def _load_gpg_keys(self, sources, force_update):
        keyfiles = set()
        fetched = set()
        for source in sources:
            for key in source.gpgkeys:
                local = self.local_key(key)
                keyfiles.add(local)
                if key in fetched or (not force_update and os.path.exists(local)):
                    continue
                logger.info("Packages: Downloading and parsing %s", key)
                try:
                    fetch_to_file(key, local, timeout=self.timeout)
                    fetched.add(key)
                    key_failures.succeeded(key)
                except (FetchError, OSError) as err:
                    key_failures.failed(key, "Error downloading %s: %s" % (key, err))
        for path in glob.glob(os.path.join(self.keypath, "*")):
            if path not in keyfiles:
                try:
                    os.unlink(path)
                except OSError as err:
                    logger.error("Packages: Could not remove key file %s: %s", path,
                                 err)

    # -- collections

    def result_cache(self, cachekey):
        """The ResultCache of a collection key (until the next load)."""
        results = self._results
        found = results.get(cachekey)
        if found is None:
            found = results.setdefault(cachekey, ResultCache())
        return found

    def get_collection(self, metadata):
        """The Collection of the sources that apply to this client."""
        if not self.sources_file.loaded:
            return Collection(metadata, [], self)
        groups = frozenset(metadata.groups)
        cached = self._clients.get(metadata.hostname)
        if cached is not None and cached[0] == groups:
            return cached[1]
        relevant = [source for source in self.sources if source.applies(metadata)]
        classes = set(source.__class__ for source in relevant)
        if len(classes) > 1:
            logger.warning("Packages: Multiple source types found for %s: %s",
                           metadata.hostname,
                           ",".join(sorted(cls.__name__ for cls in classes)))
            cls = Collection
        elif not classes:
            logger.error("Packages: No sources found for %s", metadata.hostname)
            cls = Collection
        else:
            cls = BACKENDS[relevant[0].stype].collection_class
        collection = cls(metadata, relevant, self, debug=self.debug_flag)
        if len(self._clients) >= MAX_CLIENTS:
            self._clients = {}
        self._clients[metadata.hostname] = (groups, collection)
        return collection

    def end_client_run(self, metadata):
        self._clients.pop(metadata.hostname, None)

    def end_statistics(self, metadata):
        self.end_client_run(metadata)

    # -- Connector

    def get_config(self, metadata):
        """The generated APT/Yum config text of any client (``metadata.Packages
        ['get_config']``)."""
        return self.get_collection(metadata).get_config()

    def get_additional_data(self, metadata):
        """``sources`` (repository descriptions) and ``get_config``, on demand."""
        return OnDemandDict(
            sources=lambda: self.get_collection(metadata).get_additional_data(),
            get_config=lambda: self.get_config)

    # -- Generator

    def HandlesEntry(self, entry, metadata):
        """Every Package entry; Paths named like the generated configs."""
        if entry.tag == "Package":
            return True
        if entry.tag == "Path":
            return entry.get("name") in (self.apt_config, self.yum_config)
        return False

    def HandleEntry(self, entry, metadata):
        """Package: version and type (overwritten); Path: the generated config."""
        if entry.tag == "Package":
            collection = self.get_collection(metadata)
            entry.set("version", self.version)
            entry.set("type", collection.ptype)
        elif entry.tag == "Path":
            entry.text = self.get_collection(metadata).get_config()
            for key, value in (("encoding", "ascii"), ("owner", "root"),
                               ("group", "root"), ("type", "file"), ("mode", "0644"),
                               ("important", "true")):
                entry.set(key, value)
        return entry

    # -- StructureValidator

    def validate_structures(self, metadata, structures):
        """Append ``<Independent name="Packages">`` with every dependency of the
        client's packages (and GPG key entries)."""
        collection = self.get_collection(metadata)
        independent = lxml.etree.Element("Independent", name=self.name)
        self._build_packages(independent, structures, collection)
        collection.build_extra_structures(independent)
        structures.append(independent)

    def _build_packages(self, independent, structures, collection):
        entries = [pkg for struct in structures
                   for pkg in struct.iter("Package", "BoundPackage")]
        if not self.resolver_enabled:
            for pkg in entries:
                if pkg.get("group") and pkg.get("type"):
                    pkg.set("choose", pkg.get("type"))
            return
        initial = set()
        groups = []
        recommended = {}
        to_remove = []
        for pkg in entries:
            name = pkg.get("name")
            if name:
                initial.add(name)
                if pkg.get("recommended"):
                    recommended[name] = pkg.get("recommended")
            elif pkg.get("group"):
                groups.append((pkg.get("group"), pkg.get("type")))
                to_remove.append(pkg)
            else:
                logger.error("Packages: Malformed Package: %s",
                             lxml.etree.tostring(pkg, encoding="unicode",
                                                 with_tail=False))
        for pkg in to_remove:
            parent = pkg.getparent()
            if parent is not None:
                parent.remove(pkg)
        base = set(initial)
        if groups:
            for members in collection.groups_cached(groups).values():
                base.update(members)
        base.update(collection.get_essential())
        packages, unknown = collection.resolve(base, recommended)
        if unknown:
            logger.info("Packages: Got %d unknown entries", len(unknown))
            logger.info("Packages: %s", sorted(unknown))
        new = sorted(name for name in packages if name not in initial)
        self.debug_log("Packages: %d base, %d complete, %d new", len(base),
                       len(packages), len(new))
        collection.packages_to_entry(new, independent)

    # -- life cycle

    def set_debug(self, debug):
        result = Plugin.set_debug(self, debug)
        for source in list(self.sources):
            source.set_debug(debug)
        return result

    def shutdown(self):
        Plugin.shutdown(self)
        self._loader.stop()
