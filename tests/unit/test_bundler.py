"""Bundler through the Core: bundle files, conditionals, required bundles, globs."""
import logging
import os
import time

import pytest

from bcfg2_cherry.plugins.bundler import version_at_least
from tests.unit import fakeplugins as fp
from tests.unit.test_rules import FAKE, make_core, refresh, write

XI = 'xmlns:xi="http://www.w3.org/2001/XInclude"'
PY = 'xmlns:py="http://genshi.edgewall.org/"'


class VersionedMetadata(fp.FakeMetadata):
    """FakeMetadata whose clients report a version (``versions``: name -> tuple)."""

    versions = {}

    def get_initial_metadata(self, client_name):
        md = fp.FakeMetadata.get_initial_metadata(self, client_name)
        md.version_info = self.versions.get(client_name)
        return md


@pytest.fixture(autouse=True)
def clients(monkeypatch):
    monkeypatch.setattr(fp.FakeMetadata, "clients", {
        "web1.example.com": ("10.0.0.1", ["web", "debian"], ["base", "web"]),
        "db1.example.com": ("10.0.0.2", ["db"], ["base"]),
    })
    monkeypatch.setattr(fp.FakeGenerator, "files", {})
    monkeypatch.setattr(VersionedMetadata, "versions", {})


def bundles_of(config):
    """``{bundle name: (tag, [(entry tag, entry name, ...)])}``."""
    return {b.get("name"): (b.tag, [(e.tag, e.get("name")) for e in b]) for b in config}


def bdir(tmp_path):
    return tmp_path / "repo" / "Bundler"


def test_bundles_by_file_name_recursively_with_conditionals(tmp_path, caplog):
    write(bdir(tmp_path) / "base.xml", '<Bundle name="ignored">'
          '<Path name="/etc/motd"/>'
          '<Group name="debian"><Package name="apt"/>'
          '<Client name="web1.example.com" negate="true"><Package name="x"/></Client>'
          '</Group>'
          '<Group name="debian" negate="True"><Package name="yum"/></Group>'
          '<Client name="db1.example.com"><Service name="postgres"/></Client>'
          '</Bundle>')
    write(bdir(tmp_path) / "roles" / "web.xml", '<Bundle><Service name="nginx"/>'
          '</Bundle>')
    caplog.set_level(logging.WARNING)
    core = make_core(tmp_path, ("Bundler",))
    try:
        assert "name attribute of a bundle is deprecated" in caplog.text
        assert core.plugins["Bundler"].bundle_names() == ["base", "web"]
        web = bundles_of(core.BuildConfiguration("web1.example.com"))
        assert web["base"] == ("Bundle", [("Path", "/etc/motd"), ("Package", "apt")])
        assert web["web"] == ("Bundle", [("Service", "nginx")])
        db = bundles_of(core.BuildConfiguration("db1.example.com"))
        assert db == {"base": ("Bundle", [("Path", "/etc/motd"), ("Service", "postgres"),
                                          ("Package", "yum")])}
    finally:
        core.shutdown()


def test_independent_bundles_and_bound_entries(tmp_path):
    write(bdir(tmp_path) / "base.xml", '<Bundle independent="TRUE" extra="kept">'
          '<BoundPackage name="vim" version="auto" type="deb"/></Bundle>')
    core = make_core(tmp_path, ("Bundler",))
    try:
        config = core.BuildConfiguration("db1.example.com")
        assert config[0].tag == "Independent"
        assert dict(config[0].attrib) == {"extra": "kept", "name": "base"}
        assert dict(config[0][0].attrib) == dict(name="vim", version="auto", type="deb")
        assert config[0][0].tag == "Package"
    finally:
        core.shutdown()


@pytest.mark.parametrize("version,inherits", [
    ((1, 4, 0, "pre", 2), True), ((1, 4, 0, "final", 0), True),
    ((1, 3, 1, "final", 0), False), ((1, 4, 0, "pre", 1), False), (None, False)])
def test_required_bundles_and_inherit_modification(tmp_path, caplog, version, inherits):
    VersionedMetadata.versions = {"db1.example.com": version}
    write(bdir(tmp_path) / "base.xml", '<Bundle>'
          '<RequiredBundle name="nfs" inherit_modification="true"/>'
          '<RequiredBundle name="ntp"/><RequiredBundle/><Path name="/etc/motd"/>'
          '</Bundle>')
    write(bdir(tmp_path) / "nfs.xml", '<Bundle><RequiredBundle name="ntp"/>'
          '<RequiredBundle name="base"/><Package name="nfs-utils"/></Bundle>')
    write(bdir(tmp_path) / "ntp.xml", '<Bundle><Package name="ntp"/></Bundle>')
    caplog.set_level(logging.WARNING)
    core = make_core(tmp_path, ("Bundler",), metadata=__name__ + ":VersionedMetadata")
    try:
        got = bundles_of(core.BuildConfiguration("db1.example.com"))
    finally:
        core.shutdown()
    base = [("Path", "/etc/motd")] + ([("Bundle", "nfs")] if inherits else [])
    assert got == {"base": ("Bundle", base),
                   "nfs": ("Bundle", [("Package", "nfs-utils")]),
                   "ntp": ("Bundle", [("Package", "ntp")])}
    assert ("only supported for clients starting 1.4.0pre2" in caplog.text) != inherits
    assert "RequiredBundle without a name" in caplog.text


def test_version_at_least():
    assert version_at_least((1, 4, 0, "rc", 1), (1, 4, 0, "pre", 2))
    assert not version_at_least((1, 3, 9, "final", 0), (1, 4, 0, "pre", 2))
    assert not version_at_least("garbage", (1, 4, 0, "pre", 2))


def test_xincluded_bundles_are_flattened(tmp_path, caplog):
    write(bdir(tmp_path) / "base.xml", '<Bundle %s><Path name="/a"/>'
          '<xi:include href="parts/*.part"/><Bundle/></Bundle>' % XI)
    write(bdir(tmp_path) / "parts" / "one.part", '<Bundle><Package name="p1"/>'
          '<Group name="db"><Package name="p2"/></Group></Bundle>')
    caplog.set_level(logging.WARNING)
    core = make_core(tmp_path, ("Bundler",))
    try:
        got = bundles_of(core.BuildConfiguration("db1.example.com"))
        assert got == {"base": ("Bundle", [("Path", "/a"), ("Package", "p1"),
                                           ("Package", "p2")])}
        assert "useless empty Bundle" in caplog.text
    finally:
        core.shutdown()


def test_path_globs_expand_to_served_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(fp.FakeGenerator, "files", {
        "/etc/ssh/a_key.pub": "a", "/etc/ssh/b_key.pub": "b", "/etc/ssh/a_key": "p"})
    write(bdir(tmp_path) / "base.xml", '<Bundle><Path glob="/etc/ssh/*.pub"/>'
          '<Group name="db"><Path glob="/nothing/*"/></Group></Bundle>')
    write(tmp_path / "repo" / "Rules" / "r.xml", '<Rules priority="1">'
          '<Path name="/etc/ssh/c_key.pub" type="file"/>'
          '<Path name="/etc/ssh/a_key.pub" type="file"/></Rules>')
    core = make_core(tmp_path, ("Bundler", "Rules", "Defaults", FAKE + "FakeGenerator"))
    try:
        config = core.BuildConfiguration("db1.example.com")
        assert bundles_of(config)["base"][1] == [
            ("Path", "/etc/ssh/a_key.pub"), ("Path", "/etc/ssh/b_key.pub"),
            ("Path", "/etc/ssh/c_key.pub")]
        failures = {e.get("name"): e.get("failure") for e in config[0]}
        assert "multiple generators" in failures["/etc/ssh/a_key.pub"]
        assert failures["/etc/ssh/b_key.pub"] is None
        assert failures["/etc/ssh/c_key.pub"] is None
    finally:
        core.shutdown()


def test_broken_missing_and_failing_bundles_fail_alone(tmp_path, caplog):
    write(bdir(tmp_path) / "base.xml", "<Bundle><Path name='/etc/motd'>")
    write(bdir(tmp_path) / "web.xml", '<Bundle %s><Path name="${metadata.nope}"/>'
          '</Bundle>' % PY)
    write(bdir(tmp_path) / "ok.xml", '<Bundle><Path name="/ok"/></Bundle>')
    fp.FakeMetadata.clients["web1.example.com"] = ("10.0.0.1", ["web"],
                                                   ["base", "web", "ok", "gone"])
    caplog.set_level(logging.ERROR)
    core = make_core(tmp_path, ("Bundler",))
    try:
        loading = [r.getMessage() for r in caplog.records]
        assert len([m for m in loading if "base.xml" in m]) == 1
        caplog.clear()
        got = bundles_of(core.BuildConfiguration("web1.example.com"))
        assert got == {"ok": ("Bundle", [("Path", "/ok")])}
        assert "web.xml" in caplog.text and "nope" in caplog.text
        assert "Bundle gone does not exist" in caplog.text
    finally:
        core.shutdown()


def test_templated_bundles_see_metadata_and_properties(tmp_path, caplog):
    write(bdir(tmp_path) / "web.genshi", '<Bundle %s>'
          '<Path py:for="n in metadata.Properties[\'net.xml\'].xdata.findall(\'If\')" '
          'name="/etc/net/${n.get(\'name\')}"/>'
          '<Package py:if="\'debian\' in metadata.groups" name="apt"/>'
          '<!-- comments go --></Bundle>' % PY)
    write(bdir(tmp_path) / "base.xml", '<Bundle %s><Group name="nomatch">'
          '<Path py:if="True" name="/${metadata.hostname}"/></Group>'
          '<Path name="/host/${metadata.hostname}"/></Bundle>' % PY)
    write(tmp_path / "repo" / "Properties" / "net.xml",
          '<Net><If name="eth0"/><If name="eth1"/></Net>')
    caplog.set_level(logging.WARNING)
    core = make_core(tmp_path, ("Bundler", "Properties"))
    try:
        assert "web.genshi: bundle file names ending in .genshi are deprecated" in \
            caplog.text
        got = bundles_of(core.BuildConfiguration("web1.example.com"))
        assert got == {
            "base": ("Bundle", [("Path", "/host/web1.example.com")]),
            "web": ("Bundle", [("Path", "/etc/net/eth0"), ("Path", "/etc/net/eth1"),
                               ("Package", "apt")])}
    finally:
        core.shutdown()


def test_editor_droppings_are_ignored(tmp_path, caplog):
    write(bdir(tmp_path) / "base.xml", '<Bundle><Path name="/a"/></Bundle>')
    for dropping in ("base.xml.swp", ".base.xml.swp", ".#base.xml", "base.xml~",
                     "base.xml.orig", "base.xml.rej"):
        write(bdir(tmp_path) / dropping, '<Bundle><Path name="/dropped"/></Bundle>')
    caplog.set_level(logging.WARNING)
    core = make_core(tmp_path, ("Bundler",))
    try:
        assert core.plugins["Bundler"].bundle_names() == ["base"]
        assert bundles_of(core.BuildConfiguration("db1.example.com")) == {
            "base": ("Bundle", [("Path", "/a")])}
        assert not [r for r in caplog.records if "Bundler" in r.getMessage()]
    finally:
        core.shutdown()


def test_edited_bundles_change_the_next_configuration(tmp_path):
    write(bdir(tmp_path) / "base.xml", '<Bundle><Path name="/a"/></Bundle>')
    core = make_core(tmp_path, ("Bundler",), filemonitor="poll")
    try:
        assert bundles_of(core.BuildConfiguration("web1.example.com")) == {
            "base": ("Bundle", [("Path", "/a")])}
        write(bdir(tmp_path) / "base.xml", '<Bundle><Path name="/b"/></Bundle>')
        write(bdir(tmp_path) / "sub" / "web.xml", '<Bundle><Path name="/w"/></Bundle>')
        refresh(core)
        refresh(core)   # the new sub-directory's monitor reports its files
        assert bundles_of(core.BuildConfiguration("web1.example.com")) == {
            "base": ("Bundle", [("Path", "/b")]), "web": ("Bundle", [("Path", "/w")])}
        os.unlink(bdir(tmp_path) / "sub" / "web.xml")
        refresh(core)
        assert core.plugins["Bundler"].bundle_names() == ["base"]
    finally:
        core.shutdown()


def test_edited_bundle_with_inotify(tmp_path):
    write(bdir(tmp_path) / "base.xml", '<Bundle><Path name="/a"/></Bundle>')
    core = make_core(tmp_path, ("Bundler",), filemonitor="inotify")
    try:
        write(bdir(tmp_path) / "base.xml", '<Bundle><Path name="/b"/></Bundle>')
        deadline = time.monotonic() + 10
        while True:
            core.handle_events(0.05)
            got = bundles_of(core.BuildConfiguration("db1.example.com"))
            if got["base"][1] == [("Path", "/b")] or time.monotonic() > deadline:
                break
        assert got["base"][1] == [("Path", "/b")]
    finally:
        core.shutdown()
