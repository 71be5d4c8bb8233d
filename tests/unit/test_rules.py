"""Rules through the Core: priorities, conditionals, regex names, fast and slow path."""
import logging
import os
import shutil
import xmlrpc.client

import lxml.etree
import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.server.local_core import LocalCore
from tests.support.servers import WIRE_DIR
from tests.unit import fakeplugins as fp

FAKE = "tests.unit.fakeplugins:"
#: the recorded upstream exchanges (the in-tree copy)
WIRE = WIRE_DIR


def make_core(tmp_path, plugins=("Bundler", "Rules"), extra="", filemonitor="pseudo",
              metadata=FAKE + "FakeMetadata"):
    """A LocalCore on ``tmp_path/repo`` with the fake Metadata plugin and ``plugins``."""
    repo = tmp_path / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\nplugins = %s\nfilemonitor = %s\n%s" % (
        repo, ", ".join([metadata] + list(plugins)), filemonitor, extra))
    return LocalCore(Settings(str(conf))).load()


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def bundle(tmp_path, name, *entries):
    write(tmp_path / "repo" / "Bundler" / (name + ".xml"),
          "<Bundle>%s</Bundle>" % "".join(entries))


def entries(config):
    return {(e.tag, e.get("name")): dict(e.attrib) for b in config for e in b}


def refresh(core):
    """Make the polling monitor look now, then handle what it saw."""
    core.fam.poll_once()
    core.handle_events(0.05)


@pytest.fixture(autouse=True)
def clients(monkeypatch):
    monkeypatch.setattr(fp.FakeMetadata, "clients", {
        "web1.example.com": ("10.0.0.1", ["web", "debian"], ["base"]),
        "db1.example.com": ("10.0.0.2", ["db"], ["base"]),
    })
    monkeypatch.setattr(fp.FakeGenerator, "files", {})


@pytest.fixture
def repo(tmp_path):
    bundle(tmp_path, "base", '<Service name="ssh"/>', '<Package name="openssh"/>',
           '<Path name="/srv/www"/>', '<Path name="/var/log/app-one"/>')
    return tmp_path / "repo"


def build(core, host="web1.example.com"):
    return entries(core.BuildConfiguration(host))


def test_top_level_entries_bind_with_attributes_as_written(tmp_path, repo):
    write(repo / "Rules" / "a.xml", '<Rules priority="1">'
          '<Service name="ssh" type="systemd" status="on"/>'
          '<Package name="openssh" type="deb" version="auto"/>'
          '<Path name="/srv/www" type="directory" owner="www" group="www" mode="0755"/>'
          '</Rules>')
    core = make_core(tmp_path)
    try:
        got = build(core)
        assert got[("Service", "ssh")] == dict(name="ssh", type="systemd", status="on")
        assert list(got[("Path", "/srv/www")]) == ["name", "type", "owner", "group", "mode"]
        assert set(core.plugins["Rules"].Entries) == {"Service", "Package", "Path"}
    finally:
        core.shutdown()


def test_highest_priority_wins_and_a_single_candidate_always_wins(tmp_path, repo):
    write(repo / "Rules" / "low.xml", '<Rules priority="1">'
          '<Service name="ssh" type="sysv" status="off"/>'
          '<Package name="openssh" type="rpm" version="1"/></Rules>')
    write(repo / "Rules" / "sub" / "high.xml", '<Rules priority="50">'
          '<Service name="ssh" type="systemd" status="on"/></Rules>')
    core = make_core(tmp_path)
    try:
        got = build(core)
        assert got[("Service", "ssh")]["type"] == "systemd"
        assert got[("Package", "openssh")]["type"] == "rpm"
    finally:
        core.shutdown()


@pytest.mark.parametrize("layout", ["two files", "one file"])
def test_equal_top_priority_is_a_bind_error(tmp_path, repo, layout, caplog):
    one = '<Service name="ssh" type="sysv"/>'
    two = '<Service name="ssh" type="systemd"/>'
    if layout == "two files":
        write(repo / "Rules" / "a.xml", '<Rules priority="5">%s</Rules>' % one)
        write(repo / "Rules" / "b.xml", '<Rules priority="5">%s</Rules>' % two)
    else:
        write(repo / "Rules" / "a.xml", '<Rules priority="5">%s<Group name="web">%s'
              '</Group></Rules>' % (one, two))
    write(repo / "Rules" / "low.xml", '<Rules priority="1">'
          '<Service name="ssh" type="upstart"/></Rules>')
    core = make_core(tmp_path)
    try:
        got = build(core)
        assert "conflicting sources with same priority" in \
            got[("Service", "ssh")]["failure"]
        assert "type" not in got[("Service", "ssh")]
        # db1 is not in group web: one candidate at priority 5 in the one-file layout
        if layout == "one file":
            assert build(core, "db1.example.com")[("Service", "ssh")]["type"] == "sysv"
    finally:
        core.shutdown()


def test_conditional_entries_use_the_slow_path(tmp_path, repo):
    write(repo / "Rules" / "a.xml", '<Rules priority="1">'
          '<Group name="debian"><Package name="openssh" type="deb"/></Group>'
          '<Group name="debian" negate="TRUE"><Package name="openssh" type="rpm"/>'
          '</Group>'
          '<Client name="web1.example.com"><Service name="ssh" type="systemd"/></Client>'
          '</Rules>')
    core = make_core(tmp_path)
    try:
        assert core.plugins["Rules"].Entries == {}
        web, db = build(core), build(core, "db1.example.com")
        assert web[("Package", "openssh")]["type"] == "deb"
        assert db[("Package", "openssh")]["type"] == "rpm"
        assert web[("Service", "ssh")]["type"] == "systemd"
        assert db[("Service", "ssh")]["failure"] == "no matching generator"
    finally:
        core.shutdown()


def test_bundle_attributes_win_text_and_children_are_copied(tmp_path):
    bundle(tmp_path, "base", '<Service name="ssh" status="off"/>',
           '<Path name="/etc/x" type="file">keep</Path>', '<Path name="/etc/y"/>')
    write(tmp_path / "repo" / "Rules" / "a.xml", '<Rules priority="1">'
          '<Service name="ssh" type="systemd" status="on"/>'
          '<Path name="/etc/x" type="nonexistent">  </Path>'
          '<Path name="/etc/y" type="file" owner="root">text<ACL type="user" user="a"/>'
          '</Path></Rules>')
    core = make_core(tmp_path)
    try:
        config = core.BuildConfiguration("web1.example.com")
        got = entries(config)
        assert got[("Service", "ssh")] == dict(name="ssh", status="off", type="systemd")
        x = config.find(".//Path[@name='/etc/x']")
        assert x.text == "keep" and x.get("type") == "file"
        y = config.find(".//Path[@name='/etc/y']")
        assert y.text == "text" and y[0].tag == "ACL" and y[0].get("user") == "a"
    finally:
        core.shutdown()


@pytest.mark.parametrize("in_bundle,in_rule", [("/srv/www/", "/srv/www"),
                                               ("/srv/www", "/srv/www/")])
def test_paths_match_regardless_of_a_trailing_slash(tmp_path, in_bundle, in_rule):
    bundle(tmp_path, "base", '<Path name="%s"/>' % in_bundle)
    write(tmp_path / "repo" / "Rules" / "a.xml", '<Rules priority="1">'
          '<Path name="%s" type="directory"/></Rules>' % in_rule)
    core = make_core(tmp_path)
    try:
        assert build(core)[("Path", in_bundle)]["type"] == "directory"
    finally:
        core.shutdown()


@pytest.mark.parametrize("regex", [True, False])
def test_regex_names_only_when_enabled(tmp_path, regex):
    bundle(tmp_path, "base", '<Service name="svc-12"/>', '<Service name="svc-12x"/>',
           '<Service name="xsvc-1"/>', '<Service name="svc-[0-9]+"/>')
    write(tmp_path / "repo" / "Rules" / "a.xml", '<Rules priority="1">'
          '<Service name="svc-[0-9]+" type="systemd"/><Service name="bad[" type="x"/>'
          '</Rules>')
    core = make_core(tmp_path, extra="[rules]\nregex = %s\n" % ("true" if regex else
                                                                 "false"))
    try:
        got = build(core)
        assert got[("Service", "svc-[0-9]+")]["type"] == "systemd"  # literal name
        assert ("type" in got[("Service", "svc-12")]) is regex
        assert "type" not in got[("Service", "svc-12x")]   # anchored at the end
        assert "type" not in got[("Service", "xsvc-1")]    # matched from the start
    finally:
        core.shutdown()


def test_replace_name(tmp_path):
    bundle(tmp_path, "base", '<Service name="web-a"/>')
    write(tmp_path / "repo" / "Rules" / "a.xml", '<Rules priority="1">'
          '<Service name="web-.*" type="systemd" target="%{name}.service" '
          'pct="100%%"/></Rules>')
    core = make_core(tmp_path, extra="[rules]\nregex = true\nreplace_name = true\n")
    try:
        got = build(core)[("Service", "web-a")]
        assert got["target"] == "web-a.service" and got["pct"] == "100%"
    finally:
        core.shutdown()


def test_top_level_rule_that_another_generator_serves_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(fp.FakeGenerator, "files", {"/etc/motd": "hi", "/etc/issue": "i"})
    bundle(tmp_path, "base", '<Path name="/etc/motd"/>', '<Path name="/etc/issue"/>')
    write(tmp_path / "repo" / "Rules" / "a.xml", '<Rules priority="1">'
          '<Path name="/etc/motd" type="file"/>'
          '<Group name="web"><Path name="/etc/issue" type="symlink"/></Group></Rules>')
    core = make_core(tmp_path, plugins=("Bundler", "Rules", FAKE + "FakeGenerator"))
    try:
        config = core.BuildConfiguration("web1.example.com")
        motd = config.find(".//Path[@name='/etc/motd']")
        assert "multiple generators" in motd.get("failure")
        issue = config.find(".//Path[@name='/etc/issue']")
        assert issue.text == "i" and issue.get("failure") is None   # fast path wins
    finally:
        core.shutdown()


def test_broken_files_are_logged_once_and_only_their_entries_fail(tmp_path, repo,
                                                                   caplog):
    write(repo / "Rules" / "good.xml", '<Rules priority="1">'
          '<Service name="ssh" type="systemd"/></Rules>')
    write(repo / "Rules" / "broken.xml", '<Rules priority="1"><Package name="openssh"')
    write(repo / "Rules" / "nopriority.xml", '<Rules><Path name="/srv/www"/></Rules>')
    write(repo / "Rules" / "good.xml~", '<Rules priority="1">'
          '<Service name="ssh" type="sysv"/></Rules>')
    write(repo / "Rules" / ".#good.xml", "junk")
    caplog.set_level(logging.ERROR)
    core = make_core(tmp_path)
    try:
        load_errors = [r.getMessage() for r in caplog.records]
        assert len([m for m in load_errors if "broken.xml" in m]) == 1
        assert len([m for m in load_errors if "nopriority.xml" in m]) == 1
        assert not [m for m in load_errors if "good.xml" in m]
        got = build(core)
        assert got[("Service", "ssh")]["type"] == "systemd"
        assert got[("Package", "openssh")]["failure"] == "no matching generator"
        assert got[("Path", "/srv/www")]["failure"] == "no matching generator"
    finally:
        core.shutdown()


def test_genshi_rules_file_sees_the_metadata(tmp_path, repo):
    write(repo / "Rules" / "t.xml",
          '<Rules xmlns:py="http://genshi.edgewall.org/" priority="3">'
          '<Service name="ssh" type="systemd" host="${metadata.hostname}"/>'
          '<Package py:if="\'web\' in metadata.groups" name="openssh" type="deb"/>'
          '</Rules>')
    core = make_core(tmp_path)
    try:
        web, db = build(core), build(core, "db1.example.com")
        assert web[("Service", "ssh")]["host"] == "web1.example.com"
        assert db[("Service", "ssh")]["host"] == "db1.example.com"
        assert web[("Package", "openssh")]["type"] == "deb"
        assert "failure" in db[("Package", "openssh")]
    finally:
        core.shutdown()


def test_edited_rules_change_the_next_configuration(tmp_path, repo):
    rules = repo / "Rules" / "a.xml"
    write(rules, '<Rules priority="1"><Group name="web">'
          '<Service name="ssh" type="sysv"/></Group></Rules>')
    core = make_core(tmp_path, filemonitor="poll")
    try:
        assert build(core)[("Service", "ssh")]["type"] == "sysv"
        write(rules, '<Rules priority="1"><Group name="web">'
              '<Service name="ssh" type="systemd" status="on"/></Group>'
              '<Package name="openssh" type="deb"/></Rules>')
        refresh(core)
        got = build(core)
        assert got[("Service", "ssh")] == dict(name="ssh", type="systemd", status="on")
        assert core.plugins["Rules"].Entries == {"Package": {
            "openssh": core.plugins["Rules"].BindEntry}}
        write(repo / "Rules" / "b.xml", '<Rules priority="1">'
              '<Package name="openssh" type="rpm"/></Rules>')
        refresh(core)
        assert "conflicting" in build(core)[("Package", "openssh")]["failure"]
        os.unlink(repo / "Rules" / "b.xml")
        refresh(core)
        assert build(core)[("Package", "openssh")]["type"] == "deb"
    finally:
        core.shutdown()


# -- the real repository and what upstream served from it ----------------------------

def wire_config(number):
    with open(os.path.join(WIRE, "raw", number), "rb") as fh:
        body = fh.read().split(b"\r\n\r\n", 1)[1]
    (text,), _ = xmlrpc.client.loads(body)
    return lxml.etree.fromstring(text.encode("utf-8"))


@pytest.mark.skipif(not os.path.isdir(WIRE), reason="no wire traces")
@pytest.mark.parametrize("host,groups,bundles,trace", [
    ("web1.wiredemo.test", ["webserver", "linux", "probed"], ["web", "common"],
     "04-a-address-GetConfig.response"),
    ("db1.wiredemo.test", ["dbserver", "linux", "probed"], ["common"],
     "10-b-name-secure-GetConfig.response"),
])
def test_wire_repository_entries_as_upstream_served_them(tmp_path, monkeypatch, host,
                                                         groups, bundles, trace):
    shutil.copytree(os.path.join(WIRE, "repo"), tmp_path / "repo")
    monkeypatch.setattr(fp.FakeMetadata, "clients", {host: ("127.0.0.1", groups,
                                                            bundles)})
    core = make_core(tmp_path, plugins=("Bundler", "Rules"))
    try:
        ours = core.BuildConfiguration(host)
    finally:
        core.shutdown()
    theirs = wire_config(trace)
    assert [(b.tag, b.get("name")) for b in ours] == \
        [(b.tag, b.get("name")) for b in theirs]
    for mine, upstream in zip(ours, theirs):
        assert [(e.tag, e.get("name")) for e in mine] == \
            [(e.tag, e.get("name")) for e in upstream]
        for got, want in zip(mine, upstream):
            if got.get("failure") == "no matching generator" and \
                    want.get("type") == "file":
                continue    # served by Cfg upstream; no Cfg here
            assert lxml.etree.tostring(got) == lxml.etree.tostring(want)
