"""APT sources: ``Packages.gz`` files and the generated ``sources.list``
(spec/packages.md §3, §4.1, §6.2).

Fixes over upstream (§10): version restrictions are stripped from ``Provides`` too,
alternatives (``a | b``) are numbered per package rather than per field (so
``Depends`` and ``Pre-Depends`` no longer overwrite each other's), indented
continuation lines are never read as fields, and empty dependency items are dropped.
"""
import gzip
import logging
import re

from bcfg2_cherry.plugins.packages.collection import Collection
from bcfg2_cherry.plugins.packages.source import Source, SourceData, collapse, \
    collapse_provides

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"\(.*\)")
_BLANKS = re.compile(r"\s+")
_DEP_FIELDS = ("Depends", "Pre-Depends", "Recommends")


def strip_suffix(name):
    """``foo:any`` -> ``foo``."""
    return name[:-4] if name.endswith(":any") else name


def dep_name(item):
    """A dependency item without version restriction, blanks and ``:any``."""
    return strip_suffix(_BLANKS.sub("", _VERSION.sub("", item)))


class AptCollection(Collection):
    """APT collections: the generic algorithm plus ``sources.list`` generation."""

    def get_config(self):
        """The client's sources.list text."""
        lines = ["# This config was generated automatically by the Bcfg2 "
                 "Packages plugin", ""]
        for source in self:
            if source.rawurl:
                index = source.rawurl.rfind("/", 0, -1)
                lines.append("deb %s %s" % (source.rawurl[:index],
                                            source.rawurl[index + 1:]))
            else:
                rest = "%s %s %s" % (source.url, source.version,
                                     " ".join(source.components))
                lines.append("deb " + rest)
                if source.debsrc:
                    lines.append("deb-src " + rest)
            lines.append("")
        return "\n".join(lines)


class AptSource(Source):
    """A Source of ``type="apt"``."""

    ptype = "deb"
    stype = "apt"

    @property
    def urls(self):
        if self.rawurl:
            return ["%sPackages.gz" % self.rawurl]
        return ["%sdists/%s/%s/binary-%s/Packages.gz" % (self.url, self.version, comp,
                                                          arch)
                for comp in self.components for arch in self.arches]

    def _file_arch(self, fname):
        if self.rawurl:
            return self.arches[0]
        for part in fname.split("@"):
            if part.startswith("binary-"):
                return part[7:]
        return self.arches[0]

    def read_files(self):
        deps, recs, provides = {}, {}, {}
        pkgnames = set()
        essential = set()
        for fname in self.files:
            arch = self._file_arch(fname)
            bdeps = deps.setdefault(arch, {})
            brecs = recs.setdefault(arch, {})
            bprov = provides.setdefault(arch, {})
            self._read_one(fname, arch, pkgnames, essential, bdeps, brecs, bprov)
        return SourceData(pkgnames=pkgnames, deps=collapse(deps, pkgnames),
                          recommends=collapse(recs, pkgnames),
                          provides=collapse_provides(provides), essential=essential)

    @staticmethod
    def _read_one(fname, arch, pkgnames, essential, bdeps, brecs, bprov):
        pkgname = None
        choice = 0
        with gzip.open(fname, "rt", encoding="utf-8", errors="replace") as reader:
            for line in reader:
                if not line or line[0] in " \t\r\n" or ":" not in line:
                    continue
                field, value = line.split(":", 1)
                field = field.strip()
                value = value.strip()
                if field == "Package":
                    pkgname = value
                    pkgnames.add(pkgname)
                    bdeps[pkgname] = []
                    brecs[pkgname] = []
                    choice = 0
                elif pkgname is None:
                    continue
                elif field == "Essential":
                    if value == "yes":
                        essential.add(pkgname)
                elif field in _DEP_FIELDS:
                    target = brecs if field == "Recommends" else bdeps
                    for item in value.split(","):
                        if "|" in item:
                            alternatives = set(dep_name(alt) for alt in item.split("|"))
                            alternatives.discard("")
                            symbol = "choice-%s-%s-%s" % (pkgname, arch, choice)
                            choice += 1
                            target[pkgname].append(symbol)
                            bprov[symbol] = alternatives
                        else:
                            name = strip_suffix(_VERSION.sub("", item).strip())
                            if name:
                                target[pkgname].append(name)
                elif field == "Provides":
                    for item in value.split(","):
                        name = _VERSION.sub("", item).strip()
                        if name:
                            bprov.setdefault(name, set()).add(pkgname)
