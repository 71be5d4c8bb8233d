"""The Core through its public API, with the small plugins of fakeplugins.py."""
import logging

import lxml.etree
import pytest

from bcfg2_cherry import statistics
from bcfg2_cherry.options import Settings
from bcfg2_cherry.server import dispatch
from bcfg2_cherry.server.core import (
    ClientAddress, CoreInitError, DefaultACL, sort_xml)
from bcfg2_cherry.server.errors import AuthenticationFailure, Fault, RequestError
from tests.unit import fakeplugins as fp
from tests.support.cores import TestNetworkCore

M = "tests.unit.fakeplugins:"
BASE_PLUGINS = ["FakeMetadata", "FakeBundler", "FakeGenerator", "FakeConnector",
                "FakeHooks", "FakeProbes", "FakeDecisions", "FakeStats"]




@pytest.fixture(autouse=True)
def reset_fakes():
    fp.FakeMetadata.clients = {
        "web1.example.com": ("10.0.0.1", ["web"], ["base", "web"]),
        "db1.example.com": ("10.0.0.2", ["db"], ["base"]),
        "admin.example.com": ("127.0.0.1", ["admin"], []),
    }
    fp.FakeMetadata.passwords = {"web1.example.com": "pw1", "db1.example.com": "pw2",
                                 "admin.example.com": "adminpw"}
    fp.FakeMetadata.builds = []
    fp.FakeMetadata.versions = {}
    fp.FakeMetadata.profiles = {}
    fp.FakeBundler.bundles = {
        "base": ['<Path name="/etc/motd"/>', '<BoundPackage name="vim" version="auto"/>',
                 '<Path name="/etc/missing"/>', '<Path name="/slow/one"/>'],
        "web": ['<Path name="/etc/broken"/>', '<Path name="/etc/issue.net" altsrc="/etc/issue"/>',
                '<Path name="/shared"/>', '<Path name="/etc/alt-fallback" altsrc="/nope"/>'],
    }
    fp.FakeBundler.raise_for = set()
    fp.FakeGenerator.files = {"/etc/motd": "hello", "/etc/broken": None,
                              "/etc/issue": "issue text", "/shared": "mine",
                              "/etc/alt-fallback": "own content"}
    fp.FakeHooks.calls = []
    fp.FakeHooks.fail_goals = False
    fp.FakeProbes.received = []
    fp.FakeStats.received = []
    fp.FakeACL.ip = {}
    fp.FakeACL.metadata = {}
    statistics.stats.reset()
    yield
    # debug toggles change process-wide logger levels: leave them as found
    for name in ("bcfg2_cherry", "TestNetworkCore"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def make_core(tmp_path, plugins=BASE_PLUGINS, extra="", cls=TestNetworkCore):
    conf = tmp_path / "bcfg2.conf"
    conf.write_text(
        "[server]\nrepository = %s\nplugins = %s\nfilemonitor = pseudo\n%s"
        % (tmp_path / "repo", ", ".join(M + p for p in plugins), extra))
    (tmp_path / "repo").mkdir(exist_ok=True)
    core = cls(Settings(str(conf)))
    core.load()
    return core


@pytest.fixture
def core(tmp_path):
    c = make_core(tmp_path)
    yield c
    c.shutdown()


def addr(ip="10.0.0.1", client=None):
    return ClientAddress((ip, 40000), client)


def entries(config):
    return {(e.tag, e.get("name")): e for b in config for e in b}


# ---------------------------------------------------------------- plugin loading

def test_plugins_loaded_with_default_acl_and_metadata(core):
    assert core.metadata is core.plugins["FakeMetadata"]
    assert isinstance(core.plugins["DefaultACL"], DefaultACL)
    assert "FakeGenerator" in core.plugins


def test_plugins_by_type_sorted_by_order_then_name(tmp_path):
    c = make_core(tmp_path, BASE_PLUGINS + ["OtherGenerator"])
    try:
        c.plugins["FakeGenerator"].sort_order = 600
        c._plugins_by_type.clear()
        from bcfg2_cherry.plugin import Generator
        assert [p.name for p in c.plugins_by_type(Generator)] == \
            ["OtherGenerator", "FakeGenerator"]
        c.plugins["FakeGenerator"].sort_order = 500
        c._plugins_by_type.clear()
        assert [p.name for p in c.plugins_by_type(Generator)] == \
            ["FakeGenerator", "OtherGenerator"]
    finally:
        c.shutdown()


def test_no_metadata_plugin_is_core_init_error(tmp_path):
    with pytest.raises(CoreInitError, match="No Metadata Plugin"):
        make_core(tmp_path, ["FakeBundler"])


def test_failing_and_unknown_plugins_are_skipped(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    c = make_core(tmp_path, BASE_PLUGINS + ["ExplodingPlugin", "NoSuchPluginAnywhere"])
    try:
        assert "ExplodingPlugin" not in c.plugins
        assert "Failed to instantiate plugin ExplodingPlugin" in caplog.text
        assert "NoSuchPluginAnywhere" in caplog.text
    finally:
        c.shutdown()


def test_conflict_removes_earlier_plugin(tmp_path):
    c = make_core(tmp_path, ["FakeMetadata", "OtherGenerator", "ConflictingGenerator"])
    try:
        assert "OtherGenerator" not in c.plugins
        assert "OtherGenerator" in c.plugin_blacklist
        assert "ConflictingGenerator" in c.plugins
    finally:
        c.shutdown()


def test_conflict_with_later_plugin_does_not_remove_it(tmp_path):
    c = make_core(tmp_path, ["FakeMetadata", "ConflictingGenerator", "OtherGenerator"])
    try:
        assert "OtherGenerator" in c.plugins and "ConflictingGenerator" in c.plugins
    finally:
        c.shutdown()


def test_plugin_data_directory_created(core, tmp_path):
    assert (tmp_path / "repo" / "FakeBundler").is_dir()


def test_shutdown_is_idempotent(tmp_path):
    c = make_core(tmp_path)
    c.shutdown()
    c.shutdown()
    assert c.terminate.is_set()
    assert not c.plugins["FakeGenerator"].running


# ---------------------------------------------------------------- building

def test_build_configuration_binds_and_sorts(core):
    config = core.BuildConfiguration("web1.example.com")
    assert config.tag == "Configuration"
    assert config.get("version") == "2.0" and config.get("revision") == "-1"
    assert [b.get("name") for b in config] == ["base", "web"]
    got = entries(config)
    assert got[("Path", "/etc/motd")].text == "hello"
    # Bound entries lose the prefix and are not bound again
    assert got[("Package", "vim")].get("version") == "auto"
    # slow path
    assert got[("Path", "/slow/one")].text == "slow:/slow/one"
    # entries are sorted by name inside their bundle
    assert [e.get("name") for e in config[0]] == sorted(e.get("name") for e in config[0])
    assert config.get("validated") == "yes"


def test_unbound_entry_kept_with_failure(core):
    got = entries(core.BuildConfiguration("web1.example.com"))
    assert got[("Path", "/etc/missing")].get("failure") == "no matching generator"


def test_generator_error_fails_only_that_entry(core):
    got = entries(core.BuildConfiguration("web1.example.com"))
    broken = got[("Path", "/etc/broken")]
    assert broken.get("failure") == "bind error: template failed for /etc/broken"
    assert got[("Path", "/etc/motd")].text == "hello"


def test_altsrc_binds_source_under_own_name(core):
    got = entries(core.BuildConfiguration("web1.example.com"))
    entry = got[("Path", "/etc/issue.net")]
    assert entry.text == "issue text"
    assert "realname" not in entry.attrib and "altsrc" not in entry.attrib


def test_altsrc_failure_falls_back_cleanly(core):
    entry = entries(core.BuildConfiguration("web1.example.com"))[("Path", "/etc/alt-fallback")]
    assert entry.text == "own content"
    assert "failure" not in entry.attrib and "realname" not in entry.attrib


def test_entry_served_by_two_fast_paths_fails_with_names(tmp_path):
    c = make_core(tmp_path, BASE_PLUGINS + ["OtherGenerator"])
    try:
        entry = entries(c.BuildConfiguration("web1.example.com"))[("Path", "/shared")]
        assert entry.get("failure") == \
            "bind error: served by multiple generators: FakeGenerator, OtherGenerator"
    finally:
        c.shutdown()


def test_structure_error_document(core):
    fp.FakeBundler.raise_for = {"web1.example.com"}
    config = core.BuildConfiguration("web1.example.com")
    assert lxml.etree.tostring(config) == b'<error type="structure error"/>'
    assert ("end", "web1.example.com") in fp.FakeHooks.calls


def test_metadata_error_becomes_fault_via_getconfig(core):
    with pytest.raises(Fault) as err:
        core.GetConfig(addr("10.9.9.9", client="ghost.example.com"))
    assert err.value.faultCode == -32500
    assert err.value.faultString.startswith("Critical failure: ")


def test_getconfig_builds_metadata_once(core):
    """GetConfig hands the metadata it resolved the client with to BuildConfiguration
    rather than building it twice; the document is the same either way."""
    expected = lxml.etree.tostring(core.BuildConfiguration("web1.example.com"),
                                   encoding="unicode")
    fp.FakeMetadata.builds = []
    assert core.GetConfig(addr(client="web1.example.com")) == expected
    assert fp.FakeMetadata.builds == ["web1.example.com"]
    md = core.build_metadata("db1.example.com")
    fp.FakeMetadata.builds = []
    config = core.BuildConfiguration("db1.example.com", metadata=md)
    assert fp.FakeMetadata.builds == []
    assert lxml.etree.tostring(config) == \
        lxml.etree.tostring(core.BuildConfiguration("db1.example.com"))


def test_connector_metadata_error(core, monkeypatch):
    """core.md §4 step 2: a connector's MetadataConsistencyError makes
    BuildConfiguration(client) answer the metadata error document; GetConfig meets it
    in its own metadata build, so it fails before BuildConfiguration runs."""
    from bcfg2_cherry.plugin.exceptions import MetadataConsistencyError

    def refuse(self, metadata):
        raise MetadataConsistencyError("connector says no")

    monkeypatch.setattr(fp.FakeConnector, "get_additional_groups", refuse)
    config = core.BuildConfiguration("web1.example.com")
    assert lxml.etree.tostring(config) == b'<error type="metadata error"/>'
    fp.FakeHooks.calls = []
    with pytest.raises(Fault) as err:
        dispatch.dispatch(core, "GetConfig", (), ("10.0.0.1", 1), "web1.example.com")
    assert err.value.faultCode == -32500
    assert err.value.faultString == ("Critical failure: Client metadata resolution error "
                                     "for 10.0.0.1: connector says no")
    assert fp.FakeHooks.calls == []


def test_client_run_hooks_order(core):
    core.BuildConfiguration("db1.example.com")
    assert fp.FakeHooks.calls == [("start", "db1.example.com"), ("structures", 1),
                                  ("end", "db1.example.com")]


def test_goal_validation_error_is_a_fault(core):
    fp.FakeHooks.fail_goals = True
    with pytest.raises(Fault) as err:
        core.GetConfig(addr())
    assert err.value.faultCode == -32500 and "goal refused" in err.value.faultString


def test_connector_groups_and_data(core):
    md = core.build_metadata("web1.example.com")
    assert "connected" in md.groups
    assert md.FakeConnector == {"answer": 42}


def test_version_plugin_sets_revision(tmp_path):
    c = make_core(tmp_path, BASE_PLUGINS + ["FakeVersion"])
    try:
        c._update_vcs_revision()
        assert c.BuildConfiguration("db1.example.com").get("revision") == "rev42"
    finally:
        c.shutdown()


def test_sort_xml_keeps_order_when_a_child_has_no_name():
    root = lxml.etree.fromstring('<a><b name="z"/><c/><b name="a"/></a>')
    sort_xml(root)
    assert [c.get("name") for c in root] == ["z", None, "a"]
    root = lxml.etree.fromstring('<a><b name="z"><x name="2"/><x name="1"/></b><b name="a"/></a>')
    sort_xml(root)
    assert [c.get("name") for c in root] == ["a", "z"]
    assert [c.get("name") for c in root[1]] == ["1", "2"]


# ---------------------------------------------------------------- metadata cache

@pytest.mark.parametrize("mode,builds", [("off", 3), ("cautious", 1), ("aggressive", 1),
                                         ("initial", 1)])
def test_cache_modes(tmp_path, mode, builds):
    c = make_core(tmp_path, extra="[caching]\nclient_metadata = %s\n" % mode)
    try:
        for _ in range(3):
            md = c.build_metadata("web1.example.com")
        assert fp.FakeMetadata.builds.count("web1.example.com") == builds
        assert "connected" in md.groups
    finally:
        c.shutdown()


def test_initial_mode_does_not_accumulate_connector_groups(tmp_path):
    c = make_core(tmp_path, extra="[caching]\nclient_metadata = initial\n")
    try:
        first = c.build_metadata("web1.example.com")
        first.groups.add("leaked")
        assert "leaked" not in c.build_metadata("web1.example.com").groups
    finally:
        c.shutdown()


def test_expire_one_host_and_all(tmp_path):
    c = make_core(tmp_path, extra="[caching]\nclient_metadata = aggressive\n")
    try:
        c.build_metadata("web1.example.com")
        c.build_metadata("db1.example.com")
        c.expire_metadata_cache(addr(), ["web1.example.com"])
        c.build_metadata("web1.example.com")
        c.build_metadata("db1.example.com")
        assert fp.FakeMetadata.builds == ["web1.example.com", "db1.example.com",
                                          "web1.example.com"]
        assert c.expire_metadata_cache(addr(), None) is None
        c.build_metadata("db1.example.com")
        assert fp.FakeMetadata.builds[-1] == "db1.example.com"
        # a single string is one host name, not a list of characters
        c.expire_metadata_cache(addr(), "db1.example.com")
        c.build_metadata("db1.example.com")
        assert fp.FakeMetadata.builds.count("db1.example.com") == 3
    finally:
        c.shutdown()


def test_cautious_expires_on_probe_data(tmp_path):
    c = make_core(tmp_path, extra="[caching]\nclient_metadata = cautious\n")
    try:
        c.build_metadata("web1.example.com")
        c.RecvProbeData(addr(), "<ProbeData/>")
        assert fp.FakeMetadata.builds.count("web1.example.com") == 2
    finally:
        c.shutdown()


# ---------------------------------------------------------------- exposed methods

def test_declare_version_and_assert_profile(core):
    assert core.DeclareVersion(addr(), "1.4.0pre2") is True
    assert fp.FakeMetadata.versions == {"web1.example.com": "1.4.0pre2"}
    assert core.AssertProfile(addr(), "web") is True
    with pytest.raises(Fault) as err:
        core.AssertProfile(addr(), "private")
    assert err.value.faultString.startswith(
        "Critical failure: Unable to assert profile for web1.example.com")


def test_identity_from_authentication_wins_over_address(core):
    # the address belongs to web1, but authentication said db1
    config = core.BuildConfiguration("db1.example.com")
    got = lxml.etree.fromstring(core.GetConfig(addr("10.0.0.1", client="db1.example.com")))
    assert [b.get("name") for b in got] == [b.get("name") for b in config] == ["base"]


def test_unknown_address_is_critical_fault(core):
    with pytest.raises(Fault) as err:
        core.GetProbes(addr("10.9.9.9"))
    assert err.value.faultString.startswith(
        "Critical failure: Client metadata resolution error for 10.9.9.9")


def test_get_probes_and_recv_probe_data(core):
    probes = lxml.etree.fromstring(core.GetProbes(addr()))
    assert probes.tag == "probes" and probes[0].get("name") == "os"
    data = ('<ProbeData><probe-data name="os" source="FakeProbes">group:x\n</probe-data>'
            '<probe-data name="z" source="NotLoaded">1</probe-data></ProbeData>')
    assert core.RecvProbeData(addr(), data) is True
    assert fp.FakeProbes.received == [("web1.example.com", [("os", "group:x\n")])]


@pytest.mark.parametrize("bad", [
    "<ProbeData>",
    '<!DOCTYPE x [<!ENTITY a "aaaa">]><ProbeData>&a;</ProbeData>',
    "<a>" * 300 + "</a>" * 300,
])
def test_hostile_probe_data_is_a_fault(core, bad):
    with pytest.raises(Fault) as err:
        core.RecvProbeData(addr(), bad)
    assert err.value.faultString.startswith("Critical failure: Failed to parse probe data")
    assert fp.FakeProbes.received == []


def test_recv_stats(core):
    doc = '<upload-statistics><Statistics version="2.0" state="clean"/></upload-statistics>'
    assert core.RecvStats(addr(), doc) is True
    assert fp.FakeStats.received == [("web1.example.com", "clean")]
    assert ("stats", "web1.example.com") in fp.FakeHooks.calls
    old = '<upload-statistics><Statistics version="1.0" state="dirty"/></upload-statistics>'
    core.RecvStats(addr(), old)
    assert len(fp.FakeStats.received) == 1
    with pytest.raises(Fault) as err:
        core.RecvStats(addr(), "<not xml")
    assert err.value.faultCode == 1


def test_decision_list(tmp_path):
    c = make_core(tmp_path, BASE_PLUGINS + ["BrokenDecisions"])
    try:
        assert c.GetDecisionList(addr(), "whitelist") == [["Service", "*"]]
        assert c.GetDecisionList(addr(), "blacklist") == [["Path", "/etc/x"]]
        with pytest.raises(Fault):
            c.GetDecisionList(addr(), "__class__")
    finally:
        c.shutdown()


def test_debug_toggles(core):
    assert core.set_debug(addr(), "TRUE") is True
    assert core.plugins["FakeGenerator"].debug_flag is True
    assert core.fam.debug_flag is True
    assert core.toggle_debug(addr()) is False
    assert core.set_core_debug(addr(), "false") is False
    assert core.toggle_core_debug(addr()) is True
    assert core.toggle_fam_debug(addr()).startswith("fam_debug is deprecated")
    assert core.set_fam_debug(addr(), True).startswith("fam_debug is deprecated")


def test_method_help(core):
    assert "Configuration" in core.methodHelp(addr(), "GetConfig")
    assert core.methodHelp(addr(), "FakeMetadata.list_clients") == ""
    assert core.methodHelp(addr(), "shutdown") == ""


def test_get_statistics_records_timings(core):
    core.BuildConfiguration("web1.example.com")
    stats = core.get_statistics(addr())
    assert stats["TestNetworkCore:GetStructures"][3] == 1
    assert "TestNetworkCore:Bind:Path" in stats
    mn, mx, mean, count = stats["TestNetworkCore:build_metadata"]
    assert 0 <= mn <= mean <= mx and count >= 1


# ---------------------------------------------------------------- ACLs

def test_default_acl_rules(core):
    remote, local, local6 = ("10.0.0.1", 1), ("127.0.0.1", 1), ("::1", 1)
    for method in ("GetConfig", "DeclareVersion", "listMethods"):
        assert core.check_acls(remote, method)
    for method in ("FakeMetadata.list_clients", "set_debug", "toggle_core_debug",
                   "get_statistics", "expire_metadata_cache"):
        assert not core.check_acls(remote, method)
        assert core.check_acls(local, method)
        assert core.check_acls(local6, method)


def test_acl_deny_beats_allow_and_defer_uses_metadata(tmp_path):
    c = make_core(tmp_path, BASE_PLUGINS + ["FakeACL"])
    try:
        assert "DefaultACL" not in c.plugins
        fp.FakeACL.ip = {"10.0.0.1": None, "10.0.0.2": False, "127.0.0.1": True}
        fp.FakeACL.metadata = {"web1.example.com": {"GetConfig"},
                               "db1.example.com": {"GetConfig"}}
        assert c.check_acls(addr("10.0.0.1"), "GetConfig")
        assert not c.check_acls(addr("10.0.0.1"), "GetProbes")
        assert not c.check_acls(addr("10.0.0.2"), "GetConfig")  # deny beats metadata allow
        assert c.check_acls(addr("127.0.0.1"), "anything.at_all")
        # unresolvable client on defer: denied, not an exception
        fp.FakeACL.ip["10.7.7.7"] = None
        assert not c.check_acls(addr("10.7.7.7"), "GetConfig")
    finally:
        c.shutdown()


def test_list_methods_is_acl_filtered(core):
    remote = core.listMethods(addr("10.0.0.1"))
    local = core.listMethods(addr("127.0.0.1"))
    assert "GetConfig" in remote and "FakeMetadata.list_clients" not in remote
    assert "FakeMetadata.list_clients" in local and "Pseudo.list_event_handlers" in local
    assert "get_statistics" in local and "get_statistics" not in remote


# ---------------------------------------------------------------- dispatch

#: every name a client can reach on a core with no plugins' RMI: pinned on purpose
EXPOSED = sorted([
    "AssertProfile", "DeclareVersion", "GetConfig", "GetDecisionList", "GetProbes",
    "RecvProbeData", "RecvStats", "expire_metadata_cache", "get_statistics",
    "listMethods", "methodHelp", "set_core_debug", "set_debug", "set_fam_debug",
    "toggle_core_debug", "toggle_debug", "toggle_fam_debug"])


def test_exposed_surface_is_pinned(core):
    assert core.exposed_methods() == EXPOSED
    rmi = sorted(core._get_rmi())
    expected = {"%s.%s" % (p, m) for p in core.plugins for m in ("toggle_debug", "set_debug")}
    expected |= {"FakeMetadata.list_clients", "Pseudo.toggle_debug", "Pseudo.set_debug",
                 "Pseudo.list_event_handlers"}
    assert set(rmi) == expected


@pytest.mark.parametrize("name", ["shutdown", "BuildConfiguration", "_get_rmi",
                                  "__init__", "Bind", "FakeMetadata.get_initial_metadata",
                                  "FakeMetadata.__init__", "setup", "fam.shutdown",
                                  "FakeGenerator.bind", "a.b.c"])
def test_unexposed_names_are_unknown(core, name):
    with pytest.raises(Fault) as err:
        dispatch.dispatch(core, name, (), ("127.0.0.1", 1))
    assert err.value.faultCode == -32601
    assert err.value.faultString == "Unknown method %s" % name


def test_dispatch_prepends_address_and_not_for_rmi(core):
    assert dispatch.dispatch(core, "FakeMetadata.list_clients", (), ("127.0.0.1", 1)) == \
        sorted(fp.FakeMetadata.clients)
    assert dispatch.dispatch(core, "DeclareVersion", ("1.0",), ("10.0.0.2", 5)) is True
    assert fp.FakeMetadata.versions == {"db1.example.com": "1.0"}
    assert core.get_statistics(addr())["DeclareVersion"][3] == 1


def test_dispatch_carries_identity(core):
    dispatch.dispatch(core, "DeclareVersion", ("2.0",), ("10.0.0.1", 5),
                      client="db1.example.com")
    assert fp.FakeMetadata.versions == {"db1.example.com": "2.0"}


def test_dispatch_unexpected_error_is_fault_without_traceback(core):
    fp.FakeBundler.raise_for = set()
    original = fp.FakeMetadata.set_version
    fp.FakeMetadata.set_version = lambda self, c, v: 1 / 0
    try:
        with pytest.raises(Fault) as err:
            dispatch.dispatch(core, "DeclareVersion", ("1",), ("10.0.0.1", 5))
    finally:
        fp.FakeMetadata.set_version = original
    assert err.value.faultCode == 1
    assert "Traceback" not in err.value.faultString
    assert "division by zero" in err.value.faultString


def test_dispatch_wrong_arguments(core):
    with pytest.raises(Fault) as err:
        dispatch.dispatch(core, "DeclareVersion", (), ("10.0.0.1", 5))
    assert err.value.faultCode == -32602


def test_authenticate_and_handle(core):
    body = b"<?xml version='1.0'?><methodCall><methodName>DeclareVersion</methodName>" \
           b"<params><param><value><string>1.4</string></value></param></params></methodCall>"
    resp = dispatch.handle(core, body, ("10.0.0.1", 1), user="root", password="pw1")
    assert b"<boolean>1</boolean>" in resp
    with pytest.raises(AuthenticationFailure):
        dispatch.handle(core, body, ("10.0.0.1", 1), user="root", password="wrong")
    # acl denial from a remote address
    body2 = body.replace(b"DeclareVersion", b"get_statistics").replace(
        b"<params><param><value><string>1.4</string></value></param></params>", b"")
    with pytest.raises(AuthenticationFailure):
        dispatch.handle(core, body2, ("10.0.0.1", 1), user="root", password="pw1")
    # a certificate only counts when a CA is configured
    cert = {"subject": ((("commonName", "db1.example.com"),),)}
    assert core.authenticate(cert, "root", "nope", ("10.0.0.1", 1)) is False


def test_authenticate_uses_certificate_with_ca(tmp_path):
    c = make_core(tmp_path, extra="[communication]\nca = /dev/null\n")
    try:
        cert = {"subject": ((("commonName", "db1.example.com"),),)}
        assert c.authenticate_client(cert, "web1.example.com", None, ("10.0.0.1", 1)) == \
            (True, "db1.example.com")
    finally:
        c.shutdown()


@pytest.mark.parametrize("body,status", [
    (b"not xml at all", 400),
    (b"\xff\xfe<methodCall/>", 400),
    (b'<!DOCTYPE m [<!ENTITY e "x">]><methodCall><methodName>&e;</methodName></methodCall>', 400),
    (b"<methodCall><params/></methodCall>", 400),
])
def test_parse_call_rejects_bad_bodies(body, status):
    with pytest.raises(RequestError) as err:
        dispatch.parse_call(body)
    assert err.value.status == status


def test_parse_call_size_limit():
    with pytest.raises(RequestError) as err:
        dispatch.parse_call(b"x" * 101, max_size=100)
    assert err.value.status == 413


def test_not_ready_core_answers_503(tmp_path):
    c = make_core(tmp_path)
    try:
        c.ready.clear()
        with pytest.raises(RequestError) as err:
            dispatch.authenticate(c, ("10.0.0.1", 1), user="root", password="pw1")
        assert err.value.status == 503
    finally:
        c.shutdown()


def test_encode_result_marshals_sets_and_nil():
    body = dispatch.encode_result({"a": {"x"}, "b": None})
    assert b"<nil/>" in body and b"<string>x</string>" in body


def test_conflicting_altsrc_is_logged(core, caplog):
    fp.FakeBundler.bundles["web"].append('<Path name="/etc/motd" altsrc="/etc/issue"/>')
    config = core.BuildConfiguration("web1.example.com")
    assert "conflicting altsrc values" in caplog.text
    assert config.tag == "Configuration"


def test_bcfg2_conf_change_rereads_options_and_keeps_them_on_error(tmp_path, caplog):
    from bcfg2_cherry.filemonitor import Event
    c = make_core(tmp_path, extra="[caching]\nclient_metadata = aggressive\n")
    try:
        c.build_metadata("web1.example.com")
        conf = tmp_path / "bcfg2.conf"
        conf.write_text(conf.read_text().replace("aggressive", "cautious"))
        c.HandleEvent(Event(1, str(conf), "changed"))
        assert c.setup.cache_mode == "cautious"
        c.build_metadata("web1.example.com")   # the change expired the cache
        assert fp.FakeMetadata.builds.count("web1.example.com") == 2
        conf.write_text(conf.read_text() + "[server]\numask = 9z\n")
        c.HandleEvent(Event(1, str(conf), "changed"))
        assert "Keeping the previous options" in caplog.text
        assert c.setup.cache_mode == "cautious"
    finally:
        c.shutdown()
