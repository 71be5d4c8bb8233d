"""Cfg: file contents and attributes from ``Cfg/<absolute path>/`` (spec/repository.md §5).

Every directory that directly holds a regular file is the ``Path`` entry named by
its path below ``Cfg/``; the files in it are its versions (plain, templated,
encrypted, host- or group-specific), its ``info.xml`` and its ``:test`` verifiers.
The tree is kept current from file monitor events; a build only reads it.
"""
import logging
import os
import re

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.helpers import (
    DirectoryBacked,
    FileBacked,
    best_matching,
    get_template_data,
)
from bcfg2_cherry.plugin.interfaces import Generator
from bcfg2_cherry.plugins.cfg.base import (
    CfgCreator,
    CfgGenerator,
    CfgHandler,
    CfgInfo,
    CfgVerifier,
    TemplateDataDefaults,
)
from bcfg2_cherry.plugins.cfg.cheetah_generator import CfgCheetahGenerator
from bcfg2_cherry.plugins.cfg.encrypted import (
    CfgEncryptedCheetahGenerator,
    CfgEncryptedGenerator,
    CfgEncryptedGenshiGenerator,
    CfgEncryptedJinja2Generator,
)
from bcfg2_cherry.plugins.cfg.genshi_generator import CfgGenshiGenerator
from bcfg2_cherry.plugins.cfg.info import CfgInfoXML
from bcfg2_cherry.plugins.cfg.jinja2_generator import CfgJinja2Generator
from bcfg2_cherry.plugins.cfg.keys import (
    CfgAuthorizedKeysGenerator,
    CfgCreationError,
    CfgPrivateKeyCreator,
    CfgPublicKeyCreator,
    CfgSSLCACertCreator,
    CfgSSLCAKeyCreator,
)
from bcfg2_cherry.plugins.cfg.plaintext import CfgPlaintextGenerator
from bcfg2_cherry.plugins.cfg.verifier import CfgExternalCommandVerifier

logger = logging.getLogger(__name__)

__all__ = ["HANDLERS", "Cfg", "CfgCreationError", "CfgEntrySet", "select_handlers"]

#: Every handler, in the order files are offered to them (stable by priority).
HANDLERS = sorted([
    CfgInfoXML, CfgExternalCommandVerifier, CfgPrivateKeyCreator,
    CfgPublicKeyCreator, CfgSSLCAKeyCreator, CfgSSLCACertCreator,
    CfgAuthorizedKeysGenerator, CfgEncryptedGenshiGenerator,
    CfgEncryptedCheetahGenerator, CfgEncryptedJinja2Generator,
    CfgGenshiGenerator, CfgCheetahGenerator, CfgJinja2Generator, CfgEncryptedGenerator,
    CfgPlaintextGenerator,
], key=lambda cls: cls.__priority__)

#: Bcfg2 1.3 delta files (removed in 1.4), after the base name and specificity.
_LEGACY_DELTA = re.compile(r"^(?:\.H_\S+|\.G\d+_\S+)?\.(cat|diff)$")
_LEGACY_INFO = (":info", "info")


def select_handlers(names):
    """The handler classes named in ``[cfg] handlers`` (all when empty).

    Names are upstream's (``CfgJinja2Generator``), case-insensitive, the ``Cfg``
    prefix optional; unknown names are logged.
    """
    if not names:
        return list(HANDLERS)
    known = {}
    for cls in HANDLERS:
        known[cls.__name__.lower()] = cls
        known[cls.__name__[3:].lower()] = cls
    wanted = set()
    for name in names:
        cls = known.get(name.strip().lower())
        if cls is None:
            logger.error("Cfg: [cfg] handlers: unknown handler %s (known: %s)", name,
                         ", ".join(c.__name__ for c in HANDLERS))
        else:
            wanted.add(cls)
    return [cls for cls in HANDLERS if cls in wanted]


class _Unused(FileBacked):
    """A file in a Cfg directory that no handler takes (logged once, never read)."""

    def HandleEvent(self, event=None):
        pass


class _Include(_Unused):
    """A ``.jinja2_include``/``.genshi_include`` fragment: read by the templates
    that include it; a change empties the Jinja2 cache (mtimes can be too coarse)."""

    def __init__(self, name, cfg):
        _Unused.__init__(self, name)
        self.cfg = cfg

    def HandleEvent(self, event=None):
        if event is not None and event.code2str() in ("created", "changed"):
            self.cfg.template_changed(self.name)


class CfgEntrySet:
    """One ``Cfg/<path>/`` directory: the versions and helpers of one Path entry."""

    def __init__(self, cfg, name, path):
        self.cfg = cfg
        #: the entry name (``/etc/motd``)
        self.name = name
        #: the directory
        self.path = path
        self.basename = os.path.basename(path)
        #: file name -> handler (or an _Unused placeholder)
        self.files = {}
        self.generators = ()
        #: (the only generator if it applies to all, host -> generators, the others
        #: as (rank, all, group, generator) most specific first)
        self._choice = (None, {}, ())
        self.verifiers = ()
        self.creators = ()
        self.info = None

    def __repr__(self):
        return "CfgEntrySet(%s)" % self.name

    # -- tracking files

    def classify(self, filename):
        """The handler class and Specificity for ``filename``; (None, reason) if none."""
        handlers = self.cfg.handlers
        for cls in self.cfg.ignoring:
            if cls.ignores(filename):
                return None, None
        if filename in _LEGACY_INFO and filename != self.basename:
            return None, ("%s files were removed in Bcfg2 1.4 and are ignored (the "
                          "entry gets the default owner, group and mode unless an "
                          "info.xml says otherwise); put the attributes into info.xml"
                          % filename)
        if filename.startswith(self.basename):
            legacy = _LEGACY_DELTA.match(filename[len(self.basename):])
            if legacy:
                return None, (".%s delta files were removed in Bcfg2 1.4 and are "
                              "ignored; merge the change into the file itself"
                              % legacy.group(1))
        for cls in handlers:
            specific = cls.match(filename, self.basename)
            if specific is not None:
                return cls, specific
        return None, "no Cfg handler takes this file name"

    def add_file(self, filename):
        """A new handler (or placeholder) for ``filename`` in this directory."""
        path = os.path.join(self.path, filename)
        cls, specific = self.classify(filename)
        if cls is None:
            if specific is not None:
                logger.error("Cfg: %s: %s", path, specific)
                child = _Unused(path)
            else:
                child = _Include(path, self.cfg)
        else:
            child = cls(path, specific, self.cfg)
        self.files = dict(self.files, **{filename: child})
        self._sort()
        return child

    def remove_file(self, filename):
        """Forget a deleted file (the entry stays registered)."""
        if filename in self.files:
            files = dict(self.files)
            del files[filename]
            self.files = files
            self._sort()

    def _sort(self):
        files = self.files
        handlers = [files[name] for name in sorted(files)]
        generators = tuple(h for h in handlers if isinstance(h, CfgGenerator))
        by_host = {}
        ranked = []
        for gen in generators:
            if gen.specific.hostname:
                by_host.setdefault(gen.specific.hostname, []).append(gen)
            else:
                ranked.append(gen)
        # most specific first; equally specific ones by file name
        ranked.sort(key=lambda gen: (-gen.specific.rank()[0], -gen.specific.rank()[1],
                                     gen.name))
        only = generators[0] if len(generators) == 1 and \
            generators[0].specific.all else None
        # one assignment, so a build in another thread sees old or new, never a mix
        self._choice = (only, by_host, tuple(
            (gen.specific.rank(), gen.specific.all, gen.specific.group, gen)
            for gen in ranked))
        self.generators = generators
        self.verifiers = tuple(h for h in handlers if isinstance(h, CfgVerifier))
        self.creators = tuple(h for h in handlers if isinstance(h, CfgCreator))
        infos = [h for h in handlers if isinstance(h, CfgInfo)]
        self.info = infos[0] if infos else None

    # -- binding

    def best_generator(self, metadata):
        """The generator for this client: host > group priority > base (spec §5.3).

        None when no version applies. Equally specific candidates are resolved (by
        file name, with a warning) by ``best_matching``.
        """
        only, by_host, ranked = self._choice
        if only is not None:
            return only
        hosts = by_host.get(metadata.hostname)
        if hosts:
            return hosts[0] if len(hosts) == 1 else best_matching(hosts, metadata)
        groups = metadata.groups
        found = found_rank = None
        for rank, is_all, group, gen in ranked:
            if found is not None and rank != found_rank:
                break
            if is_all or group in groups:
                if found is not None:  # equally specific: tie-break and warning
                    return best_matching([g for _, _, _, g in ranked], metadata)
                found, found_rank = gen, rank
        return found

    def _no_generator(self, entry, metadata):
        """The best-matching creator; raise the reason when there is none."""
        creators = [c for c in self.creators if c.specific.matches(metadata)]
        if creators:
            return creators[0]
        if self.generators:
            raise PluginExecutionError(
                "Cfg: no version in %s applies to %s (%s)" % (
                    self.path, metadata.hostname,
                    ", ".join(sorted(os.path.basename(g.name) for g in self.generators))))
        names = sorted(self.files)
        raise PluginExecutionError(
            "Cfg: %s has no file content to serve for %s (the directory holds %s)" % (
                self.path, entry.get("name"), ", ".join(names) if names else "nothing"))

    def bind_entry(self, entry, metadata):
        """Fill in the Path entry for this client (spec §5.4), in place."""
        cfg = self.cfg
        attrib = entry.attrib
        attrib.update(cfg.default_attributes)
        info = self.info
        if info is not None:
            info.bind_info_to_entry(entry, metadata)
        attrib["type"] = "file"
        binary = attrib.get("encoding") == "base64"
        generator = self.best_generator(metadata)
        if generator is None:
            generator = self._no_generator(entry, metadata)
            data = generator.create_data(entry, metadata)
        else:
            data = generator.get_data(entry, metadata, binary)
        if cfg.validation and self.verifiers:
            self._verify(entry, metadata, data)
        if binary:
            text = generator.to_base64(data)
        elif isinstance(data, bytes):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PluginExecutionError(
                    "Cfg: failed to decode %s (%s) as UTF-8 text: %s; binary files "
                    "need encoding=\"base64\" in info.xml" % (
                        entry.get("name"), generator.name, err)) from None
        else:
            text = data
        if text:
            try:
                entry.text = text
            except ValueError:
                raise PluginExecutionError(
                    "Cfg: %s (%s) holds characters XML cannot carry (NUL or other "
                    "control characters); such files need encoding=\"base64\" in "
                    "info.xml" % (entry.get("name"), generator.name)) from None
        else:
            attrib["empty"] = "true"
        return entry

    def _verify(self, entry, metadata, data):
        """Run the best-matching verifier of each kind (spec §5.7)."""
        by_class = {}
        for verifier in self.verifiers:
            if verifier.specific.matches(metadata):
                by_class.setdefault(verifier.__class__, []).append(verifier)
        for verifiers in by_class.values():
            best_matching(verifiers, metadata, what="verifier").verify_entry(
                entry, metadata, data)


class CfgTree(DirectoryBacked):
    """The ``Cfg/`` directory tree, kept current from file events.

    Files are grouped into CfgEntrySets by directory; ``entries`` maps each file's
    path below ``Cfg/`` to its handler.
    """

    def __init__(self, cfg, data, fam):
        self.cfg = cfg
        DirectoryBacked.__init__(self, data, fam=fam)

    def add_entry(self, relative, event):
        directory, filename = os.path.split(relative)
        if not directory:
            logger.warning("Cfg: %s: files directly in Cfg/ serve no entry; ignored",
                           os.path.join(self.data, relative))
            child = _Unused(os.path.join(self.data, relative))
        else:
            child = self.cfg.entryset("/" + directory).add_file(filename)
        # only event handling reads this dict, so it may change in place
        self.entries[relative] = child
        child.HandleEvent(event)

    def _forget(self, relative):
        DirectoryBacked._forget(self, relative)
        self.cfg.forget("/" + relative)


class Cfg(Plugin, Generator):
    """Serves Path entries from the Cfg directory tree (fast path only)."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        setup = core.setup
        self.setup = setup
        #: the Path entries: name -> CfgEntrySet.bind_entry
        self.Entries = {"Path": {}}
        #: name -> CfgEntrySet
        self.entrysets = {}
        #: [mdata] defaults, set on every entry before info.xml (spec §5.4)
        self.default_attributes = dict(setup.mdata)
        self.validation = setup.getbool("cfg", "validation", True)
        self.encoding = getattr(setup, "encoding", None) or "UTF-8"
        self.handlers = select_handlers(setup.getlist("cfg", "handlers"))
        self.ignoring = [cls for cls in self.handlers if cls.__ignore__]
        self._jinja2_environment = None
        self._genshi_loader = None
        self._template_defaults = {}
        self.tree = CfgTree(self, self.data, core.fam)

    # -- shared template machinery

    @property
    def jinja2_environment(self):
        """The Jinja2 environment of every Jinja2 file (made on first use)."""
        if self._jinja2_environment is None:
            from bcfg2_cherry.plugins.cfg.jinja2_generator import make_environment
            self._jinja2_environment = make_environment(self.encoding)
        return self._jinja2_environment

    @property
    def genshi_loader(self):
        """The Genshi loader for includes of every Genshi file (made on first use)."""
        if self._genshi_loader is None:
            from bcfg2_cherry.plugins.cfg.genshi_generator import make_loader
            self._genshi_loader = make_loader(self.encoding)
        return self._genshi_loader

    def template_data(self, entry, metadata, template, path_is_template):
        """The variables of a text template (spec/core.md §3)."""
        defaults = self._template_defaults.get(path_is_template)
        if defaults is None:
            defaults = self._template_defaults[path_is_template] = \
                TemplateDataDefaults(self.core, path_is_template)
        return get_template_data(entry, metadata, template, default=defaults)

    def template_changed(self, path):
        """An include fragment changed: forget the Jinja2 templates compiled from it."""
        if self._jinja2_environment is not None and \
                self._jinja2_environment.cache is not None:
            self._jinja2_environment.cache.clear()

    # -- the tree

    def entryset(self, name):
        """The CfgEntrySet of entry ``name``, registered on first use (spec §5.1)."""
        entryset = self.entrysets.get(name)
        if entryset is None:
            entryset = CfgEntrySet(self, name, os.path.join(self.data, name.lstrip("/")))
            self.entrysets[name] = entryset
            self.Entries["Path"][name] = entryset.bind_entry
        return entryset

    def forget(self, name):
        """Something at ``name`` (below Cfg/) was deleted: a file or a directory."""
        prefix = name + "/"
        gone = [key for key in self.entrysets if key == name or key.startswith(prefix)]
        for key in gone:
            del self.Entries["Path"][key]
            del self.entrysets[key]
        if gone:
            logger.debug("Cfg: %s deleted: dropped %s", name, ", ".join(sorted(gone)))
            return
        directory, filename = name.rsplit("/", 1)
        entryset = self.entrysets.get(directory)
        if entryset is not None:
            entryset.remove_file(filename)

    def set_debug(self, debug):
        self.tree.set_debug(debug)
        return Plugin.set_debug(self, debug)

    def has_generator(self, entry, metadata):
        """Whether a Cfg file makes content for ``entry`` for this client."""
        entryset = self.entrysets.get(entry.get("name"))
        return entryset is not None and entryset.best_generator(metadata) is not None


__all__ += [cls.__name__ for cls in HANDLERS] + ["CfgHandler"]
