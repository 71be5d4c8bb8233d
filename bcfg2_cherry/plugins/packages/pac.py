"""Pacman sources: ``<repo>.db.tar.gz`` databases and package groups
(spec/packages.md §3, §4.3). A ``rawurl`` Pacman source cannot be loaded."""
import logging
import os
import tarfile

from bcfg2_cherry.plugins.packages.collection import Collection
from bcfg2_cherry.plugins.packages.source import Source, SourceData, collapse, \
    collapse_provides

logger = logging.getLogger(__name__)


def parse_db_file(lines):
    """``%SECTION%`` -> list of lines, from one ``desc``/``depends`` file."""
    pkg = {}
    section = None
    for line in lines:
        line = line.strip()
        if section is not None:
            if not line:
                section = None
            else:
                pkg[section].append(line)
        elif len(line) >= 2 and line[0] == line[-1] == "%":
            section = line
            pkg[section] = []
    return pkg


def parse_dep(dep):
    """The package name of a dependency (cut at ``: ``, then ``<``, ``>``, ``=``)."""
    rest = dep.split(": ", 1)[0]
    for symbol in ("<", ">", "="):
        index = rest.find(symbol)
        if index >= 0:
            return rest[:index]
    return rest


class PacCollection(Collection):
    """Pacman collections: the generic algorithm with package groups."""

    package_groups = True


class PacSource(Source):
    """A Source of ``type="pac"``."""

    ptype = "pacman"
    stype = "pac"

    @property
    def urls(self):
        if self.rawurl:
            raise ValueError("PacSource: rawurl is not supported")
        return ["%s%s/os/%s/%s.db.tar.gz" % (self.url, comp, arch, comp)
                for comp in self.components for arch in self.arches]

    def _local_files(self):
        return [self.cachefile + ".none"] if self.rawurl else self.files

    def read_files(self):
        deps, recs, provides = {}, {}, {}
        pkgnames = set()
        groups = {}
        for fname in self.files:
            parts = fname.split("@")
            arch = next((part for part in parts if part in self.arches),
                        self.arches[0])
            bdeps = deps.setdefault(arch, {})
            brecs = recs.setdefault(arch, {})
            bprov = provides.setdefault(arch, {})
            packages = {}
            with tarfile.open(fname, "r") as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    member = tar.extractfile(info)
                    lines = member.read().decode("utf-8", "replace").splitlines()
                    packages.setdefault(os.path.dirname(info.name), {}).update(
                        parse_db_file(lines))
            for pkg in packages.values():
                if not pkg.get("%NAME%"):
                    continue
                name = pkg["%NAME%"][0]
                pkgnames.add(name)
                bdeps[name] = [parse_dep(dep) for dep in pkg.get("%DEPENDS%", ())]
                brecs[name] = [parse_dep(dep) for dep in pkg.get("%OPTDEPENDS%", ())]
                for dep in pkg.get("%PROVIDES%", ()):
                    bprov.setdefault(parse_dep(dep), set()).add(name)
                for group in pkg.get("%GROUPS%", ()):
                    groups.setdefault(group, []).append(name)
        return SourceData(pkgnames=pkgnames, deps=collapse(deps, pkgnames),
                          recommends=collapse(recs, pkgnames),
                          provides=collapse_provides(provides), groups=groups)

    def get_group(self, metadata, group, ptype=None):
        return list(self.data.groups.get(group, ()))
