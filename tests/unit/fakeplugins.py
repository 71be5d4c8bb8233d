"""Small plugins for testing the Core through its public API.

They hold their data in class attributes that each test resets, so a test can say
exactly what the repository "contains" without files.
"""
import lxml.etree

from bcfg2_cherry.plugin import (
    ClientACLs, ClientRunHooks, Connector, Decision, Generator, GoalValidator,
    Metadata, MetadataConsistencyError, Plugin, PluginExecutionError, Probing,
    Statistics, Structure, StructureValidator, ValidationError, Version)


class FakeMD:
    """Just enough of ClientMetadata."""

    def __init__(self, hostname, groups, bundles):
        self.hostname = hostname
        self.groups = set(groups)
        self.bundles = set(bundles)
        self.profile = sorted(groups)[0] if groups else None
        self.aliases, self.addresses, self.categories = set(), set(), {}
        self.uuid = self.version = None
        self.connectors = []
        self.password = None


class FakeMetadata(Plugin, Metadata):
    """clients: name -> (address, groups, bundles); passwords: name -> password."""
    clients = {}
    passwords = {}
    builds = []
    versions = {}
    profiles = {}
    __rmi__ = Plugin.__rmi__ + ["list_clients"]

    def list_clients(self):
        return sorted(self.clients)

    def get_initial_metadata(self, client_name):
        FakeMetadata.builds.append(client_name)
        if client_name not in self.clients:
            raise MetadataConsistencyError("unknown client %s" % client_name)
        _, groups, bundles = self.clients[client_name]
        return FakeMD(client_name, groups, bundles)

    def merge_additional_groups(self, imd, groups):
        imd.groups.update(groups)

    def merge_additional_data(self, imd, source, data):
        if not hasattr(imd, source):
            setattr(imd, source, data)
        imd.connectors.append(source)

    def resolve_client(self, address, cleanup_cache=False):
        for name, (addr, _, _) in self.clients.items():
            if addr == address[0]:
                return name
        raise MetadataConsistencyError("no client at %s" % address[0])

    def identify_connection(self, cert, user, password, address):
        if cert:
            name = dict(x[0] for x in cert["subject"])["commonName"]
            return name if name in self.clients else None
        name = self.resolve_client(address) if user == "root" else user
        if self.passwords.get(name) == password:
            return name
        return None

    def AuthenticateConnection(self, cert, user, password, address):
        return self.identify_connection(cert, user, password, address) is not None

    def set_version(self, client, version):
        FakeMetadata.versions[client] = version

    def set_profile(self, client, profile, address):
        if profile == "private":
            raise MetadataConsistencyError("Cannot set client %s to private group" % client)
        FakeMetadata.profiles[client] = profile


class FakeBundler(Plugin, Structure):
    """bundles: name -> list of entry XML strings."""
    bundles = {}
    raise_for = set()

    def BuildStructures(self, metadata):
        if metadata.hostname in self.raise_for:
            raise RuntimeError("structure plugin exploded")
        result = []
        for name in sorted(metadata.bundles):
            if name not in self.bundles:
                continue
            bundle = lxml.etree.Element("Bundle", name=name)
            for text in self.bundles[name]:
                bundle.append(lxml.etree.fromstring(text))
            result.append(bundle)
        return result


class FakeGenerator(Plugin, Generator):
    """Fast path for Path entries named in ``files``; slow path for names starting /slow."""
    files = {}

    def __init__(self, core):
        Plugin.__init__(self, core)
        self.Entries = {"Path": {name: self.bind for name in self.files}}

    def bind(self, entry, metadata):
        content = self.files[entry.get("name")]
        if content is None:
            raise PluginExecutionError("template failed for %s" % entry.get("name"))
        entry.set("type", "file")
        entry.text = content

    def HandlesEntry(self, entry, metadata):
        return entry.get("name", "").startswith("/slow")

    def HandleEntry(self, entry, metadata):
        entry.set("type", "file")
        entry.text = "slow:" + entry.get("name")


class OtherGenerator(Plugin, Generator):
    """Claims /shared on the fast path (to collide with FakeGenerator)."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        self.Entries = {"Path": {"/shared": self.bind}}

    def bind(self, entry, metadata):
        entry.text = "other"


class FakeConnector(Plugin, Connector):
    """Adds group ``connected`` and data ``{"answer": 42}``."""

    def get_additional_groups(self, metadata):
        return ["connected"]

    def get_additional_data(self, metadata):
        return {"answer": 42}


class FakeHooks(Plugin, ClientRunHooks, GoalValidator, StructureValidator):
    calls = []
    fail_goals = False

    def start_client_run(self, metadata):
        FakeHooks.calls.append(("start", metadata.hostname))

    def end_client_run(self, metadata):
        FakeHooks.calls.append(("end", metadata.hostname))

    def end_statistics(self, metadata):
        FakeHooks.calls.append(("stats", metadata.hostname))

    def validate_structures(self, metadata, structures):
        FakeHooks.calls.append(("structures", len(structures)))

    def validate_goals(self, metadata, config):
        if self.fail_goals:
            raise ValidationError("goal refused")
        config.set("validated", "yes")


class FakeProbes(Plugin, Probing):
    received = []

    def GetProbes(self, metadata):
        probe = lxml.etree.Element("probe", name="os", source=self.name,
                                   interpreter="/bin/sh")
        probe.text = "#!/bin/sh\necho group:debian\n"
        return [probe]

    def ReceiveData(self, metadata, datalist):
        FakeProbes.received.append((metadata.hostname,
                                    [(d.get("name"), d.text) for d in datalist]))


class FakeDecisions(Plugin, Decision):
    def GetDecisions(self, metadata, mode):
        return [("Service", "*")] if mode == "whitelist" else [("Path", "/etc/x")]


class BrokenDecisions(Plugin, Decision):
    def GetDecisions(self, metadata, mode):
        raise RuntimeError("broken decisions")


class FakeStats(Statistics):
    received = []

    def process_statistics(self, client, xdata):
        FakeStats.received.append((client.hostname, xdata.find("Statistics").get("state")))


class FakeVersion(Version):
    def get_revision(self):
        return "rev42"


class FakeACL(Plugin, ClientACLs):
    """ip: address -> True/False/None; metadata: hostname -> set of allowed methods."""
    ip = {}
    metadata = {}

    def check_acl_ip(self, address, rmi):
        return self.ip.get(address[0])

    def check_acl_metadata(self, metadata, rmi):
        return rmi in self.metadata.get(metadata.hostname, ())


class ExplodingPlugin(Plugin):
    def __init__(self, core):
        raise RuntimeError("cannot start")


class ConflictingGenerator(FakeGenerator):
    conflicts = ["OtherGenerator"]
