"""The objects templates and plugins see: ClientMetadata, its ``query`` helper,
MetadataGroup and the parsed client version (spec/repository.md §1.4).
"""
import copy
import logging
import re

logger = logging.getLogger(__name__)

_RELEASE_RANK = {"pre": 0, "rc": 1, "final": 2}
_VERSION_RE = re.compile(r"^(\d+)([A-Za-z]+)(\d+)$")


class VersionInfo(tuple):
    """``(major, minor, micro, releaselevel, serial)`` of a client version string.

    Ordered as releases are (``pre`` < ``rc`` < ``final``) and comparable with plain
    tuples and version strings; any known version is newer than ``None`` (clients too
    old to report one). ``parse`` returns None for strings it cannot read.
    """

    def __new__(cls, vstr):
        major, minor, rest = str(vstr).split(".")
        match = _VERSION_RE.match(rest)
        if match:
            micro, level, serial = match.groups()
        else:
            micro, level, serial = rest, "final", 0
        return tuple.__new__(cls, (int(major), int(minor), int(micro), level,
                                   int(serial)))

    @classmethod
    def parse(cls, vstr):
        """A VersionInfo for ``vstr``, or None when it is missing or unreadable."""
        if not vstr:
            return None
        try:
            return cls(vstr)
        except (ValueError, TypeError):
            return None

    major = property(lambda self: self[0])
    minor = property(lambda self: self[1])
    micro = property(lambda self: self[2])
    releaselevel = property(lambda self: self[3])
    serial = property(lambda self: self[4])

    @staticmethod
    def _key(value):
        if isinstance(value, str):
            value = VersionInfo(value)
        value = tuple(value) + (0, 0, 0, "final", 0)[len(value):]
        return (value[0], value[1], value[2], _RELEASE_RANK.get(value[3], 0), value[4])

    def _cmp(self, other, op):
        if other is None:
            return op((1,), (0,))
        try:
            return op(self._key(self), self._key(other))
        except (TypeError, ValueError):
            return NotImplemented

    def __lt__(self, other):
        return self._cmp(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._cmp(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._cmp(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._cmp(other, lambda a, b: a >= b)

    def __eq__(self, other):
        if other is None:
            return False
        result = self._cmp(other, lambda a, b: a == b)
        return result

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = tuple.__hash__

    def __repr__(self):
        return ("VersionInfo(major=%s, minor=%s, micro=%s, releaselevel=%s, serial=%s)"
                % tuple(self))


class MetadataGroup:
    """One group of groups.xml: its flags and bundles (from its first declaration)."""

    __slots__ = (
        "bundles",
        "category",
        "is_default",
        "is_profile",
        "is_public",
        "name",
    )

    def __init__(self, name, bundles=None, category=None, is_profile=False,
                 is_public=False, is_default=False):
        self.name = name
        #: bundle names, in document order
        self.bundles = list(bundles or ())
        self.category = category
        self.is_profile = is_profile
        self.is_public = is_public
        self.is_default = is_default

    def __repr__(self):
        return "MetadataGroup %s (bundles=%s, category=%s)" % (self.name, self.bundles,
                                                               self.category)


class MetadataQuery:
    """Look-ups over every client, for templates (``metadata.query``).

    ``*_by_groups`` want clients in *all* listed groups, ``*_by_profiles`` clients
    whose profile is *any* listed one. ``by_name`` is the core's ``build_metadata``.
    """

    def __init__(self, by_name, all_clients, names_by_groups, names_by_profiles,
                 all_groups, all_groups_in_category):
        self.by_name = by_name
        self.all_clients = all_clients
        self.names_by_groups = self._list_argument(names_by_groups)
        self.names_by_profiles = self._list_argument(names_by_profiles)
        self.all_groups = all_groups
        self.all_groups_in_category = all_groups_in_category

    @staticmethod
    def _list_argument(func):
        """Warn when a template passes one string where a list is meant (a common
        mistake that silently iterates over characters)."""
        def inner(arg):
            if isinstance(arg, str):
                logger.warning("MetadataQuery.%s takes a list, not a string (%r)",
                               func.__name__, arg)
            return func(arg)
        inner.__name__ = func.__name__
        inner.__doc__ = func.__doc__
        return inner

    def by_groups(self, groups):
        """Metadata of every client in all of ``groups``."""
        return [self.by_name(name) for name in self.names_by_groups(groups)]

    def by_profiles(self, profiles):
        """Metadata of every client whose profile is one of ``profiles``."""
        return [self.by_name(name) for name in self.names_by_profiles(profiles)]

    def all(self):
        """Metadata of every client."""
        return [self.by_name(name) for name in self.all_clients()]


class ClientMetadata:
    """Everything known about one client; what templates see as ``metadata``.

    Connector plugins add one attribute each (``metadata.Probes``, ...) and their
    names to ``connectors``. Cached objects are shared: use ``copy()`` to change one.
    """

    def __init__(self, client, profile, groups, bundles, aliases, addresses,
                 categories, uuid, password, version, query):
        #: canonical (lower-case) client name
        self.hostname = client
        #: the profile group (or None)
        self.profile = profile
        #: set of group names
        self.groups = groups
        #: set of bundle names
        self.bundles = bundles
        #: set of alias names
        self.aliases = aliases
        #: set of addresses (clients.xml address of the client and its aliases)
        self.addresses = addresses
        #: category -> group name
        self.categories = categories
        #: the clients.xml uuid (or None)
        self.uuid = uuid
        #: the client's own password (or None)
        self.password = password
        #: names of the Connector plugins that added data
        self.connectors = []
        #: client version string as declared (or None)
        self.version = version
        #: parsed version (VersionInfo) or None
        self.version_info = VersionInfo.parse(version)
        #: MetadataQuery over all clients
        self.query = query

    def inGroup(self, group):  # pylint: disable=invalid-name
        """True if the client is a member of ``group``."""
        return group in self.groups

    def group_in_category(self, category):
        """The client's group of ``category``, or "" when it has none."""
        group = self.categories.get(category)
        if group is not None and group in self.groups:
            return group
        for grp in sorted(self.query.all_groups_in_category(category)):
            if grp in self.groups:
                return grp
        return ""

    def copy(self):
        """A copy whose sets, dicts and lists can be changed without touching this one."""
        new = copy.copy(self)
        for attr, value in vars(self).items():
            if isinstance(value, (set, dict, list)):
                setattr(new, attr, copy.copy(value))
        return new

    def __repr__(self):
        return "%s(%s, profile=%s, groups=%s)" % (self.__class__.__name__,
                                                  self.hostname, self.profile,
                                                  sorted(self.groups))
