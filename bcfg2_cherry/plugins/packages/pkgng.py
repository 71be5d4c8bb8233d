"""pkgng (FreeBSD) sources: ``packagesite.txz`` (spec/packages.md §3, §4.3)."""
import json
import logging
import lzma
import tarfile

from bcfg2_cherry.plugins.packages.collection import Collection
from bcfg2_cherry.plugins.packages.source import Source, SourceData, collapse

logger = logging.getLogger(__name__)


class PkgngCollection(Collection):
    """pkgng collections: the generic algorithm."""


class PkgngSource(Source):
    """A Source of ``type="pkgng"``."""

    ptype = "pkgng"
    stype = "pkgng"

    @property
    def urls(self):
        if self.rawurl:
            return ["%s/packagesite.txz" % self.rawurl]
        return ["%s/freebsd:%s:%s/%s/packagesite.txz" % (self.url, self.version, arch,
                                                          comp)
                for comp in self.components for arch in self.arches]

    def _file_arch(self, fname):
        if not self.rawurl:
            for part in fname.split("@"):
                if part.startswith("freebsd:"):
                    return ":".join(part[8:].split(":")[1:])
        return self.arches[0]

    def read_files(self):
        deps = {}
        pkgnames = set()
        for fname in self.files:
            bdeps = deps.setdefault(self._file_arch(fname), {})
            with lzma.open(fname) as raw, tarfile.open(fileobj=raw) as tar:
                member = tar.extractfile("packagesite.yaml")
                for line in member:
                    line = line.decode("utf-8", "replace").strip()
                    if not line:
                        continue
                    pkg = json.loads(line)
                    name = pkg["name"]
                    pkgnames.add(name)
                    if "deps" in pkg:
                        bdeps[name] = list(pkg["deps"])
        return SourceData(pkgnames=pkgnames, deps=collapse(deps, pkgnames),
                          recommends={"global": {}})
