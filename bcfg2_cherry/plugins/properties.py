"""Properties: data files for templates, as ``metadata.Properties``
(spec/repository.md §10).

``Properties/**/*.xml``, ``*.json``, ``*.yaml``/``*.yml`` (``*.xsd`` are schemas).
``metadata.Properties`` maps the path relative to ``Properties/`` to the file's
object: XML files are StructFiles (``xdata``, ``data``, ``entries``, ``Match``,
``XMLMatch``, ``write()``), or, with automatch, the XMLMatch result itself; JSON and
YAML files have ``json``/``yaml``, ``data`` and ``write()``. Any change expires the
metadata cache (cautious/aggressive).
"""
import copy
import json
import logging
import os
import re

import lxml.etree

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.helpers import EDITOR_DROPPINGS, DirectoryBacked, \
    FileBacked, StructFile
from bcfg2_cherry.plugin.interfaces import Connector, Metadata
from bcfg2_cherry.state import atomic_write
from bcfg2_cherry.xml import XMLError, parse_repo_file

logger = logging.getLogger(__name__)

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is a dependency
    HAS_YAML = False

EXTENSIONS = ("xml", "json") + (("yaml", "yml") if HAS_YAML else ())


class PropertyFile:
    """What every properties file offers: ``write()`` with the checks around it."""

    def __init__(self, plugin):
        self.plugin = plugin

    def write(self):
        """Write the (possibly changed) data back to the file; True on success.

        Refused when ``[properties] writes_enabled`` is false or the data does not
        validate; raises PluginExecutionError.
        """
        if not self.plugin.core.setup.getbool("properties", "writes_enabled", True):
            raise PluginExecutionError("Properties files write-back is disabled in "
                                       "the configuration")
        try:
            self.validate_data()
        except PluginExecutionError as err:
            message = "Cannot write %s: %s" % (self.name, err)
            logger.error(message)
            raise PluginExecutionError(message) from None
        try:
            atomic_write(self.name, self.serialize())
        except OSError as err:
            message = "Failed to write %s: %s" % (self.name, err)
            logger.error(message)
            raise PluginExecutionError(message) from None
        return True

    def validate_data(self):
        """Raise PluginExecutionError when the data cannot be written."""
        raise NotImplementedError

    def serialize(self):
        """The file content to write (bytes or str)."""
        raise NotImplementedError

    def expire_metadata(self):
        self.plugin.expire_metadata()

    def additional_data(self, metadata):  # pylint: disable=unused-argument
        """What ``metadata.Properties[<path>]`` holds for this client."""
        return copy.copy(self)


class _ParsedFile(FileBacked, PropertyFile):
    """A JSON or YAML file: ``data`` (text) and the decoded value."""

    attribute = None

    def __init__(self, path, plugin):
        FileBacked.__init__(self, path)
        PropertyFile.__init__(self, plugin)
        self.loaded = False
        self._good_data = ""
        setattr(self, self.attribute, None)

    def Index(self):
        try:
            text = self.data.decode("utf-8")
            value = self.parse(text)
        except Exception as err:  # pylint: disable=broad-except
            logger.error("Properties: could not load %s data from %s: %s",
                         self.attribute.upper(), self.name, err)
            self.data = self._good_data
            return
        self.data = self._good_data = text
        setattr(self, self.attribute, value)
        self.loaded = True
        self.expire_metadata()

    def parse(self, text):
        raise NotImplementedError

    def __str__(self):
        return str(getattr(self, self.attribute))

    def __repr__(self):
        return repr(getattr(self, self.attribute))


class JSONPropertyFile(_ParsedFile):
    """A ``.json`` properties file; the decoded value is ``json``."""

    attribute = "json"

    def parse(self, text):
        return json.loads(text)

    def validate_data(self):
        try:
            json.dumps(self.json)
        except (TypeError, ValueError) as err:
            raise PluginExecutionError("Data for %s cannot be dumped to JSON: %s" %
                                       (self.name, err)) from None

    def serialize(self):
        return json.dumps(self.json)


class YAMLPropertyFile(_ParsedFile):
    """A ``.yaml``/``.yml`` properties file; the decoded value is ``yaml``."""

    attribute = "yaml"

    def parse(self, text):
        return yaml.safe_load(text)

    def validate_data(self):
        try:
            yaml.safe_dump(self.yaml)
        except yaml.YAMLError as err:
            raise PluginExecutionError("Data for %s cannot be dumped to YAML: %s" %
                                       (self.name, err)) from None

    def serialize(self):
        return yaml.safe_dump(self.yaml, default_flow_style=False)


class XMLPropertyFile(StructFile, PropertyFile):
    """An XML properties file (a StructFile); ``data`` is its text."""

    def __init__(self, path, plugin):
        PropertyFile.__init__(self, plugin)
        StructFile.__init__(self, path, fam=plugin.core.fam, core=plugin.core)

    def Index(self):
        if isinstance(self.data, bytes):
            encoding = self.xdata.getroottree().docinfo.encoding or "utf-8"
            try:
                self.data = self.data.decode(encoding)
            except (LookupError, UnicodeDecodeError):
                self.data = self.data.decode("utf-8", "replace")
        self.expire_metadata()

    def validate_data(self):
        """Validate against ``<name>.xsd`` when it exists; refuse files whose
        written form would lose XIncludes or encrypted text."""
        if self.extras or self.extra_monitors:
            raise PluginExecutionError("%s uses XInclude; writing it would replace the "
                                       "includes by their content" % self.name)
        if any(isinstance(el.tag, str) and el.get("encrypted") is not None
               for el in self.xdata.iter()):
            raise PluginExecutionError("%s has encrypted elements; writing it would "
                                       "store them decrypted" % self.name)
        schemafile = self.name[:-len(".xml")] + ".xsd"
        if not os.path.exists(schemafile):
            return True
        try:
            schema = lxml.etree.XMLSchema(parse_repo_file(schemafile))
        except (XMLError, lxml.etree.XMLSchemaParseError) as err:
            raise PluginExecutionError("Failed to process schema for %s: %s" %
                                       (self.name, err)) from None
        if not schema.validate(self.xdata):
            raise PluginExecutionError("Data for %s fails to validate against %s: %s"
                                       % (self.name, schemafile, schema.error_log))
        return True

    def serialize(self):
        return lxml.etree.tostring(self.xdata, xml_declaration=False,
                                   pretty_print=True)

    def automatch(self):
        """Whether ``metadata.Properties`` gets the XMLMatch result for this file."""
        default = self.plugin.core.setup.getbool("properties", "automatch", False)
        value = self.xdata.get("automatch")
        if value is None:
            return default
        return value.lower() == "true"

    def additional_data(self, metadata):
        if self.automatch():
            return self.XMLMatch(metadata)
        return copy.copy(self)

    def __str__(self):
        return str(self.xdata)

    def __repr__(self):
        return repr(self.xdata)


class PropertiesDirectory(DirectoryBacked):
    """The properties files below ``Properties/``, each held by the right class."""

    patterns = re.compile(r"^.*\.(%s)$" % "|".join(EXTENSIONS))
    ignore = re.compile(r"%s|^.*\.xsd$" % EDITOR_DROPPINGS.pattern)

    def __init__(self, data, plugin):
        self.plugin = plugin
        self.core = plugin.core
        DirectoryBacked.__init__(self, data, fam=plugin.core.fam)

    def create_child(self, path):
        if path.endswith(".xml"):
            return XMLPropertyFile(path, self.plugin)
        if path.endswith(".json"):
            return JSONPropertyFile(path, self.plugin)
        return YAMLPropertyFile(path, self.plugin)

    def HandleEvent(self, event):
        before = self.entries
        DirectoryBacked.HandleEvent(self, event)
        if event.code2str() == "deleted" and self.entries is not before:
            self.plugin.expire_metadata()


class Properties(Plugin, Connector):
    """Makes the files in ``Properties/`` available to templates."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        self.store = PropertiesDirectory(self.data, self)

    @property
    def entries(self):
        """Relative path -> properties file object."""
        return self.store.entries

    def expire_metadata(self):
        """Expire every client's cached metadata (cautious and aggressive modes)."""
        if self.core.metadata_cache_mode() in ("cautious", "aggressive"):
            self.core.expire_caches_by_type(Metadata)

    def get_additional_data(self, metadata):
        """``{relative path: file object (or its XMLMatch result)}``."""
        result = {}
        for relative, pfile in sorted(self.store.entries.items()):
            if not getattr(pfile, "loaded", False):
                continue
            try:
                result[relative] = pfile.additional_data(metadata)
            except Exception as err:  # pylint: disable=broad-except
                logger.error("Properties: %s for %s: %s", pfile.name,
                             metadata.hostname, err)
        return result

    def set_debug(self, debug):
        self.store.set_debug(debug)
        return Plugin.set_debug(self, debug)
