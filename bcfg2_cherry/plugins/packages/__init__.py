"""Packages: dependency resolution and Package binding from repository metadata
(spec/packages.md).

- ``sources``: ``Packages/sources.xml`` into Source objects;
- ``source``: the Source base, its parsed tables and their cache;
- ``apt``, ``yum``, ``pac``, ``pkgng``: the backends;
- ``collection``: the sources of one client and the dependency resolution;
- ``fetch``: downloads; ``plugin``: the Packages plugin itself.
"""
from bcfg2_cherry.plugins.packages.plugin import Packages

__all__ = ["Packages"]
