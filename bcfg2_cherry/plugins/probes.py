"""Probes: scripts clients run, and what they answer (spec/repository.md §6).

``Probes/<name>`` (flat), with ``<name>.G<NN>_<group>`` and ``<name>.H_<host>``
variants; the most specific file per probe name is sent (GetProbes) with the
interpreter of its ``#!`` line. The answers (RecvProbeData) replace the client's
previous ones: ``group:NAME`` lines become groups (when ``[probes] allowed_groups``
allows them), the rest is the probe's value. Everything is stored in
``Probes/probed.xml`` (written atomically, sorted) and read back at start. As a
Connector, Probes adds the groups and ``metadata.Probes`` (probe name -> ProbeData).

Caching follows upstream's tags (``Probes``/``probedata``, ``Probes``/``probegroups``,
one key per client) so expiries reach every process; a client without stored data
is cached too (upstream re-read probed.xml and expired every client's metadata for
each such lookup, core.md §9).
"""
import json
import logging
import os
import re
import threading
import time

import lxml.etree

from bcfg2_cherry import cache
from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.helpers import (
    EDITOR_DROPPINGS, FileBacked, Specificity, best_matching, stat_key)
from bcfg2_cherry.plugin.interfaces import Connector, Metadata, Probing
from bcfg2_cherry.state import atomic_write
from bcfg2_cherry.statistics import track_statistics
from bcfg2_cherry.xml import XMLError, parse_client_xml, parse_repo_file

logger = logging.getLogger(__name__)

#: ``<name>[.G<prio>_<group>|.H_<host>]``; probe names use [0-9A-Za-z_-]
PROBE_FILE = re.compile(r"^(?P<basename>[0-9A-Za-z_\-]+)"
                        r"(?:\.(?:H_(?P<hostname>\S+)|G(?P<prio>\d+)_(?P<group>\S+)))?$")
#: what else lives in Probes/ and is no probe
NOT_PROBES = re.compile(r"^(probed\.xml|\..*\.tmp)$")
GROUP_LINE = re.compile(r"^group:\s*(?P<groupname>\S+)\s*")
BANG_LINE = re.compile(r"^#!\s*(?P<interpreter>.*)$")
DEFAULT_INTERPRETER = "/bin/sh"

_UNSET = object()


class ProbeData(str):
    """A probe's value: a string that also decodes itself on demand as XML
    (``xdata``, parsed with the client-document parser), JSON (``json``) or YAML
    (``yaml``); each is None when the value is not of that form."""

    def __new__(cls, data):
        return str.__new__(cls, data)

    def __init__(self, data):  # pylint: disable=unused-argument
        str.__init__(self)
        self._xdata = self._json = self._yaml = _UNSET

    def __reduce__(self):
        return (ProbeData, (str(self),))

    @property
    def data(self):
        """The value as a plain str (compatibility with Bcfg2 1.2)."""
        return str(self)

    @property
    def xdata(self):
        if self._xdata is _UNSET:
            try:
                self._xdata = parse_client_xml(str(self))
            except XMLError:
                self._xdata = None
        return self._xdata

    @property
    def json(self):
        if self._json is _UNSET:
            try:
                self._json = json.loads(str(self))
            except ValueError:
                self._json = None
        return self._json

    @property
    def yaml(self):
        if self._yaml is _UNSET:
            try:
                import yaml
                self._yaml = yaml.safe_load(str(self))
            except Exception:  # pylint: disable=broad-except
                self._yaml = None
        return self._yaml


class ClientProbeDataSet(dict):
    """Probe name -> ProbeData of one client, with the ``timestamp`` of the upload."""

    def __init__(self, *args, timestamp=None, **kwargs):
        dict.__init__(self, *args, **kwargs)
        self.timestamp = time.time() if timestamp is None else timestamp

    def __reduce__(self):
        return (ClientProbeDataSet, (dict(self),), {"timestamp": self.timestamp})


# -- the probe scripts ---------------------------------------------------------------

class ProbeFile(FileBacked):
    """One probe script; ``probe_name``, ``specific``, ``text``, ``interpreter``."""

    def __init__(self, path, probe_name, specific, fam=None):
        FileBacked.__init__(self, path, fam=fam)
        self.probe_name = probe_name
        self.specific = specific
        self.text = None
        self.interpreter = DEFAULT_INTERPRETER

    def Index(self):
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError as err:
            logger.error("Probes: %s is not UTF-8 text (%s); not sent", self.name, err)
            self.text = None
            return
        match = BANG_LINE.match(text.split("\n")[0])
        self.interpreter = match.group("interpreter") if match else DEFAULT_INTERPRETER
        self.text = text


class ProbeSet:
    """The scripts in ``Probes/`` (not recursive), kept current from file events."""

    def __init__(self, path, plugin_name, fam=None):
        self.path = os.path.normpath(path)
        self.plugin_name = plugin_name
        #: file name -> ProbeFile (replaced, never mutated)
        self.entries = {}
        if fam is not None:
            fam.AddMonitor(self.path, self)
        else:
            for name in sorted(os.listdir(self.path)):
                self.HandleEvent(_Exists(name))

    def HandleEvent(self, event):
        """Track probe files; probed.xml, directories and editor files are skipped."""
        action = event.code2str()
        if action == "endExist":
            return
        filename = event.filename
        if os.path.isabs(filename) and os.path.normpath(filename) == self.path:
            if action == "deleted":
                logger.warning("Probes: %s was deleted", self.path)
                self.entries = {}
            return
        name = os.path.basename(filename)
        if NOT_PROBES.match(name) or EDITOR_DROPPINGS.search(name):
            return
        path = os.path.join(self.path, name)
        if action == "deleted":
            if name in self.entries:
                entries = dict(self.entries)
                del entries[name]
                self.entries = entries
            return
        if action not in ("exists", "created", "changed"):
            return
        if os.path.isdir(path):
            logger.debug("Probes: ignoring directory %s", path)
            return
        probe = self.entries.get(name)
        if probe is None:
            probe = self._new_probe(name, path)
            if probe is None:
                return
            entries = dict(self.entries)
            entries[name] = probe
            self.entries = entries
        probe.HandleEvent()

    @staticmethod
    def _new_probe(name, path):
        match = PROBE_FILE.match(name)
        if not match:
            logger.warning("Probes: could not process file name %s; ignoring", path)
            return None
        if match.group("hostname"):
            specific = Specificity(hostname=match.group("hostname"))
            probe_name = match.group("basename")
        elif match.group("group"):
            specific = Specificity(group=match.group("group"),
                                   prio=int(match.group("prio")))
            if len(match.group("prio")) == 2:
                probe_name = match.group("basename")
            else:
                # as upstream: only two-digit priorities are split off the name
                probe_name = name
                logger.warning("Probes: %s: group priorities must have two digits "
                               "(G00-G99); this file is sent as a probe named %s",
                               path, name)
        else:
            specific = Specificity(all=True)
            probe_name = name
        return ProbeFile(path, probe_name, specific)

    def get_probe_data(self, metadata):
        """The ``probe`` elements for a client: per probe name, its best file."""
        by_name = {}
        for probe in self.entries.values():
            if probe.text is not None:
                by_name.setdefault(probe.probe_name, []).append(probe)
        result = []
        for name in sorted(by_name):
            try:
                probe = best_matching(by_name[name], metadata, what="probe %s " % name)
            except PluginExecutionError:
                continue
            element = lxml.etree.Element("probe", name=name, source=self.plugin_name,
                                         interpreter=probe.interpreter)
            try:
                element.text = probe.text
            except ValueError as err:
                logger.error("Probes: %s cannot be sent in XML (%s); skipped",
                             probe.name, err)
                continue
            result.append(element)
        return result


class _Exists:
    """An ``exists`` event for a file name (used when there is no file monitor)."""

    def __init__(self, filename):
        self.filename = filename

    @staticmethod
    def code2str():
        return "exists"


# -- the stored answers ----------------------------------------------------------------

class _Record:
    __slots__ = ("data", "groups")

    def __init__(self, data, groups):
        self.data = data
        self.groups = groups


class XMLProbeStore:
    """Probe answers of every client, kept in ``probed.xml``.

    ``records`` (host -> data and groups) is what the file holds; the tagged caches
    say what a client's metadata was last given, so that an expiry of
    ``("Probes", "probedata", host)`` (e.g. forwarded from another process) makes
    the next lookup re-read probed.xml when it changed on disk.
    """

    def __init__(self, plugin, path):
        self.plugin = plugin
        self.filename = os.path.join(path, "probed.xml")
        self.records = {}
        self._datacache = cache.Cache("Probes", "probedata")
        self._groupcache = cache.Cache("Probes", "probegroups")
        self._lock = threading.RLock()
        self._stat = None
        self.load()

    def load(self):
        """(Re)read probed.xml (creating it if missing) and expire all metadata."""
        with self._lock:
            if not os.path.exists(self.filename):
                self.records = {}
                self.commit()
            else:
                self._read()
            self._datacache.expire()
            self._groupcache.expire()
        self.plugin.core.expire_caches_by_type(Metadata)

    def _read(self):
        stat = stat_key(self.filename)
        try:
            root = parse_repo_file(self.filename).getroot()
        except XMLError as err:
            aside = "%s.broken-%d" % (self.filename, int(time.time()))
            logger.error("Probes: failed to read probe data: %s; moving it to %s and "
                         "starting without stored probe data", err, aside)
            try:
                os.rename(self.filename, aside)
            except OSError as rename_err:
                logger.error("Probes: cannot move %s aside: %s", self.filename,
                             rename_err)
            self.records = {}
            self._stat = None
            return
        records = {}
        for client in root:
            if client.tag != "Client" or not client.get("name"):
                continue
            try:
                timestamp = float(client.get("timestamp"))
            except (TypeError, ValueError):
                timestamp = None
            data = ClientProbeDataSet(timestamp=timestamp)
            groups = []
            for item in client:
                if item.tag == "Probe" and item.get("name") is not None:
                    data[item.get("name")] = ProbeData(item.get("value", ""))
                elif item.tag == "Group" and item.get("name"):
                    groups.append(item.get("name"))
            records[client.get("name")] = _Record(data, groups)
        self.records = records
        self._stat = stat

    def commit(self):
        """Write every client's data to probed.xml, atomically, sorted."""
        top = lxml.etree.Element("Probed")
        for host, record in sorted(self.records.items()):
            client = lxml.etree.SubElement(top, "Client", name=host,
                                           timestamp=str(int(record.data.timestamp)))
            for probe in sorted(record.data):
                lxml.etree.SubElement(client, "Probe", name=probe,
                                      value=str(record.data[probe]))
            for group in sorted(record.groups):
                lxml.etree.SubElement(client, "Group", name=group)
        try:
            atomic_write(self.filename, lxml.etree.tostring(top, pretty_print=True))
        except OSError as err:
            logger.error("Probes: failed to write %s: %s", self.filename, err)
            return
        self._stat = stat_key(self.filename)

    def _lookup(self, hostname):
        """Fill both caches for ``hostname`` (re-reading probed.xml if it changed)."""
        with self._lock:
            if hostname in self._datacache and hostname in self._groupcache:
                return
            if stat_key(self.filename) != self._stat:
                logger.info("Probes: %s changed on disk; re-reading it", self.filename)
                self.load()
            record = self.records.get(hostname)
            if record is None:
                self._datacache[hostname] = ClientProbeDataSet(timestamp=0)
                self._groupcache[hostname] = []
            else:
                self._datacache[hostname] = record.data
                self._groupcache[hostname] = list(record.groups)

    def get_groups(self, hostname):
        groups = self._groupcache.get(hostname)
        if groups is None:
            self._lookup(hostname)
            groups = self._groupcache.get(hostname, [])
        return groups

    def get_data(self, hostname):
        data = self._datacache.get(hostname)
        if data is None:
            self._lookup(hostname)
            data = self._datacache.get(hostname, ClientProbeDataSet(timestamp=0))
        return data

    def set(self, hostname, data, groups):
        """Replace a client's data and groups; returns whether its groups changed."""
        groups = sorted(set(groups))
        with self._lock:
            old = self.records.get(hostname)
            changed = (old.groups if old is not None else []) != groups
            records = dict(self.records)
            records[hostname] = _Record(data, groups)
            self.records = records
            self.commit()
            cache.expire("Probes", "probedata", hostname, exact=True)
            cache.expire("Probes", "probegroups", hostname, exact=True)
            self._datacache[hostname] = data
            self._groupcache[hostname] = list(groups)
        return changed


class Probes(Plugin, Probing, Connector):
    """Sends probes, stores their answers and adds them to client metadata."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        if core.setup.getbool("probes", "use_database", False):
            logger.error("Probes: [probes] use_database is not supported; using %s",
                         os.path.join(self.data, "probed.xml"))
        self.probes = ProbeSet(self.data, self.name, fam=core.fam)
        self.probestore = XMLProbeStore(self, self.data)

    # -- Probing

    @track_statistics()
    def GetProbes(self, metadata):
        """The client's ``probe`` elements."""
        return self.probes.get_probe_data(metadata)

    def allowed_groups(self):
        """The compiled ``[probes] allowed_groups`` patterns (anchored)."""
        raw = self.core.setup.get("probes", "allowed_groups", ".*")
        patterns = []
        for text in raw.split():
            try:
                patterns.append(re.compile("^" + text + "$"))
            except re.error as err:
                logger.error("Probes: [probes] allowed_groups: %r is not a regular "
                             "expression (%s); ignored", text, err)
        return patterns

    def ReceiveData(self, metadata, datalist):
        """Replace the client's probe data and groups with this upload's."""
        allowed = self.allowed_groups()
        groups = set()
        data = ClientProbeDataSet()
        for item in datalist:
            name = item.get("name")
            if name is None:
                logger.warning("Probes: probe data without a name from %s; ignored",
                               metadata.hostname)
                continue
            item_groups, data[name] = self._receive_item(metadata, item, allowed)
            groups.update(item_groups)
        changed = self.probestore.set(metadata.hostname, data, groups)
        if changed or len(data):
            self.core.expire_caches_by_type(Metadata, key=metadata.hostname)

    def _receive_item(self, metadata, item, allowed):
        """``(groups, ProbeData)`` of one ``probe-data`` element."""
        if item.text is None:
            logger.info("Probes: got null response to probe %s from %s",
                        item.get("name"), metadata.hostname)
            return [], ProbeData("")
        groups = []
        lines = []
        for line in item.text.split("\n"):
            match = GROUP_LINE.match(line)
            if match is None:
                lines.append(line)
                continue
            group = match.group("groupname")
            if any(pattern.match(group) for pattern in allowed):
                groups.append(group)
            else:
                logger.warning("Probes: disallowed group assignment %s from %s", group,
                               metadata.hostname)
        return groups, ProbeData("\n".join(lines))

    # -- Connector

    def get_additional_groups(self, metadata):
        return list(self.probestore.get_groups(metadata.hostname))

    def get_additional_data(self, metadata):
        return self.probestore.get_data(metadata.hostname)
