"""The Metadata plugin through the public Core API: groups.xml semantics, clients.xml
attributes, resolve_client, the metadata object and its query, reloads and RMI."""
import logging
import os
import shutil
import socket
import time

import pytest

from bcfg2_cherry import cache
from bcfg2_cherry.options import Settings
from bcfg2_cherry.plugin import MetadataConsistencyError, MetadataRuntimeError
from bcfg2_cherry.plugins.metadata import ClientMetadata, VersionInfo
from bcfg2_cherry.server import dispatch
from bcfg2_cherry.server.core import ClientAddress, CoreInitError
from bcfg2_cherry.server.errors import Fault
from bcfg2_cherry.xml import parse_repo_file
from tests.support.servers import WIRE_DIR
from tests.support.cores import TestNetworkCore

#: the recorded upstream exchanges (the in-tree copy)
WIRE_REPO = os.path.join(WIRE_DIR, "repo")




def make_core(tmp_path, groups="<Groups/>", clients="<Clients/>", plugins="Metadata",
              extra="", filemonitor="pseudo", files=None):
    repo = tmp_path / "repo"
    (repo / "Metadata").mkdir(parents=True, exist_ok=True)
    if groups is not None:
        (repo / "Metadata" / "groups.xml").write_text(groups)
    if clients is not None:
        (repo / "Metadata" / "clients.xml").write_text(clients)
    for name, text in (files or {}).items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\nplugins = %s\nfilemonitor = %s\n%s"
                    % (repo, plugins, filemonitor, extra))
    core = TestNetworkCore(Settings(str(conf)))
    core.load()
    return core


@pytest.fixture
def mk(tmp_path, cores):
    def factory(*args, **kwargs):
        core = make_core(tmp_path, *args, **kwargs)
        cores.append(core)
        return core
    return factory


def wait_for(predicate, core, timeout=5.0):
    """Handle file events until ``predicate()`` holds (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        core.handle_events(settle=0.05)
        if predicate():
            return
    raise AssertionError("condition not reached within %ss" % timeout)


GROUPS = """<Groups>
  <Group name="web" profile="true" public="true">
    <Bundle name="apache"/>
    <Group name="base"/>
    <Group name="debian">
      <Group name="apt-proxy"/>
    </Group>
  </Group>
  <Group name="basic" profile="true" default="true">
    <Bundle name="motd"/>
  </Group>
  <Group name="base"><Bundle name="ssh"/></Group>
  <Group name="ubuntu" category="os"/>
  <Group name="debian" category="os"/>
  <Group name="legacy"><Group name="base" negate="true"/></Group>
  <Client name="kiosk1.example.com"><Group name="legacy"/></Client>
</Groups>
"""

CLIENTS = """<Clients version="3.0">
  <!-- the web server -->
  <Client name="Web1.Example.com" profile="web" address="10.0.0.11">
    <Alias name="Web1-Mgmt.example.com" address="10.1.0.11"/>
  </Client>
  <Client name="lab7.example.com" profile="basic" uuid="Lab7-Key"
          password="per-client-secret" secure="true" floating="true"/>
  <Client name="db1.example.com" profile="db" auth="cert" version="1.4.0pre2"/>
  <Client name="kiosk1.example.com" profile="basic" location="floating"/>
</Clients>
"""


# ---------------------------------------------------------------- groups.xml

def test_spec_example_groups(mk):
    core = mk(GROUPS, CLIENTS)
    web = core.build_metadata("web1.example.com")
    assert web.hostname == "web1.example.com"
    assert web.profile == "web"
    assert web.groups == {"web", "base"}
    assert web.bundles == {"apache", "ssh"}
    kiosk = core.build_metadata("kiosk1.example.com")
    # legacy comes from a top-level Client rule; legacy's negated rule removes base
    assert kiosk.groups == {"basic", "legacy"}
    assert kiosk.profile == "basic"
    assert kiosk.bundles == {"motd"}


def test_nested_conditional_needs_both_groups(mk):
    groups = GROUPS.replace('<Client name="kiosk1.example.com">',
                            '<Client name="web1.example.com"><Group name="debian"/>'
                            '</Client><Client name="kiosk1.example.com">')
    core = mk(groups, CLIENTS)
    web = core.build_metadata("web1.example.com")
    assert web.groups == {"web", "base", "debian", "apt-proxy"}
    assert web.categories == {"os": "debian"}
    assert web.group_in_category("os") == "debian"
    assert web.group_in_category("nothing") == ""
    assert core.build_metadata("lab7.example.com").groups == {"basic"}


def test_first_declaration_wins(mk):
    groups = """<Groups>
      <Group name="outer" profile="true">
        <Group name="both" category="nested"><Bundle name="nested-b"/><Group name="x"/></Group>
        <Group name="only-nested" category="c"><Bundle name="on-b"/><Group name="y"/></Group>
      </Group>
      <Group name="both" category="top" public="true"><Bundle name="top-b"/></Group>
      <Group name="only-nested" public="true"><Bundle name="later-b"/></Group>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="outer"/></Clients>')
    table = core.metadata.groups
    # top-level Group elements are searched before nested ones
    assert table["both"].category == "top" and table["both"].is_public
    assert table["both"].bundles == ["top-b"]
    # ... but a later top-level element never beats an earlier top-level one; here the
    # only top-level declaration of only-nested is the second, so it wins
    assert table["only-nested"].bundles == ["later-b"]
    assert table["only-nested"].category is None
    # a group declared only inside another: its first nested element declares it
    assert "x" not in table or table["x"].bundles == []
    assert table["outer"].is_profile and not table["outer"].is_public


def test_nested_only_declaration(mk):
    groups = """<Groups>
      <Group name="outer" profile="true">
        <Group name="inner" category="c"><Bundle name="b1"/><Group name="x"/></Group>
        <Group name="inner" category="d"><Bundle name="b2"/><Group name="y"/></Group>
        <Group name="inner"/>
      </Group>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="outer"/></Clients>')
    inner = core.metadata.groups["inner"]
    assert inner.category == "c" and inner.bundles == ["b1"]
    md = core.build_metadata("h")
    assert md.groups == {"outer", "inner", "x", "y"}
    assert md.bundles == {"b1"}


def test_nested_declaration_supplies_bundles(mk):
    groups = """<Groups>
      <Group name="web" profile="true">
        <Group name="debian"><Bundle name="apt"/></Group>
        <Group name="debian"/>
      </Group>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="web"/></Clients>')
    md = core.build_metadata("h")
    # the nested <Group name="debian"> with a Bundle child is a conditional, never a
    # membership rule, but it is debian's first declaration: its bundle counts.
    # The childless one *is* a rule, so h joins debian and gets the bundle.
    assert md.groups == {"web", "debian"}
    assert md.bundles == {"apt"}


def test_group_with_only_bundle_children_is_not_a_rule(mk):
    groups = """<Groups>
      <Group name="web" profile="true"><Group name="x"><Bundle name="b"/></Group></Group>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="web"/></Clients>')
    assert core.build_metadata("h").groups == {"web"}


def test_profile_attributes_are_exactly_true(mk):
    groups = """<Groups>
      <Group name="a" profile="True" public="yes"/>
      <Group name="b" profile="true" public="true"/>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="a"/></Clients>')
    assert not core.metadata.groups["a"].is_profile
    assert not core.metadata.groups["a"].is_public
    assert core.metadata.groups["b"].is_profile
    # the clients.xml profile is not a profile group: no profile at all
    assert core.build_metadata("h").profile is None


def test_negation_wins_however_many_rules_add(mk):
    groups = """<Groups>
      <Group name="ws" profile="true" default="true">
        <Group name="base"/>
        <Group name="monitored" negate="true"/>
      </Group>
      <Group name="base"><Group name="monitored"/></Group>
      <Group name="monitored"><Bundle name="nagios"/></Group>
      <Group name="srv" profile="true"><Group name="base"/></Group>
    </Groups>"""
    clients = """<Clients><Client name="w" profile="ws"/>
                 <Client name="s" profile="srv"/></Clients>"""
    core = mk(groups, clients)
    assert core.build_metadata("w").groups == {"ws", "base"}
    assert core.build_metadata("w").bundles == set()
    assert core.build_metadata("s").groups == {"srv", "base", "monitored"}
    assert core.build_metadata("s").bundles == {"nagios"}


def test_negated_conditional_and_client_conditionals(mk):
    groups = """<Groups>
      <Group name="p" profile="true">
        <Group name="special" negate="true"><Group name="ordinary"/></Group>
        <Client name="h2"><Group name="special"/></Client>
        <Client name="h3" negate="true"><Group name="not-h3"/></Client>
      </Group>
    </Groups>"""
    clients = """<Clients><Client name="h1" profile="p"/><Client name="h2" profile="p"/>
                 <Client name="h3" profile="p"/></Clients>"""
    core = mk(groups, clients)
    assert core.build_metadata("h1").groups == {"p", "ordinary", "not-h3"}
    # h2 joins special and ordinary in the same pass (rules see the groups of the
    # start of the pass); only a negated leaf ever takes a group away again
    assert core.build_metadata("h2").groups == {"p", "special", "ordinary", "not-h3"}
    assert core.build_metadata("h3").groups == {"p", "ordinary"}


def test_rules_see_groups_of_the_start_of_the_pass(mk):
    # b's rule depends on a, which is added in the same pass: b comes next pass
    groups = """<Groups>
      <Group name="p" profile="true"><Group name="a"/></Group>
      <Group name="a"><Group name="b"/></Group>
      <Group name="b"><Group name="c"/></Group>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="p"/></Clients>')
    assert core.build_metadata("h").groups == {"p", "a", "b", "c"}


def test_categories_first_wins_with_one_warning(mk, caplog):
    groups = """<Groups>
      <Group name="p" profile="true">
        <Group name="ubuntu"/>
        <Group name="debian"/>
      </Group>
      <Group name="debian" category="os"/>
      <Group name="ubuntu" category="os"/>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="p"/></Clients>')
    caplog.set_level(logging.WARNING)
    md = core.build_metadata("h")
    # rule order: ubuntu's rule comes first in the document
    assert md.groups == {"p", "ubuntu"}
    assert md.categories == {"os": "ubuntu"}
    core.build_metadata("h")
    core.build_metadata("h")
    warnings = [r for r in caplog.records if "suppressed by category" in r.getMessage()]
    assert len(warnings) == 1
    assert "debian" in warnings[0].getMessage()


def test_removal_releases_category(mk):
    groups = """<Groups>
      <Group name="p" profile="true">
        <Group name="debian"/>
        <Group name="special"/>
      </Group>
      <Group name="special"><Group name="debian" negate="true"/></Group>
      <Group name="debian" category="os"/>
      <Group name="ubuntu" category="os"><Bundle name="ubuntu-b"/></Group>
    </Groups>"""
    patterns = """<GroupPatterns><GroupPattern><NamePattern>^h$</NamePattern>
      <Group>ubuntu</Group></GroupPattern></GroupPatterns>"""
    core = mk(groups, '<Clients><Client name="h" profile="p"/></Clients>',
              plugins="Metadata, GroupPatterns",
              files={"GroupPatterns/config.xml": patterns})
    initial = core.metadata.get_initial_metadata("h")
    # debian is re-added by its rule in every pass and removed again at its end
    assert initial.groups == {"p", "special"}
    assert initial.categories == {}
    # so the os category is free for a connector's group
    md = core.build_metadata("h")
    assert md.groups == {"p", "special", "ubuntu"}
    assert md.categories == {"os": "ubuntu"}
    assert md.bundles == {"ubuntu-b"}


def test_leaf_client_in_group_is_a_plain_group_with_warning(mk, caplog):
    caplog.set_level(logging.WARNING)
    groups = """<Groups>
      <Group name="p" profile="true"><Client name="h1.example.com"/></Group>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="p"/></Clients>')
    assert core.build_metadata("h").groups == {"p", "h1.example.com"}
    assert any("childless <Client" in r.getMessage() for r in caplog.records)


def test_positive_rule_in_top_level_client_for_undeclared_group(mk):
    groups = """<Groups>
      <Group name="p" profile="true" default="true"/>
      <Client name="h"><Group name="brand-new"/></Client>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="p"/></Clients>')
    assert core.build_metadata("h").groups == {"p", "brand-new"}


def test_comment_only_group_is_a_conditional(mk, caplog):
    caplog.set_level(logging.WARNING)
    groups = """<Groups>
      <Group name="p" profile="true"><Group name="x"><!-- nothing --></Group></Group>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="p"/></Clients>')
    assert core.build_metadata("h").groups == {"p"}
    assert any("holds only comments" in r.getMessage() for r in caplog.records)


def test_undefined_profile_is_a_bare_group(mk):
    core = mk(GROUPS, '<Clients><Client name="h" profile="nowhere"/></Clients>')
    md = core.build_metadata("h")
    assert md.groups == {"nowhere"}
    assert md.profile is None
    assert md.bundles == set()


def test_profile_from_member_group_when_clients_profile_is_not_one(mk):
    groups = """<Groups>
      <Group name="plain"><Group name="prof"/></Group>
      <Group name="prof" profile="true"/>
    </Groups>"""
    core = mk(groups, '<Clients><Client name="h" profile="plain"/></Clients>')
    md = core.build_metadata("h")
    assert md.groups == {"plain", "prof"}
    assert md.profile == "prof"


def test_no_groups_at_all_gets_default(mk):
    core = mk(GROUPS, '<Clients><Client name="h"/></Clients>')
    md = core.build_metadata("h")
    assert md.groups == {"basic"}
    assert md.profile == "basic"


def test_unknown_client_is_created_with_default_profile(mk, tmp_path):
    core = mk(GROUPS, CLIENTS)
    md = core.build_metadata("New.Example.com")
    assert md.hostname == "new.example.com"
    assert md.profile == "basic"
    assert "new.example.com" in core.metadata.list_clients()
    root = parse_repo_file(str(tmp_path / "repo/Metadata/clients.xml")).getroot()
    new = [c for c in root.iter("Client") if c.get("name") == "new.example.com"]
    assert len(new) == 1 and new[0].get("profile") == "basic"
    assert new[0].get("uuid") is None and new[0].get("address") is None


def test_unknown_client_without_default_is_a_fault(mk):
    core = mk(GROUPS.replace(' default="true"', ""), CLIENTS)
    with pytest.raises(Fault) as err:
        core.build_metadata("stranger.example.com")
    assert "no default group" in err.value.faultString
    with pytest.raises(MetadataConsistencyError):
        core.metadata.get_initial_metadata("stranger.example.com")
    with pytest.raises(Fault):
        core.DeclareVersion(ClientAddress(("10.9.9.9", 1), "stranger.example.com"), "1.0")


def test_xinclude_in_groups_and_clients(mk, tmp_path):
    groups = """<Groups xmlns:xi="http://www.w3.org/2001/XInclude">
      <xi:include href="groups.d/*.xml"/>
      <Group name="p" profile="true" default="true"><Group name="extra"/></Group>
    </Groups>"""
    clients = """<Clients xmlns:xi="http://www.w3.org/2001/XInclude">
      <xi:include href="more-clients.xml"/>
    </Clients>"""
    core = mk(groups, clients, files={
        "Metadata/groups.d/a.xml": '<Groups><Group name="extra"><Bundle name="x"/>'
                                   '</Group></Groups>',
        "Metadata/more-clients.xml": '<Clients><Client name="inc" profile="p"/>'
                                     '</Clients>'})
    assert core.metadata.list_clients() == ["inc"]
    assert core.build_metadata("inc").bundles == {"x"}


# ---------------------------------------------------------------- clients.xml

def test_client_attributes(mk):
    core = mk(GROUPS, CLIENTS)
    web = core.build_metadata("web1.example.com")
    assert web.aliases == {"web1-mgmt.example.com"}
    assert web.addresses == {"10.0.0.11", "10.1.0.11"}
    assert web.uuid is None and web.password is None and web.version is None
    assert web.version_info is None
    lab = core.build_metadata("lab7.example.com")
    assert lab.uuid == "Lab7-Key"
    assert lab.password == "per-client-secret"
    db = core.build_metadata("db1.example.com")
    assert db.version == "1.4.0pre2"
    assert db.version_info == (1, 4, 0, "pre", 2)
    assert db.version_info > (1, 3, 0, "final", 0)
    assert db.version_info < (1, 4, 0, "final", 0)
    assert db.version_info < "1.4.0rc1"
    assert db.version_info > None
    data = core.metadata._clients_data
    assert data.floating == {"lab7.example.com", "kiosk1.example.com"}
    assert data.secure == {"lab7.example.com"}
    assert data.auth == {"db1.example.com": "cert"}
    assert data.uuids == {"lab7-key": "lab7.example.com"}


def test_alias_names_resolve_to_their_client(mk):
    core = mk(GROUPS, CLIENTS)
    md = core.build_metadata("WEB1-MGMT.example.com")
    assert md.hostname == "web1.example.com"
    assert core.metadata.list_clients() == ["web1.example.com", "lab7.example.com",
                                            "db1.example.com", "kiosk1.example.com"]


def test_version_info_parsing():
    assert VersionInfo.parse("1.3.1") == (1, 3, 1, "final", 0)
    assert VersionInfo.parse("1.4.0rc10") == (1, 4, 0, "rc", 10)
    assert VersionInfo.parse("1.4") is None
    assert VersionInfo.parse(None) is None
    assert VersionInfo("1.4.0rc1") > "1.4.0pre2"
    assert VersionInfo("1.4.0").major == 1


# ---------------------------------------------------------------- resolve_client

@pytest.fixture
def fake_dns(monkeypatch):
    """Reverse DNS from a table (no network); unknown addresses fail like herror."""
    table = {}

    def gethostbyaddr(ip):
        if ip in table:
            return table[ip], [], [ip]
        raise socket.herror(1, "Unknown host")
    monkeypatch.setattr(socket, "gethostbyaddr", gethostbyaddr)
    return table


def test_resolve_client_by_address_alias_and_dns(mk, fake_dns):
    core = mk(GROUPS, CLIENTS.replace("</Clients>",
                                      '<Client name="other" profile="basic" '
                                      'address="10.0.0.99"/><Client name="other2" '
                                      'profile="basic" address="10.0.0.99"/></Clients>'))
    assert core.resolve_client(ClientAddress(("10.0.0.11", 1)))[0] == "web1.example.com"
    assert core.resolve_client(ClientAddress(("10.1.0.11", 1)))[0] == "web1.example.com"
    assert core.resolve_client(ClientAddress(("::ffff:10.0.0.11", 1)))[0] == \
        "web1.example.com"
    fake_dns["192.0.2.5"] = "DB1.Example.COM"
    fake_dns["192.0.2.6"] = "web1-mgmt.EXAMPLE.com"
    fake_dns["192.0.2.7"] = "unlisted.example.com"
    assert core.resolve_client(ClientAddress(("192.0.2.5", 1)), metadata=False) == \
        ("db1.example.com", None)
    assert core.metadata.resolve_client(("192.0.2.6", 1)) == "web1.example.com"
    # a reverse name need not be in clients.xml
    assert core.metadata.resolve_client(("192.0.2.7", 1)) == "unlisted.example.com"
    with pytest.raises(MetadataConsistencyError, match="multiple reverse"):
        core.metadata.resolve_client(("10.0.0.99", 1))
    with pytest.raises(MetadataConsistencyError, match="resolution error"):
        core.metadata.resolve_client(("192.0.2.200", 1))
    with pytest.raises(Fault):
        core.resolve_client(ClientAddress(("192.0.2.200", 1)))


def test_identity_from_authentication_wins(mk, fake_dns):
    core = mk(GROUPS, CLIENTS)
    client, md = core.resolve_client(ClientAddress(("10.0.0.11", 1), "lab7.example.com"))
    assert client == "lab7.example.com" and md.hostname == "lab7.example.com"


# ---------------------------------------------------------------- metadata object

def test_query_object(mk):
    groups = GROUPS.replace('<Client name="kiosk1.example.com">',
                            '<Client name="web1.example.com"><Group name="debian"/>'
                            '</Client><Client name="kiosk1.example.com">')
    core = mk(groups, CLIENTS)
    md = core.build_metadata("lab7.example.com")
    query = md.query
    assert query.by_name("web1.example.com").profile == "web"
    assert sorted(query.all_clients()) == sorted(core.metadata.list_clients())
    assert query.names_by_groups(["web", "base"]) == ["web1.example.com"]
    assert query.names_by_groups(["base"]) == ["web1.example.com"]
    assert sorted(query.names_by_profiles(["basic"])) == ["kiosk1.example.com",
                                                          "lab7.example.com"]
    assert [m.hostname for m in query.by_groups(["debian"])] == ["web1.example.com"]
    assert [m.hostname for m in query.by_profiles(["web"])] == ["web1.example.com"]
    assert len(query.all()) == 4
    assert {"web", "basic", "base", "ubuntu", "debian", "legacy", "apt-proxy", "db"} <= \
        query.all_groups()
    assert query.all_groups_in_category("os") == {"ubuntu", "debian"}
    assert md.inGroup("basic") and not md.inGroup("web")


def test_copy_is_independent(mk):
    core = mk(GROUPS, CLIENTS)
    md = core.build_metadata("web1.example.com")
    assert isinstance(md, ClientMetadata)
    other = md.copy()
    other.groups.add("x")
    other.bundles.add("y")
    other.categories["c"] = "x"
    assert "x" not in md.groups and "y" not in md.bundles and "c" not in md.categories
    assert other.query is md.query


def test_connector_groups_merge(mk):
    groups = """<Groups>
      <Group name="p" default="true"><Group name="debian"/></Group>
      <Group name="debian" category="os"><Bundle name="apt"/></Group>
      <Group name="redhat" category="os"><Bundle name="yum"/></Group>
      <Group name="role-web" profile="true"><Bundle name="web"/><Group name="tier1"/></Group>
      <Group name="tier1"><Bundle name="t1"/></Group>
    </Groups>"""
    patterns = """<GroupPatterns><GroupPattern><NamePattern>^(\\w+)\\d</NamePattern>
      <Group>role-$1</Group><Group>redhat</Group></GroupPattern></GroupPatterns>"""
    core = mk(groups, '<Clients><Client name="web1" profile="p"/></Clients>',
              plugins="Metadata, GroupPatterns",
              files={"GroupPatterns/config.xml": patterns})
    md = core.build_metadata("web1")
    # redhat is suppressed by the os category (debian came from groups.xml first);
    # role-web is added and its rules run; bundles are recomputed
    assert md.groups == {"p", "debian", "role-web", "tier1"}
    assert md.bundles == {"apt", "web", "t1"}
    # p is not a profile group, so the first connector profile group is taken
    assert md.profile == "role-web"


def test_connector_without_profile_falls_back_to_default(mk):
    groups = '<Groups><Group name="p" default="true"/></Groups>'
    patterns = """<GroupPatterns><GroupPattern><NamePattern>.</NamePattern>
      <Group>anything</Group></GroupPattern></GroupPatterns>"""
    core = mk(groups, '<Clients><Client name="h" profile="p"/></Clients>',
              plugins="Metadata, GroupPatterns",
              files={"GroupPatterns/config.xml": patterns})
    md = core.build_metadata("h")
    assert md.groups == {"p", "anything"}
    assert md.profile == "p"


def test_connector_data_becomes_attribute(mk):
    core = mk(GROUPS, CLIENTS)
    md = core.build_metadata("web1.example.com")
    core.metadata.merge_additional_data(md, "Extra", {"k": 1})
    core.metadata.merge_additional_data(md, "Extra", {"k": 2})
    assert md.Extra == {"k": 1}
    assert md.connectors == ["Extra"]


def test_dynamic_groups_are_honoured(mk):
    class Dynamic:
        name = "dyn"
        bundles = ("dyn-bundle",)
        category = None
        is_profile = False
    core = mk(GROUPS, CLIENTS)
    core.metadata.groups["dyn"] = Dynamic()
    md = core.build_metadata("web1.example.com")
    core.metadata.merge_additional_groups(md, ["dyn"])
    assert "dyn-bundle" in md.bundles


# ---------------------------------------------------------------- loading

def test_use_database_is_refused_clearly(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    with pytest.raises(CoreInitError):
        make_core(tmp_path, GROUPS, CLIENTS, extra="[metadata]\nuse_database = true\n")
    assert any("use_database" in r.getMessage() and "not supported yet" in r.getMessage()
               for r in caplog.records)


def test_missing_files_are_created_empty(tmp_path, cores):
    core = make_core(tmp_path, groups=None, clients=None)
    cores.append(core)
    assert (tmp_path / "repo/Metadata/groups.xml").read_text().strip() == "<Groups/>"
    assert (tmp_path / "repo/Metadata/clients.xml").read_text().strip() == "<Clients/>"
    assert core.metadata.list_clients() == []


def test_not_read_yet_until_both_files_load(mk, caplog, tmp_path):
    caplog.set_level(logging.ERROR)
    core = mk(GROUPS, "<Clients><Client name='h' profile='basic'>")
    assert any("clients.xml" in r.getMessage() and "line" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(MetadataRuntimeError, match="has not been read yet"):
        core.metadata.get_initial_metadata("h")
    with pytest.raises(Fault, match="has not been read yet"):
        core.resolve_client(ClientAddress(("10.0.0.1", 1), "h"))
    assert core.authenticate_client(None, "h", "pw", ("10.0.0.1", 1)) == (False, None)
    with pytest.raises(MetadataRuntimeError):
        core.metadata.set_profile("h", "basic", ("10.0.0.1", 1))


def test_reload_clears_removed_values(mk, tmp_path):
    core = mk(GROUPS, CLIENTS, filemonitor="inotify",
              extra="[communication]\npassword = global\n")
    addr = ("10.0.0.50", 1)
    assert core.authenticate_client(None, "lab7-key", "per-client-secret", addr) == \
        (True, "lab7.example.com")
    clients = tmp_path / "repo/Metadata/clients.xml"
    clients.write_text(CLIENTS.replace(' uuid="Lab7-Key"', "")
                       .replace('password="per-client-secret"', 'password="new"'))
    groups = tmp_path / "repo/Metadata/groups.xml"
    groups.write_text(GROUPS.replace(' default="true"', ""))
    wait_for(lambda: core.metadata.default is None
             and "lab7-key" not in core.metadata._clients_data.uuids, core)
    assert core.authenticate_client(None, "lab7.example.com", "per-client-secret",
                                    addr) == (False, None)
    assert core.authenticate_client(None, "lab7.example.com", "new", addr) == \
        (True, "lab7.example.com")
    with pytest.raises(Fault, match="no default group"):
        core.build_metadata("stranger")


def test_reload_expires_the_metadata_cache(mk, tmp_path):
    core = mk(GROUPS, CLIENTS, filemonitor="inotify",
              extra="[caching]\nclient_metadata = aggressive\n")
    assert core.build_metadata("web1.example.com").bundles == {"apache", "ssh"}
    assert core.build_metadata("web1.example.com") is \
        core.build_metadata("web1.example.com")
    (tmp_path / "repo/Metadata/groups.xml").write_text(
        GROUPS.replace('<Bundle name="apache"/>', '<Bundle name="nginx"/>'))
    wait_for(lambda: core.build_metadata("web1.example.com").bundles ==
             {"nginx", "ssh"}, core)


def test_included_file_change_reloads(mk, tmp_path):
    clients = """<Clients xmlns:xi="http://www.w3.org/2001/XInclude">
      <xi:include href="more.xml"/></Clients>"""
    core = mk(GROUPS, clients, filemonitor="inotify",
              files={"Metadata/more.xml": '<Clients><Client name="a" profile="web"/>'
                                          '</Clients>'})
    assert core.metadata.list_clients() == ["a"]
    (tmp_path / "repo/Metadata/more.xml").write_text(
        '<Clients><Client name="a" profile="web"/><Client name="b" profile="web"/>'
        '</Clients>')
    wait_for(lambda: core.metadata.list_clients() == ["a", "b"], core)


# ---------------------------------------------------------------- RMI

def test_rmi_list_add_remove(mk, tmp_path):
    core = mk(GROUPS, CLIENTS)
    rmi = core._get_rmi()
    assert {"Metadata.list_clients", "Metadata.remove_client",
            "Metadata.add_client"} <= set(rmi)
    addr = ("127.0.0.1", 1)
    assert dispatch.dispatch(core, "Metadata.list_clients", (), addr)[0] == \
        "web1.example.com"
    assert dispatch.dispatch(core, "Metadata.add_client",
                             ("added.example.com", {"profile": "web"}), addr) is True
    assert dispatch.dispatch(core, "Metadata.add_client",
                             ("ADDED.example.com", {}), addr) is False
    assert "added.example.com" in core.metadata.list_clients()
    assert dispatch.dispatch(core, "Metadata.remove_client", ("lab7.example.com",),
                             addr) is True
    assert "lab7.example.com" not in core.metadata.list_clients()
    with pytest.raises(Fault, match="does not exist"):
        dispatch.dispatch(core, "Metadata.remove_client", ("nobody",), addr)
    text = (tmp_path / "repo/Metadata/clients.xml").read_text()
    assert "<!-- the web server -->" in text and "lab7" not in text
    core.metadata.update_client("added.example.com", {"profile": "basic"})
    assert core.build_metadata("added.example.com").profile == "basic"


# ---------------------------------------------------------------- the wire repository

@pytest.mark.skipif(WIRE_REPO is None, reason="the wire repository is not available")
def test_wire_repository(tmp_path, cores):
    repo = tmp_path / "repo"
    shutil.copytree(WIRE_REPO, repo)
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\nplugins = Metadata\nfilemonitor = pseudo\n"
                    "[communication]\npassword = wiredemo-global\n" % repo)
    core = TestNetworkCore(Settings(str(conf)))
    cores.append(core)
    core.load()
    local = ("127.0.0.1", 40001)
    ok, client = core.authenticate_client(None, "root", "wiredemo-global", local)
    assert (ok, client) == (True, "web1.wiredemo.test")
    name, md = core.resolve_client(ClientAddress(local, client))
    assert name == "web1.wiredemo.test"
    assert md.profile == "webserver"
    assert md.groups == {"webserver", "linux"}
    assert md.bundles == {"web", "common"}
    db1 = core.build_metadata("db1.wiredemo.test")
    assert db1.groups == {"dbserver", "linux"} and db1.bundles == {"common"}
    # observation 10: user name wins over the address; secure needs its own password
    assert core.authenticate_client(None, "db1.wiredemo.test", "db1-own-pw", local) == \
        (True, "db1.wiredemo.test")
    assert core.authenticate_client(None, "db1.wiredemo.test", "wiredemo-global",
                                    local) == (False, None)
    assert core.authenticate_client(None, "root", "wrong-password", local) == \
        (False, None)
    # observation 9: AssertProfile then DeclareVersion for the unknown new1
    conn = ("127.0.0.1", 40002)
    ok, client = core.authenticate_client(None, "new1.wiredemo.test", "wiredemo-global",
                                          conn)
    assert (ok, client) == (True, "new1.wiredemo.test")
    assert core.AssertProfile(ClientAddress(conn, client), "webserver") is True
    conn = ("127.0.0.1", 40003)
    ok, client = core.authenticate_client(None, "new1.wiredemo.test", "wiredemo-global",
                                          conn)
    assert core.DeclareVersion(ClientAddress(conn, client), "1.4.0pre2") is True
    new1 = [c for c in parse_repo_file(str(repo / "Metadata/clients.xml")).getroot()
            if c.get("name") == "new1.wiredemo.test"]
    assert len(new1) == 1
    assert list(new1[0].attrib.items()) == [
        ("name", "new1.wiredemo.test"), ("uuid", "new1.wiredemo.test"),
        ("profile", "webserver"), ("address", "127.0.0.1"), ("version", "1.4.0pre2")]
    assert dispatch.dispatch(core, "Metadata.list_clients", (), local) == [
        "web1.wiredemo.test", "db1.wiredemo.test", "new1.wiredemo.test"]
    # private profiles cannot be asserted
    with pytest.raises(Fault, match="private group"):
        core.AssertProfile(ClientAddress(conn, "new1.wiredemo.test"), "dbserver")
    with pytest.raises(Fault, match="does not exist"):
        core.AssertProfile(ClientAddress(conn, "new1.wiredemo.test"), "nosuchgroup")


def test_cache_tag_is_shared_with_core(mk):
    core = mk(GROUPS, CLIENTS, extra="[caching]\nclient_metadata = aggressive\n")
    first = core.build_metadata("web1.example.com")
    cache.expire("Metadata", "web1.example.com", exact=True)
    assert core.build_metadata("web1.example.com") is not first


def test_session_cache_stays_bounded_under_steady_load(mk):
    """Every name login is remembered by (ip, port) for 90 s; past the purge size the
    expired ones go, oldest first, and fresh ones stay."""
    from bcfg2_cherry.plugins.metadata import plugin as mdplugin
    core = mk()
    md = core.metadata
    old = time.time() - mdplugin.SESSION_TTL - 1
    for port in range(mdplugin.SESSION_PURGE_SIZE):
        md.session_cache[("10.0.0.1", port)] = (old, "old.example.com", "old")
    md.session_cache[("10.0.0.2", 1)] = (time.time(), "fresh.example.com", "fresh")
    md._session_put(("10.0.0.3", 7), "new.example.com", "new")
    assert list(md.session_cache) == [("10.0.0.2", 1), ("10.0.0.3", 7)]
    assert md._session_get(("10.0.0.3", 7)) == ("new.example.com", "new")
