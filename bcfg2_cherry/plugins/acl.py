"""The ACL plugin: which client may call which method, by IP address
(``ACL/ip.xml``) and by client metadata (``ACL/metadata.xml``); spec/repository.md §8.

Loading it replaces the Core's DefaultACL.
"""
import ipaddress
import logging
import os
import re

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.helpers import StructFile, XMLFileBacked
from bcfg2_cherry.plugin.interfaces import ClientACLs

logger = logging.getLogger(__name__)

#: addresses that count as the server's own machine
LOCAL_ADDRESSES = ("127.0.0.1", "::1")
LOCAL_NAMES = ("localhost", "localhost.localdomain")

_pattern_cache = {}


def _part_regex(part):
    regex = _pattern_cache.get(part)
    if regex is None:
        if len(_pattern_cache) > 10000:
            _pattern_cache.clear()
        regex = re.compile("".join("[^.]*" if piece == "*" else re.escape(piece)
                                   for piece in re.split(r"(\*)", part)) + r"\Z")
        _pattern_cache[part] = regex
    return regex


def rmi_names_equal(pattern, name):
    """Does the method ``pattern`` of an ACL rule match the called ``name``?

    Both are split at ``.`` and must have as many parts; in each part of the pattern
    ``*`` stands for any run of characters (``*`` alone: any part). A missing pattern
    matches nothing.
    """
    if pattern is None or name is None:
        return False
    if pattern == name:
        return True
    pparts = pattern.split(".")
    nparts = name.split(".")
    if len(pparts) != len(nparts):
        return False
    return all(pp == np or ("*" in pp and _part_regex(pp).match(np))
               for pp, np in zip(pparts, nparts))


def _ip(text):
    ip = ipaddress.ip_address(str(text).strip().split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


def _mask(netmask, version):
    """The mask (an int) of a prefix length or a dotted mask."""
    bits = 32 if version == 4 else 128
    netmask = str(netmask).strip().lstrip("/")
    if netmask.isdigit():
        length = int(netmask)
        if not 0 <= length <= bits:
            raise ValueError("prefix length %s out of range" % length)
        return ((1 << bits) - 1) ^ ((1 << (bits - length)) - 1)
    mask = ipaddress.ip_address(netmask)
    if mask.version != version:
        raise ValueError("netmask %s does not fit the address" % netmask)
    return int(mask)


class _IPRule:
    """One Allow/Deny/Defer element of ip.xml, with its address parsed once."""

    __slots__ = ("action", "ip", "mask", "method", "valid")

    def __init__(self, element, source):
        self.action = {"Allow": True, "Deny": False, "Defer": None}[element.tag]
        self.method = element.get("method")
        self.ip = self.mask = None
        self.valid = True
        address, netmask = element.get("address"), element.get("netmask")
        if address is None:
            return
        try:
            self.ip = _ip(address)
            if netmask:
                self.mask = _mask(netmask, self.ip.version)
        except ValueError as err:
            logger.error("%s: line %s: bad address %r/%r: %s; the rule never matches",
                         source, element.sourceline, address, netmask, err)
            self.valid = False

    def matches(self, ip, rmi):
        if not self.valid or not rmi_names_equal(self.method, rmi):
            return False
        if self.ip is None:
            return True
        if ip is None or ip.version != self.ip.version:
            return False
        if self.mask is None:
            return ip == self.ip
        return int(ip) & self.mask == int(self.ip) & self.mask


class _ACLFileMixin:
    """What both ACL files share: a file that exists but never parsed denies (fail
    closed); deleting the file drops its rules."""

    def _deleted(self):
        logger.info("%s was deleted: its rules no longer apply", self.name)
        self.loaded = False
        self.xdata = None
        self.entries = []
        self.rules = []

    def HandleEvent(self, event=None):
        if (event is not None and event.code2str() == "deleted"
                and os.path.abspath(event.filename) == os.path.abspath(self.name)):
            self._deleted()
            return
        super().HandleEvent(event)

    @property
    def broken(self):
        """True when the file exists but has not been read successfully."""
        return not self.loaded and os.path.exists(self.name)


class IPACLFile(_ACLFileMixin, XMLFileBacked):
    """``ACL/ip.xml``: Allow/Deny/Defer rules by address and method, first match wins."""

    def __init__(self, filename, fam=None, should_monitor=False, core=None):
        self.rules = []
        XMLFileBacked.__init__(self, filename, fam=fam, should_monitor=should_monitor,
                               core=core)

    def _state_attributes(self):
        return XMLFileBacked._state_attributes(self) + ["rules"]

    def Index(self):
        self.rules = [_IPRule(el, self.name) for el in self.xdata
                      if isinstance(el.tag, str) and el.tag in ("Allow", "Deny", "Defer")]

    def check_acl(self, address, rmi):
        """True (allow), False (deny) or None (defer to the metadata rules)."""
        if self.broken:
            logger.error("ACL: %s does not parse; denying %s to %s", self.name, rmi,
                         address)
            return False
        rules = self.rules
        if not rules:
            return None
        try:
            ip = _ip(address)
        except ValueError:
            ip = None
        for rule in rules:
            if rule.matches(ip, rmi):
                return rule.action
        if ip is not None and str(ip) in LOCAL_ADDRESSES:
            return True
        return None


class MetadataACLFile(_ACLFileMixin, StructFile):
    """``ACL/metadata.xml``: Allow/Deny rules under Group/Client conditionals; the
    first matching one decides."""

    def __init__(self, filename, fam=None, should_monitor=False, core=None):
        self.rules = []
        StructFile.__init__(self, filename, fam=fam, should_monitor=should_monitor,
                            core=core)

    def _state_attributes(self):
        return StructFile._state_attributes(self) + ["rules"]

    def Index(self):
        # any Allow/Deny anywhere (a Genshi template may make more per client)
        self.rules = [el for el in self.xdata.iter("Allow", "Deny")]
        if self.template is not None and not self.rules:
            self.rules = [True]

    def check_acl(self, metadata, rmi):
        """True (allow) or False (deny)."""
        if self.broken:
            logger.error("ACL: %s does not parse; denying %s to %s", self.name, rmi,
                         metadata.hostname)
            return False
        if not self.rules:
            return True
        for element in self.Match(metadata):
            if element.tag in ("Allow", "Deny") and \
                    rmi_names_equal(element.get("method"), rmi):
                return element.tag == "Allow"
        return metadata.hostname in LOCAL_NAMES


class ACL(Plugin, ClientACLs):
    """Client ACLs from ``ip.xml`` (checked first) and ``metadata.xml`` (for the
    addresses ip.xml defers)."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        self.ip_acls = IPACLFile(os.path.join(self.data, "ip.xml"), fam=self.fam,
                                 should_monitor=True, core=core)
        self.metadata_acls = MetadataACLFile(os.path.join(self.data, "metadata.xml"),
                                             fam=self.fam, should_monitor=True,
                                             core=core)

    def check_acl_ip(self, address, rmi):
        result = self.ip_acls.check_acl(address[0], rmi)
        self.debug_log("ACL: %s requests %s: IP rules say %s", address[0], rmi,
                       {True: "allow", False: "deny", None: "defer"}[result])
        return result

    def check_acl_metadata(self, metadata, rmi):
        result = self.metadata_acls.check_acl(metadata, rmi)
        self.debug_log("ACL: %s requests %s: metadata rules say %s",
                       metadata.hostname, rmi, "allow" if result else "deny")
        return result
