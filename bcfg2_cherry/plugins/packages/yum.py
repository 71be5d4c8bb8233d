"""Yum sources with the builtin ``repodata/`` parser, comps groups, the generated
``.repo`` file and GPG key entries (spec/packages.md §3, §4.2, §6.2, §6.3).

The Python yum libraries (``use_yum_libraries``) and Pulp are out of scope. Unlike
upstream, the downloaded ``repomd.xml`` is kept in the cache, so re-parsing the
downloaded files needs no network.
"""
import configparser
import gzip
import io
import logging
import os
import re
import sys

import lxml.etree

from bcfg2_cherry.plugins.packages.collection import Collection
from bcfg2_cherry.plugins.packages.source import Source, SourceData

logger = logging.getLogger(__name__)

XP = "{http://linux.duke.edu/metadata/common}"
RP = "{http://linux.duke.edu/metadata/rpm}"
RPO = "{http://linux.duke.edu/metadata/repo}"
FL = "{http://linux.duke.edu/metadata/filelists}"
METADATA_TYPES = ("filelists", "primary", "group")
HEADER = "# This config was generated automatically by the Bcfg2 Packages plugin\n\n"


def _parser():
    return dict(resolve_entities=False, no_network=True, load_dtd=False,
                huge_tree=True)


def _open(fname):
    """A file object of ``fname``, gunzipped when it is gzip data."""
    with open(fname, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(fname, "rb")
    return open(fname, "rb")


def rpmvercmp(one, two):
    """RPM's version comparison: 1, 0 or -1."""
    if one == two:
        return 0
    one, two = one or "", two or ""
    strip = re.compile(r"^[^A-Za-z0-9~]+")
    segment = re.compile(r"^([0-9]+|[A-Za-z]+)")
    while one or two:
        one, two = strip.sub("", one), strip.sub("", two)
        if one.startswith("~") or two.startswith("~"):
            if not one.startswith("~"):
                return 1
            if not two.startswith("~"):
                return -1
            one, two = one[1:], two[1:]
            continue
        if not one or not two:
            break
        seg1 = segment.match(one).group(1)
        numeric = seg1.isdigit()
        match2 = segment.match(two)
        seg2 = match2.group(1) if match2 else ""
        if seg2 and seg2.isdigit() != numeric:
            return 1 if numeric else -1
        if not seg2:
            return 1 if numeric else -1
        one, two = one[len(seg1):], two[len(seg2):]
        if numeric:
            seg1, seg2 = seg1.lstrip("0"), seg2.lstrip("0")
            if len(seg1) != len(seg2):
                return 1 if len(seg1) > len(seg2) else -1
        if seg1 != seg2:
            return 1 if seg1 > seg2 else -1
    if len(one) != len(two):
        return 1 if len(one) > len(two) else -1
    return 0


def _evr_cmp(first, second):
    for one, two in zip(first, second):
        result = rpmvercmp(one, two)
        if result:
            return result
    return 0


class YumCollection(Collection):
    """Yum collections: groups, the ``.repo`` config and GPG key entries."""

    package_groups = True

    def get_groups(self, grouplist):
        return Collection.get_groups(self, [(group, ptype or "default")
                                            for group, ptype in grouplist])

    def get_config(self):
        """The client's yum .repo text."""
        config = configparser.RawConfigParser()
        config.optionxform = str
        for source in self:
            for url_map in source.url_map:
                if url_map["arch"] not in self.metadata.groups:
                    continue
                base = url_map["name"]
                name = base
                rid = 1
                while config.has_section(name) or \
                        name == configparser.DEFAULTSECT:
                    rid += 1
                    name = "%s-%d" % (base, rid)
                config.add_section(name)
                config.set(name, "name", name)
                config.set(name, "baseurl", url_map["url"])
                config.set(name, "enabled", "1")
                if source.gpgkeys:
                    config.set(name, "gpgcheck", "1")
                    config.set(name, "gpgkey", " ".join(source.gpgkeys))
                else:
                    config.set(name, "gpgcheck", "0")
                if source.blacklist_list:
                    config.set(name, "exclude", " ".join(source.blacklist_list))
                if source.whitelist_list:
                    config.set(name, "includepkgs", " ".join(source.whitelist_list))
                for key, value in source.client_options.items():
                    config.set(name, key.lower(), value)
        buf = io.StringIO()
        config.write(buf)
        return HEADER + buf.getvalue()

    def build_extra_structures(self, independent):
        """A BoundPath per GPG key of the client's Yum sources (key text from the
        cache); a missing key file fails the whole step, as upstream."""
        keys = []
        for source in self:
            for key in source.gpgkeys:
                if key not in keys:
                    keys.append(key)
        if not keys or self.plugin is None:
            return
        self.plugin.warn_no_yum()
        keydir = self.plugin.gpg_keypath
        for key in keys:
            remote = os.path.join(keydir, os.path.basename(key))
            local = self.plugin.local_key(key)
            with open(local, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            path = lxml.etree.Element("BoundPath", name=remote, encoding="ascii",
                                      owner="root", group="root", type="file",
                                      mode="0644", important="true")
            path.text = text
            independent.append(path)


class YumSource(Source):
    """A Source of ``type="yum"`` (builtin parser)."""

    ptype = "yum"
    stype = "yum"

    def _repomd(self, base):
        return self.escape_url("%srepodata/repomd.xml" % base)

    def _bases(self):
        return [(url_map["url"], url_map["arch"]) for url_map in self.url_map]

    def _listed_files(self, base, repomd):
        """URLs of the primary, filelists and group data a repomd.xml lists."""
        with open(repomd, "rb") as fh:
            root = lxml.etree.fromstring(fh.read(), lxml.etree.XMLParser(**_parser()))
        urls = []
        for data in root.findall(RPO + "data"):
            if data.get("type") in METADATA_TYPES:
                location = data.find(RPO + "location")
                if location is not None and location.get("href"):
                    urls.append(base + location.get("href"))
        return urls

    def update(self):
        for base, _ in self._bases():
            repomd = self.download("%srepodata/repomd.xml" % base)
            for url in self._listed_files(base, repomd):
                self.download(url)

    def _files_by_arch(self):
        result = []
        for base, arch in self._bases():
            for url in self._listed_files(base, self._repomd(base)):
                result.append((self.escape_url(url), arch))
        return result

    def _local_files(self):
        try:
            return [self._repomd(base) for base, _ in self._bases()] + \
                [fname for fname, _ in self._files_by_arch()]
        except (OSError, lxml.etree.XMLSyntaxError):
            return [self.cachefile + ".none"]

    @property
    def files(self):
        return [fname for fname, _ in self._files_by_arch()]

    def read_files(self):
        primaries, filelists, groups = [], [], []
        for fname, arch in self._files_by_arch():
            if fname.endswith("primary.xml.gz"):
                primaries.append((fname, arch))
            elif fname.endswith("filelists.xml.gz"):
                filelists.append((fname, arch))
            else:
                groups.append(fname)
        packages, deps, provides, needed = {}, {}, {}, set()
        for fname, arch in primaries:
            self._parse_primary(fname, packages.setdefault(arch, set()),
                                deps.setdefault(arch, {}),
                                provides.setdefault(arch, {}), needed)
        filemap = {}
        for fname, arch in filelists:
            self._parse_filelist(fname, filemap.setdefault(arch, {}), needed)
        yumgroups = {}
        for fname in groups:
            self._parse_group(fname, yumgroups)
        allnames = set()
        for names in packages.values():
            allnames.update(names)
        if not allnames:
            self.logger.error("Packages: No packages in repo %s", self)
        # upstream keeps every name under "global" (the union over the arches)
        pkgsets = {"global": frozenset(allnames)}
        for arch in packages:
            pkgsets[arch] = frozenset()
        dtable = {"global": {}}
        for arch, table in deps.items():
            dtable[arch] = dict((name, tuple(values)) for name, values in table.items())
        ptable = {"global": {}}
        for arch, table in provides.items():
            ptable[arch] = dict((sym, frozenset(values)) for sym, values in table.items())
        ftable = dict((arch, dict((path, frozenset(pkgs)) for path, pkgs in table.items()))
                      for arch, table in filemap.items())
        return SourceData(pkgnames=allnames, deps=dtable, recommends={"global": {}},
                          provides=ptable, groups=yumgroups,
                          extra={"packages": pkgsets, "filemap": ftable})

    @staticmethod
    def _parse_primary(fname, names, deps, provides, needed):
        versions = {}
        with _open(fname) as fh:
            for _, pkg in lxml.etree.iterparse(fh, tag=XP + "package", **_parser()):
                name_el = pkg.find(XP + "name")
                if name_el is None or not name_el.text:
                    pkg.clear()
                    continue
                name = sys.intern(name_el.text.strip())
                vtag = pkg.find(XP + "version")
                evr = (vtag.get("epoch") or "0", vtag.get("ver"), vtag.get("rel")) \
                    if vtag is not None else ("0", None, None)
                if name in versions and _evr_cmp(evr, versions[name]) < 0:
                    pkg.clear()
                    continue
                versions[name] = evr
                names.add(name)
                requires = set()
                fmt = pkg.find(XP + "format")
                if fmt is not None:
                    req = fmt.find(RP + "requires")
                    if req is not None:
                        for entry in req:
                            symbol = entry.get("name")
                            if symbol:
                                requires.add(sys.intern(symbol))
                                if symbol.startswith("/"):
                                    needed.add(symbol)
                    pro = fmt.find(RP + "provides")
                    if pro is not None:
                        for entry in pro:
                            symbol = entry.get("name")
                            if symbol:
                                provides.setdefault(sys.intern(symbol), set()).add(name)
                deps[name] = requires
                pkg.clear()
                while pkg.getprevious() is not None:
                    del pkg.getparent()[0]

    @staticmethod
    def _parse_filelist(fname, filemap, needed):
        with _open(fname) as fh:
            for _, pkg in lxml.etree.iterparse(fh, tag=FL + "package", **_parser()):
                name = pkg.get("name")
                for fentry in pkg.iter(FL + "file"):
                    if fentry.text in needed:
                        filemap.setdefault(fentry.text, set()).add(name)
                pkg.clear()
                while pkg.getprevious() is not None:
                    del pkg.getparent()[0]

    @staticmethod
    def _parse_group(fname, yumgroups):
        with _open(fname) as fh:
            root = lxml.etree.parse(fh, lxml.etree.XMLParser(**_parser())).getroot()
        for group in root:
            if not isinstance(group.tag, str) or not group.tag.endswith("group"):
                continue
            gid = group.find("id")
            if gid is None:
                continue
            table = {"mandatory": [], "default": [], "optional": [], "conditional": []}
            yumgroups[gid.text] = table
            plist = group.find("packagelist")
            if plist is None:
                continue
            for req in plist:
                if isinstance(req.tag, str) and req.get("type") in table:
                    table[req.get("type")].append(req.text)

    # -- queries

    def is_package(self, metadata, package):
        arches = self.arch_groups(metadata)
        if not arches:
            return False
        sets = self.data.extra.get("packages", {})
        return ((package in sets.get("global", ()) or
                 package in sets.get(arches[0], ())) and
                package not in self.blacklist and
                (not self.whitelist or package in self.whitelist))

    def get_vpkgs(self, metadata):
        result = Source.get_vpkgs(self, metadata)
        for arch, table in self.data.extra.get("filemap", {}).items():
            if arch != "global" and arch not in metadata.groups:
                continue
            result.update(table)
        return result

    def unknown_filter(self, package):
        return package.startswith("rpmlib")

    def get_group(self, metadata, group, ptype=None):
        table = self.data.groups.get(group)
        if table is None:
            return []
        result = table["conditional"] + table["mandatory"]
        if ptype in ("default", "optional", "all"):
            result += table["default"]
        if ptype in ("optional", "all"):
            result += table["optional"]
        return result
