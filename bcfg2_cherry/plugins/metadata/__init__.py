"""The Metadata plugin (spec/repository.md §1) and what other code reuses from it:
``clients_xml_lock`` for anyone editing clients.xml beside a running server, and
the metadata object types.
"""
from bcfg2_cherry.plugins.metadata.clients import (
    ClientsData,
    clients_xml_lock,
    edit_client,
    find_client,
    lock_file_path,
    normalize_address,
)
from bcfg2_cherry.plugins.metadata.groups import GroupsData
from bcfg2_cherry.plugins.metadata.model import (
    ClientMetadata,
    MetadataGroup,
    MetadataQuery,
    VersionInfo,
)
from bcfg2_cherry.plugins.metadata.plugin import Metadata, certificate_names

__all__ = [
    "ClientMetadata",
    "ClientsData",
    "GroupsData",
    "Metadata",
    "MetadataGroup",
    "MetadataQuery",
    "VersionInfo",
    "certificate_names",
    "clients_xml_lock",
    "edit_client",
    "find_client",
    "lock_file_path",
    "normalize_address",
]
