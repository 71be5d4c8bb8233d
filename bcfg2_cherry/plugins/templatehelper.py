"""TemplateHelper: Python helper modules for templates (spec/repository.md §13).

Every ``TemplateHelper/**/*.py`` is imported (as ``__TemplateHelper_<name>``) at load
and on every change. ``metadata.TemplateHelper[<name>]`` is an object whose attributes
are the module's ``__export__`` and ``__default__`` symbols; the ``__default__`` ones
are also variables of every text template (Cfg). A module that fails to import keeps
its previous exports. Any change expires the metadata cache (cautious/aggressive).
Helper code is repository code: it runs with the server's privileges, like templates.
"""
import importlib.util
import logging
import os
import re
import sys

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.helpers import EDITOR_DROPPINGS, DirectoryBacked, FileBacked
from bcfg2_cherry.plugin.interfaces import Connector, Metadata, TemplateDataProvider

logger = logging.getLogger(__name__)

#: Template variables the core's default provider sets; a helper cannot replace them.
RESERVED_DEFAULTS = ("name", "metadata", "source_path", "repo", "path")
#: Names the upstream docs reserve on the helper object (it has them all anyway).
RESERVED_ATTRIBUTES = ("data", "name", "fam", "Index", "HandleEvent")


def module_name(path):
    """The helper's name: the file name without ``.py``."""
    return os.path.basename(path)[:-len(".py")]


class HelperModule(FileBacked):
    """One helper file; its exported symbols are attributes of this object."""

    def __init__(self, name, plugin):
        FileBacked.__init__(self, name)
        self._plugin = plugin
        self._module_name = module_name(name)
        self._import_name = "__TemplateHelper_%s" % self._module_name
        self._module = None
        #: the exported symbol names currently set on this object
        self._attrs = []
        #: the symbols this helper adds to every text template
        self.defaults = []

    def HandleEvent(self, event=None):
        """Re-import on exists/created/changed; the metadata cache expires either way."""
        if event is not None and event.code2str() not in ("exists", "created",
                                                          "changed"):
            return
        self._plugin.expire_metadata()
        FileBacked.HandleEvent(self, event)
        self._plugin.helpers_changed()

    def Index(self):
        module = self._import()
        if module is None:
            return
        exports = getattr(module, "__export__", None)
        if exports is None:
            logger.error("TemplateHelper: %s has no __export__ list", self.name)
            return
        defaults = getattr(module, "__default__", [])
        if not _is_name_list(exports) or not _is_name_list(defaults):
            logger.error("TemplateHelper: %s: __export__ and __default__ must be lists "
                         "of names", self.name)
            return
        self._export(module, list(exports), list(defaults))

    def _import(self):
        """Run the file as a fresh module; None (error logged) when that fails."""
        spec = importlib.util.spec_from_file_location(self._import_name, self.name)
        module = importlib.util.module_from_spec(spec)
        previous = sys.modules.get(self._import_name)
        sys.modules[self._import_name] = module
        try:
            # compiled here rather than by the loader: no bytecode in the repository
            code = compile(self.data, self.name, "exec", dont_inherit=True)
            exec(code, module.__dict__)  # pylint: disable=exec-used
        except (Exception, SystemExit) as err:  # pylint: disable=broad-except
            logger.error("TemplateHelper: Failed to import %s: %s: %s", self.name,
                         err.__class__.__name__, err)
            if previous is None:
                sys.modules.pop(self._import_name, None)
            else:
                sys.modules[self._import_name] = previous
            return None
        self._module = module
        return module

    def _export(self, module, exports, defaults):
        new = []
        for sym in exports + defaults:
            if sym in new:
                continue
            if sym not in self._attrs and (hasattr(self, sym) or
                                           sym in RESERVED_ATTRIBUTES):
                logger.warning("TemplateHelper: %s: %s is a reserved keyword, skipping "
                               "export", self.name, sym)
                continue
            try:
                value = getattr(module, sym)
            except AttributeError:
                logger.warning("TemplateHelper: %s exports %s, but has no such "
                               "attribute", self.name, sym)
                continue
            setattr(self, sym, value)
            new.append(sym)
        for sym in set(self._attrs) - set(new):
            delattr(self, sym)
        self._attrs = new
        self.defaults = []
        for sym in defaults:
            if sym in RESERVED_DEFAULTS:
                logger.warning("TemplateHelper: %s: %s is a reserved keyword, not "
                               "adding as default", self.name, sym)
            elif sym in new and sym not in self.defaults:
                self.defaults.append(sym)

    def unload(self):
        """Forget the module (its file was deleted)."""
        if self._module is not None and \
                sys.modules.get(self._import_name) is self._module:
            del sys.modules[self._import_name]
        self._module = None

    def __repr__(self):
        return "<TemplateHelper %s (%s)>" % (self._module_name, self.name)


def _is_name_list(value):
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


class HelperDirectory(DirectoryBacked):
    """The ``*.py`` files below ``TemplateHelper/``, recursively."""

    patterns = re.compile(r"^[^/]+\.py$")
    ignore = re.compile(r"%s|^.*\.py[co]$|^__pycache__$" % EDITOR_DROPPINGS.pattern)

    def __init__(self, data, plugin):
        self.plugin = plugin
        DirectoryBacked.__init__(self, data, fam=plugin.core.fam)

    def create_child(self, path):
        return HelperModule(path, self.plugin)

    def HandleEvent(self, event):
        before = self.entries
        DirectoryBacked.HandleEvent(self, event)
        if event.code2str() == "deleted" and self.entries is not before:
            for key, helper in before.items():
                if key not in self.entries:
                    helper.unload()
            self.plugin.expire_metadata()
            self.plugin.helpers_changed(self)


class TemplateHelper(Plugin, Connector, TemplateDataProvider):
    """Makes the helper modules in ``TemplateHelper/`` available to templates."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        self._helpers = {}
        self._defaults = {}
        self.store = None
        self.store = HelperDirectory(self.data, self)
        self.helpers_changed()

    def expire_metadata(self):
        """Expire every client's cached metadata (cautious and aggressive modes)."""
        if self.core.metadata_cache_mode() in ("cautious", "aggressive"):
            self.core.expire_caches_by_type(Metadata)

    def helpers_changed(self, store=None):
        """Recompute the helper table and the template defaults after any change."""
        store = store or self.store
        if store is None:
            return
        helpers = {}
        defaults = {}
        source = {}
        for _, helper in sorted(store.entries.items(), key=lambda item: item[0]):
            name = helper._module_name  # pylint: disable=protected-access
            if name in helpers:
                logger.warning("TemplateHelper: %s and %s are both helper %s; using %s",
                               helpers[name].name, helper.name, name,
                               helpers[name].name)
                continue
            helpers[name] = helper
            for key in helper.defaults:
                if key in defaults:
                    logger.warning("TemplateHelper: Duplicate default variable %s "
                                   "provided by both %s and %s", key, helper.name,
                                   source[key])
                    continue
                defaults[key] = getattr(helper, key)
                source[key] = helper.name
        self._helpers = helpers
        self._defaults = defaults

    def get_additional_data(self, metadata):
        """``{helper name: helper object}`` (``metadata.TemplateHelper``)."""
        return dict(self._helpers)

    def get_template_data(self, entry, metadata, template):
        """The ``__default__`` symbols of every helper (first helper by path wins)."""
        return dict(self._defaults)

    def get_xml_template_data(self, structfile, metadata):
        """Nothing: defaults are for text templates only."""
        return {}

    def set_debug(self, debug):
        self.store.set_debug(debug)
        return Plugin.set_debug(self, debug)
