"""The ACL plugin through Core.check_acls: ip.xml, metadata.xml, method wildcards
(spec/repository.md §8, core.md §7)."""
import logging
import os
import socket
import time

import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.plugins.acl import rmi_names_equal
from bcfg2_cherry.server.core import ClientAddress
from tests.support.cores import TestNetworkCore




GROUPS = """<Groups>
  <Group name="admin-hosts" profile="true"/>
  <Group name="plain" profile="true" default="true"/>
</Groups>"""

CLIENTS = """<Clients>
  <Client name="admin1.example.com" profile="admin-hosts" address="172.16.9.100"/>
  <Client name="ci.example.com" profile="plain" address="172.16.9.101"/>
  <Client name="plain.example.com" profile="plain" address="172.16.9.102"/>
  <Client name="localhost" profile="plain" address="10.99.0.1"/>
  <Client name="v6.example.com" profile="plain" address="2001:db8:1::5"/>
</Clients>"""

IP_XML = """<ACL>
  <!-- spec example plus IPv6 -->
  <Allow address="172.16.9.2" method="*.*"/>
  <Deny address="172.16.40.0" netmask="22" method="AssertProfile"/>
  <Defer address="172.16.8.0" netmask="255.255.252.0" method="*.*"/>
  <Deny address="2001:db8::" netmask="32" method="GetConfig"/>
  <Allow address="2001:db8:1::5" method="GetConfig"/>
  <Deny address="10.9.9.9"/>
  <Allow method="*"/>
</ACL>"""

METADATA_XML = """<ACL>
  <Group name="admin-hosts">
    <Allow method="*.*"/>
    <Allow method="get_statistics"/>
  </Group>
  <Client name="ci.example.com"><Allow method="Git.Update"/></Client>
  <Allow method="*.*_debug"/>
  <Deny method="*.*"/>
  <Allow method="set_*"/>
  <Deny method="get_statistics"/>
  <Allow method="*"/>
</ACL>"""


def make_core(tmp_path, ip_xml=None, metadata_xml=None, filemonitor="pseudo"):
    repo = tmp_path / "repo"
    (repo / "Metadata").mkdir(parents=True)
    (repo / "Metadata" / "groups.xml").write_text(GROUPS)
    (repo / "Metadata" / "clients.xml").write_text(CLIENTS)
    (repo / "ACL").mkdir()
    if ip_xml is not None:
        (repo / "ACL" / "ip.xml").write_text(ip_xml)
    if metadata_xml is not None:
        (repo / "ACL" / "metadata.xml").write_text(metadata_xml)
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\nplugins = Metadata, ACL\n"
                    "filemonitor = %s\n" % (repo, filemonitor))
    core = TestNetworkCore(Settings(str(conf)))
    core.load()
    return core


def check(core, ip, method):
    return core.check_acls(ClientAddress((ip, 1234)), method)


def ip_rule(core, ip, method):
    return core.plugins["ACL"].check_acl_ip((ip, 1234), method)


@pytest.mark.parametrize("pattern,name,expected", [
    ("*", "GetConfig", True),
    ("*", "Metadata.list_clients", False),
    ("*.*", "Metadata.list_clients", True),
    ("*.*", "GetConfig", False),
    ("*.toggle_debug", "Cfg.toggle_debug", True),
    ("*.toggle_debug", "Cfg.set_debug", False),
    ("*_debug", "toggle_debug", True),
    ("*_debug", "get_statistics", False),
    ("*.*_debug", "Probes.set_debug", True),
    ("Metadata.*", "Metadata.list_clients", True),
    ("Metadata.*", "Probes.list_clients", False),
    ("Meta*.list_*", "Metadata.list_clients", True),
    ("GetConfig", "GetConfig", True),
    ("GetConfig", "GetConfigs", False),
    ("Get?onfig", "GetConfig", False),
    ("*", "a.b.c", False),
    (None, "GetConfig", False),
])
def test_method_patterns(pattern, name, expected):
    assert rmi_names_equal(pattern, name) is expected


def test_ip_rules(tmp_path, cores):
    core = make_core(tmp_path, ip_xml=IP_XML)
    cores.append(core)
    assert "DefaultACL" not in core.plugins
    cases = [
        ("172.16.9.2", "Metadata.list_clients", True),     # exact address
        ("172.16.9.2", "GetConfig", True),                 # falls to Allow *
        ("172.16.41.7", "AssertProfile", False),           # inside the /22
        ("172.16.44.1", "AssertProfile", True),            # outside it
        ("172.16.9.200", "Metadata.list_clients", None),   # dotted-mask Defer
        ("10.0.0.1", "Metadata.list_clients", None),       # no rule: defer
        ("127.0.0.1", "Metadata.list_clients", True),      # no rule, localhost
        ("::1", "Metadata.list_clients", True),            # IPv6 localhost too
        ("::ffff:127.0.0.1", "Metadata.list_clients", True),
        ("2001:db8:1::5", "GetConfig", False),             # first match wins
        ("2001:db8:ffff::1", "GetConfig", False),          # IPv6 /32
        ("2001:db9::1", "GetConfig", True),
        ("10.9.9.9", "GetConfig", True),                   # rule without method
        ("::ffff:172.16.41.7", "AssertProfile", False),    # IPv4-mapped
    ]
    for ip, method, expected in cases:
        assert ip_rule(core, ip, method) is expected, (ip, method)


def test_metadata_rules(tmp_path, cores):
    core = make_core(tmp_path, metadata_xml=METADATA_XML)
    cores.append(core)
    cases = [
        ("172.16.9.100", "Metadata.list_clients", True),   # admin-hosts group
        ("172.16.9.100", "get_statistics", True),
        ("172.16.9.101", "Git.Update", True),              # Client element
        ("172.16.9.101", "Metadata.list_clients", False),  # Deny *.*
        ("172.16.9.101", "Probes.toggle_debug", True),     # glob inside a part
        ("172.16.9.102", "set_debug", True),
        ("172.16.9.102", "get_statistics", False),
        ("172.16.9.102", "GetConfig", True),
        ("172.16.9.102", "Metadata.list_clients", False),
    ]
    # no ip.xml: everyone (localhost included) is deferred to the metadata rules
    assert ip_rule(core, "127.0.0.1", "GetConfig") is None
    for ip, method, expected in cases:
        assert check(core, ip, method) is expected, (ip, method)


def test_two_phases_and_unresolvable_clients(tmp_path, cores, monkeypatch):
    def no_reverse_dns(ip):
        raise socket.herror(1, "Unknown host")
    monkeypatch.setattr(socket, "gethostbyaddr", no_reverse_dns)
    core = make_core(tmp_path, ip_xml=IP_XML, metadata_xml=METADATA_XML)
    cores.append(core)
    # allowed by IP alone: the metadata rules are not asked
    assert check(core, "172.16.9.2", "Metadata.list_clients") is True
    # denied by IP alone
    assert check(core, "172.16.41.7", "AssertProfile") is False
    # deferred: decided by metadata
    assert check(core, "172.16.9.100", "Metadata.list_clients") is True
    assert check(core, "172.16.9.102", "Metadata.list_clients") is False
    # deferred, but the address is nobody's (and reverse DNS does not know it)
    assert check(core, "192.0.2.1", "Metadata.list_clients") is False
    # listMethods filters by the same rules
    names = core.listMethods(ClientAddress(("172.16.9.102", 1)))
    assert "GetConfig" in names and "Metadata.list_clients" not in names


def test_metadata_defaults(tmp_path, cores):
    core = make_core(tmp_path, metadata_xml="""<ACL>
      <Group name="admin-hosts"><Allow method="*.*"/></Group></ACL>""")
    cores.append(core)
    # nothing matched: only clients named localhost are allowed
    assert check(core, "172.16.9.102", "GetConfig") is False
    assert check(core, "10.99.0.1", "GetConfig") is True
    assert check(core, "172.16.9.100", "Metadata.list_clients") is True


def test_no_files_allow_everything_known(tmp_path, cores):
    core = make_core(tmp_path)
    cores.append(core)
    assert check(core, "172.16.9.102", "Metadata.list_clients") is True
    assert check(core, "172.16.9.102", "toggle_debug") is True


def test_empty_ip_file_defers_localhost(tmp_path, cores):
    core = make_core(tmp_path, ip_xml="<ACL><!-- nothing --></ACL>",
                     metadata_xml="<ACL><Deny method='*'/></ACL>")
    cores.append(core)
    assert ip_rule(core, "127.0.0.1", "GetConfig") is None


def test_broken_file_denies_then_recovers(tmp_path, cores, caplog):
    caplog.set_level(logging.ERROR)
    core = make_core(tmp_path, ip_xml="<ACL><Allow method='*'>", filemonitor="inotify")
    cores.append(core)
    assert any("ip.xml" in r.getMessage() for r in caplog.records)
    assert ip_rule(core, "127.0.0.1", "GetConfig") is False
    path = tmp_path / "repo/ACL/ip.xml"
    tmp = path.with_name("ip.xml.tmp")
    tmp.write_text("<ACL><Deny address='10.0.0.1' method='*'/></ACL>")
    os.replace(tmp, path)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and ip_rule(core, "127.0.0.1", "GetConfig") \
            is not True:
        core.handle_events(settle=0.05)
    assert ip_rule(core, "127.0.0.1", "GetConfig") is True
    assert ip_rule(core, "10.0.0.1", "GetConfig") is False
    # deleting the file drops its rules
    os.unlink(path)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and ip_rule(core, "10.0.0.1", "GetConfig") \
            is not None:
        core.handle_events(settle=0.05)
    assert ip_rule(core, "10.0.0.1", "GetConfig") is None


def test_bad_address_in_rule_never_matches(tmp_path, cores, caplog):
    caplog.set_level(logging.ERROR)
    core = make_core(tmp_path, ip_xml="""<ACL>
      <Deny address="not-an-ip" method="*"/>
      <Deny address="10.0.0.0" netmask="40" method="*"/>
      <Allow method="*"/></ACL>""")
    cores.append(core)
    assert ip_rule(core, "10.0.0.1", "GetConfig") is True
    assert len([r for r in caplog.records if "bad address" in r.getMessage()]) == 2
