"""Exceptions raised by plugins and understood by the Core."""


class PluginInitError(Exception):
    """A plugin could not be loaded; the Core logs it and goes on without it."""


class PluginExecutionError(Exception):
    """A plugin failed while doing its work (binding an entry, building a structure)."""


class MetadataConsistencyError(Exception):
    """The metadata of a client is inconsistent (unknown client, no default group, ...)."""


class MetadataRuntimeError(Exception):
    """The Metadata plugin cannot answer yet (e.g. its files have not been read)."""


class ValidationError(Exception):
    """A Structure or Goal validator refused the configuration; the build is aborted."""


class SpecificityError(Exception):
    """A file name's host/group specificity could not be parsed."""
