"""The transport-free server core: plugins, file monitor, metadata cache, the methods
clients call, and how a configuration is built (spec/core.md).

A network core (``bcfg2_cherry.server.cherrypy_core`` and friends) subclasses
``NetworkCore``, turns HTTP into ``(address, method, params, credentials)`` and hands them
to ``bcfg2_cherry.server.dispatch``; nothing here knows about HTTP or sockets.
"""
import atexit
import copy
import functools
import importlib
import inspect
import logging
import os
import sys
import threading
import time
from importlib.metadata import entry_points

import lxml.etree

from bcfg2_cherry import cache, filemonitor, statistics
from bcfg2_cherry.options import OptionError
from bcfg2_cherry.plugin import helpers as plugin_helpers
from bcfg2_cherry.plugin.base import Plugin, parse_bool
from bcfg2_cherry.plugin.exceptions import (
    MetadataConsistencyError, MetadataRuntimeError, PluginExecutionError,
    ValidationError)
from bcfg2_cherry.plugin.interfaces import (
    ClientACLs, ClientRunHooks, Connector, Decision, Generator, GoalValidator,
    Metadata, Probing, Statistics, Structure, StructureValidator, Threaded, Version)
from bcfg2_cherry.server.errors import (
    APPLICATION_ERROR, CoreInitError, Fault, NoExposedMethod)
from bcfg2_cherry.statistics import track_statistics
from bcfg2_cherry.xml import XMLError, parse_client_xml, tostring

__all__ = ["Core", "NetworkCore", "DefaultACL", "CoreInitError", "NoExposedMethod",
           "ClientAddress", "exposed", "sort_xml", "close_db_connection"]

PLUGIN_GROUP = "bcfg2_cherry.plugins"
LOCAL_ADDRESSES = ("127.0.0.1", "::1")


#: the attribute ``exposed`` sets; network cores resolve only methods carrying it
#: (``exposed`` alone is CherryPy's handler flag too, so it cannot be what we check)
XMLRPC_MARKER = "_bcfg2_exposed"


def exposed(func):
    """Mark a Core method as callable over XML-RPC (its first argument is the address).

    Sets ``exposed`` as upstream did, and our own marker, which is what dispatch checks:
    a CherryPy handler (``default``) is ``exposed`` for CherryPy and must never be
    reachable as an XML-RPC method.
    """
    func.exposed = True
    setattr(func, XMLRPC_MARKER, True)
    return func


def close_db_connection(func):
    """Release database connections when an exposed method returns.

    There is no database layer yet, so this only marks the method; the wrapper is where
    the release goes once ``[database]`` is supported.
    """
    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        try:
            return func(self, *args, **kwargs)
        finally:
            if self.database_available:
                release = getattr(self, "_release_db_connections", None)
                if release is not None:
                    release()
    return wrapper


def sort_xml(node, key=None):
    """Sort an XML tree in place, children first, deterministically (core.md §4 step 10).

    A node's children are re-ordered with a stable sort by ``key`` (the ``name``
    attribute by default); a node with two or more children of which one lacks a key
    keeps its order, as upstream on Python 3 does.
    """
    if isinstance(node, lxml.etree._ElementTree):  # pylint: disable=protected-access
        node = node.getroot()
    for child in node:
        if len(child):
            sort_xml(child, key=key)
    children = list(node)
    if len(children) < 2:
        return
    keyfunc = key or (lambda el: el.get("name"))
    keys = []
    for child in children:
        value = keyfunc(child) if isinstance(child.tag, str) else None
        if value is None:
            return
        keys.append(value)
    order = sorted(range(len(children)), key=keys.__getitem__)
    if order == list(range(len(children))):
        return
    tail = node[-1].tail
    for child in children:
        node.remove(child)
    for idx in order:
        node.append(children[idx])
    node[-1].tail = tail


class ClientAddress(tuple):
    """The ``(ip, port)`` pair passed to exposed methods, carrying the client name that
    authentication established (``client``) so methods never re-derive (and never
    confuse) the identity.
    """

    def __new__(cls, address, client=None):
        obj = tuple.__new__(cls, tuple(address))
        obj.client = client
        return obj

    def __reduce__(self):
        return (ClientAddress, (tuple(self), self.client))


class DefaultACL(Plugin, ClientACLs):
    """Security by default when no ClientACLs plugin is loaded (core.md §7).

    Local callers may call anything; others only the client methods: names without a
    dot, not ending in ``_debug``, not ``get_statistics`` or ``expire_metadata_cache``.
    ``::1`` counts as local too (upstream only knew 127.0.0.1).
    """

    create = False

    def check_acl_ip(self, address, rmi):
        if address[0] in LOCAL_ADDRESSES:
            return True
        return ("." not in rmi and not rmi.endswith("_debug")
                and rmi not in ("get_statistics", "expire_metadata_cache"))

    def check_acl_metadata(self, metadata, rmi):
        return True


class Core:
    """The container of all server logic: plugins, file monitor, caches, exposed methods.

    ``setup`` is a ``bcfg2_cherry.options.Settings``.
    """

    #: Name of this core (network cores override it).
    name = "Core"

    def __init__(self, setup):
        self.setup = setup
        self.logger = logging.getLogger(self.__class__.__name__)
        #: Path to bcfg2.conf
        self.cfile = setup.config_file
        self.datastore = setup.repository
        #: name -> plugin object
        self.plugins = {}
        #: plugins removed because a later plugin conflicts with them (name -> class)
        self.plugin_blacklist = {}
        #: the Metadata plugin
        self.metadata = None
        #: revision of the repository (from a Version plugin), sent in every Configuration
        self.revision = "-1"
        #: threading.Event telling every thread of the core to stop
        self.terminate = threading.Event()
        #: serializes file-monitor event handling
        self.lock = threading.Lock()
        #: held on writes to the database backend
        self.db_write_lock = threading.RLock()
        self.debug_flag = bool(setup.debug)
        #: the metadata cache (hostname -> ClientMetadata)
        self.metadata_cache = cache.Cache("Metadata")
        self._plugins_by_type = {}
        self._shutdown_done = False
        self._shutdown_lock = threading.Lock()
        #: set once plugins are loaded and the initial file events are handled
        self.ready = threading.Event()
        try:
            self.fam = filemonitor.load(setup.filemonitor)(
                ignore=setup.ignore_files, debug=self.debug_flag,
                recursive_roots=[setup.repository])
        except ValueError as err:
            raise CoreInitError("[server] filemonitor = %s: %s"
                                % (setup.filemonitor, err)) from None
        self.fam_thread = threading.Thread(name="%sFileMonitor" % self.name,
                                           target=self._file_monitor_thread, daemon=True)
        self.perflog_thread = None
        if setup.performance and setup.performance_interval > 0:
            self.perflog_thread = threading.Thread(name="%sPerfLog" % self.name,
                                                   target=self._perflog_thread,
                                                   daemon=True)
        plugin_helpers.set_core(self)
        atexit.register(self.shutdown)

    # ------------------------------------------------------------------ plugins

    def _load_plugin_class(self, name):
        """Find a plugin class: by entry point name, or ``module:Class`` / ``module.Class``."""
        for ep in entry_points(group=PLUGIN_GROUP):
            if ep.name == name:
                return ep.load()
        if ":" in name or "." in name:
            module, _, cls = name.replace(":", ".").rpartition(".")
            return getattr(importlib.import_module(module), cls)
        raise ImportError("no plugin named %s (entry point group %s)" % (name, PLUGIN_GROUP))

    def load_plugins(self):
        """Load ``[server] plugins`` in order; set ``plugins`` and ``metadata``.

        Conflicts: a plugin removes the already-loaded plugins it declares a conflict
        with (core.md §2). Exactly one Metadata plugin must remain.
        """
        conflicts_with = []
        for name in self.setup.plugins:
            if name in self.plugins:
                continue
            try:
                cls = self._load_plugin_class(name)
            except Exception as err:  # pylint: disable=broad-except
                self.logger.error("Failed to load plugin %s: %s", name, err)
                continue
            conflicts_with.extend((cls.__name__, c) for c in getattr(cls, "conflicts", [])
                                  if c in self.plugins)
            self.init_plugin(cls)
        for winner, loser in conflicts_with:
            if loser in self.plugins and winner in self.plugins:
                self.logger.error("%s conflicts with %s: removing %s", winner, loser, loser)
                self.plugin_blacklist[loser] = self.plugins[loser].__class__
                self.plugins.pop(loser).shutdown()
        self._plugins_by_type.clear()
        mlist = self.plugins_by_type(Metadata)
        if not mlist:
            raise CoreInitError("No Metadata Plugin")
        if len(mlist) > 1:
            self.logger.error("Multiple Metadata plugins loaded; using %s", mlist[0].name)
        self.metadata = mlist[0]
        if not self.plugins_by_type(ClientACLs):
            self.init_plugin(DefaultACL)
        self._plugins_by_type.clear()

    def init_plugin(self, plugin):
        """Instantiate one plugin class and store it in ``plugins``; failures are logged."""
        name = plugin.__name__
        if getattr(plugin, "experimental", False):
            self.logger.info("Loading experimental plugin %s; it may change or go away",
                             name)
        if getattr(plugin, "deprecated", False):
            self.logger.warning("Loading deprecated plugin %s", name)
        try:
            self.plugins[name] = plugin(self)
        except Exception as err:  # pylint: disable=broad-except
            self.logger.error("Failed to instantiate plugin %s: %s", name, err,
                              exc_info=self.debug_flag)
        self._plugins_by_type.clear()

    def plugins_by_type(self, base_cls):
        """Loaded plugins implementing ``base_cls``, sorted by (sort_order, name).

        Memoized: this is on every hot path (every entry bound asks for generators).
        """
        try:
            return self._plugins_by_type[base_cls]
        except KeyError:
            found = sorted((p for p in self.plugins.values() if isinstance(p, base_cls)),
                           key=lambda p: (p.sort_order, p.name))
            self._plugins_by_type[base_cls] = found
            return found

    # ------------------------------------------------------------------ life cycle

    def run(self):
        """Start the server: ``_run``, load plugins, start the file monitor and threads,
        wait for the initial events, then ``_block`` until stopped.
        """
        if not self._run():
            self.shutdown()
            return False
        try:
            self._start()
            self._block()
        except BaseException:
            self.shutdown()
            raise
        return True

    def _start(self):
        """Everything between listening and serving (core.md §1 steps 3-5)."""
        self.load_plugins()
        self.fam.start()
        self.fam_thread.start()
        if self.cfile and os.path.exists(self.cfile):
            self.fam.AddMonitor(self.cfile, self)
        if self.perflog_thread is not None:
            self.perflog_thread.start()
        for plugin in self.plugins_by_type(Threaded):
            plugin.start_threads()
        if self.setup.fam_blocking:
            self.block_for_fam_events()
        self.ready.set()

    def _run(self):
        """Start listening; return immediately. Network cores override it."""
        raise NotImplementedError

    def _block(self):
        """Serve until stopped. Network cores override it."""
        raise NotImplementedError

    def shutdown(self):
        """Stop threads, the file monitor and every plugin. Safe to call twice."""
        with self._shutdown_lock:
            if self._shutdown_done:
                return
            self._shutdown_done = True
        self.logger.debug("Shutting down core")
        self.terminate.set()
        try:
            self.fam.shutdown()
        except Exception:  # pylint: disable=broad-except
            self.logger.exception("File monitor failed to shut down")
        for plugin in list(self.plugins.values()):
            try:
                plugin.shutdown()
            except Exception:  # pylint: disable=broad-except
                self.logger.exception("Plugin %s failed to shut down", plugin.name)
        for thread in (self.fam_thread, self.perflog_thread):
            if thread is not None and thread.is_alive() and \
                    thread is not threading.current_thread():
                thread.join(2)
        if plugin_helpers.get_core() is self:
            plugin_helpers.set_core(None)

    @property
    def shut_down(self):
        return self._shutdown_done

    def HandleEvent(self, event):
        """A change of bcfg2.conf: re-read the options and expire the metadata cache."""
        if event.code2str() in ("changed", "created"):
            self.reload_config()

    def reload_config(self):
        """Re-read bcfg2.conf (file change, SIGHUP) and expire the metadata cache; a
        file with a bad value is logged and the previous options stay.
        """
        self.logger.info("Re-reading %s", self.cfile)
        try:
            self.setup.reload()
        except OptionError as err:
            self.logger.error("Keeping the previous options: %s", err)
            return
        self.expire_caches_by_type(Metadata)

    def block_for_fam_events(self, handle_events=False):
        """Wait until the file monitor has no pending events (handling them here too
        when ``handle_events``, for cores without a monitor thread).
        """
        if handle_events:
            self.fam.handle_events_in_interval(0.1)
            while self.fam.pending():
                self.fam.handle_event_set(self.lock)
            return
        time.sleep(0.05)
        deadline = time.monotonic() + 60
        while self.fam.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        # the monitor thread may still be inside a batch: take the lock once to wait for it
        with self.lock:
            pass

    def _update_vcs_revision(self):
        """Ask Version plugins for the repository revision; the first answer wins."""
        for plugin in self.plugins_by_type(Version):
            try:
                self.revision = str(plugin.get_revision())
                self.logger.debug("Repository revision is now %s", self.revision)
            except Exception:  # pylint: disable=broad-except
                self.logger.error("Error getting revision from %s", plugin.name,
                                  exc_info=True)
                self.revision = "-1"
            return

    def _file_monitor_thread(self):
        """Handle file monitor events in batches, under ``lock``, until terminated."""
        while not self.terminate.is_set():
            try:
                if not self.fam.wait(0.5):
                    continue
                self._update_vcs_revision()
                self.fam.handle_event_set(self.lock)
            except Exception:  # pylint: disable=broad-except
                self.logger.exception("Error in the file monitor thread")
                self.terminate.wait(0.5)

    def _perflog_thread(self):
        """Log the timing statistics every ``[logging] performance_interval`` seconds."""
        while not self.terminate.wait(self.setup.performance_interval):
            for name, value in sorted(statistics.stats.display().items()):
                self.logger.info("Performance statistics: %s min=%.6f max=%.6f "
                                 "average=%.6f count=%d", name, *value)

    # ------------------------------------------------------------------ the hooks

    def client_run_hook(self, hook, metadata):
        """Call ``hook`` (start_client_run, end_client_run, end_statistics) on every
        ClientRunHooks plugin; errors are logged, never fatal.
        """
        start = time.perf_counter()
        try:
            for plugin in self.plugins_by_type(ClientRunHooks):
                try:
                    getattr(plugin, hook)(metadata)
                except Exception:  # pylint: disable=broad-except
                    self.logger.error("%s: error in %s hook for %s", plugin.name, hook,
                                      metadata.hostname, exc_info=True)
        finally:
            statistics.add_timing("%s:client_run_hook:%s" % (self.__class__.__name__,
                                                              hook),
                                  time.perf_counter() - start)

    @track_statistics()
    def validate_structures(self, metadata, data):
        """Run StructureValidator plugins; a ValidationError aborts the build."""
        self._validate(StructureValidator, "validate_structures", "structure",
                       metadata, data)

    @track_statistics()
    def validate_goals(self, metadata, data):
        """Run GoalValidator plugins; a ValidationError aborts the build."""
        self._validate(GoalValidator, "validate_goals", "goal", metadata, data)

    def _validate(self, interface, method, kind, metadata, data):
        """Call ``method`` of every ``interface`` plugin: a ValidationError is logged and
        raised, any other error logged and ignored (core.md §3).
        """
        for plugin in self.plugins_by_type(interface):
            try:
                getattr(plugin, method)(metadata, data)
            except ValidationError as err:
                self.logger.error("Plugin %s %s validation failed: %s", plugin.name, kind,
                                  err)
                raise
            except Exception:  # pylint: disable=broad-except
                self.logger.error("Plugin %s: unexpected %s validation failure",
                                  plugin.name, kind, exc_info=True)

    # ------------------------------------------------------------------ building

    @track_statistics()
    def GetStructures(self, metadata):
        """All structures (bundles) of a client, from every Structure plugin."""
        structures = []
        for plugin in self.plugins_by_type(Structure):
            structures.extend(plugin.BuildStructures(metadata))
        names = {s.get("name") for s in structures if s.tag in ("Bundle", "Independent")}
        missing = [b for b in sorted(metadata.bundles) if b not in names]
        if missing:
            self.logger.error("Client %s configuration missing bundles: %s",
                              metadata.hostname, ":".join(missing))
        return structures

    @track_statistics()
    def BindStructures(self, structures, metadata, config):
        """Bind every structure and append it to ``config``; a structure whose binding
        raises is logged and left out.
        """
        for structure in structures:
            try:
                self.BindStructure(structure, metadata)
                config.append(structure)
            except Exception:  # pylint: disable=broad-except
                self.logger.error("Error binding structure %s for %s",
                                  structure.get("name"), metadata.hostname, exc_info=True)

    @track_statistics()
    def BindStructure(self, structure, metadata):
        """Bind every direct child entry of one structure, in place.

        ``Bound*`` entries are complete already: the prefix is stripped. An entry that
        fails keeps its place with a ``failure`` attribute.
        """
        for entry in structure:
            tag = entry.tag
            if not isinstance(tag, str):
                continue
            if tag.startswith("Bound"):
                entry.tag = tag[5:]
                continue
            try:
                self.Bind(entry, metadata)
            except Exception as err:  # pylint: disable=broad-except
                if "failure" not in entry.attrib:
                    entry.set("failure", "bind error: %s" % err)
                if isinstance(err, PluginExecutionError):
                    self.logger.error("Failed to bind entry %s:%s for %s: %s", tag,
                                      entry.get("name"), metadata.hostname, err)
                else:
                    self.logger.error("Unexpected failure binding entry %s:%s for %s",
                                      tag, entry.get("name"), metadata.hostname,
                                      exc_info=True)

    def Bind(self, entry, metadata):
        """Bind one entry with the generator that serves it (core.md §5)."""
        altsrc = entry.attrib.pop("altsrc", None)
        if altsrc is not None:
            realname = entry.get("name")
            entry.set("name", altsrc)
            entry.set("realname", realname)
            try:
                self.Bind(entry, metadata)
                return
            except Exception as err:  # pylint: disable=broad-except
                self.logger.error("Failed to bind %s:%s with altsrc %s, trying %s: %s",
                                  entry.tag, realname, altsrc, realname, err)
                entry.attrib.pop("failure", None)
            finally:
                entry.set("name", realname)
                entry.attrib.pop("realname", None)
        generators = self.plugins_by_type(Generator)
        name = entry.get("name")
        tag = entry.tag
        glist = [gen for gen in generators if name in gen.Entries.get(tag, ())]
        if len(glist) == 1:
            return glist[0].Entries[tag][name](entry, metadata)
        if len(glist) > 1:
            names = ", ".join(gen.name for gen in glist)
            entry.set("failure", "bind error: served by multiple generators: %s" % names)
            raise PluginExecutionError("%s:%s is served by multiple generators: %s"
                                       % (tag, name, names))
        start = time.perf_counter()
        try:
            g2list = [gen for gen in generators if gen.HandlesEntry(entry, metadata)]
            if len(g2list) == 1:
                return g2list[0].HandleEntry(entry, metadata)
            entry.set("failure", "no matching generator")
            if g2list:
                raise PluginExecutionError(
                    "%s:%s is handled by multiple generators: %s" %
                    (tag, name, ", ".join(g.name for g in g2list)))
            raise PluginExecutionError("No matching generator: %s:%s" % (tag, name))
        finally:
            statistics.add_timing("%s:Bind:%s" % (self.__class__.__name__, tag),
                                  time.perf_counter() - start)

    def BuildConfiguration(self, client, metadata=None):
        """Build the complete Configuration document of one client (core.md §4).

        ``metadata``, when given, is the client's metadata already built by the caller
        (GetConfig resolves the client with metadata first); it is used instead of a
        second ``build_metadata``.
        """
        start = time.perf_counter()
        config = lxml.etree.Element("Configuration", version="2.0",
                                    revision=str(self.revision))
        if metadata is None:
            try:
                metadata = self.build_metadata(client)
            except MetadataConsistencyError:
                self.logger.error("Metadata consistency error for client %s", client)
                return lxml.etree.Element("error", type="metadata error")
        self.client_run_hook("start_client_run", metadata)
        try:
            try:
                structures = self.GetStructures(metadata)
            except Exception:  # pylint: disable=broad-except
                self.logger.error("Error in GetStructures for %s", client, exc_info=True)
                return lxml.etree.Element("error", type="structure error")
            self.validate_structures(metadata, structures)
            self._check_altsrc(structures, client)
            self.BindStructures(structures, metadata, config)
            self.validate_goals(metadata, config)
        finally:
            self.client_run_hook("end_client_run", metadata)
        sort_xml(config)
        self.logger.info("Generated config for %s in %.03f seconds", client,
                         time.perf_counter() - start)
        return config

    def _check_altsrc(self, structures, client):
        """Log the same entry asked for with different altsrc values (core.md §4 step 6)."""
        if not any(structure.find("*[@altsrc]") is not None for structure in structures):
            return
        seen = {}
        for structure in structures:
            for entry in structure:
                if not isinstance(entry.tag, str):
                    continue
                key = (entry.tag, entry.get("name"))
                altsrc = entry.get("altsrc")
                if key in seen and seen[key] != altsrc:
                    self.logger.error("Client %s has %s:%s with conflicting altsrc "
                                      "values %r and %r", client, key[0], key[1],
                                      seen[key], altsrc)
                seen.setdefault(key, altsrc)

    def GetDecisions(self, metadata, mode):
        """The decision list of a client, from every Decision plugin."""
        result = []
        for plugin in self.plugins_by_type(Decision):
            try:
                result.extend(plugin.GetDecisions(metadata, mode))
            except Exception:  # pylint: disable=broad-except
                self.logger.error("Plugin %s failed to generate decisions",
                                  plugin.name, exc_info=True)
        return result

    # ------------------------------------------------------------------ metadata

    def metadata_cache_mode(self):
        """The ``[caching] client_metadata`` mode: off, initial, cautious, aggressive."""
        return self.setup.cache_mode

    @track_statistics()
    def build_metadata(self, client_name):
        """The full metadata of a client: initial metadata plus Connector groups and data
        (core.md §8), through the metadata cache as the cache mode says.
        """
        if self.metadata is None:
            raise MetadataRuntimeError("Metadata has not been loaded yet")
        mode = self.metadata_cache_mode()
        if mode in ("cautious", "aggressive"):
            cached = self.metadata_cache.get(client_name)
            if cached is not None:
                return cached
        if mode == "initial":
            initial = self.metadata_cache.get(client_name)
            if initial is None:
                initial = self._initial_metadata(client_name)
                self.metadata_cache[client_name] = initial
            imd = _copy_metadata(initial)
        else:
            imd = self._initial_metadata(client_name)
        connectors = self.plugins_by_type(Connector)
        for conn in connectors:
            groups = conn.get_additional_groups(imd)
            names = []
            for group in groups or ():
                if isinstance(group, str):
                    names.append(group)
                else:
                    self._install_dynamic_group(conn, group)
                    names.append(group.name)
            if names:
                self.metadata.merge_additional_groups(imd, names)
        for conn in connectors:
            data = conn.get_additional_data(imd)
            self.metadata.merge_additional_data(imd, conn.name, data)
        query = getattr(imd, "query", None)
        if query is not None:
            query.by_name = self.build_metadata
        if mode in ("cautious", "aggressive"):
            self.metadata_cache[imd.hostname] = imd
        return imd

    def _initial_metadata(self, client_name):
        try:
            return self.metadata.get_initial_metadata(client_name)
        except MetadataConsistencyError as err:
            self.critical_error("Metadata consistency error for %s: %s" %
                                (client_name, err))

    def _install_dynamic_group(self, connector, group):
        """Install a Connector's dynamic group definition unless the name is taken."""
        table = getattr(self.metadata, "groups", None)
        if table is None:
            return
        existing = table.get(group.name)
        if existing is not None and existing is not group:
            self.logger.warning("%s: group %s is already defined; keeping the existing "
                                "definition", connector.name, group.name)
            return
        table[group.name] = group

    def expire_caches_by_type(self, base_cls, key=None):
        """Expire the metadata cache (whole, or one client) because data of a plugin
        type changed; the tag scheme is the one plugins use (``Metadata`` + host).
        """
        if base_cls is Metadata:
            if key is None:
                cache.expire("Metadata")
            else:
                cache.expire("Metadata", key, exact=True)

    def resolve_client(self, address, cleanup_cache=False, metadata=True):
        """``(hostname, metadata or None)`` of the client at ``address``.

        The identity established by authentication (``address.client``) wins: it is
        never re-derived from the address.
        """
        start = time.perf_counter()
        try:
            client = getattr(address, "client", None)
            if client is None:
                try:
                    client = self.metadata.resolve_client(address,
                                                          cleanup_cache=cleanup_cache)
                except MetadataConsistencyError as err:
                    self.critical_error("Client metadata resolution error for %s: %s" %
                                        (address[0], err))
                except MetadataRuntimeError as err:
                    self.critical_error("Metadata system runtime failure for %s: %s" %
                                        (address[0], err))
            if not metadata:
                return (client, None)
            try:
                return (client, self.build_metadata(client))
            except MetadataConsistencyError as err:
                # a Connector's error (the plugin's own already became a Fault)
                self.critical_error("Client metadata resolution error for %s: %s" %
                                    (address[0], err))
            except MetadataRuntimeError as err:
                self.critical_error("Metadata system runtime failure for %s: %s" %
                                    (address[0], err))
        finally:
            statistics.add_timing("%s:resolve_client" % self.__class__.__name__,
                                  time.perf_counter() - start)

    def critical_error(self, message):
        """Log ``message`` with the current traceback and raise Fault -32500."""
        self.logger.error("Critical failure: %s", message,
                          exc_info=sys.exc_info()[0] is not None)
        raise Fault(APPLICATION_ERROR, "Critical failure: %s" % message)

    @track_statistics()
    def check_acls(self, address, rmi):
        """May the client at ``address`` call ``rmi``? Two phases (core.md §7): IP
        rules first, then metadata rules for the deferred; any error denies.
        """
        plugins = self.plugins_by_type(ClientACLs)
        try:
            answers = [plugin.check_acl_ip(address, rmi) for plugin in plugins]
        except Exception:  # pylint: disable=broad-except
            self.logger.error("Unexpected IP ACL error for %s calling %s", address[0],
                              rmi, exc_info=True)
            return False
        if any(answer is False for answer in answers):
            self.logger.info("Client %s failed IP-based ACL checks for %s", address[0],
                             rmi)
            return False
        if all(answer is True for answer in answers):
            return True
        try:
            _, metadata = self.resolve_client(address)
            if all(plugin.check_acl_metadata(metadata, rmi) for plugin in plugins):
                return True
            self.logger.info("Client %s failed metadata ACL checks for %s",
                             metadata.hostname, rmi)
        except Exception:  # pylint: disable=broad-except
            self.logger.info("Client %s: ACL check for %s failed to resolve the "
                             "client; denying", address[0], rmi, exc_info=True)
        return False

    def process_statistics(self, client_name, statistics):
        """Hand an uploaded statistics document to every Statistics plugin, then run the
        end_statistics hooks.
        """
        metadata = self.build_metadata(client_name)
        stats = statistics.find("./Statistics")
        if stats is None:
            raise PluginExecutionError("Statistics document has no Statistics element")
        if stats.get("version", "") >= "2.0":
            for plugin in self.plugins_by_type(Statistics):
                try:
                    plugin.process_statistics(metadata, statistics)
                except Exception:  # pylint: disable=broad-except
                    self.logger.error("Plugin %s failed to process stats from %s",
                                      plugin.name, metadata.hostname, exc_info=True)
        self.logger.info("Client %s reported state %s", client_name, stats.get("state"))
        self.client_run_hook("end_statistics", metadata)

    @property
    def database_available(self):
        """True if a database is configured and available (not supported yet)."""
        return False

    # ------------------------------------------------------------------ RMI

    def _get_rmi_objects(self):
        """Objects whose ``__rmi__`` methods are reachable as ``Name.method``."""
        objects = {self.fam.__class__.__name__: self.fam}
        objects.update(self.plugins)
        return objects

    def _get_rmi(self):
        """``{"Plugin.method": bound method}`` for every plugin and the file monitor."""
        rmi = {}
        for pname, obj in self._get_rmi_objects().items():
            for mname in getattr(obj, "__rmi__", ()):
                func = getattr(obj, mname, None)
                if callable(func):
                    rmi["%s.%s" % (pname, mname)] = func
        return rmi

    def _resolve_exposed_method(self, method_name):
        """The exposed Core method called ``method_name``, or NoExposedMethod."""
        if method_name.startswith("_"):
            raise NoExposedMethod(method_name)
        func = getattr(self, method_name, None)
        if func is None or not callable(func) or not getattr(func, XMLRPC_MARKER, False):
            raise NoExposedMethod(method_name)
        return func

    def exposed_methods(self):
        """Names of every exposed Core method."""
        return sorted(name for name, func in inspect.getmembers(type(self))
                      if callable(func) and getattr(func, XMLRPC_MARKER, False))

    # ------------------------------------------------------------------ exposed

    @exposed
    def listMethods(self, address):
        """All exposed method names and plugin RMI names the caller may call."""
        names = self.exposed_methods() + sorted(self._get_rmi())
        return [name for name in names if self.check_acls(address, name)]

    @exposed
    def methodHelp(self, address, method_name):
        """The docstring of an exposed method ("" for RMI and unknown names)."""
        try:
            func = self._resolve_exposed_method(method_name)
        except NoExposedMethod:
            return ""
        return inspect.getdoc(func) or ""

    @exposed
    def get_statistics(self, address):
        """Timing statistics: ``{name: [min, max, mean, count]}``."""
        return statistics.stats.display()

    @exposed
    def toggle_debug(self, address):
        """Flip debug logging of the core, the file monitor and every plugin."""
        return self.set_debug(address, not self.debug_flag)

    @exposed
    def toggle_core_debug(self, address):
        """Flip debug logging of the core only."""
        return self.set_core_debug(address, not self.debug_flag)

    @exposed
    def toggle_fam_debug(self, address):
        """Deprecated: flip debug logging of the file monitor."""
        return ("fam_debug is deprecated; use toggle_debug or FileMonitor.toggle_debug. "
                "File monitor debug is now %s" % self.fam.toggle_debug())

    @exposed
    def set_debug(self, address, debug):
        """Set debug logging of the core, the file monitor and every plugin."""
        debug = parse_bool(debug)
        for plugin in self.plugins.values():
            plugin.set_debug(debug)
        self.fam.set_debug(debug)
        return self.set_core_debug(address, debug)

    @exposed
    def set_core_debug(self, address, debug):
        """Set debug logging of the core only."""
        self.debug_flag = parse_bool(debug)
        level = logging.DEBUG if self.debug_flag else logging.INFO
        logging.getLogger("bcfg2_cherry").setLevel(level)
        self.logger.setLevel(level)
        return self.debug_flag

    @exposed
    def set_fam_debug(self, address, debug):
        """Deprecated: set debug logging of the file monitor."""
        return ("fam_debug is deprecated; use set_debug or FileMonitor.set_debug. "
                "File monitor debug is now %s" % self.fam.set_debug(debug))

    @exposed
    def expire_metadata_cache(self, address, hostnames=None):
        """Expire the cached metadata of the named hosts, or of all (nil)."""
        if isinstance(hostnames, str):
            hostnames = [hostnames]
        if not hostnames:
            cache.expire("Metadata")
        else:
            for host in hostnames:
                cache.expire("Metadata", host, exact=True)
        return None

    @exposed
    @track_statistics()
    def DeclareVersion(self, address, version):
        """Record the version of the client's software; True on success."""
        client = self.resolve_client(address, metadata=False)[0]
        try:
            self.metadata.set_version(client, version)
        except (MetadataConsistencyError, MetadataRuntimeError) as err:
            self.critical_error("Unable to set version for %s: %s" % (client, err))
        return True

    @exposed
    @close_db_connection
    def GetProbes(self, address):
        """The probes document (a string) for the client."""
        client, metadata = self.resolve_client(address, cleanup_cache=True)
        try:
            probes = lxml.etree.Element("probes")
            for plugin in self.plugins_by_type(Probing):
                for probe in plugin.GetProbes(metadata):
                    probes.append(probe)
            return tostring(probes)
        except Exception as err:  # pylint: disable=broad-except
            self.critical_error("Error determining probes for %s: %s" % (client, err))

    @exposed
    @close_db_connection
    def RecvProbeData(self, address, probedata):
        """Store the output of the client's probes; True on success."""
        client, metadata = self.resolve_client(address)
        if self.metadata_cache_mode() == "cautious":
            cache.expire("Metadata", client, exact=True)
            metadata = self.build_metadata(client)
        try:
            xpdata = parse_client_xml(probedata)
        except XMLError as err:
            self.critical_error("Failed to parse probe data from client %s: %s" %
                                (client, err))
        sources = {}
        for data in xpdata:
            if not isinstance(data.tag, str):
                continue
            sources.setdefault(data.get("source"), []).append(data)
        for source, dlist in sources.items():
            plugin = self.plugins.get(source)
            if not isinstance(plugin, Probing):
                self.logger.warning("Failed to locate plugin %s for probe data from %s",
                                    source, client)
                continue
            try:
                plugin.ReceiveData(metadata, dlist)
            except Exception as err:  # pylint: disable=broad-except
                self.critical_error("Failed to process probe data from client %s: %s" %
                                    (client, err))
        return True

    @exposed
    @close_db_connection
    def AssertProfile(self, address, profile):
        """Set the client's profile (only public groups); True on success."""
        client = self.resolve_client(address, metadata=False)[0]
        try:
            self.metadata.set_profile(client, profile, address)
        except (MetadataConsistencyError, MetadataRuntimeError) as err:
            self.critical_error("Unable to assert profile for %s: %s" % (client, err))
        return True

    @exposed
    @close_db_connection
    def GetConfig(self, address):
        """The client's Configuration document, as a string."""
        client, metadata = self.resolve_client(address)
        try:
            config = self.BuildConfiguration(client, metadata=metadata)
        except MetadataConsistencyError as err:
            self.critical_error("Metadata consistency failure for %s: %s" % (client, err))
        except ValidationError as err:
            self.critical_error("Validation failed for %s: %s" % (client, err))
        return tostring(config)

    @exposed
    @close_db_connection
    def RecvStats(self, address, stats):
        """Accept the statistics the client uploads after its run; True on success."""
        client = self.resolve_client(address, metadata=False)[0]
        try:
            sdata = parse_client_xml(stats)
        except XMLError as err:
            raise Fault(1, "Failed to parse statistics from %s: %s" % (client, err)) from None
        self.process_statistics(client, sdata)
        return True

    @exposed
    @close_db_connection
    def GetDecisionList(self, address, mode):
        """The ``[tag, name]`` decision list of the client for ``mode``."""
        if mode not in ("whitelist", "blacklist"):
            raise Fault(1, "Unknown decision mode %r: expected whitelist or blacklist"
                        % (mode,))
        metadata = self.resolve_client(address)[1]
        return [list(decision) for decision in self.GetDecisions(metadata, mode)]


def _copy_metadata(imd):
    """A copy of a metadata object that connector merges can change freely."""
    copier = getattr(imd, "copy", None)
    if copier is not None:
        return copier()
    new = copy.copy(imd)
    for attr, value in vars(imd).items():
        if isinstance(value, (set, list, dict)):
            setattr(new, attr, copy.copy(value))
    return new


class NetworkCore(Core):
    """A core that listens on the network: authentication, daemonizing, privileges."""

    name = "NetworkCore"

    def __init__(self, setup):
        Core.__init__(self, setup)
        #: the CA that signs client certificates (``[communication] ca``)
        self.ca = setup.ca

    def authenticate_client(self, cert, user, password, address):
        """``(ok, client name or None)``: authenticate and say who the client is.

        The certificate is only considered when a CA is configured.
        """
        if not self.ca:
            cert = None
        if self.metadata is None:
            return (False, None)
        identify = getattr(self.metadata, "identify_connection", None)
        try:
            if identify is not None:
                client = identify(cert, user, password, address)
                return (client is not None, client)
            return (bool(self.metadata.AuthenticateConnection(cert, user, password,
                                                                address)), None)
        except Exception:  # pylint: disable=broad-except
            self.logger.error("Authentication of %s failed with an error", address[0],
                              exc_info=True)
            return (False, None)

    def authenticate(self, cert, user, password, address):
        """True if the client authenticates (Metadata.AuthenticateConnection)."""
        return self.authenticate_client(cert, user, password, address)[0]

    def run(self):
        """Daemonize when asked (``-D``), else apply the umask; then run the core."""
        if self.setup.daemon:
            piddir = os.path.dirname(os.path.abspath(self.setup.daemon))
            if not os.path.exists(piddir):
                os.makedirs(piddir)
                os.chmod(piddir, 0o755)
                uid, gid = self._run_as_ids()
                try:
                    os.chown(piddir, uid, gid)
                except OSError as err:
                    self.logger.warning("Cannot chown %s: %s", piddir, err)
            if not self._daemonize():
                return False
        else:
            os.umask(self.setup.umask)
        return Core.run(self)

    def _run_as_ids(self):
        """Numeric (uid, gid) of ``[server] user`` / ``group`` (names or numbers)."""
        import grp
        import pwd
        user, group = str(self.setup.user), str(self.setup.group)
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        return uid, gid

    def _daemonize(self):
        """Detach, write the pid file and drop privileges. Cores override it."""
        raise NotImplementedError

    def _drop_privileges(self):
        """Switch to ``[server] group`` then ``user`` (when running as root), and set
        ``HOME`` to the run-as user's home.
        """
        import pwd
        uid, gid = self._run_as_ids()
        if os.getuid() == 0:
            if gid != os.getgid():
                os.setgroups([gid])
                os.setgid(gid)
            if uid != os.getuid():
                os.setuid(uid)
        try:
            os.environ["HOME"] = pwd.getpwuid(uid).pw_dir
        except KeyError:
            pass
