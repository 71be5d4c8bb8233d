"""Shared building blocks of plugins: cached and monitored repository files.

- ``FileBacked``: one file's bytes, re-read when the file monitor says it changed.
- ``XMLFileBacked``: one XML file, parsed, with XInclude (globs, fallbacks, monitored
  targets) done here rather than by libxml2, and the last good parse kept when the
  file breaks.
- ``StructFile``: an XML file with Group/Client conditionals, Genshi XML templates and
  encrypted element text (spec/repository.md §0).
- ``DirectoryBacked``: a directory tree of such files, kept current from file events.
- ``Specificity`` and friends: the ``.G<prio>_<group>`` / ``.H_<host>`` file naming of
  Cfg-like plugins and the choice of the best file for a client (§5.3).
- Template data: the variables every template sees (spec/core.md §3).

File events come from ``core.fam`` (``AddMonitor(path, handler)``; handlers get
``HandleEvent(event)`` with ``event.filename`` and ``event.code2str()``).
"""
import copy
import glob
import io
import logging
import os
import re

import lxml.etree

from bcfg2_cherry import encryption
from bcfg2_cherry.plugin.base import Debuggable
from bcfg2_cherry.plugin.exceptions import PluginExecutionError, SpecificityError
from bcfg2_cherry.plugin.interfaces import TemplateDataProvider
from bcfg2_cherry.xml import GENSHI_NS, XINCLUDE_NS, XMLError, parse_repo_file, \
    parse_repo_string

logger = logging.getLogger(__name__)

__all__ = [
    "set_core", "get_core", "FileBacked", "XMLFileBacked", "StructFile",
    "DirectoryBacked", "XMLDirectoryBacked", "Specificity", "parse_specificity",
    "best_matching", "DefaultTemplateDataProvider", "get_template_data",
    "get_xml_template_data", "EDITOR_DROPPINGS",
]

XI_INCLUDE = "{%s}include" % XINCLUDE_NS
XI_FALLBACK = "{%s}fallback" % XINCLUDE_NS
#: How deep XIncludes may nest before we assume a loop we failed to see.
MAX_INCLUDE_DEPTH = 32
#: File events after which a file is (re-)read.
READ_EVENTS = ("exists", "created", "changed")

#: Names never tracked by DirectoryBacked: what ``[server] ignore_files`` drops by
#: default (editor swap/backup files, vim's ``4913`` probe, SCCS/.svn) plus ``.git``
#: and merge/patch leftovers (``.orig``, ``.rej``), which real sites' repositories hold
#: and upstream ignored (spec/VERIFIED.md). The file monitor drops the first set too.
EDITOR_DROPPINGS = re.compile(
    r"^(\.#.*|.*~|.*#|.*\.swpx?|\..*\.swx|.*\.orig|.*\.rej|4913|SCCS|\.svn|\.git|"
    r"\.gitignore)$")


# -- the running core ---------------------------------------------------------------

_core = None


def set_core(core):
    """Remember the running core (called by the Core at startup; None to forget)."""
    global _core  # pylint: disable=global-statement
    _core = core


def get_core():
    """The core given to ``set_core``, or None."""
    return _core


def _init_mixin(obj, fam):
    """Debuggable state and ``fam`` for a helper that may be mixed into a Plugin.

    A Plugin already has its own logger (kept) and a read-only ``fam`` property
    (the core's monitor, used instead).
    """
    if not hasattr(obj, "debug_flag"):
        Debuggable.__init__(obj, name=__name__)
    try:
        obj.fam = fam
    except AttributeError:
        pass


def _setup_of(core):
    return getattr(core, "setup", None) if core is not None else None


# -- single files -------------------------------------------------------------------

class FileBacked(Debuggable):
    """One file's raw bytes in memory, refreshed from file events.

    ``HandleEvent`` re-reads the file on exists/created/changed and then calls
    ``Index()``, the hook where subclasses parse ``self.data``. A file that cannot be
    read logs an error and keeps its last good data.
    """

    def __init__(self, name, fam=None):
        _init_mixin(self, fam)
        #: full path of the file
        self.name = name
        #: the file's bytes as last read successfully
        self.data = b""

    def HandleEvent(self, event=None):
        """Re-read the file on exists/created/changed (or when called without event)."""
        if event is not None and event.code2str() not in READ_EVENTS:
            return
        try:
            with open(self.name, "rb") as fh:
                data = fh.read()
        except OSError as err:
            logger.error("Failed to read file %s: %s", self.name, err)
            return
        self.data = data
        self.Index()

    def Index(self):
        """Parse ``self.data`` (hook for subclasses; called after every read)."""

    def __repr__(self):
        return "%s(%r)" % (self.__class__.__name__, self.name)


def stat_key(path):
    """What tells whether a file changed since we read it (None when missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _append_text(node, text):
    if text:
        node.text = (node.text or "") + text


def _attach_tail(element, text):
    """Keep ``text`` that followed ``element`` when the element goes away."""
    if not text:
        return
    prev = element.getprevious()
    if prev is not None:
        prev.tail = (prev.tail or "") + text
    else:
        _append_text(element.getparent(), text)


def _replace(element, text, nodes):
    """Replace ``element`` in its parent by ``text`` followed by ``nodes``."""
    parent = element.getparent()
    tail = element.tail
    _attach_tail(element, text)
    index = parent.index(element)
    parent.remove(element)
    for offset, node in enumerate(nodes):
        parent.insert(index + offset, node)
    if tail:
        if nodes:
            nodes[-1].tail = (nodes[-1].tail or "") + tail
        elif index > 0:
            prev = parent[index - 1]
            prev.tail = (prev.tail or "") + tail
        else:
            _append_text(parent, tail)


class XMLFileBacked(FileBacked):
    """One repository XML file, parsed, XIncludes resolved, kept current.

    After a successful load: ``xdata`` is the root element, ``entries`` its children,
    ``label`` its tag (or the ``__identifier__`` attribute when a subclass sets one),
    ``extras`` the files pulled in by XInclude and ``loaded`` is True. A file that
    fails to parse (or that a subclass refuses) logs one error and keeps the last good
    state, so a half-saved edit never empties a working file.

    XInclude is done here, not by libxml2: ``href`` is relative to the including file
    and may be a shell glob (every match is included, the top file never); a missing
    target is dropped with an error logged (a debug message when the include has an
    ``xi:fallback``, whose content is used instead); included files may include others.
    Every target, found or not, is monitored through ``fam`` and its changes reload
    this file.
    """

    #: Attribute of the root element that gives ``label``; None means the root's tag.
    __identifier__ = None

    def __init__(self, filename, fam=None, should_monitor=False, core=None):
        FileBacked.__init__(self, filename, fam=fam)
        self._core = core
        #: root element of the parsed document (XIncludes resolved)
        self.xdata = None
        #: children of the root element
        self.entries = []
        self.label = ""
        #: files included by XInclude (existing ones), in document order
        self.extras = []
        #: paths monitored for XInclude (including targets that do not exist yet)
        self.extra_monitors = []
        self.loaded = False
        self.should_monitor = should_monitor
        self._extra_stats = {}
        self._include_cache = {}
        if should_monitor:
            if fam is None:
                logger.error("%s: cannot monitor without a file monitor", filename)
            else:
                fam.AddMonitor(filename, self)

    @property
    def core(self):
        """The core given at construction, else the running core (``get_core()``)."""
        return self._core if self._core is not None else get_core()

    # -- events

    def HandleEvent(self, event=None):
        """Load on events for this file; reload when an included file changes."""
        if event is None:
            self.load()
            return
        action = event.code2str()
        filename = event.filename
        if (os.path.isabs(filename) and filename != self.name
                and filename in self.extra_monitors):
            if action == "exists" and stat_key(filename) == \
                    self._extra_stats.get(filename, False):
                return  # the initial event of a monitor on a file we just read
            if action in READ_EVENTS + ("deleted",):
                logger.debug("%s: included file %s %s, reloading", self.name,
                             filename, action)
                self.load()
            return
        if action in READ_EVENTS:
            self.load()

    # -- loading

    def load(self):
        """(Re-)read, parse and index the file; returns True on success.

        Any failure is logged once (file and line) and the previous state is kept.
        """
        try:
            with open(self.name, "rb") as fh:
                data = fh.read()
            root = parse_repo_file(self.name).getroot()
        except OSError as err:
            logger.error("Failed to read file %s: %s", self.name, err)
            return False
        except XMLError as err:
            logger.error("Failed to parse %s", err)
            return False
        self._extra_stats = {}
        extras = []
        self._resolve_xincludes(root, self.name, [os.path.abspath(self.name)], extras, 0)
        pending = {}
        try:
            root = self._prepare(root, data, pending)
        except Exception as err:  # pylint: disable=broad-except
            logger.error("%s: not loaded, keeping the previous version: %s",
                         self.name, err)
            return False
        saved = self._snapshot()
        self.data = data
        self.xdata = root
        self.entries = list(root)
        self.label = (root.get(self.__identifier__, "") if self.__identifier__
                      else root.tag)
        self.extras = extras
        self.loaded = True
        for key, value in pending.items():
            setattr(self, key, value)
        try:
            self.Index()
        except Exception as err:  # pylint: disable=broad-except
            logger.error("%s: not loaded, keeping the previous version: %s",
                         self.name, err)
            self._restore(saved)
            return False
        return True

    def _snapshot(self):
        return dict((key, getattr(self, key)) for key in self._state_attributes())

    def _restore(self, saved):
        for key, value in saved.items():
            setattr(self, key, value)
        if self.loaded:
            try:
                self.Index()
            except Exception:  # pylint: disable=broad-except
                logger.exception("%s: cannot re-index the previous version", self.name)

    def _state_attributes(self):
        """Attributes that make up a loaded state (restored when a reload fails)."""
        return ["data", "xdata", "entries", "label", "extras", "loaded"]

    def _prepare(self, root, data, pending):
        """Check or transform a freshly parsed root before it is used (hook).

        Returns the root to keep; raising aborts the load and keeps the old state.
        Attributes to set along with the new state go into the ``pending`` dict
        (and their names into ``_state_attributes``).
        """
        return root

    def Index(self):
        """Called after every successful load with ``xdata`` set (hook for subclasses).

        Raising here aborts the load: the previous state is restored and re-indexed.
        """

    # -- XInclude

    def _monitor_extra(self, path):
        if path not in self.extra_monitors:
            self.extra_monitors.append(path)
            fam = getattr(self, "fam", None)
            if fam is not None:
                fam.AddMonitor(path, self)

    def _resolve_xincludes(self, root, base, chain, extras, depth):
        """Replace every ``xi:include`` below ``root`` (whose file is ``base``)."""
        while True:
            include = next((el for el in root.iter(XI_INCLUDE) if el is not root), None)
            if include is None:
                return
            self._resolve_one(include, base, chain, extras, depth)

    def _resolve_one(self, include, base, chain, extras, depth):
        href = include.get("href")
        if not href:
            logger.error("%s: xi:include without href (line %s), dropped", base,
                         include.sourceline)
            self._fall_back(include, None)
            return
        path = os.path.normpath(os.path.join(os.path.dirname(base), href))
        if include.get("xpointer"):
            logger.warning("%s: xi:include xpointer is not supported, including all of "
                           "%s", base, href)
        matches = sorted(match for match in glob.glob(path) if os.path.isfile(match))
        if not matches:
            self._monitor_extra(path)
            self._extra_stats[path] = None
            self._fall_back(include, "%s: %s does not exist" % (base, href))
            return
        nodes = []
        failed = []
        for match in matches:
            absolute = os.path.abspath(match)
            if absolute in chain:
                if absolute != chain[0]:
                    logger.error("%s: including %s again would loop, skipped", base,
                                 match)
                continue
            self._monitor_extra(match)
            self._extra_stats[match] = stat_key(match)
            if match not in extras:
                extras.append(match)
            if depth >= MAX_INCLUDE_DEPTH:
                logger.error("%s: XIncludes nested over %d deep at %s", self.name,
                             MAX_INCLUDE_DEPTH, match)
                failed.append(match)
                continue
            included = self._parse_included(match, include.get("parse", "xml"),
                                            include.get("encoding"))
            if included is None:
                failed.append(match)
                continue
            if isinstance(included, str):
                nodes.append(included)
                continue
            self._resolve_xincludes(included, match, chain + [absolute], extras,
                                    depth + 1)
            nodes.append(included)
        if failed and not nodes:
            self._fall_back(include, None)
            return
        text = "".join(node for node in nodes if isinstance(node, str))
        _replace(include, text, [node for node in nodes if not isinstance(node, str)])

    def _parse_included(self, path, parse, encoding):
        """Root element (or text, for ``parse="text"``) of an included file, or None.

        A broken included file logs an error and its last good parse is used, if any.
        """
        try:
            if parse == "text":
                with open(path, "rb") as fh:
                    return fh.read().decode(encoding or "utf-8")
            root = parse_repo_file(path).getroot()
        except (OSError, UnicodeDecodeError) as err:
            logger.error("%s: cannot include %s: %s", self.name, path, err)
            return None
        except XMLError as err:
            cached = self._include_cache.get(path)
            logger.error("%s: cannot include %s%s", self.name, err,
                         "; using its last good version" if cached is not None else "")
            return copy.deepcopy(cached) if cached is not None else None
        self._include_cache[path] = copy.deepcopy(root)
        return root

    @staticmethod
    def _fall_back(include, message):
        """Drop an include that produced nothing, putting its fallback in its place."""
        fallback = include.find(XI_FALLBACK)
        if message:
            if fallback is not None:
                logger.debug("%s, using the fallback", message)
            else:
                logger.error("%s, skipping", message)
        if fallback is None:
            _replace(include, None, [])
        else:
            _replace(include, fallback.text, list(fallback))

    def __iter__(self):
        return iter(self.entries)

    def __str__(self):
        return "%s at %s" % (self.__class__.__name__, self.name)


# -- StructFile -----------------------------------------------------------------------

def _negated(element):
    return element.get("negate", "false").strip().lower() == "true"


def _drop_comments(stream):
    """Genshi stream filter: leave comments out of rendered XML templates."""
    from genshi.core import COMMENT
    for kind, data, pos in stream:
        if kind is not COMMENT:
            yield kind, data, pos


def _template_line(err, filename):
    """", line N" of the innermost traceback frame inside the template, if any."""
    lineno = getattr(err, "lineno", None)
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return ", line %s" % lineno if lineno and lineno > 0 else ""


class StructFile(XMLFileBacked):
    """An XML file whose content is conditional on the client (spec repository.md §0).

    ``<Group name=..>`` holds when the client is in the group, ``<Client name=..>``
    when its name is exactly the client's; ``negate="true"`` (any case) inverts;
    nesting means AND. ``Match`` gives the matching elements, ``XMLMatch`` a filtered
    copy of the whole document. Files named ``*.genshi`` or whose root declares
    ``xmlns:py`` as Genshi are rendered per client first; as upstream, a template's
    own ``xi:include`` elements are resolved by Genshi at render time (no globs; a
    missing target without fallback fails the render). Elements with
    ``encrypted="NAME"`` are decrypted at load with passphrase NAME of [encryption]
    (and, in Genshi templates, in each render's output too).
    """

    #: Conditional tags -> test(element, metadata, *args) (negation applied after).
    conditionals = {
        "Group": lambda el, md, *args: el.get("name") in md.groups,
        "Client": lambda el, md, *args: el.get("name") == md.hostname,
    }
    #: Decrypt ``encrypted`` elements at load (info.xml-like files switch it off).
    encryption = True

    def __init__(self, filename, fam=None, should_monitor=False, core=None):
        #: the compiled Genshi template when the file is one, else None
        self.template = None
        XMLFileBacked.__init__(self, filename, fam=fam, should_monitor=should_monitor,
                               core=core)

    def _state_attributes(self):
        return XMLFileBacked._state_attributes(self) + ["template"]

    # -- loading

    def is_genshi(self, root):
        """Whether the file is a Genshi XML template (name or ``xmlns:py``)."""
        return self.name.endswith(".genshi") or root.nsmap.get("py") == GENSHI_NS

    def _prepare(self, root, data, pending):
        pending["template"] = self._compile(data) if self.is_genshi(root) else None
        if self.encryption:
            self._decrypt_all(root)
        return root

    def _compile(self, data):
        """A Genshi MarkupTemplate of the file; includes resolve beside it."""
        from genshi.template import MarkupTemplate, TemplateLoader
        from genshi.template.base import TemplateError
        from genshi.input import ParseError
        setup = _setup_of(self.core)
        encoding = getattr(setup, "encoding", None) or "UTF-8"
        loader = TemplateLoader([os.path.dirname(self.name)], auto_reload=True,
                                default_encoding=encoding)
        try:
            template = MarkupTemplate(io.BytesIO(data), filepath=self.name,
                                      filename=os.path.basename(self.name),
                                      loader=loader, encoding=encoding)
            template.stream  # noqa: B018  # pylint: disable=pointless-statement
            # (compiles directives and static includes now, not at the first render)
            return template
        except (TemplateError, ParseError, LookupError, SyntaxError) as err:
            raise PluginExecutionError("Genshi template error in %s: %s" %
                                       (self.name, err)) from None

    def _lax(self, root):
        value = root.get("lax_decryption")
        if value is not None:
            return value.strip().lower() == "true"
        return encryption.get_lax_decryption(_setup_of(self.core))

    def _decrypt_all(self, root):
        """Decrypt every ``encrypted`` element in place; raise unless lax decryption."""
        elements = [el for el in root.iter() if isinstance(el.tag, str)
                    and el.get("encrypted") is not None]
        if not elements:
            return
        setup = _setup_of(self.core)
        passphrases = encryption.get_passphrases(setup)
        algorithm = encryption.get_algorithm(setup)
        lax = self._lax(root)
        for element in elements:
            if not element.text or not element.text.strip():
                continue
            name = element.get("encrypted")
            try:
                if name not in passphrases:
                    raise encryption.EVPError("no passphrase named %r in [encryption]"
                                              % name)
                plain = encryption.ssl_decrypt(element.text, passphrases[name],
                                               algorithm)
                element.text = plain.decode("utf-8")
            except (encryption.EVPError, UnicodeDecodeError) as err:
                if isinstance(err, UnicodeDecodeError):
                    err = "decrypted to data that is not UTF-8 (wrong passphrase?)"
                message = "Failed to decrypt %s element in %s (line %s): %s" % (
                    element.tag, self.name, element.sourceline, err)
                if lax:
                    logger.debug(message)
                else:
                    raise PluginExecutionError(message) from None

    # -- rendering and matching

    def render(self, metadata):
        """The document for this client: the Genshi render, or ``xdata`` as is."""
        if self.xdata is None:
            raise PluginExecutionError("%s has not been loaded" % self.name)
        template = self.template
        if template is None:
            return self.xdata
        try:
            variables = get_xml_template_data(self, metadata)
            text = template.generate(**variables).filter(_drop_comments).render(
                "xml", strip_whitespace=False)
            root = parse_repo_string(text, source=self.name)
        except Exception as err:  # pylint: disable=broad-except
            raise PluginExecutionError("Failed to render %s%s: %s: %s" % (
                self.name, _template_line(err, self.name), err.__class__.__name__,
                err)) from None
        if self.encryption:
            self._decrypt_all(root)
        return root

    def _holds(self, element, metadata, args):
        return _negated(element) != bool(
            self.conditionals[element.tag](element, metadata, *args))

    def _filter_in_place(self, element, metadata, args):
        """Match form: splice holding conditionals in place, drop the rest."""
        for child in list(element):
            if not isinstance(child.tag, str):
                element.remove(child)
            elif child.tag in self.conditionals:
                if self._holds(child, metadata, args):
                    self._filter_in_place(child, metadata, args)
                    _replace(child, None, list(child))
                else:
                    element.remove(child)
            else:
                self._filter_in_place(child, metadata, args)

    def _match(self, elements, metadata, args):
        result = []
        for element in elements:
            if not isinstance(element.tag, str):
                continue
            if element.tag in self.conditionals:
                if self._holds(element, metadata, args):
                    result.extend(self._match(element, metadata, args))
            else:
                found = copy.deepcopy(element)
                self._filter_in_place(found, metadata, args)
                result.append(found)
        return result

    def _do_match(self, metadata, *args):
        """``Match`` with extra arguments for the conditional tests of subclasses."""
        return self._match(list(self.render(metadata)), metadata, args)

    def Match(self, metadata):
        """Every non-conditional element whose conditional ancestors all hold.

        In document order; each is a copy whose children were filtered the same way.
        """
        return self._do_match(metadata)

    def _xml_filter(self, element, metadata, args):
        parent = element.getparent()
        if not isinstance(element.tag, str):
            if isinstance(element, lxml.etree._Comment):  # pylint: disable=W0212
                parent.remove(element)
        elif element.tag in self.conditionals:
            if self._holds(element, metadata, args):
                for child in list(element):
                    parent.append(child)
                    self._xml_filter(child, metadata, args)
                _append_text(parent, element.text)
            parent.remove(element)
        else:
            for child in list(element):
                self._xml_filter(child, metadata, args)

    def _do_xmlmatch(self, metadata, *args):
        """``XMLMatch`` with extra arguments for the conditional tests of subclasses."""
        root = self.render(metadata)
        if root is self.xdata:
            root = copy.deepcopy(root)
        for child in list(root):
            self._xml_filter(child, metadata, args)
        return root

    def XMLMatch(self, metadata):
        """A copy of the document with conditionals resolved and comments removed.

        Failing conditionals go with their content; holding ones are replaced by their
        children, appended at the end of the parent (as upstream does).
        """
        return self._do_xmlmatch(metadata)


# -- directories ----------------------------------------------------------------------

class _RelayedEvent:
    """A file event seen by a DirectoryBacked, with ``filename`` made a full path."""

    __slots__ = ("filename", "action", "requestID", "original")

    def __init__(self, filename, action, original=None):
        self.filename = filename
        self.action = action
        self.original = original
        self.requestID = getattr(original, "requestID", None)

    def code2str(self):
        return self.action

    def __repr__(self):
        return "<event %s %s>" % (self.action, self.filename)


class _DirectoryWatch:
    """The handler monitoring one directory of a DirectoryBacked.

    One per directory, so bare names in events are resolved against the right one
    without depending on the monitor's request ids.
    """

    def __init__(self, owner, path):
        self.owner = owner
        self.path = path

    def HandleEvent(self, event):
        filename = event.filename
        if not os.path.isabs(filename):
            filename = os.path.join(self.path, filename)
        self.owner.HandleEvent(_RelayedEvent(os.path.normpath(filename),
                                             event.code2str(), event))

    def __repr__(self):
        return "<watch %s for %r>" % (self.path, self.owner)


class DirectoryBacked(Debuggable):
    """A directory tree of files, each held by a ``__child__`` object.

    ``entries`` maps the path relative to the directory to the child. New
    sub-directories are monitored as they appear; deleting a file or directory drops
    its entries. Files whose base name does not match ``patterns`` are logged and
    skipped; names matching ``ignore`` are skipped silently. Without a file monitor the
    tree is read once, at construction.
    """

    #: class of the objects holding the files (called as ``__child__(path, fam=...)``)
    __child__ = FileBacked
    #: base names of files to track (searched, not anchored)
    patterns = re.compile(r".*")
    #: base names of files and directories to skip silently (None: skip nothing)
    ignore = EDITOR_DROPPINGS

    def __init__(self, data, fam=None):
        _init_mixin(self, fam)
        self.data = os.path.abspath(data)
        #: relative path -> child object (replaced, never mutated, on every change, so
        #: readers in other threads can iterate it safely)
        self.entries = {}
        self._directories = set()
        if not os.path.exists(self.data):
            logger.warning("%s does not exist, creating", self.data)
            os.makedirs(self.data)
        self.add_directory_monitor("")

    # mapping-ish access, as upstream
    def __getitem__(self, key):
        return self.entries[key]

    def __setitem__(self, key, value):
        entries = dict(self.entries)
        entries[key] = value
        self.entries = entries

    def __delitem__(self, key):
        entries = dict(self.entries)
        del entries[key]
        self.entries = entries

    def __len__(self):
        return len(self.entries)

    def __iter__(self):
        return iter(list(self.entries.items()))

    def set_debug(self, debug):
        for entry in self.entries.values():
            if isinstance(entry, Debuggable):
                entry.set_debug(debug)
        return Debuggable.set_debug(self, debug)

    def add_directory_monitor(self, relative):
        """Start watching ``relative`` (a path below ``data``; "" is ``data`` itself)."""
        if relative in self._directories:
            return
        path = os.path.join(self.data, relative) if relative else self.data
        if not os.path.isdir(path):
            logger.error("%s is not a directory", path)
            return
        self._directories.add(relative)
        watch = _DirectoryWatch(self, path)
        fam = getattr(self, "fam", None)
        if fam is not None:
            fam.AddMonitor(path, watch)
            return
        for name in sorted(os.listdir(path)):
            watch.HandleEvent(_RelayedEvent(name, "exists"))

    def create_child(self, path):
        """A new ``__child__`` for the file at ``path``; override for other signatures."""
        fam = getattr(self, "fam", None)
        if issubclass(self.__child__, XMLFileBacked):
            return self.__child__(path, fam=fam, core=getattr(self, "core", None))
        return self.__child__(path, fam=fam)

    def add_entry(self, relative, event):
        """Track a new file: create its child and hand it the event."""
        child = self.create_child(os.path.join(self.data, relative))
        self[relative] = child
        child.HandleEvent(event)

    def _forget(self, relative):
        prefix = relative + os.sep
        gone = set(key for key in self.entries
                   if key == relative or key.startswith(prefix))
        if gone:
            self.entries = dict((key, value) for key, value in self.entries.items()
                                if key not in gone)
        self._directories = set(
            name for name in self._directories
            if not (name == relative or name.startswith(prefix)))

    def HandleEvent(self, event):
        """Track files and sub-directories from file monitor events."""
        action = event.code2str()
        if action == "endExist":
            return
        path = os.path.normpath(event.filename)
        if not os.path.isabs(path):
            path = os.path.join(self.data, path)
        if path == self.data:
            if action == "deleted":
                logger.warning("%s was deleted", self.data)
                self.entries = {}
            return
        relative = os.path.relpath(path, self.data)
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            logger.warning("%s: event for %s outside the directory", self.data, path)
            return
        basename = os.path.basename(relative)
        if self.ignore is not None and self.ignore.search(basename):
            logger.debug("Ignoring %s event for %s", action, path)
            return
        if action == "deleted":
            self._forget(relative)
            return
        if os.path.isdir(path):
            if action in READ_EVENTS:
                self.add_directory_monitor(relative)
            return
        if not self.patterns.search(basename):
            logger.warning("Could not process filename %s; ignoring", path)
            return
        if action not in READ_EVENTS:
            logger.warning("Unknown %s event for %s", action, path)
            return
        child = self.entries.get(relative)
        if child is None:
            if action == "changed":
                logger.debug("Got changed event for unknown file %s", path)
            self.add_entry(relative, event)
        else:
            child.HandleEvent(event)


class XMLDirectoryBacked(DirectoryBacked):
    """A DirectoryBacked of ``*.xml`` files held by XMLFileBacked objects."""

    patterns = re.compile(r"^.*\.xml$")
    __child__ = XMLFileBacked


# -- specificity ----------------------------------------------------------------------

class Specificity:
    """Which clients a file applies to: all, one group (with a priority) or one host.

    Ordered by how specific it is: all < group (lower priority < higher priority) <
    host, so ``max()`` of matching ones is the winner. Groups of equal priority, and
    hosts, compare equal in that order even when their names differ.
    """

    def __init__(self, all=False, group=False,  # pylint: disable=redefined-builtin
                 hostname=False, prio=0, delta=False):
        self.all = all
        self.group = group
        self.hostname = hostname
        self.prio = int(prio)
        self.delta = delta

    def matches(self, metadata):
        """Whether this applies to the client."""
        if self.all:
            return True
        if self.hostname:
            return self.hostname == metadata.hostname
        if self.group:
            return self.group in metadata.groups
        return False

    def rank(self):
        """Sort key: (0, 0) all, (1, prio) group, (2, 0) host."""
        if self.hostname:
            return (2, 0)
        if self.group:
            return (1, self.prio)
        return (0, 0)

    def __lt__(self, other):
        return self.rank() < other.rank()

    def __le__(self, other):
        return self.rank() <= other.rank()

    def __gt__(self, other):
        return self.rank() > other.rank()

    def __ge__(self, other):
        return self.rank() >= other.rank()

    def _identity(self):
        return (bool(self.all), self.group, self.hostname, self.prio, self.delta)

    def __eq__(self, other):
        if not isinstance(other, Specificity):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self):
        return hash(self._identity())

    def __str__(self):
        if self.hostname:
            text = "host %s" % self.hostname
        elif self.group:
            text = "group %s, priority %s" % (self.group, self.prio)
        else:
            text = "all"
        return "Specificity: %s%s" % (text, ", delta=%s" % self.delta
                                      if self.delta else "")

    __repr__ = __str__


_SPECIFIC = re.compile(r"^\.(?:H_(?P<hostname>\S+)|G(?P<prio>\d+)_(?P<group>\S+))$")


def parse_specificity(filename, basename, extensions=()):
    """Parse ``<basename>[.G<prio>_<group>|.H_<host>][<ext>]``.

    ``extensions`` lists the known trailing extensions (``.genshi``, ``.crypt``, ...;
    the dot is optional); the longest one that leaves a valid name wins. Group and
    host names may contain dots. Returns ``(Specificity, ext)`` with ext "" when none;
    raises SpecificityError for any other name.
    """
    filename = os.path.basename(filename)
    if not filename.startswith(basename):
        raise SpecificityError("%s does not start with %s" % (filename, basename))
    rest = filename[len(basename):]
    exts = sorted(set(ext if ext.startswith(".") else "." + ext
                      for ext in extensions if ext), key=len, reverse=True)
    for ext in exts + [""]:
        if ext and not rest.endswith(ext):
            continue
        middle = rest[:len(rest) - len(ext)]
        if not middle:
            return Specificity(all=True), ext
        match = _SPECIFIC.match(middle)
        if match:
            if match.group("hostname"):
                return Specificity(hostname=match.group("hostname")), ext
            return Specificity(group=match.group("group"),
                               prio=int(match.group("prio"))), ext
    raise SpecificityError("%s: not %s with an optional .G<prio>_<group> or .H_<host>"
                           " and one of the extensions %s" %
                           (filename, basename, ", ".join(exts) or "(none)"))


_warned_ties = set()


def best_matching(candidates, metadata, what=None):
    """The candidate (anything with ``.specific``) that applies best to the client.

    Host beats group, a higher group priority beats a lower one, group beats all.
    Equally good candidates are told apart by file name (``.name``), with a warning
    (upstream silently takes whichever was registered first). Raises
    PluginExecutionError when nothing applies.
    """
    matching = [cand for cand in candidates if cand.specific.matches(metadata)]
    if not matching:
        raise PluginExecutionError("No matching %sfor %s" % (
            "%s " % what if what else "entries ", metadata.hostname))
    best = max(cand.specific.rank() for cand in matching)
    tied = sorted((cand for cand in matching if cand.specific.rank() == best),
                  key=lambda cand: str(getattr(cand, "name", cand)))
    if len(tied) > 1:
        names = tuple(str(getattr(cand, "name", cand)) for cand in tied)
        if names not in _warned_ties:
            if len(_warned_ties) > 1000:
                _warned_ties.clear()
            _warned_ties.add(names)
            logger.warning("%s: %s equally specific; using %s (first by name)",
                           metadata.hostname, ", ".join(names), names[0])
    return tied[0]


# -- template data --------------------------------------------------------------------

class DefaultTemplateDataProvider(TemplateDataProvider):
    """The variables every template gets before any TemplateDataProvider plugin's."""

    def __init__(self, core=None):
        self.core = core

    def _repo(self, core=None):
        for candidate in (core, self.core, get_core()):
            if candidate is not None:
                return getattr(_setup_of(candidate), "repository", None)
        return None

    def get_template_data(self, entry, metadata, template):
        """``name`` (real name under altsrc), ``metadata``, ``source_path``, ``repo``."""
        return dict(name=entry.get("realname", entry.get("name")), metadata=metadata,
                    source_path=template, repo=self._repo())

    def get_xml_template_data(self, structfile, metadata):
        """``metadata`` and ``repo``."""
        return dict(metadata=metadata,
                    repo=self._repo(getattr(structfile, "core", None)))

    def __str__(self):
        return "default template data"


def _merge(providers, method, args):
    data = {}
    source = {}
    for provider in providers:
        for key, value in getattr(provider, method)(*args).items():
            if key in data:
                logger.warning("Template variable %s from %s ignored: already set by %s",
                               key, provider, source[key])
                continue
            data[key] = value
            source[key] = provider
    return data


def _providers(core, default):
    providers = []
    if default is None:
        default = DefaultTemplateDataProvider(core)
    if default is not False:
        providers.append(default)
    if core is not None and hasattr(core, "plugins_by_type"):
        providers.extend(core.plugins_by_type(TemplateDataProvider))
    return providers


def get_template_data(entry, metadata, template, default=None):
    """All variables of a text template (Cfg): defaults, then each provider plugin.

    ``default`` replaces DefaultTemplateDataProvider (False: no defaults). The first
    provider of a key wins; later ones are logged. ``path`` is the caller's to add.
    """
    core = get_core()
    return _merge(_providers(core, default), "get_template_data",
                  (entry, metadata, template))


def get_xml_template_data(structfile, metadata, default=None):
    """All variables of an XML template (StructFile): ``metadata``, ``repo``, plugins'."""
    core = getattr(structfile, "core", None)
    if core is None:
        core = get_core()
    return _merge(_providers(core, default), "get_xml_template_data",
                  (structfile, metadata))
