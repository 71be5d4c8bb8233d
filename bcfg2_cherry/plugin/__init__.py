"""What a plugin is made of: the base class, the interfaces, exceptions and helpers."""
from bcfg2_cherry.plugin.base import Debuggable, Plugin, parse_bool
from bcfg2_cherry.plugin.exceptions import (
    MetadataConsistencyError, MetadataRuntimeError, PluginExecutionError,
    PluginInitError, SpecificityError, ValidationError)
from bcfg2_cherry.plugin.interfaces import (
    ClientACLs, ClientRunHooks, Connector, Decision, Generator, GoalValidator,
    Metadata, Probing, PullSource, PullTarget, Statistics, Structure,
    StructureValidator, TemplateDataProvider, Threaded, ThreadedStatistics, Version)

__all__ = [
    "Debuggable", "Plugin", "parse_bool",
    "MetadataConsistencyError", "MetadataRuntimeError", "PluginExecutionError",
    "PluginInitError", "SpecificityError", "ValidationError",
    "ClientACLs", "ClientRunHooks", "Connector", "Decision", "Generator",
    "GoalValidator", "Metadata", "Probing", "PullSource", "PullTarget", "Statistics",
    "Structure", "StructureValidator", "TemplateDataProvider", "Threaded",
    "ThreadedStatistics", "Version",
]
