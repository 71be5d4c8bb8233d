"""NagiosGen: Nagios host definitions from client metadata (spec/repository.md §14).

``NagiosGen/config.xml`` (Group/Client conditionals around ``<Option name=..>``
elements) adds settings to a client's ``define host`` block, served as
``/etc/nagiosgen.status`` and kept as ``NagiosGen/<host>-host.cfg``. The Nagios
server's ``/etc/nagios/conf.d/bcfg2.cfg`` joins the used ``<group>-group.cfg`` and
``<bundle>-bundle.cfg`` files with every ``*-host.cfg``; it is kept as
``NagiosGen/nagiosgen.cfg``.
"""
import glob
import logging
import os
import socket

from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugin.helpers import StructFile
from bcfg2_cherry.plugin.interfaces import Generator
from bcfg2_cherry.bounded import bounded_call
from bcfg2_cherry.state import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["NagiosGen"]

#: seconds the address look-up of a client may take
DNS_TIMEOUT = 5.0
HOST_STATUS = "/etc/nagiosgen.status"
SERVER_CONFIG = "/etc/nagios/conf.d/bcfg2.cfg"


def _first_address(hostname, timeout):
    """The first getaddrinfo address of ``hostname``, given ``timeout`` seconds."""
    return bounded_call(lambda: socket.getaddrinfo(hostname, None)[0][4][0], (), timeout,
                        name="NagiosGen-getaddrinfo")


class NagiosGen(Plugin, Generator):
    """Generates Nagios host definitions and the server's combined configuration."""

    line_fmt = "\t%-32s %s"
    client_attrib = (("encoding", "ascii"), ("owner", "root"), ("group", "root"),
                     ("type", "file"), ("mode", "0400"))
    server_attrib = (("encoding", "ascii"), ("owner", "nagios"), ("group", "nagios"),
                     ("type", "file"), ("mode", "0440"))

    def __init__(self, core):
        Plugin.__init__(self, core)
        path = os.path.join(self.data, "config.xml")
        if not os.path.exists(path):
            logger.warning("NagiosGen: %s does not exist, creating it empty", path)
            atomic_write(path, "<NagiosGen/>\n")
        self.config = StructFile(path, fam=core.fam, should_monitor=True, core=core)
        self.dns_timeout = DNS_TIMEOUT
        self.Entries = {"Path": {HOST_STATUS: self.createhostconfig,
                                 SERVER_CONFIG: self.createserverconfig}}

    def _has_file(self, name, kind):
        return "/" not in name and os.path.isfile(
            os.path.join(self.data, "%s-%s.cfg" % (name, kind)))

    def createhostconfig(self, entry, metadata):
        """Bind ``/etc/nagiosgen.status`` and store it as ``<host>-host.cfg``."""
        host = metadata.hostname
        try:
            address = _first_address(host, self.dns_timeout)
        except Exception as err:  # noqa: BLE001  # pylint: disable=broad-except
            raise PluginExecutionError("NagiosGen: failed to find an IP address for %s: "
                                       "%s" % (host, err)) from None
        hostgroups = [g for g in metadata.groups if self._has_file(g, "group")] + \
            [b for b in metadata.bundles if self._has_file(b, "bundle")]
        lines = ["define host {",
                 self.line_fmt % ("host_name", host),
                 self.line_fmt % ("alias", host),
                 self.line_fmt % ("address", address)]
        if hostgroups:
            lines.append(self.line_fmt % ("hostgroups", ",".join(sorted(hostgroups))))
        options = {}
        for element in self.config.Match(metadata):
            if element.tag == "Option":
                options[element.get("name")] = element.text
        lines.extend(self.line_fmt % item for item in options.items())
        if "use" not in options:
            lines.append(self.line_fmt % ("use", "default"))
        lines.append("}")
        text = "\n".join(lines) + "\n"
        entry.text = text
        for key, value in self.client_attrib:
            entry.set(key, value)
        if "/" in host or host.startswith("."):
            logger.error("NagiosGen: not storing the host file of client %r", host)
            return entry
        self._store(os.path.join(self.data, host + "-host.cfg"), text)
        return entry

    def createserverconfig(self, entry, metadata):
        """Bind the Nagios server's configuration and store it as nagiosgen.cfg."""
        host_data = []
        for path in sorted(glob.glob(os.path.join(glob.escape(self.data),
                                                  "*-host.cfg"))):
            host_data.append(self._read(path))
        used = set(["default"])
        for line in "\n".join(host_data).splitlines():
            if "hostgroup" in line:
                fields = line.split()
                if len(fields) > 1:
                    used.update(fields[1].split(","))
        group_data = []
        for kind in ("group", "bundle"):
            suffix = "-%s.cfg" % kind
            for path in sorted(glob.glob(os.path.join(glob.escape(self.data),
                                                      "*" + suffix))):
                if os.path.basename(path)[:-len(suffix)] in used:
                    group_data.append(self._read(path))
        text = "%s\n\n%s" % ("\n".join(group_data), "\n".join(host_data))
        entry.text = text
        for key, value in self.server_attrib:
            entry.set(key, value)
        self._store(os.path.join(self.data, "nagiosgen.cfg"), text)
        return entry

    @staticmethod
    def _read(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError as err:
            raise PluginExecutionError("NagiosGen: cannot read %s: %s" % (path, err)) \
                from None

    @staticmethod
    def _store(path, text):
        try:
            atomic_write(path, text)
        except OSError as err:
            logger.error("NagiosGen: failed to write %s: %s", path, err)
