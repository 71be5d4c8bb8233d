"""The sources that apply to one client, queried together, and the dependency
resolution over them (spec/packages.md §5).

A Collection is cheap to build (a list of Source objects and the client's
metadata); what is expensive to compute (virtual packages, package groups, resolved
package sets) is kept in a ``ResultCache`` shared by every collection with the same
``cachekey`` until the next load.
"""
import hashlib
import logging
import threading

import lxml.etree

from bcfg2_cherry.plugin.base import Debuggable

logger = logging.getLogger(__name__)

#: Resolved package sets one ResultCache keeps before starting afresh.
MAX_RESULTS = 4096


class ResultCache:
    """Per-cachekey results: virtual packages, groups and completed sets."""

    def __init__(self):
        self.vpkgs = {}
        self.groups = {}
        self.sets = {}
        self.lock = threading.Lock()

    def remember(self, table, key, value):
        with self.lock:
            if len(table) >= MAX_RESULTS:
                table.clear()
            table[key] = value
        return value


class Collection(list, Debuggable):
    """The applicable sources of one client (generic algorithm, no config)."""

    #: whether the backend knows package groups
    package_groups = False

    def __init__(self, metadata, sources, plugin=None, debug=False):
        list.__init__(self, sources)
        Debuggable.__init__(self, name=self.__class__.__module__)
        self.debug_flag = debug
        self.metadata = metadata
        self.plugin = plugin
        self.ptype = sources[0].ptype if sources else "unknown"
        self._cachekey = None

    @property
    def version(self):
        """The version put on bound and added Package entries."""
        return self.plugin.version if self.plugin is not None else "auto"

    @property
    def cachekey(self):
        """Identifies the set of sources (and arches) of this collection."""
        if self._cachekey is None:
            self._cachekey = hashlib.md5(self.sourcelist().encode("utf-8")).hexdigest()
        return self._cachekey

    def sourcelist(self):
        """A readable list of the repositories of this collection."""
        lines = []
        for source in self:
            for url_map in source.url_map:
                if url_map["arch"] not in self.metadata.groups:
                    continue
                lines.append("Name: %s" % url_map["name"])
                lines.append("  Type: %s" % source.ptype)
                lines.append("  URL: %s" % url_map["url"])
                lines.append("  GPG Key(s): %s" % (", ".join(source.gpgkeys) or "None"))
                if source.blacklist_list:
                    lines.append("  Blacklist: %s" % ", ".join(source.blacklist_list))
                if source.whitelist_list:
                    lines.append("  Whitelist: %s" % ", ".join(source.whitelist_list))
                lines.append("")
        return "\n".join(lines)

    @property
    def results(self):
        if self.plugin is None:
            return ResultCache()
        return self.plugin.result_cache(self.cachekey)

    def get_relevant_groups(self):
        groups = set()
        for source in self:
            groups.update(g for g in self.metadata.groups
                          if g in source.groups or g in source.arches)
        return tuple(sorted(groups))

    # -- configs and extra structures

    def get_config(self):
        """The client's repository config; none for mixed or missing sources."""
        self.logger.error("Packages: Cannot generate config for host %s with no "
                          "sources or multiple source types", self.metadata.hostname)
        return ""

    def build_extra_structures(self, independent):
        """Add backend-specific entries (GPG keys) to the Independent structure."""

    def get_additional_data(self):
        """The ``sources`` Connector data: every repository of every source."""
        return [dict(url_map) for source in self for url_map in source.url_map]

    # -- groups

    def get_groups(self, grouplist):
        """``{group: [packages]}`` for a list of ``(group, type)``."""
        result = {}
        for group, ptype in grouplist:
            if group.startswith("@"):
                group = group[1:]
            result[group] = self.get_group(group, ptype)
        return result

    def get_group(self, group, ptype=None):
        if not self.package_groups:
            self.logger.error("Packages: Package groups are not supported by %s",
                              self.__class__.__name__)
            return []
        for source in self:
            pkgs = source.get_group(self.metadata, group, ptype=ptype)
            if pkgs:
                return pkgs
        self.logger.warning("Packages: '%s' is not a valid group", group)
        return []

    # -- queries

    def is_package(self, package):
        return any(source.is_package(self.metadata, package) for source in self)

    def get_deps(self, package, recommended=None):
        """Dependencies from the first source (in sources.xml order) having it."""
        override = recommended.get(package) if recommended else None
        for source in self:
            if source.is_package(self.metadata, package):
                return source.get_deps(self.metadata, package, override)
        return []

    def get_essential(self):
        essential = set()
        for source in self:
            essential |= source.essentialpkgs
        return essential

    def get_provides(self, package):
        for source in self:
            found = source.get_provides(self.metadata, package)
            if found:
                return found
        return ()

    def get_vpkgs(self):
        result = {}
        for source in self:
            for symbol, providers in source.get_vpkgs(self.metadata).items():
                if symbol in result:
                    result[symbol] = result[symbol] | providers
                else:
                    result[symbol] = providers
        return result

    def filter_unknown(self, unknown):
        for source in self:
            source.filter_unknown(unknown)

    def packages_to_entry(self, pkglist, entry):
        """Append one BoundPackage per name to ``entry``."""
        for name in pkglist:
            lxml.etree.SubElement(entry, "BoundPackage", name=name,
                                  version=self.version, type=self.ptype,
                                  origin="Packages")

    # -- resolution

    def virtual_packages(self):
        results = self.results
        key = self.get_relevant_groups()
        found = results.vpkgs.get(key)
        if found is None:
            found = results.remember(results.vpkgs, key, self.get_vpkgs())
        return found

    def complete(self, packagelist, recommended=None):
        """``(packages, unknown)``: ``packagelist`` and everything it needs.

        Upstream's algorithm: names are classified as package, virtual symbol, both
        or unknown; packages pull in their dependencies; a virtual symbol with one
        provider pulls in that provider, with several it is satisfied and adds
        nothing; a name that is both is satisfied by an already chosen provider,
        else added as a package if it was asked for or nothing else is left.
        """
        vpkgs_table = self.virtual_packages()
        base = set(packagelist)
        unclassified = set(base)
        pkgs = set(base)
        vpkgs = set()
        both = set()
        packages = set()
        examined = set()
        unknown = set()
        final_pass = False
        really_done = False
        while unclassified or pkgs or both or final_pass:
            if really_done:
                break
            if not (unclassified or pkgs or both):
                really_done = True
            while unclassified:
                current = unclassified.pop()
                examined.add(current)
                is_pkg = self.is_package(current)
                is_vpkg = current in vpkgs_table
                if is_pkg and is_vpkg:
                    both.add(current)
                elif is_pkg:
                    pkgs.add(current)
                elif is_vpkg:
                    vpkgs.add(current)
                else:
                    unknown.add(current)
            while pkgs:
                current = pkgs.pop()
                packages.add(current)
                deps = set(self.get_deps(current, recommended)).difference(examined)
                if deps:
                    self.debug_log("Packages: Package %s added requirements %s",
                                   current, sorted(deps))
                unclassified.update(deps)
            for current in vpkgs:
                providers = vpkgs_table[current]
                if len(providers) == 1:
                    unclassified.update(set(providers).difference(examined))
            vpkgs.clear()
            done = set()
            for current in both:
                if any(item in packages for item in vpkgs_table[current]):
                    done.add(current)
                elif current in base or final_pass:
                    pkgs.add(current)
                    done.add(current)
            both.difference_update(done)
            final_pass = not (unclassified or pkgs)
            self.filter_unknown(unknown)
        return packages, unknown

    def resolve(self, base, recommended):
        """``complete`` through the result cache (key: base set and overrides)."""
        results = self.results
        key = (frozenset(base), tuple(sorted((recommended or {}).items())))
        found = results.sets.get(key)
        if found is None:
            found = results.remember(results.sets, key,
                                     self.complete(base, recommended))
        return found

    def groups_cached(self, grouplist):
        results = self.results
        key = tuple(sorted(grouplist, key=lambda item: (item[0] or "", item[1] or "")))
        found = results.groups.get(key)
        if found is None:
            found = results.remember(results.groups, key, self.get_groups(list(key)))
        return found

    def __repr__(self):
        return "%s(%s)" % (self.__class__.__name__, list.__repr__(self))
