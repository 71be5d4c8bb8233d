"""The plugin interfaces: a plugin mixes in the roles it plays.

The Core finds plugins by interface (``Core.plugins_by_type``) and calls the methods
below at the points described in spec/core.md §3.
"""
import json
import logging
import os
import queue
import threading

from bcfg2_cherry.plugin.base import Plugin

logger = logging.getLogger(__name__)


class Generator:
    """Binds entries: fills in the concrete data of an abstract entry.

    ``self.Entries`` maps ``tag -> {name: callable(entry, metadata)}`` (the fast path);
    ``HandlesEntry``/``HandleEntry`` serve entries the plugin cannot list in advance.
    """

    def HandlesEntry(self, entry, metadata):
        """True when this generator can bind ``entry`` for this client (slow path)."""
        return False

    def HandleEntry(self, entry, metadata):
        """Bind ``entry`` in place (slow path); raise PluginExecutionError on failure."""
        return entry


class Structure:
    """Lists the abstract entries a client gets, as Bundle/Independent elements."""

    def BuildStructures(self, metadata):
        raise NotImplementedError


class Metadata:
    """Knows the clients: identity, groups, profiles, authentication."""

    def viz(self, hosts, bundles, key, only_client, colors):
        raise NotImplementedError

    def set_version(self, client, version):
        raise NotImplementedError

    def set_profile(self, client, profile, address):
        raise NotImplementedError

    def resolve_client(self, address, cleanup_cache=False):
        raise NotImplementedError

    def AuthenticateConnection(self, cert, user, password, address):
        raise NotImplementedError

    def get_initial_metadata(self, client_name):
        raise NotImplementedError

    def merge_additional_data(self, imd, source, data):
        raise NotImplementedError

    def merge_additional_groups(self, imd, groups):
        raise NotImplementedError

    def update_client_list(self):
        """Re-read the client list (database mode); nothing to do for clients.xml."""


class Connector:
    """Adds groups and data to a client's metadata."""

    def get_additional_groups(self, metadata):
        """Group names (str) or dynamic group objects (with ``.name``) for this client."""
        return []

    def get_additional_data(self, metadata):
        """Anything; it becomes ``metadata.<PluginName>``."""
        return {}


class Probing:
    """Hands probes to clients and receives their output."""

    def GetProbes(self, metadata):
        """A list of ``probe`` elements for this client."""
        raise NotImplementedError

    def ReceiveData(self, metadata, datalist):
        """Store the ``probe-data`` elements a client sent (all of this plugin's)."""
        raise NotImplementedError


class Statistics(Plugin):
    """Receives the statistics a client uploads after its run."""

    def process_statistics(self, client, xdata):
        raise NotImplementedError


class Threaded:
    """A plugin with threads of its own, started once after daemonizing."""

    def start_threads(self):
        raise NotImplementedError


class ThreadedStatistics(Statistics, Threaded, threading.Thread):
    """Statistics handled in a thread of their own, from a bounded queue.

    What is still queued at shutdown is saved (as JSON) to
    ``<repository>/etc/<Name>.pending`` and reloaded at the next start, so no upload is
    lost across a restart.
    """

    max_queue = 100000

    def __init__(self, core):
        Statistics.__init__(self, core)
        threading.Thread.__init__(self, name=self.name, daemon=True)
        self.work_queue = queue.Queue(self.max_queue)
        self.pending_file = os.path.join(core.setup.repository, "etc",
                                         "%s.pending" % self.name)

    def start_threads(self):
        self._load()
        self.start()

    def _save(self):
        items = []
        while True:
            try:
                metadata, xdata = self.work_queue.get_nowait()
            except queue.Empty:
                break
            items.append((metadata.hostname, xdata))
        if not items:
            return
        from bcfg2_cherry.xml import tostring
        from bcfg2_cherry.state import atomic_write
        data = json.dumps([[host, tostring(xdata)] for host, xdata in items])
        os.makedirs(os.path.dirname(self.pending_file), exist_ok=True)
        atomic_write(self.pending_file, data)

    def _load(self):
        if not os.path.exists(self.pending_file):
            return
        from bcfg2_cherry.xml import parse_client_xml
        try:
            with open(self.pending_file, encoding="utf-8") as fh:
                items = json.load(fh)
            for host, text in items:
                metadata = self.core.build_metadata(host)
                self.work_queue.put_nowait((metadata, parse_client_xml(text)))
            os.unlink(self.pending_file)
        except Exception:  # pylint: disable=broad-except
            self.logger.exception("%s: cannot reload pending statistics from %s",
                                  self.name, self.pending_file)

    def run(self):
        while not self.core.terminate.is_set():
            try:
                metadata, xdata = self.work_queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.handle_statistic(metadata, xdata)
            except Exception:  # pylint: disable=broad-except
                self.logger.exception("%s: failed to handle statistics of %s",
                                      self.name, metadata.hostname)

    def shutdown(self):
        Statistics.shutdown(self)
        self._save()

    def process_statistics(self, metadata, data):
        try:
            self.work_queue.put_nowait((metadata, data))
        except queue.Full:
            self.logger.warning("%s: queue full, dropping statistics of %s",
                                self.name, metadata.hostname)

    def handle_statistic(self, metadata, data):
        raise NotImplementedError


class PullSource:
    """Supplies current client entries to ``bcfg2-admin pull``."""

    def GetExtra(self, client):
        return []

    def GetCurrentEntry(self, client, e_type, e_name):
        raise NotImplementedError


class PullTarget:
    """Accepts entries pulled from a client."""

    def AcceptChoices(self, entry, metadata):
        raise NotImplementedError

    def AcceptPullData(self, specific, new_entry, verbose):
        raise NotImplementedError


class Decision:
    """Supplies whitelist/blacklist decisions (GetDecisionList)."""

    def GetDecisions(self, metadata, mode):
        """A list of ``(entry tag, entry name)`` tuples."""
        raise NotImplementedError


class StructureValidator:
    """Checks or rewrites the structures before binding (in place)."""

    def validate_structures(self, metadata, structures):
        raise NotImplementedError


class GoalValidator:
    """Checks or rewrites the bound configuration (in place)."""

    def validate_goals(self, metadata, config):
        raise NotImplementedError


class Version(Plugin):
    """Reports the revision of the repository (sent as ``Configuration/@revision``)."""

    __rmi__ = Plugin.__rmi__ + ["get_revision"]
    __vcs_metadata_path__ = None

    def __init__(self, core):
        Plugin.__init__(self, core)
        self.vcs_root = core.setup.vcs_root
        if self.__vcs_metadata_path__ and not os.path.exists(
                os.path.join(self.vcs_root, self.__vcs_metadata_path__)):
            from bcfg2_cherry.plugin.exceptions import PluginInitError
            raise PluginInitError("%s is not a %s checkout" % (self.vcs_root, self.name))

    def get_revision(self):
        raise NotImplementedError


class ClientRunHooks:
    """Called at the start and end of a client run and after its statistics."""

    def start_client_run(self, metadata):
        pass

    def end_client_run(self, metadata):
        pass

    def end_statistics(self, metadata):
        pass


class ClientACLs:
    """Decides which client may call which method (spec/core.md §7)."""

    def check_acl_ip(self, address, rmi):
        """True (allow), False (deny) or None (defer to check_acl_metadata)."""
        return True

    def check_acl_metadata(self, metadata, rmi):
        return True


class TemplateDataProvider:
    """Adds variables to every text template and XML template render."""

    def get_template_data(self, entry, metadata, template):
        return {}

    def get_xml_template_data(self, structfile, metadata):
        return {}
