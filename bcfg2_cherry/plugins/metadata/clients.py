"""clients.xml: the client tables read from it, and safe edits of it on disk
(spec/repository.md §1.2, §1.7).

Edits are made under ``clients_xml_lock(path)``: a per-file lock inside this process
plus an ``fcntl`` lock on a lock file beside clients.xml, which ``bcfg2-cherry admin``
takes too. Each edit re-reads the file from disk, changes one Client element in
whichever file holds it (clients.xml or a file it includes), and writes that file
atomically, so comments, includes and concurrent edits are never lost.
"""
import contextlib
import fcntl
import ipaddress
import logging
import os
import threading

import lxml.etree

from bcfg2_cherry.state import atomic_write
from bcfg2_cherry.xml import XMLError, parse_repo_file

logger = logging.getLogger(__name__)

AUTH_MODES = ("cert", "cert+password", "bootstrap")


def normalize_address(address):
    """An IP address in canonical text form (IPv4-mapped IPv6 becomes IPv4);
    anything that is not an IP address is returned stripped, unchanged."""
    if address is None:
        return None
    text = str(address).strip()
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


# -- locking ----------------------------------------------------------------------------

class _PathLock:
    """The in-process half of a clients.xml lock: re-entrant, and holding the fcntl
    lock file open while any thread of this process is inside."""

    def __init__(self, lockfile):
        self.lockfile = lockfile
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd = None


_path_locks = {}
_path_locks_guard = threading.Lock()


def lock_file_path(path):
    """The lock file that guards ``path``: ``.<name>.lock`` beside the real file."""
    real = os.path.realpath(path)
    return os.path.join(os.path.dirname(real), ".%s.lock" % os.path.basename(real))


def _path_lock(path):
    lockfile = lock_file_path(path)
    with _path_locks_guard:
        lock = _path_locks.get(lockfile)
        if lock is None:
            lock = _path_locks[lockfile] = _PathLock(lockfile)
        return lock


def process_lock(path):
    """The in-process (re-entrant) lock of ``path`` alone, without the file lock: held
    while the in-memory tables are rebuilt so readers never see an older file win."""
    return _path_lock(path).rlock


@contextlib.contextmanager
def clients_xml_lock(path):
    """Hold the write lock of clients.xml at ``path`` (re-entrant within a thread).

    Serializes writers in this process (threads) and across processes (the server
    and ``bcfg2-cherry admin``) through ``flock`` on ``.clients.xml.lock`` beside the
    file. Raises OSError when the lock file cannot be created or locked.
    """
    lock = _path_lock(path)
    with lock.rlock:
        if lock.depth == 0:
            fd = os.open(lock.lockfile, os.O_RDONLY | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            lock.fd = fd
        lock.depth += 1
        try:
            yield
        finally:
            lock.depth -= 1
            if lock.depth == 0:
                fd, lock.fd = lock.fd, None
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)


# -- the tables -------------------------------------------------------------------------

class ClientsData:
    """The tables of one parsed clients.xml (XIncludes resolved); keys lower-case.

    ``clients`` (names in document order), ``profiles``, ``aliases`` (alias ->
    client), ``raliases``, ``addresses`` (address -> [clients]), ``raddresses``,
    ``auth``, ``passwords``, ``secure``, ``floating``, ``uuids`` (lower-case uuid ->
    client), ``client_uuid`` (client -> uuid as written), ``versions``.
    """

    def __init__(self, root, source="clients.xml"):
        self.source = source
        self.clients = []
        self.profiles = {}
        self.aliases = {}
        self.raliases = {}
        self.addresses = {}
        self.raddresses = {}
        self.auth = {}
        self.passwords = {}
        self.secure = set()
        self.floating = set()
        self.uuids = {}
        self.client_uuid = {}
        self.versions = {}
        for element in root.iter("Client"):
            self._add(element)

    def _add_address(self, client, address):
        address = normalize_address(address)
        if not address:
            return
        owners = self.addresses.setdefault(address, [])
        if client not in owners:
            owners.append(client)
        self.raddresses.setdefault(client, set()).add(address)

    def _add(self, element):
        name = element.get("name")
        if not name:
            logger.error("%s: Client without a name at line %s; ignored", self.source,
                         element.sourceline)
            return
        client = name.strip().lower()
        if client in self.profiles:
            logger.warning("%s: client %s is listed again at line %s; the later entry "
                           "is ignored", self.source, client, element.sourceline)
            return
        profile = element.get("profile")
        if not profile:
            logger.warning("%s: client %s has no profile (line %s)", self.source, client,
                           element.sourceline)
        self.clients.append(client)
        self.profiles[client] = profile or None
        if element.get("address"):
            self._add_address(client, element.get("address"))
        auth = element.get("auth")
        if auth is not None:
            if auth not in AUTH_MODES:
                logger.warning("%s: client %s has unknown auth=\"%s\"; using "
                               "cert+password", self.source, client, auth)
                auth = "cert+password"
            self.auth[client] = auth
        uuid = element.get("uuid")
        if uuid:
            self.uuids.setdefault(uuid.lower(), client)
            self.client_uuid[client] = uuid
        if element.get("secure", "false").lower() == "true":
            self.secure.add(client)
        if (element.get("location", "fixed") == "floating"
                or element.get("floating", "false").lower() == "true"):
            self.floating.add(client)
        if element.get("password") is not None:
            self.passwords[client] = element.get("password")
        if element.get("version") is not None:
            self.versions[client] = element.get("version")
        self.raliases.setdefault(client, set())
        for alias in element.iter("Alias"):
            aname = (alias.get("name") or "").strip().lower()
            if aname:
                if aname in self.aliases and self.aliases[aname] != client:
                    logger.warning("%s: alias %s of %s is already an alias of %s",
                                   self.source, aname, client, self.aliases[aname])
                else:
                    self.aliases[aname] = client
                self.raliases[client].add(aname)
            if alias.get("address"):
                self._add_address(client, alias.get("address"))

    def canonical(self, name):
        """Lower-case ``name`` and map an alias to its client."""
        name = name.strip().lower()
        return self.aliases.get(name, name)


# -- editing on disk --------------------------------------------------------------------

def _read(path):
    """``(ElementTree, had an XML declaration)`` of a file, XIncludes left as they are."""
    tree = parse_repo_file(path)
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return tree, head.startswith(b"<?xml")


def write_tree(path, tree, declaration=False):
    """Write ``tree`` to ``path`` atomically, pretty-printed, comments kept."""
    data = lxml.etree.tostring(tree, pretty_print=True, encoding="UTF-8",
                               xml_declaration=declaration)
    atomic_write(path, data)


def _matches(element, name):
    if (element.get("name") or "").strip().lower() == name:
        return True
    return any((alias.get("name") or "").strip().lower() == name
               for alias in element.iter("Alias"))


def find_client(path, name, included=()):
    """Where the Client element of ``name`` (lower-case; alias names count) is on
    disk: ``(file, ElementTree, element, declaration)``, or None.

    clients.xml itself is searched first, then ``included`` files in order. Raises
    XMLError when clients.xml does not parse.
    """
    tree, decl = _read(path)
    for element in tree.getroot().iter("Client"):
        if _matches(element, name):
            return path, tree, element, decl
    for extra in included:
        if os.path.abspath(extra) == os.path.abspath(path):
            continue
        try:
            etree, edecl = _read(extra)
        except XMLError as err:
            logger.error("Cannot search %s for client %s: %s", extra, name, err)
            continue
        for element in etree.getroot().iter("Client"):
            if _matches(element, name):
                return extra, etree, element, edecl
    return None


def edit_client(path, name, update=None, create=None, remove=False, included=()):
    """Change the Client element of ``name`` in place, on disk; call it under
    ``clients_xml_lock(path)``.

    ``update``: attributes to set on an existing element (a value of None removes the
    attribute). ``create``: attributes of a new ``<Client name=...>`` appended to
    clients.xml when none exists (else KeyError). ``remove``: delete the element.
    Returns ``"created"``, ``"changed"``, ``"unchanged"`` or ``"removed"``.
    """
    name = name.strip().lower()
    found = find_client(path, name, included)
    if found is None:
        if create is None:
            raise KeyError(name)
        tree, decl = _read(path)
        element = lxml.etree.SubElement(tree.getroot(), "Client", name=name)
        for key, value in create.items():
            if value is not None:
                element.set(key, str(value))
        write_tree(path, tree, decl)
        return "created"
    filename, tree, element, decl = found
    if remove:
        element.getparent().remove(element)
        write_tree(filename, tree, decl)
        return "removed"
    changed = False
    for key, value in (update or {}).items():
        if value is None:
            if key in element.attrib:
                del element.attrib[key]
                changed = True
        elif element.get(key) != str(value):
            element.set(key, str(value))
            changed = True
    if not changed:
        return "unchanged"
    write_tree(filename, tree, decl)
    return "changed"
