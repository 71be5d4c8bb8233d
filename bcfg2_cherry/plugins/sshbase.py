"""SSHbase: SSH host keys and ``ssh_known_hosts`` from ``SSHbase/`` (spec/repository.md §12).

The flat ``SSHbase/`` directory holds, for every key kind K (``ssh_host_rsa_key``, ...),
the files ``K`` and ``K.pub``, each plain, ``.H_<host>`` or ``.G<prio>_<group>``
(private keys may end in ``.crypt``); ``*.static`` lines for the generated
known_hosts; optional ready-made ``ssh_known_hosts`` files; and ``info.xml``.

A client asking for a key it has none of gets a fresh pair from ``ssh-keygen``,
stored as host-specific files. ``ssh_known_hosts`` is built from every public key,
named by the clients it belongs to (names, aliases, addresses, DNS), and cached until
a public key or a static file changes; DNS answers are bounded in time and cached for
the life of the process.
"""
import base64
import concurrent.futures
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from bcfg2_cherry import encryption
from bcfg2_cherry.bounded import bounded_call
from bcfg2_cherry.filemonitor.pseudo import Pseudo
from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import PluginExecutionError, SpecificityError
from bcfg2_cherry.plugin.helpers import (
    EDITOR_DROPPINGS,
    READ_EVENTS,
    FileBacked,
    Specificity,
    StructFile,
    best_matching,
    parse_specificity,
)
from bcfg2_cherry.plugin.interfaces import Connector, Generator, Metadata, PullTarget
from bcfg2_cherry.state import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["SSHbase", "HostResolver", "KEY_NAMES", "PUBLIC_NAMES"]

#: private host key names, in upstream's order; each has a ``.pub`` twin
KEY_NAMES = ("ssh_host_dsa_key", "ssh_host_ecdsa_key", "ssh_host_ed25519_key",
             "ssh_host_rsa_key", "ssh_host_key")
PUBLIC_NAMES = tuple(name + ".pub" for name in KEY_NAMES)
KNOWN_HOSTS = "ssh_known_hosts"
#: ``ssh-keygen -t`` for each key name (SSH1 ``rsa1`` is refused by current OpenSSH)
KEY_TYPES = {"ssh_host_dsa_key": "dsa", "ssh_host_ecdsa_key": "ecdsa",
             "ssh_host_ed25519_key": "ed25519", "ssh_host_rsa_key": "rsa",
             "ssh_host_key": "rsa1"}
#: what each client's own public keys are prefixed with in its known_hosts
LOCALHOST = "localhost,localhost.localdomain,127.0.0.1 "
#: seconds ssh-keygen may take
KEYGEN_TIMEOUT = 120
#: seconds to wait for the file events of generated keys
KEY_WAIT = 10.0
#: default seconds one DNS look-up may take (``[sshbase] dns_timeout``)
DNS_TIMEOUT = 5.0
#: DNS look-ups run at once while building ssh_known_hosts
DNS_WORKERS = 16


class HostResolver:
    """Forward and reverse DNS look-ups, each bounded in time, cached (failures too)
    for the life of the object."""

    def __init__(self, timeout=DNS_TIMEOUT, workers=DNS_WORKERS):
        self.timeout = timeout
        self.workers = workers
        #: name -> tuple of addresses (empty: the look-up failed)
        self.address_cache = {}
        #: address -> tuple of names (empty: the look-up failed)
        self.name_cache = {}

    def addresses(self, name):
        """The addresses of ``name`` (getaddrinfo, else ``getent hosts``); () if none."""
        cached = self.address_cache.get(name)
        if cached is None:
            cached = self.address_cache[name] = tuple(self._lookup_addresses(name))
        return cached

    def names(self, address):
        """The names of ``address`` by reverse DNS (name, then aliases); () if none."""
        cached = self.name_cache.get(address)
        if cached is None:
            cached = self.name_cache[address] = tuple(self._lookup_names(address))
        return cached

    def prefetch_addresses(self, names):
        """Look up every name not cached yet, several at a time."""
        self._prefetch(self.addresses, self.address_cache, names)

    def prefetch_names(self, addresses):
        """Reverse-look-up every address not cached yet, several at a time."""
        self._prefetch(self.names, self.name_cache, addresses)

    def _prefetch(self, func, cache, items):
        todo = sorted(set(item for item in items if item not in cache))
        if len(todo) < 2:
            return
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=min(self.workers, len(todo)),
                thread_name_prefix="SSHbase-DNS") as pool:
            list(pool.map(func, todo))

    def _lookup_addresses(self, name):
        try:
            infos = bounded_call(socket.getaddrinfo, (name, None), self.timeout,
                                 "SSHbase-getaddrinfo")
            return sorted(set(info[4][0] for info in infos))
        except Exception as err:  # noqa: BLE001  # pylint: disable=broad-except
            error = err
        try:
            result = subprocess.run(["getent", "hosts", name], capture_output=True,
                                    stdin=subprocess.DEVNULL, timeout=self.timeout,
                                    check=False)
            if result.returncode == 0:
                found = [line.split()[0] for line in
                         result.stdout.decode("utf-8", "replace").splitlines()
                         if line.split()]
                if found:
                    return found
        except (OSError, subprocess.SubprocessError) as err:
            logger.debug("SSHbase: getent hosts %s failed: %s", name, err)
        logger.warning("SSHbase: failed to find an IP address for %s: %s", name, error)
        return ()

    def _lookup_names(self, address):
        try:
            name, aliases, _ = bounded_call(socket.gethostbyaddr, (address,),
                                            self.timeout, "SSHbase-gethostbyaddr")
        except Exception as err:  # noqa: BLE001  # pylint: disable=broad-except
            logger.info("SSHbase: failed to find any names for IP address %s: %s",
                        address, err)
            return ()
        return ([name] if name else []) + list(aliases)


class KeyFile(FileBacked):
    """One key or ssh_known_hosts file of ``SSHbase/``; ``.crypt`` files are
    decrypted when read (every ``[encryption]`` passphrase is tried)."""

    def __init__(self, name, specific, plugin, encrypted=False):
        FileBacked.__init__(self, name)
        self.specific = specific
        self.plugin = plugin
        self.encrypted = encrypted
        #: (content bytes or None, why there is none)
        self.content = (None, "SSHbase: %s has not been read" % name)

    def Index(self):
        data = self.data
        if self.encrypted:
            setup = self.plugin.setup
            try:
                data = encryption.bruteforce_decrypt(
                    data, encryption.get_passphrases(setup),
                    algorithm=encryption.get_algorithm(setup))
            except encryption.EVPError as err:
                message = "SSHbase: failed to decrypt %s: %s" % (self.name, err)
                if encryption.get_lax_decryption(setup):
                    logger.debug(message)
                else:
                    logger.error(message)
                self.content = (None, message)
                return
        self.content = (data, None)

    def raw(self):
        """The content bytes; PluginExecutionError when unreadable or undecryptable."""
        data, error = self.content
        if data is None:
            raise PluginExecutionError(error)
        return data

    def text(self):
        """The content decoded with ``[components] encoding``."""
        try:
            return self.raw().decode(self.plugin.encoding)
        except (UnicodeDecodeError, LookupError) as err:
            raise PluginExecutionError("SSHbase: failed to decode %s with %s: %s" % (
                self.name, self.plugin.encoding, err)) from None


class KeySet:
    """The files of one entry (a key kind or ssh_known_hosts) and its attributes."""

    def __init__(self, basename, attributes):
        self.basename = basename
        #: the entry name
        self.path = "/etc/ssh/" + basename
        #: attributes every bind sets, in order
        self.attributes = attributes
        #: file name -> KeyFile (replaced, never changed in place)
        self.files = {}
        self._index = ({}, ())

    def update(self, files):
        """Replace the files (one assignment each, so readers never see a mix)."""
        by_host, others = {}, []
        for keyfile in files.values():
            if keyfile.specific.hostname:
                by_host.setdefault(keyfile.specific.hostname, []).append(keyfile)
            else:
                others.append(keyfile)
        self._index = (by_host, tuple(others))
        self.files = files

    def best(self, metadata):
        """The most specific file for the client (host > group priority > plain)."""
        by_host, others = self._index
        matching = by_host.get(metadata.hostname) or \
            [f for f in others if f.specific.matches(metadata)]
        if not matching:
            return None
        if len(matching) == 1:
            return matching[0]
        return best_matching(matching, metadata, what=self.basename)

    def __repr__(self):
        return "KeySet(%s)" % self.basename


def _path_holds(element, metadata, entry, *args):
    return entry.get("realname", entry.get("name")) == element.get("name")


class InfoXML(StructFile):
    """``SSHbase/info.xml``: the attributes of every SSHbase entry; ``Path``
    conditionals name an entry. The first applying ``Info`` wins."""

    conditionals = dict(StructFile.conditionals, Path=_path_holds)  # noqa: RUF012
    encryption = False

    def bind_info_to_entry(self, entry, metadata):
        """Set the attributes of the first applying Info; none is a bind error."""
        if not self.loaded:
            raise PluginExecutionError("SSHbase: %s could not be loaded" % self.name)
        infos = [el for el in self._do_match(metadata, entry) if el.tag == "Info"]
        if not infos:
            raise PluginExecutionError("SSHbase: no Info in %s applies to %s for %s" % (
                self.name, entry.get("name"), metadata.hostname))
        if len(infos) > 1:
            logger.warning("SSHbase: several Info elements of %s apply to %s for %s; "
                           "the first one is used", self.name, entry.get("name"),
                           metadata.hostname)
        for key, value in infos[0].attrib.items():
            entry.set(key, value)


def _attributes(basename):
    attributes = [("owner", "root"), ("group", "root"), ("type", "file")]
    if basename.startswith("ssh_host_key"):
        attributes.append(("encoding", "base64"))
    attributes.append(("mode", "0644" if basename.endswith(".pub") else "0600"))
    return tuple(attributes)


class SSHbase(Plugin, Connector, Generator, PullTarget):
    """Serves SSH host keys (making missing ones) and ssh_known_hosts."""

    #: seconds to wait for the file events of generated keys
    key_wait = KEY_WAIT

    def __init__(self, core):
        Plugin.__init__(self, core)
        self.setup = core.setup
        self.encoding = getattr(self.setup, "encoding", None) or "UTF-8"
        self.sets = {KNOWN_HOSTS: KeySet(KNOWN_HOSTS, (
            ("owner", "root"), ("group", "root"), ("type", "file"), ("mode", "0644")))}
        for name in KEY_NAMES + PUBLIC_NAMES:
            self.sets[name] = KeySet(name, _attributes(name))
        self.Entries = {"Path": {"/etc/ssh/" + KNOWN_HOSTS: self.build_known_hosts}}
        for name in KEY_NAMES + PUBLIC_NAMES:
            self.Entries["Path"]["/etc/ssh/" + name] = self.build_key
        #: ``*.static`` file name -> FileBacked
        self.static = {}
        #: the InfoXML of ``info.xml``, or None
        self.info = None
        self.resolver = HostResolver(self._dns_timeout())
        self._lock = threading.RLock()          # file tracking
        self._keygen_lock = threading.Lock()
        self._known_hosts_lock = threading.Lock()
        self._known_hosts = None                # the cached shared part
        self._generation = 0                    # bumped when the cache is dropped
        self._warned_unknown = set()
        core.fam.AddMonitor(self.data, self)

    def _dns_timeout(self):
        value = self.setup.get("sshbase", "dns_timeout", None)
        if value is None:
            return DNS_TIMEOUT
        try:
            timeout = float(value)
            if timeout <= 0:
                raise ValueError("not positive")
            return timeout
        except ValueError as err:
            logger.error("SSHbase: [sshbase] dns_timeout = %s: %s; using %g s", value,
                         err, DNS_TIMEOUT)
            return DNS_TIMEOUT

    # ------------------------------------------------------------------ files

    def _classify(self, filename):
        """(KeySet, Specificity, encrypted) of a key or known_hosts file, or None."""
        name, encrypted = filename, False
        if filename.endswith(".crypt"):
            name, encrypted = filename[:-len(".crypt")], True
        for basename, keyset in self.sets.items():
            if encrypted and basename == KNOWN_HOSTS:
                continue
            try:
                specific, _ = parse_specificity(name, basename)
            except SpecificityError:
                continue
            return keyset, specific, encrypted
        return None

    def HandleEvent(self, event):
        """Track the files of ``SSHbase/`` (flat) from file monitor events."""
        action = event.code2str()
        filename = event.filename
        if action == "endExist":
            return
        if os.path.isabs(filename):
            if os.path.normpath(filename) == os.path.normpath(self.data):
                if action == "deleted":
                    logger.warning("SSHbase: %s was deleted", self.data)
                return
            filename = os.path.basename(filename)
        if EDITOR_DROPPINGS.search(filename):
            return
        with self._lock:
            self._handle(filename, action)

    def _handle(self, filename, action):
        path = os.path.join(self.data, filename)
        if action in READ_EVENTS and os.path.isdir(path):
            logger.debug("SSHbase: ignoring directory %s (SSHbase/ is flat)", path)
            return
        classified = self._classify(filename)
        if classified is not None:
            keyset, specific, encrypted = classified
            files = dict(keyset.files)
            if action == "deleted":
                files.pop(filename, None)
            elif action in READ_EVENTS:
                keyfile = files.get(filename)
                if keyfile is None:
                    keyfile = files[filename] = KeyFile(path, specific, self, encrypted)
                keyfile.HandleEvent()
            else:
                return
            keyset.update(files)
            if keyset.basename.endswith(".pub"):
                self._public_key_changed(filename, action)
            return
        if filename == "info.xml":
            if action == "deleted":
                self.info = None
            elif action in READ_EVENTS:
                if self.info is None:
                    self.info = InfoXML(path, fam=self.core.fam, core=self.core)
                self.info.load()
            return
        if filename.endswith(".static"):
            static = dict(self.static)
            if action == "deleted":
                static.pop(filename, None)
            elif action in READ_EVENTS:
                child = static.get(filename) or FileBacked(path)
                child.HandleEvent()
                static[filename] = child
            else:
                return
            self.static = static
            logger.info("SSHbase: static key file %s %s; ssh_known_hosts will be rebuilt",
                        filename, action)
            self.invalidate_known_hosts()
            return
        if action != "deleted" and filename not in self._warned_unknown:
            self._warned_unknown.add(filename)
            logger.warning("SSHbase: %s is no key, ssh_known_hosts, *.static or info.xml "
                           "file; ignored", path)

    def _public_key_changed(self, filename, action):
        self.debug_log("SSHbase: public key %s %s; ssh_known_hosts will be rebuilt",
                       filename, action)
        self.invalidate_known_hosts()
        if self.core.metadata_cache_mode() in ("cautious", "aggressive"):
            self.core.expire_caches_by_type(Metadata)

    def invalidate_known_hosts(self):
        """Drop the cached ssh_known_hosts (rebuilt at its next bind)."""
        self._generation += 1
        self._known_hosts = None

    # ------------------------------------------------------------------ binding

    def _bind_attributes(self, entry, metadata, keyset):
        for key, value in keyset.attributes:
            entry.set(key, value)
        info = self.info
        if info is not None:
            info.bind_info_to_entry(entry, metadata)

    def _bind_file(self, entry, keyfile):
        entry.set("type", "file")
        if entry.get("encoding") == "base64":
            text = base64.b64encode(keyfile.raw()).decode("ascii")
        else:
            text = keyfile.text()
        try:
            entry.text = text or None
        except ValueError as err:
            raise PluginExecutionError(
                "SSHbase: %s (%s) cannot be sent as text (%s); it needs "
                "encoding=\"base64\" in info.xml" % (entry.get("name"), keyfile.name,
                                                     err)) from None
        if not text:
            entry.set("empty", "true")

    def build_key(self, entry, metadata):
        """Bind a host key entry, generating the client's pair when none applies."""
        keyset = self.sets[entry.get("name").rsplit("/", 1)[-1]]
        self._bind_attributes(entry, metadata, keyset)
        keyfile = keyset.best(metadata)
        if keyfile is None:
            keyfile = self.generate(keyset, metadata)
        self._bind_file(entry, keyfile)
        return entry

    def build_known_hosts(self, entry, metadata):
        """Bind ssh_known_hosts: a matching ready-made file, else the generated one
        plus the client's own keys as localhost."""
        keyset = self.sets[KNOWN_HOSTS]
        self._bind_attributes(entry, metadata, keyset)
        keyfile = keyset.best(metadata)
        if keyfile is not None:
            self._bind_file(entry, keyfile)
            return entry
        parts = [self.known_hosts()]
        own = [self.sets[name].best(metadata) for name in PUBLIC_NAMES]
        for keyfile in sorted((k for k in own if k is not None), key=lambda k: k.name):
            try:
                parts.append(LOCALHOST + keyfile.text())
            except PluginExecutionError as err:
                logger.error("%s; left out of the known_hosts of %s", err,
                             metadata.hostname)
        entry.text = "".join(parts)
        return entry

    # ------------------------------------------------------------------ known_hosts

    def known_hosts(self):
        """The part of ssh_known_hosts every client shares (cached)."""
        cached = self._known_hosts
        if cached is not None:
            return cached
        with self._known_hosts_lock:
            if self._known_hosts is not None:
                return self._known_hosts
            generation = self._generation
            text = self._build_known_hosts()
            if text is None:
                return ""
            if generation == self._generation:
                self._known_hosts = text
            return text

    def _all_clients(self):
        """The metadata of every client (a client that fails is logged and left out)."""
        try:
            names = list(self.core.metadata.list_clients())
        except Exception as err:  # noqa: BLE001  # pylint: disable=broad-except
            logger.error("SSHbase: cannot list the clients: %s", err)
            return []
        result = []
        for name in names:
            try:
                result.append(self.core.build_metadata(name))
            except Exception as err:  # noqa: BLE001  # pylint: disable=broad-except
                logger.error("SSHbase: no metadata for %s, left out of ssh_known_hosts:"
                             " %s", name, err)
        return result

    def client_names(self, clients):
        """hostname -> sorted names a client is known by (spec §12)."""
        resolver = self.resolver
        bases = {md.hostname: set([md.hostname]) | set(md.aliases) for md in clients}
        resolver.prefetch_addresses(name for base in bases.values() for name in base)
        dns = {}
        for host, base in bases.items():
            dns[host] = set()
            for name in base:
                dns[host].update(resolver.addresses(name))
        resolver.prefetch_names(address for found in dns.values() for address in found)
        result = {}
        for md in clients:
            base = bases[md.hostname]
            names = set(base)
            names.update(name.split(".")[0] for name in base)
            names.update(md.addresses)
            names.update(dns[md.hostname])
            for address in dns[md.hostname]:
                names.update(resolver.names(address))
            result[md.hostname] = sorted(names)
        return result

    def _build_known_hosts(self):
        clients = self._all_clients()
        if not clients:
            return None
        lines = []
        for _, static in sorted(self.static.items()):
            try:
                text = static.data.decode(self.encoding)
            except (UnicodeDecodeError, LookupError) as err:
                logger.error("SSHbase: cannot decode %s with %s: %s; left out",
                             static.name, self.encoding, err)
                continue
            lines.append(text.replace("\r\n", "\n").rstrip())
        names = self.client_names(clients)
        for basename in sorted(PUBLIC_NAMES):
            files = sorted(self.sets[basename].files.values(), key=lambda f: (
                f.specific.hostname or f.specific.group or "", f.name))
            for keyfile in files:
                hostnames = self._key_names(keyfile.specific, clients, names)
                if not hostnames:
                    continue
                try:
                    key = keyfile.text().rstrip()
                except PluginExecutionError as err:
                    logger.error("%s; left out of ssh_known_hosts", err)
                    continue
                lines.append("%s %s" % (",".join(hostnames), key))
        return "\n".join(lines) + "\n"

    def _key_names(self, specific, clients, names):
        """The names a key file stands for; [] (logged once) when nobody."""
        if specific.hostname:
            found = names.get(specific.hostname, [])
            what, key = "host", specific.hostname
        elif specific.group:
            found = [name for md in clients if specific.group in md.groups
                     for name in names[md.hostname]]
            what, key = "group", specific.group
        else:
            return [name for md in clients for name in names[md.hostname]]
        if not found and (what, key) not in self._warned_unknown:
            self._warned_unknown.add((what, key))
            logger.info("SSHbase: ignoring key for unknown %s %s", what, key)
        return found

    # ------------------------------------------------------------------ generation

    def _passphrase(self):
        name = self.setup.get("sshbase", "passphrase", None)
        if not name:
            return None
        passphrases = encryption.get_passphrases(self.setup)
        if name not in passphrases:
            raise PluginExecutionError("SSHbase: [sshbase] passphrase = %s names no "
                                       "passphrase of [encryption]" % name)
        return passphrases[name]

    def generate(self, keyset, metadata):
        """Make the client's key pair for ``keyset`` and return its file once the
        file monitor has reported it (at most ``key_wait`` seconds)."""
        host = metadata.hostname
        if not host or "/" in host or host.startswith(".") or "\0" in host:
            raise PluginExecutionError("SSHbase: cannot store keys for client %r" % host)
        private = keyset.basename[:-len(".pub")] if keyset.basename.endswith(".pub") \
            else keyset.basename
        with self._keygen_lock:
            keyfile = keyset.best(metadata)
            if keyfile is not None:
                return keyfile
            target = os.path.join(self.data, "%s.H_%s" % (keyset.basename, host))
            if os.path.exists(target) or os.path.exists(target + ".crypt"):
                paths = [p for p in (target, target + ".crypt") if os.path.exists(p)]
            else:
                paths = self._keygen(private, host)
        return self._wait_for(keyset, metadata, paths)

    def _keygen(self, private, host):
        """Run ssh-keygen; store ``<private>.H_<host>[.crypt]`` and the public key."""
        passphrase = self._passphrase()
        tempdir = tempfile.mkdtemp(prefix="bcfg2-sshbase-")
        try:
            tmp = os.path.join(tempdir, private)
            cmd = ["ssh-keygen", "-q", "-f", tmp, "-N", "", "-t", KEY_TYPES[private],
                   "-C", "root@%s" % host]
            logger.info("SSHbase: generating %s for %s", private, host)
            try:
                result = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL,
                                        timeout=KEYGEN_TIMEOUT, check=False)
            except (OSError, subprocess.SubprocessError) as err:
                raise PluginExecutionError("SSHbase: error running ssh-keygen: %s" %
                                           err) from None
            if result.returncode != 0:
                raise PluginExecutionError("SSHbase: error running ssh-keygen -t %s for "
                                           "%s: %s" % (KEY_TYPES[private], host,
                                                       result.stderr.decode(
                                                           "utf-8", "replace").strip()))
            with open(tmp, "rb") as fh:
                private_data = fh.read()
            with open(tmp + ".pub", "rb") as fh:
                public_data = fh.read()
        finally:
            shutil.rmtree(tempdir, ignore_errors=True)
        private_file = os.path.join(self.data, "%s.H_%s" % (private, host))
        if passphrase:
            private_data = encryption.ssl_encrypt(
                private_data, passphrase, encryption.get_algorithm(self.setup))
            private_file += ".crypt"
        public_file = os.path.join(self.data, "%s.pub.H_%s" % (private, host))
        try:
            atomic_write(private_file, private_data, mode=0o600)
            atomic_write(public_file, public_data, mode=0o644)
        except OSError as err:
            raise PluginExecutionError("SSHbase: cannot store the new key of %s: %s" % (
                host, err)) from None
        return [private_file, public_file]

    def _monitor_thread_alive(self):
        thread = getattr(self.core, "fam_thread", None)
        return thread is not None and thread.is_alive()

    def _wait_for(self, keyset, metadata, paths):
        """The client's file of ``keyset`` once its file event has been handled."""
        fam = self.core.fam
        if isinstance(fam, Pseudo):
            # this monitor never reports new files: read them now
            with self._lock:
                for path in paths:
                    self._handle(os.path.basename(path), "created")
        deadline = time.monotonic() + self.key_wait
        while True:
            keyfile = keyset.best(metadata)
            if keyfile is not None:
                return keyfile
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PluginExecutionError(
                    "SSHbase: %s of %s still not registered %g s after it was "
                    "generated" % (keyset.basename, metadata.hostname, self.key_wait))
            if self._monitor_thread_alive():
                time.sleep(min(0.05, remaining))
            elif fam.wait(min(0.2, remaining)):
                fam.handle_event_set(self.core.lock)

    # ------------------------------------------------------------------ Connector

    def get_additional_data(self, metadata):
        """``{"ssh_host_rsa_key.pub": text, ...}``: the client's public keys."""
        data = {}
        for name in PUBLIC_NAMES:
            keyfile = self.sets[name].best(metadata)
            if keyfile is None:
                continue
            try:
                data[name] = keyfile.text()
            except PluginExecutionError as err:
                logger.error("%s", err)
        return data

    # ------------------------------------------------------------------ PullTarget

    def AcceptChoices(self, entry, metadata):
        """Pulled keys are always stored host-specific."""
        return [Specificity(hostname=metadata.hostname)]

    def AcceptPullData(self, specific, new_entry, verbose):
        """Store a key pulled from a client as ``SSHbase/<name>.H_<host>``."""
        attrib = getattr(new_entry, "attrib", new_entry)
        name = attrib.get("name", "")
        basename = name.rsplit("/", 1)[-1]
        if name != "/etc/ssh/" + basename or basename not in self.sets:
            logger.error("SSHbase: cannot pull %s: not an SSHbase entry", name)
            return
        text = new_entry.text if hasattr(new_entry, "attrib") else new_entry.get("text")
        if text is None:
            logger.error("SSHbase: failed to pull %s: it does not exist on the client",
                         name)
            return
        if attrib.get("encoding") == "base64":
            data = base64.b64decode(text)
        else:
            data = text.encode(self.encoding)
        filename = os.path.join(self.data, "%s.H_%s" % (basename, specific.hostname))
        atomic_write(filename, data, mode=0o644 if basename.endswith(".pub") else 0o600)
        if verbose:
            logger.info("SSHbase: wrote %s", filename)
