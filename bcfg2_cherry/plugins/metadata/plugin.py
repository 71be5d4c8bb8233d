"""The Metadata plugin: who a client is, its groups and profile, whether it may
connect, and the write-back of profiles and versions (spec/repository.md §1).
"""
import collections
import hmac
import logging
import os
import socket
import threading
import time

from bcfg2_cherry.bounded import bounded_call
from bcfg2_cherry import cache
from bcfg2_cherry.plugin import interfaces
from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import (
    MetadataConsistencyError,
    MetadataRuntimeError,
    PluginInitError,
)
from bcfg2_cherry.plugin.helpers import XMLFileBacked
from bcfg2_cherry.plugins.metadata.clients import (
    AUTH_MODES,
    ClientsData,
    clients_xml_lock,
    edit_client,
    normalize_address,
    process_lock,
)
from bcfg2_cherry.plugins.metadata.groups import GroupsData
from bcfg2_cherry.plugins.metadata.model import ClientMetadata, MetadataQuery
from bcfg2_cherry.state import atomic_write
from bcfg2_cherry.xml import XMLError

logger = logging.getLogger(__name__)

#: seconds a reverse DNS look-up of a client address may take (a slow resolver must
#: not hold a request thread for long)
REVERSE_DNS_TIMEOUT = 5.0

#: seconds a user-name identification is remembered for its (ip, port)
SESSION_TTL = 90
#: past this many session entries, expired ones are purged on insert
SESSION_PURGE_SIZE = 4096
#: at most this many (client, group) category warnings are remembered
MAX_WARNED = 100000


def _signature(path):
    """What changes whenever the file is rewritten (atomic writes change the inode)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _same_secret(given, expected):
    """Constant-time comparison of two passwords; empty or missing never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(str(given).encode("utf-8"), str(expected).encode("utf-8"))


def certificate_names(cert):
    """``(commonName or None, [DNS subjectAltNames])`` of a certificate as
    ``ssl.SSLSocket.getpeercert()`` returns it."""
    common_name = None
    for rdn in cert.get("subject", ()) or ():
        for field, value in rdn:
            if field == "commonName" and common_name is None:
                common_name = value
    alt = [value for kind, value in cert.get("subjectAltName", ()) or ()
           if kind == "DNS"]
    return common_name, alt


class _MetadataFile(XMLFileBacked):
    """groups.xml or clients.xml: (re)loaded on file events, the tables built by
    ``on_index``; a broken file keeps the last good tables.

    Loads happen under ``lock`` so a writer's immediate reload and the file
    monitor's reload never interleave; an event for a version already loaded (our
    own write) is skipped.
    """

    def __init__(self, path, fam, on_index, lock):
        self._on_index = on_index
        self._lock = lock
        self._loaded_signature = None
        XMLFileBacked.__init__(self, path, fam=fam, should_monitor=True)

    def load(self):
        with self._lock:
            signature = _signature(self.name)
            ok = XMLFileBacked.load(self)
            if ok:
                self._loaded_signature = signature
                self._extra_signatures = {path: _signature(path) for path in self.extras}
            return ok

    def changed_on_disk(self):
        """True if the file or a file it includes changed since it was loaded."""
        if _signature(self.name) != self._loaded_signature:
            return True
        return any(_signature(path) != sig for path, sig in
                   getattr(self, "_extra_signatures", {}).items())

    def HandleEvent(self, event=None):
        if (event is not None and self.loaded
                and event.code2str() in ("exists", "created", "changed")
                and os.path.abspath(event.filename) == os.path.abspath(self.name)
                and _signature(self.name) == self._loaded_signature):
            return
        XMLFileBacked.HandleEvent(self, event)

    def Index(self):
        self._on_index(self)


class Metadata(Plugin, interfaces.Metadata, interfaces.ClientRunHooks):
    """Clients, groups and profiles from ``Metadata/clients.xml`` and ``groups.xml``.

    Until both files have been read every request fails with MetadataRuntimeError
    ("Metadata has not been read yet"). Both reload on change; a broken file logs one
    error and the last good data keeps serving.
    """

    sort_order = 500
    __rmi__ = Plugin.__rmi__ + ["list_clients", "remove_client", "add_client"]

    def __init__(self, core):
        Plugin.__init__(self, core)
        if core.setup.getbool("metadata", "use_database", False):
            raise PluginInitError(
                "[metadata] use_database = true: keeping clients in a database is not "
                "supported yet; remove the option (or set it to false) to use "
                "Metadata/clients.xml")
        self.groups_path = os.path.join(self.data, "groups.xml")
        self.clients_path = os.path.join(self.data, "clients.xml")
        for path, tag in ((self.groups_path, "Groups"), (self.clients_path, "Clients")):
            if not os.path.exists(path):
                logger.warning("Metadata: %s does not exist, creating it empty",
                                    path)
                atomic_write(path, "<%s/>\n" % tag)
        #: name -> group object (MetadataGroup, or a Connector's dynamic group)
        self.groups = {}
        #: the default group's name, or None
        self.default = None
        self._groups_data = None
        self._clients_data = None
        #: (ip, port) -> (time, client, user) of user-name identifications
        self.session_cache = collections.OrderedDict()
        self._session_lock = threading.Lock()
        self._warned = set()
        self.query = MetadataQuery(core.build_metadata, self.list_clients,
                                   self.get_client_names_by_groups,
                                   self.get_client_names_by_profiles,
                                   self.get_all_group_names,
                                   self.get_all_groups_in_category)
        self.groups_file = _MetadataFile(self.groups_path, self.fam, self._index_groups,
                                         threading.RLock())
        self.clients_file = _MetadataFile(self.clients_path, self.fam,
                                          self._index_clients,
                                          process_lock(self.clients_path))

    # ------------------------------------------------------------------ loading

    def _index_groups(self, xmlfile):
        data = GroupsData(xmlfile.xdata, source=xmlfile.name)
        self._groups_data = data
        self.groups = dict(data.groups)
        self.default = data.default
        self._warned = set()
        self._check_profiles()
        cache.expire("Metadata")
        self.debug_log("Metadata: read %s: %d groups, default %s", xmlfile.name,
                       len(data.groups), data.default)

    def _index_clients(self, xmlfile):
        data = ClientsData(xmlfile.xdata, source=xmlfile.name)
        self._clients_data = data
        self._warned = set()
        self._check_profiles()
        cache.expire("Metadata")
        self.debug_log("Metadata: read %s: %d clients", xmlfile.name, len(data.clients))

    def _check_profiles(self):
        """Warn about clients whose clients.xml profile is not a profile group."""
        gdata, cdata = self._groups_data, self._clients_data
        if gdata is None or cdata is None:
            return
        for client in cdata.clients:
            profile = cdata.profiles.get(client)
            if profile is None:
                continue
            group = gdata.groups.get(profile)
            if group is None:
                logger.warning("Metadata: %s has nonexistent profile group %s",
                                    client, profile)
            elif not group.is_profile:
                logger.warning("Metadata: %s set as profile for %s, but is not a "
                                    "profile group", profile, client)

    @property
    def loaded(self):
        """True once both groups.xml and clients.xml have been read."""
        return self._groups_data is not None and self._clients_data is not None

    def _data(self):
        """``(GroupsData, ClientsData)``, or MetadataRuntimeError before both loaded."""
        gdata, cdata = self._groups_data, self._clients_data
        if gdata is None or cdata is None:
            raise MetadataRuntimeError("Metadata has not been read yet")
        return gdata, cdata

    # ------------------------------------------------------------------ writing

    def _edit(self, name, update=None, create=None, remove=False):
        """Edit clients.xml on disk under the lock and reload the tables at once."""
        try:
            with clients_xml_lock(self.clients_path):
                result = edit_client(self.clients_path, name, update=update,
                                     create=create, remove=remove,
                                     included=list(self.clients_file.extras))
                if result != "unchanged":
                    self.clients_file.load()
        except KeyError:
            raise MetadataConsistencyError("Client %s does not exist" % name) from None
        except (XMLError, OSError) as err:
            logger.error("Metadata: cannot update client %s in %s: %s", name,
                              self.clients_path, err)
            raise MetadataRuntimeError("Cannot update client %s in clients.xml: %s"
                                       % (name, err)) from None
        if result == "created":
            logger.info("Metadata: added client %s (%s)", name,
                             ", ".join("%s=%s" % kv for kv in (create or {}).items()))
        elif result != "unchanged":
            logger.info("Metadata: client %s %s (%s)", name, result,
                             ", ".join("%s=%s" % kv for kv in (update or {}).items()))
        return result

    def add_client(self, client_name, attribs=None):
        """Add ``<Client name=...>`` with ``attribs`` to clients.xml; False if the
        client (or an alias of that name) exists already, True when added."""
        self._data()
        name = client_name.strip().lower()
        attribs = dict(attribs or {})
        attribs.pop("name", None)
        return self._edit(name, create=attribs) == "created"

    def update_client(self, client_name, attribs):
        """Set attributes of an existing client's element (None removes one)."""
        self._data()
        self._edit(client_name.strip().lower(), update=dict(attribs))
        return True

    def remove_client(self, client_name):
        """Remove a client's element from clients.xml (or the file that holds it)."""
        self._data()
        self._edit(client_name.strip().lower(), remove=True)
        return True

    def update_client_list(self):
        """Re-read clients.xml now if another process rewrote it (the multiprocessing
        core's children call this before each render, so a profile the parent has just
        set is used at once instead of after the next file event)."""
        if self._clients_data is not None and self.clients_file.changed_on_disk():
            self.clients_file.load()

    def list_clients(self):
        """Names of all clients in clients.xml, in document order."""
        cdata = self._clients_data
        return list(cdata.clients) if cdata is not None else []

    def set_profile(self, client, profile, address, require_public=True):
        """Make ``profile`` the client's profile (AssertProfile), creating the client
        when new: with ``uuid`` and ``address`` when it identified itself by user
        name. Only public groups unless ``require_public`` is False.
        """
        _, cdata = self._data()
        logger.info("Asserting client %s profile to %s", client, profile)
        group = self.groups.get(profile)
        if group is None:
            raise MetadataConsistencyError("Profile group %s does not exist" % profile)
        if require_public and not getattr(group, "is_public", False):
            raise MetadataConsistencyError("Cannot set client %s to private group %s"
                                           % (client, profile))
        client = cdata.canonical(client)
        if client in cdata.profiles:
            if cdata.profiles[client] != profile:
                logger.info("Changing %s profile from %s to %s", client,
                                 cdata.profiles[client], profile)
                self._edit(client, update={"profile": profile})
            return
        create = {"profile": profile}
        session = self._session_get(address)
        if session is not None and session[0] == client:
            create = {"uuid": session[1], "profile": profile,
                      "address": normalize_address(address[0])}
        self._edit(client, create=create, update={"profile": profile})

    def set_version(self, client, version):
        """Record the client's version (DeclareVersion), creating it when new."""
        gdata, cdata = self._data()
        client = cdata.canonical(client)
        version = None if version is None else str(version)
        if client not in cdata.profiles:
            if not gdata.default:
                raise MetadataConsistencyError(
                    "Cannot add new client %s; no default group set" % client)
            self._edit(client, create={"profile": gdata.default, "version": version},
                       update={"version": version})
            return
        if version is not None and cdata.versions.get(client) != version:
            logger.info("Setting client %s version to %s", client, version)
            self._edit(client, update={"version": version})

    def end_statistics(self, metadata):
        """A ``bootstrap`` client switches to certificate authentication after its
        first statistics upload."""
        cdata = self._clients_data
        if cdata is None:
            return
        client = metadata.hostname
        if cdata.auth.get(client, self._global_auth()) == "bootstrap":
            logger.info("Metadata: bootstrap client %s now authenticates by "
                             "certificate", client)
            self._edit(client, update={"auth": "cert"})

    # ------------------------------------------------------------------ identity

    def _global_auth(self):
        mode = getattr(self.core.setup, "authentication", None) or "cert+password"
        return mode if mode in AUTH_MODES else "cert+password"

    def _session_put(self, address, client, user):
        key = tuple(address[:2])
        now = time.time()
        with self._session_lock:
            cache = self.session_cache
            cache[key] = (now, client, user)
            cache.move_to_end(key)  # oldest first
            if len(cache) > SESSION_PURGE_SIZE:
                while cache:
                    oldest = next(iter(cache))
                    if now - cache[oldest][0] < SESSION_TTL:
                        break
                    del cache[oldest]

    def _session_get(self, address, cleanup=False):
        """``(client, user)`` remembered for this (ip, port), if younger than 90 s."""
        if address is None or len(address) < 2:
            return None
        key = tuple(address[:2])
        now = time.time()
        with self._session_lock:
            if cleanup:
                for old in [k for k, v in self.session_cache.items()
                            if k[0] == key[0] and now - v[0] >= SESSION_TTL]:
                    del self.session_cache[old]
            entry = self.session_cache.get(key)
        if entry is None or now - entry[0] >= SESSION_TTL:
            return None
        return entry[1], entry[2]

    def _reverse_lookup(self, cdata, ip):
        try:
            name = bounded_call(socket.gethostbyaddr, (ip,), REVERSE_DNS_TIMEOUT,
                                name="Metadata-gethostbyaddr")[0]
        except (OSError, UnicodeError) as err:
            raise MetadataConsistencyError("Address resolution error for %s: %s"
                                           % (ip, err)) from None
        return cdata.canonical(name)

    def _resolve_address(self, cdata, address):
        """The client an address belongs to: clients.xml, else reverse DNS."""
        ip = normalize_address(address[0])
        owners = cdata.addresses.get(ip)
        if owners:
            if len(owners) != 1:
                raise MetadataConsistencyError(
                    "Address %s has multiple reverse assignments; a uuid must be used"
                    % ip)
            return owners[0]
        return self._reverse_lookup(cdata, ip)

    def resolve_client(self, address, cleanup_cache=False):
        """The client name at ``address`` (an (ip, port) pair): a recent user-name
        identification of that (ip, port), else clients.xml addresses, else reverse
        DNS (lower-cased, alias mapped). MetadataConsistencyError when none works.
        """
        _, cdata = self._data()
        session = self._session_get(address, cleanup=cleanup_cache)
        if session is not None:
            return session[0]
        try:
            return self._resolve_address(cdata, address)
        except MetadataConsistencyError as err:
            logger.error("Metadata: %s", err)
            raise

    def _address_belongs(self, cdata, client, address):
        if client in cdata.floating:
            return True
        ip = normalize_address(address[0])
        owners = cdata.addresses.get(ip)
        if owners:
            if client in owners:
                return True
            logger.error("Got request for non-float client %s from %s", client, ip)
            return False
        try:
            resolved = self._reverse_lookup(cdata, ip)
        except MetadataConsistencyError as err:
            logger.error("Client %s: %s", client, err)
            return False
        if resolved == client:
            return True
        logger.error("Got request for %s from incorrect address %s (resolves to "
                          "%s)", client, ip, resolved)
        return False

    def _client_from_certificate(self, cdata, cert, user):
        common_name, alt_names = certificate_names(cert)
        names = [cdata.canonical(n) for n in ([common_name] if common_name else [])
                 + alt_names]
        if not names:
            return None
        if user and user != "root":
            wanted = cdata.uuids.get(user, cdata.canonical(user))
            if wanted in names:
                return wanted
        return names[0]

    def identify_connection(self, cert, user, password, address):
        """Who is connecting, or None if the credentials do not authenticate
        (spec/repository.md §1.6). ``cert`` is the verified peer certificate (a
        ``getpeercert()`` dict) or None; ``user`` "root" means "identify me by address".
        """
        cdata = self._clients_data
        if not self.loaded:
            logger.error("Refusing %s: Metadata has not been read yet", address[0])
            return None
        if isinstance(user, bytes):
            user = user.decode("utf-8", "replace")
        user = (user or "root").strip()
        if user != "root":
            user = user.lower()
        if cert:
            method = "cert"
            client = self._client_from_certificate(cdata, cert, user)
            if client is None:
                logger.error("Refusing %s: its certificate names no client",
                                  address[0])
                return None
        elif user == "root":
            method = "address"
            try:
                client = self._resolve_address(cdata, address)
            except MetadataConsistencyError as err:
                logger.error("Client %s failed to resolve: %s", address[0], err)
                return None
        else:
            method = "uuid"
            client = cdata.uuids.get(user) or cdata.canonical(user)
        mode = cdata.auth.get(client, self._global_auth())
        if mode == "cert" and method != "cert":
            logger.error("Client %s does not provide a certificate, but only "
                              "certificate authentication is allowed", client)
            return None
        if method != "uuid" and not self._address_belongs(cdata, client, address):
            return None
        if method == "cert" and mode in ("cert", "bootstrap"):
            if client in cdata.floating:
                self._session_put(address, client, user)
            self.debug_log("Client %s certificate validates", client)
            return client
        own = cdata.passwords.get(client)
        if client in cdata.secure:
            if not own:
                logger.error("Client %s is in secure mode but has no password",
                                  client)
                return None
            allowed = [own]
        else:
            allowed = [self.core.setup.password, own]
        if not any(_same_secret(password, secret) for secret in allowed):
            logger.error("Client %s (%s) failed to use an allowed password%s",
                              client, address[0],
                              " (secure mode: only its own)" if client in cdata.secure
                              else "")
            return None
        if user != "root":
            self._session_put(address, client, user)
        self.debug_log("Client %s authenticated successfully", client)
        return client

    def AuthenticateConnection(self, cert, user, password, address):
        """True if the credentials authenticate a client (see identify_connection)."""
        return self.identify_connection(cert, user, password, address) is not None

    # ------------------------------------------------------------------ metadata

    def _warn_category(self, client, group, category, holder):
        key = (client, group)
        if key in self._warned:
            return
        if len(self._warned) > MAX_WARNED:
            self._warned.clear()
        self._warned.add(key)
        logger.warning("%s: Group %s suppressed by category %s; %s already a "
                            "member of %s", self.name, group, category, client, holder)

    def _claim(self, client, name, groups, categories):
        """Add ``name`` unless its category is taken; True when added."""
        group = self.groups.get(name)
        category = getattr(group, "category", None) if group is not None else None
        if category:
            if category in categories and categories[category] != name:
                self._warn_category(client, name, category, categories[category])
                return False
            categories[category] = name
        groups.add(name)
        return True

    def _bundles(self, groups):
        bundles = set()
        for name in groups:
            group = self.groups.get(name)
            if group is not None:
                bundles.update(getattr(group, "bundles", ()) or ())
        return bundles

    def _is_profile(self, name):
        return bool(getattr(self.groups.get(name), "is_profile", False))

    def get_initial_metadata(self, client_name):
        """The metadata of a client from clients.xml and groups.xml alone (§1.3); an
        unknown client is added with the default profile (MetadataConsistencyError
        when there is no default group)."""
        gdata, cdata = self._data()
        client = cdata.canonical(client_name)
        if client not in cdata.profiles:
            if not gdata.default:
                raise MetadataConsistencyError(
                    "Cannot add new client %s; no default group set" % client)
            logger.info("Metadata: adding new client %s with default profile %s",
                             client, gdata.default)
            self._edit(client, create={"profile": gdata.default})
            gdata, cdata = self._data()
        initial = cdata.profiles.get(client, gdata.default)
        groups, categories = set(), {}
        profile = None
        if initial and self._claim(client, initial, groups, categories) and \
                self._is_profile(initial):
            profile = initial
        gdata.resolve(client, groups, categories, self.groups, self._warn_category)
        if not groups and gdata.default:
            if self._claim(client, gdata.default, groups, categories) and \
                    self._is_profile(gdata.default):
                profile = gdata.default
            gdata.resolve(client, groups, categories, self.groups, self._warn_category)
        if not profile:
            profiles = sorted(name for name in groups if self._is_profile(name))
            if profiles:
                profile = profiles[0]
        addresses = set(cdata.raddresses.get(client, ()))
        return ClientMetadata(client, profile, groups, self._bundles(groups),
                              set(cdata.raliases.get(client, ())), addresses,
                              categories, cdata.client_uuid.get(client),
                              cdata.passwords.get(client), cdata.versions.get(client),
                              self.query)

    def merge_additional_groups(self, imd, groups):
        """Add a Connector's groups (category rules apply), re-resolve, recompute the
        bundles; a client still without a profile takes the first profile group among
        them, else the default group."""
        gdata = self._groups_data
        groups = list(groups)
        for name in groups:
            if name not in imd.groups:
                self._claim(imd.hostname, name, imd.groups, imd.categories)
        if gdata is not None:
            gdata.resolve(imd.hostname, imd.groups, imd.categories, self.groups,
                          self._warn_category)
        bundles = self._bundles(imd.groups)
        imd.bundles.clear()
        imd.bundles.update(bundles)
        if not imd.profile:
            profiles = [name for name in groups if self._is_profile(name)]
            if profiles:
                imd.profile = profiles[0]
            elif gdata is not None and gdata.default:
                imd.profile = gdata.default

    def merge_additional_data(self, imd, source, data):
        """Connector data becomes ``imd.<source>`` (unless that name is taken)."""
        if not hasattr(imd, source):
            setattr(imd, source, data)
            imd.connectors.append(source)

    # ------------------------------------------------------------------ queries

    def get_all_group_names(self):
        """Every group name known: declared, used in rules or as a profile."""
        names = set(self.groups)
        gdata, cdata = self._groups_data, self._clients_data
        if gdata is not None:
            names.update(gdata.all_group_names())
        if cdata is not None:
            names.update(p for p in cdata.profiles.values() if p)
        return names

    def get_all_groups_in_category(self, category):
        """Names of the groups of ``category``."""
        return {name for name, group in list(self.groups.items())
                if getattr(group, "category", None) == category}

    def get_client_names_by_profiles(self, profiles):
        """Clients whose profile is any of ``profiles``."""
        return [client for client in self.list_clients()
                if self.core.build_metadata(client).profile in profiles]

    def get_client_names_by_groups(self, groups):
        """Clients that are in all of ``groups``."""
        return [client for client in self.list_clients()
                if self.core.build_metadata(client).groups.issuperset(groups)]

    def get_client_names_by_bundles(self, bundles):
        """Clients that get all of ``bundles``."""
        return [client for client in self.list_clients()
                if self.core.build_metadata(client).bundles.issuperset(bundles)]
