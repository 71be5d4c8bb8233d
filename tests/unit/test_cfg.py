"""The Cfg plugin through the Core: real files in tmp_path, a LocalCore, small fake
Metadata and Bundler plugins for the clients and their entries."""
import base64
import logging
import os
import shutil
import stat
import time
import xmlrpc.client

import lxml.etree
import pytest

from bcfg2_cherry import encryption
from bcfg2_cherry.options import Settings
from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.interfaces import TemplateDataProvider
from bcfg2_cherry.server.local_core import LocalCore
from tests.support.servers import WIRE_DIR
from tests.unit import fakeplugins as fp

#: the recorded upstream exchanges (the in-tree copy)
WIRE = WIRE_DIR
HERE = os.path.dirname(os.path.abspath(__file__))

M = "tests.unit.fakeplugins:"
DEFAULTS = [("owner", "root"), ("group", "root"), ("mode", "644"),
            ("secontext", "__default__"), ("important", "false"), ("paranoid", "true"),
            ("sensitive", "false"), ("type", "file")]


@pytest.fixture(autouse=True)
def reset_fakes():
    fp.FakeMetadata.clients = {}
    fp.FakeMetadata.builds = []
    fp.FakeBundler.bundles = {}
    fp.FakeBundler.raise_for = set()
    yield


class Site:
    """A repository in tmp_path with a Cfg tree, clients and one bundle per client."""

    def __init__(self, tmp_path, conf="", filemonitor="pseudo"):
        self.tmp = tmp_path
        self.repo = tmp_path / "repo"
        self.cfg = self.repo / "Cfg"
        self.cfg.mkdir(parents=True, exist_ok=True)
        self.conf = conf
        self.filemonitor = filemonitor
        self.core = None

    def file(self, rel, content, mode=None):
        """Write ``Cfg/<rel>`` (str as UTF-8, or bytes)."""
        path = self.cfg / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        if mode is not None:
            path.chmod(mode)
        return path

    def client(self, name, groups=(), paths=(), address="10.0.0.1"):
        """A client with its own bundle of Path entries (names or XML strings)."""
        fp.FakeMetadata.clients[name] = (address, list(groups), [name])
        fp.FakeBundler.bundles[name] = [p if p.startswith("<") else '<Path name="%s"/>' % p
                                        for p in paths]

    def start(self, plugins=("FakeMetadata", "FakeBundler")):
        conf = self.tmp / "bcfg2.conf"
        conf.write_text(
            "[server]\nrepository = %s\nplugins = %s, Cfg\nfilemonitor = %s\n%s"
            % (self.repo, ", ".join(M + p if p.startswith("Fake") else p for p in plugins),
               self.filemonitor, self.conf))
        self.core = LocalCore(Settings(str(conf))).load()
        return self.core

    @property
    def plugin(self):
        return self.core.plugins["Cfg"]

    def build(self, host):
        """name -> bound entry of the client's configuration."""
        config = self.core.BuildConfiguration(host)
        return {e.get("name"): e for bundle in config for e in bundle}

    def entry(self, host, name):
        return self.build(host)[name]

    def real_metadata(self, clients, groups_xml):
        """Use the Metadata plugin: ``clients`` name -> profile; every client gets
        the bundles of its groups (bundle entries from ``FakeBundler.bundles``)."""
        (self.repo / "Metadata").mkdir(exist_ok=True)
        (self.repo / "Metadata" / "groups.xml").write_text(groups_xml)
        (self.repo / "Metadata" / "clients.xml").write_text(
            "<Clients>%s</Clients>" % "".join(
                '<Client name="%s" profile="%s"/>' % item for item in clients.items()))
        return ("Metadata", "FakeBundler")

    def stop(self):
        if self.core is not None:
            self.core.shutdown()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.stop()


def attrs(entry):
    return list(entry.attrib.items())


# ---------------------------------------------------------------- the wire repository

def _upstream_config(number_and_case):
    with open(os.path.join(WIRE, "raw", number_and_case + ".response"), "rb") as fh:
        body = fh.read().split(b"\r\n\r\n", 1)[1]
    (text,), _ = xmlrpc.client.loads(body)
    return lxml.etree.fromstring(text)


@pytest.mark.skipif(not os.path.isdir(os.path.join(WIRE, "repo")),
                    reason="wire traces not available")
@pytest.mark.parametrize("trace, host, groups, profile", [
    ("04-a-address-GetConfig", "web1.wiredemo.test", ["linux", "probed", "webserver"],
     "webserver"),
    ("10-b-name-secure-GetConfig", "db1.wiredemo.test", ["linux", "probed", "dbserver"],
     "dbserver"),
])
def test_wire_repository_matches_upstream(tmp_path, monkeypatch, trace, host, groups,
                                          profile):
    upstream = _upstream_config(trace)
    expected = {e.get("name"): e for b in upstream for e in b
                if e.tag == "Path" and e.get("type") == "file"}
    assert len(expected) >= 3
    site = Site(tmp_path)
    shutil.copytree(os.path.join(WIRE, "repo", "Cfg"), site.cfg, dirs_exist_ok=True)
    site.client(host, groups, paths=sorted(expected) + ["/etc/wiredemo/not-in-repo.conf"])
    original = fp.FakeMetadata.get_initial_metadata

    def with_profile(self, name):
        md = original(self, name)
        md.profile = profile
        return md
    monkeypatch.setattr(fp.FakeMetadata, "get_initial_metadata", with_profile)
    site.start()
    try:
        ours = site.build(host)
        for name, theirs in expected.items():
            assert attrs(ours[name]) == attrs(theirs), name
            assert ours[name].text == theirs.text, name
        # serialized as upstream does: non-ASCII as character references
        unicode_entry = lxml.etree.tostring(ours["/etc/wiredemo/unicode.txt"],
                                            encoding="us-ascii").decode()
        assert "caf&#233;" in unicode_entry
        # no Cfg directory: not Cfg's entry, the slow path fails it
        assert ours["/etc/wiredemo/not-in-repo.conf"].get("failure") == \
            "no matching generator"
    finally:
        site.stop()


# ---------------------------------------------------------------- specificity

def test_host_beats_group_beats_base(site):
    site.file("etc/motd/motd", "base\n")
    site.file("etc/motd/motd.G10_low", "low\n")
    site.file("etc/motd/motd.G50_high", "high\n")
    site.file("etc/motd/motd.H_special.example.com", "host\n")
    site.client("plain.example.com", [], ["/etc/motd"])
    site.client("low.example.com", ["low"], ["/etc/motd"])
    site.client("both.example.com", ["low", "high"], ["/etc/motd"])
    site.client("special.example.com", ["low", "high"], ["/etc/motd"])
    site.start()
    assert site.entry("plain.example.com", "/etc/motd").text == "base\n"
    assert site.entry("low.example.com", "/etc/motd").text == "low\n"
    assert site.entry("both.example.com", "/etc/motd").text == "high\n"
    assert site.entry("special.example.com", "/etc/motd").text == "host\n"


def test_group_tie_is_deterministic_with_warning(site, caplog):
    site.file("etc/tie/tie.G20_b", "from b\n")
    site.file("etc/tie/tie.G20_a", "from a\n")
    site.client("h.example.com", ["a", "b"], ["/etc/tie"])
    site.start()
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        assert site.entry("h.example.com", "/etc/tie").text == "from a\n"
    assert "equally specific" in caplog.text


def test_template_beats_nothing_when_plain_host_file_exists(site):
    site.file("etc/x/x.jinja2", "template {{ metadata.hostname }}\n")
    site.file("etc/x/x.H_h.example.com", "host file\n")
    site.client("h.example.com", [], ["/etc/x"])
    site.client("o.example.com", [], ["/etc/x"])
    site.start()
    assert site.entry("h.example.com", "/etc/x").text == "host file\n"
    assert site.entry("o.example.com", "/etc/x").text == "template o.example.com\n"


def test_no_version_for_client_is_bind_error(site):
    site.file("etc/only/only.G10_web", "web\n")
    site.client("h.example.com", ["db"], ["/etc/only"])
    site.start()
    failure = site.entry("h.example.com", "/etc/only").get("failure")
    assert failure.startswith("bind error: Cfg: no version in ")
    assert "only.G10_web" in failure


# ---------------------------------------------------------------- registration

def test_any_regular_file_registers_the_directory(site, caplog):
    caplog.set_level(logging.WARNING)
    site.file("etc/infoonly/info.xml", '<FileInfo><Info mode="0600"/></FileInfo>')
    site.file("etc/stray/local.ini", "x=1\n")
    site.file("etc/dropped/dropped~", "backup\n")
    site.file("etc/dropped/.dropped.swp", "swap\n")
    site.file("etc/deep/a/b/b", "deep\n")
    site.client("h.example.com", [], ["/etc/infoonly", "/etc/stray", "/etc/dropped",
                                      "/etc/deep/a/b"])
    site.start()
    names = set(site.plugin.Entries["Path"])
    assert {"/etc/infoonly", "/etc/stray", "/etc/deep/a/b"} <= names
    assert "/etc/dropped" not in names and "/etc/deep" not in names
    built = site.build("h.example.com")
    assert "info.xml" in built["/etc/infoonly"].get("failure")
    assert "has no file content" in built["/etc/infoonly"].get("failure")
    assert "local.ini" in built["/etc/stray"].get("failure")
    assert built["/etc/deep/a/b"].text == "deep\n"
    assert built["/etc/dropped"].get("failure") == "no matching generator"
    assert "local.ini: no Cfg handler takes this file name" in caplog.text
    assert "dropped~" not in caplog.text


def test_cfg_claims_name_from_other_generators(tmp_path):
    fp.FakeGenerator.files = {"/etc/shared": "from the other generator"}
    site = Site(tmp_path)
    site.file("etc/shared/info.xml", "<FileInfo><Info/></FileInfo>")
    site.client("h.example.com", [], ["/etc/shared"])
    site.start(("FakeMetadata", "FakeBundler", "FakeGenerator"))
    try:
        failure = site.entry("h.example.com", "/etc/shared").get("failure")
        assert "multiple generators" in failure and "Cfg" in failure
    finally:
        site.stop()


def test_legacy_and_include_files(site, caplog):
    caplog.set_level(logging.DEBUG)
    site.file("etc/old/old", "content\n")
    site.file("etc/old/:info", "owner: nobody\n")
    site.file("etc/old/info", "owner: nobody\n")
    site.file("etc/old/old.cat", "+line\n")
    site.file("etc/old/old.H_h.example.com.diff", "-line\n")
    site.file("etc/old/part.jinja2_include", "x\n")
    site.file("etc/old/part.genshi_include", "x\n")
    site.file("etc/info/info", "a file named info\n")
    site.client("h.example.com", [], ["/etc/old", "/etc/info"])
    site.start()
    built = site.build("h.example.com")
    assert built["/etc/old"].text == "content\n"
    assert attrs(built["/etc/old"]) == [("name", "/etc/old")] + DEFAULTS
    assert built["/etc/info"].text == "a file named info\n"
    assert ":info files were removed in Bcfg2 1.4" in caplog.text
    assert "old.cat: .cat delta files were removed" in caplog.text
    assert ".diff delta files were removed" in caplog.text
    assert "part.jinja2_include" not in caplog.text
    assert "part.genshi_include" not in caplog.text


def test_files_directly_in_cfg_serve_nothing(site, caplog):
    caplog.set_level(logging.WARNING)
    site.file("README", "notes\n")
    site.start()
    assert "" not in site.plugin.Entries["Path"]
    assert "files directly in Cfg/" in caplog.text


# ---------------------------------------------------------------- binding

def test_mdata_defaults_overwrite_bundle_attributes(tmp_path):
    site = Site(tmp_path, conf="[mdata]\nowner = daemon\nmode = 0640\n")
    site.file("etc/a/a", "a\n")
    site.client("h.example.com", [], ['<Path name="/etc/a" mode="0755" owner="x"/>'])
    site.start()
    try:
        entry = site.entry("h.example.com", "/etc/a")
        assert entry.get("owner") == "daemon" and entry.get("mode") == "0640"
        assert entry.get("group") == "root" and entry.get("type") == "file"
    finally:
        site.stop()


INFO = """<?xml version="1.0" encoding="UTF-8"?>
<FileInfo>
  <Path name="/etc/tokens">
    <Info owner="app" group="app" mode="0400" sensitive="true"/>
  </Path>
  <Group name="dmz" negate="true">
    <Client name="special.example.com">
      <Info owner="special" mode="0444"/>
    </Client>
    <Info owner="root" group="wheel" mode="0640">
      <ACL type="access" scope="user" user="x" perms="r"/>
    </Info>
  </Group>
  <Info owner="root" group="root" mode="0644" encoding="base64"/>
</FileInfo>
"""


def test_info_xml_first_matching_info_with_conditionals(site, caplog):
    site.file("etc/app/app", "data\n")
    site.file("etc/app/info.xml", INFO)
    site.client("inside.example.com", [], ["/etc/app"])
    site.client("special.example.com", [], ["/etc/app"])
    site.client("dmz.example.com", ["dmz"], ["/etc/app"])
    site.start()
    caplog.set_level(logging.WARNING)
    inside = site.entry("inside.example.com", "/etc/app")
    assert (inside.get("owner"), inside.get("group"), inside.get("mode")) == \
        ("root", "wheel", "0640")
    assert len(inside) == 0 and inside.text == "data\n"
    special = site.entry("special.example.com", "/etc/app")
    assert (special.get("owner"), special.get("group"), special.get("mode")) == \
        ("special", "root", "0444")
    dmz = site.entry("dmz.example.com", "/etc/app")
    assert dmz.get("encoding") == "base64"
    assert base64.b64decode(dmz.text) == b"data\n"
    assert "several Info elements" in caplog.text


def test_info_xml_path_conditional_uses_real_name(site):
    site.file("etc/tokens.src/tokens.src", "secret\n")
    site.file("etc/tokens.src/info.xml", INFO)
    site.client("h.example.com", ["dmz"], [
        '<Path name="/etc/tokens" altsrc="/etc/tokens.src"/>', "/etc/tokens.src"])
    site.start()
    built = site.build("h.example.com")
    real = built["/etc/tokens"]
    assert (real.get("owner"), real.get("mode"), real.get("sensitive")) == \
        ("app", "0400", "true")
    assert real.text == "secret\n" and real.get("realname") is None
    assert built["/etc/tokens.src"].get("encoding") == "base64"


def test_info_xml_without_info_for_client_is_bind_error(site):
    site.file("etc/b/b", "b\n")
    site.file("etc/b/info.xml", '<FileInfo><Group name="web"><Info mode="0600"/>'
                                '</Group></FileInfo>')
    site.client("web.example.com", ["web"], ["/etc/b"])
    site.client("db.example.com", ["db"], ["/etc/b"])
    site.start()
    assert site.entry("web.example.com", "/etc/b").get("mode") == "0600"
    failure = site.entry("db.example.com", "/etc/b").get("failure")
    assert failure.startswith("bind error: Cfg: no Info in ")
    assert "info.xml" in failure and "db.example.com" in failure


def test_broken_info_xml_fails_only_its_entry(site, caplog):
    site.file("etc/c/c", "c\n")
    site.file("etc/c/info.xml", "<FileInfo><Info mode='0600'></FileInfo>")
    site.file("etc/d/d", "d\n")
    site.client("h.example.com", [], ["/etc/c", "/etc/d"])
    site.start()
    built = site.build("h.example.com")
    assert "could not be loaded" in built["/etc/c"].get("failure")
    assert built["/etc/d"].text == "d\n"
    assert "info.xml" in caplog.text


def test_binary_needs_base64(site):
    blob = bytes(range(256))
    site.file("etc/bin/bin", blob)
    site.file("etc/b64/b64", blob)
    site.file("etc/b64/info.xml", '<FileInfo><Info encoding="base64"/></FileInfo>')
    site.file("etc/nul/nul", "a\x00b\n")
    site.file("etc/empty/empty", b"")
    site.file("etc/crlf/crlf", b"one\r\ntwo\rthree\n")
    site.client("h.example.com", [], ["/etc/bin", "/etc/b64", "/etc/nul", "/etc/empty",
                                      "/etc/crlf"])
    site.start()
    built = site.build("h.example.com")
    assert "failed to decode /etc/bin" in built["/etc/bin"].get("failure")
    assert 'encoding="base64"' in built["/etc/bin"].get("failure")
    assert base64.b64decode(built["/etc/b64"].text) == blob
    assert "XML cannot carry" in built["/etc/nul"].get("failure")
    empty = built["/etc/empty"]
    assert empty.get("empty") == "true" and empty.text is None
    # plain files are read as upstream (Python 3, text mode) reads them
    assert built["/etc/crlf"].text == "one\ntwo\nthree\n"


# ---------------------------------------------------------------- templates

class DataProvider(Plugin, TemplateDataProvider):
    """Adds ``extra`` and tries to override ``name``."""

    def get_template_data(self, entry, metadata, template):
        return {"extra": "provided", "name": "ignored"}


def test_jinja2_variables_includes_and_trailing_newline(site):
    site.file("etc/j/j.jinja2",
              "name={{ name }} path={{ path }} src={{ source_path }}\n"
              "repo={{ repo }} host={{ metadata.hostname }} extra={{ extra }}\n"
              "{% include 'inc/part.jinja2_include' %}\n\n")
    site.file("etc/j/inc/part.jinja2_include", "included for {{ metadata.hostname }}")
    site.client("h.example.com", [], ["/etc/j", '<Path name="/etc/alias" altsrc="/etc/j"/>'])
    site.start()
    site.core.init_plugin(DataProvider)
    built = site.build("h.example.com")
    template = str(site.cfg / "etc/j/j.jinja2")
    expected = ("name=/etc/j path=/etc/j src=%s\nrepo=%s host=h.example.com "
                "extra=provided\nincluded for h.example.com\n\n" % (template, site.repo))
    assert built["/etc/j"].text == expected
    assert built["/etc/alias"].text == expected.replace("name=/etc/j path=/etc/j",
                                                        "name=/etc/alias path=/etc/alias")
    # the include directory holds no regular file of its own... but it does: registered
    assert "/etc/j/inc" in site.plugin.Entries["Path"]


def test_genshi_text_template(site):
    site.file("etc/g/g.genshi",
              "host=${metadata.hostname} name=${name} path=${path}\n"
              "{% for g in sorted(metadata.groups) %}group ${g}\n{% end %}"
              "{% include g.genshi_include %}"
              "{# a comment #}$$literal\n")
    site.file("etc/g/g.genshi_include", "included ${name}\n")
    site.client("h.example.com", ["b", "a"], ["/etc/g"])
    site.start()
    assert [os.path.basename(g.name) for g in site.plugin.entrysets["/etc/g"].generators] \
        == ["g.genshi"]
    template = str(site.cfg / "etc/g/g.genshi")
    assert site.entry("h.example.com", "/etc/g").text == (
        "host=h.example.com name=/etc/g path=%s\ngroup a\ngroup b\nincluded /etc/g\n"
        "$literal\n" % template)


def test_cheetah_template(site):
    site.file("etc/ch/ch.cheetah",
              "host=$self.metadata.hostname name=$name path=$path\n"
              "#for g in sorted($metadata.groups)\ngroup $g\n#end for\nK\xf6ln\n")
    site.client("h.example.com", ["x"], ["/etc/ch"])
    site.start()
    assert site.entry("h.example.com", "/etc/ch").text == \
        "host=h.example.com name=/etc/ch path=/etc/ch\ngroup x\nK\xf6ln\n"


@pytest.mark.parametrize("filename, source, expect", [
    ("t.jinja2", "ok\n{{ metadata.nosuch.attr }}\n", ["t.jinja2", "UndefinedError",
                                                      "line 2"]),
    ("t.genshi", "ok\n${metadata.nosuch.attr}\n", ["t.genshi", "UndefinedError",
                                                   "metadata.nosuch.attr"]),
    ("t.cheetah", "ok\n$metadata.nosuch\n", ["t.cheetah", "NotFound", "nosuch"]),
    ("t.jinja2", "{% if %}\n", ["t.jinja2", "could not be loaded",
                                "TemplateSyntaxError", "line 1"]),
    ("t.genshi", "x\n{% python\n  y = 1/0\n%}\n", ["t.genshi", "ZeroDivisionError"]),
    ("t.genshi", "${foo(}\n", ["t.genshi", "could not be loaded", "line 1"]),
])
def test_failing_template_fails_only_its_entry(site, caplog, filename, source, expect):
    site.file("etc/t/" + filename, source)
    site.file("etc/fine/fine", "fine\n")
    site.client("h.example.com", [], ["/etc/t", "/etc/fine"])
    site.start()
    caplog.set_level(logging.ERROR)
    built = site.build("h.example.com")
    failure = built["/etc/t"].get("failure")
    assert failure.startswith("bind error: Cfg: "), failure
    for text in expect:
        assert text in failure, (text, failure)
    assert str(site.cfg / "etc/t" / filename) in caplog.text
    assert built["/etc/fine"].text == "fine\n"


# ---------------------------------------------------------------- encryption

def test_encrypted_files(tmp_path):
    site = Site(tmp_path, conf="[encryption]\nother = nope\nkey1 = s3cret\n")
    site.file("etc/c/c.crypt", encryption.ssl_encrypt("secret content\n", "s3cret"))
    site.file("etc/cj/cj.jinja2.crypt",
              encryption.ssl_encrypt("host {{ metadata.hostname }}\n", "s3cret"))
    site.file("etc/cg/cg.crypt.genshi",
              encryption.ssl_encrypt("host ${metadata.hostname}\n", "s3cret"))
    site.file("etc/wrong/wrong.crypt", encryption.ssl_encrypt("x\n", "unknown"))
    site.client("h.example.com", [], ["/etc/c", "/etc/cj", "/etc/cg", "/etc/wrong"])
    site.start()
    try:
        built = site.build("h.example.com")
        assert built["/etc/c"].text == "secret content\n"
        assert built["/etc/cj"].text == "host h.example.com\n"
        assert built["/etc/cg"].text == "host h.example.com\n"
        failure = built["/etc/wrong"].get("failure")
        assert "failed to decrypt" in failure and "wrong.crypt" in failure
    finally:
        site.stop()


# ---------------------------------------------------------------- verifiers

def test_external_command_verifier(tmp_path):
    site = Site(tmp_path)
    site.file("etc/v/v.H_bad.example.com", "bad content\n")
    site.file("etc/v/v", "good content\n")
    site.file("etc/v/:test", "#!/bin/sh\nif grep -q bad; then echo refused >&2; exit 3; fi\n")
    site.file("etc/x/x", "anything\n")
    site.file("etc/x/:test.H_good.example.com", "#!/bin/sh\nexit 1\n", mode=0o755)
    site.client("good.example.com", [], ["/etc/v", "/etc/x"])
    site.client("bad.example.com", [], ["/etc/v", "/etc/x"])
    site.start()
    try:
        good = site.build("good.example.com")
        assert good["/etc/v"].text == "good content\n"
        assert "Failed to verify /etc/x for good.example.com" in good["/etc/x"].get("failure")
        bad = site.build("bad.example.com")
        failure = bad["/etc/v"].get("failure")
        assert failure.startswith("bind error: Failed to verify /etc/v for bad.example.com")
        assert "status 3: refused" in failure
        assert bad["/etc/x"].text == "anything\n"
    finally:
        site.stop()


def test_validation_can_be_switched_off(tmp_path):
    site = Site(tmp_path, conf="[cfg]\nvalidation = false\n")
    site.file("etc/v/v", "content\n")
    site.file("etc/v/:test", "#!/bin/sh\nexit 1\n")
    site.client("h.example.com", [], ["/etc/v"])
    site.start()
    try:
        assert site.entry("h.example.com", "/etc/v").text == "content\n"
    finally:
        site.stop()


# ---------------------------------------------------------------- options, creators

def test_handlers_option_restricts(tmp_path, caplog):
    site = Site(tmp_path, conf="[cfg]\nhandlers = CfgPlaintextGenerator, InfoXML\n")
    site.file("etc/p/p", "plain\n")
    site.file("etc/p/info.xml", '<FileInfo><Info mode="0600"/></FileInfo>')
    site.file("etc/j/j.jinja2", "{{ name }}\n")
    site.client("h.example.com", [], ["/etc/p", "/etc/j"])
    caplog.set_level(logging.ERROR)
    site.start()
    try:
        built = site.build("h.example.com")
        assert built["/etc/p"].get("mode") == "0600"
        assert "has no file content" in built["/etc/j"].get("failure")
        assert "j.jinja2: no Cfg handler takes this file name" in caplog.text
    finally:
        site.stop()


def test_ssl_creators_are_refused_clearly(site):
    site.file("etc/pki/site.key/sslkey.xml", "<KeyInfo/>")
    site.file("etc/pki/site.key/site.key.H_old.example.com", "KEY\n")
    site.client("new.example.com", [], ["/etc/pki/site.key"])
    site.client("old.example.com", [], ["/etc/pki/site.key"])
    site.start()
    failure = site.entry("new.example.com", "/etc/pki/site.key").get("failure")
    assert "sslkey.xml (SSL key creation) is not supported" in failure
    assert site.entry("old.example.com", "/etc/pki/site.key").text == "KEY\n"


needs_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                  reason="ssh-keygen not installed")


KEY_GROUPS = """<Groups>
  <Group name="p" profile="true"><Group name="debian"/><Bundle name="keys"/></Group>
  <Group name="debian" category="os"/>
</Groups>"""


@needs_keygen
def test_ssh_key_pairs_are_created_once(tmp_path):
    site = Site(tmp_path)
    key = "etc/ssh/ssh_host_ed25519_key"
    site.file(key + "/privkey.xml",
              '<PrivateKey><Params type="ed25519"/></PrivateKey>')
    site.file(key + ".pub/pubkey.xml", "<PublicKey/>")
    site.file("root/.ssh/authorized_keys/authorizedkeys.xml", """<AuthorizedKeys>
  <Allow from="/etc/ssh/ssh_host_ed25519_key.pub" host="a.example.com">
    <Option name="from" value="10.0.0.0/8"/><Option name="no-pty"/>
  </Allow>
  <Allow>ssh-rsa AAAAliteral admin@example.com</Allow>
  <Group name="nobody"><Allow>ssh-rsa AAAAnever x</Allow></Group>
  <Allow/>
</AuthorizedKeys>""")
    fp.FakeBundler.bundles = {"keys": ['<Path name="/%s"/>' % key,
                                       '<Path name="/%s.pub"/>' % key,
                                       '<Path name="/root/.ssh/authorized_keys"/>']}
    plugins = site.real_metadata({"a.example.com": "p", "b.example.com": "p"},
                                 KEY_GROUPS)
    site.start(plugins)
    try:
        a = site.build("a.example.com")
        private = a["/" + key].text
        assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        public = a["/" + key + ".pub"].text
        assert public.startswith("ssh-ed25519 ")
        stored = site.cfg / (key + "/ssh_host_ed25519_key.H_a.example.com")
        assert stored.read_text() == private
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        pubfile = site.cfg / (key + ".pub/ssh_host_ed25519_key.pub.H_a.example.com")
        assert public == pubfile.read_text()
        assert public.split()[2] == str(pubfile)
        # the same pair next time; another client gets its own
        again = site.build("a.example.com")
        assert again["/" + key].text == private
        assert again["/" + key + ".pub"].text == public
        b = site.build("b.example.com")
        assert b["/" + key].text != private
        assert b["/root/.ssh/authorized_keys"].text == (
            "from=10.0.0.0/8,no-pty %s\nssh-rsa AAAAliteral admin@example.com" % public.strip())
    finally:
        site.stop()


@needs_keygen
def test_created_keys_can_be_group_specific_and_encrypted(tmp_path):
    site = Site(tmp_path, conf="[cfg]\ncategory = os\npassphrase = keys\n"
                               "[encryption]\nkeys = t0ps3cret\n")
    site.file("etc/k/privkey.xml",
              '<PrivateKey perhost="false" priority="20"><Params type="ed25519"/>'
              '</PrivateKey>')
    fp.FakeBundler.bundles = {"keys": ['<Path name="/etc/k"/>']}
    site.start(site.real_metadata({"h.example.com": "p", "i.example.com": "p"},
                                  KEY_GROUPS))
    try:
        private = site.entry("h.example.com", "/etc/k").text
        assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        stored = site.cfg / "etc/k/k.G20_debian.crypt"
        assert encryption.ssl_decrypt(stored.read_text(), "t0ps3cret").decode() == private
        assert site.entry("i.example.com", "/etc/k").text == private
    finally:
        site.stop()


# ---------------------------------------------------------------- file monitor

def _wait_for(site, host, name, check, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        site.core.handle_events()
        entry = site.build(host).get(name)
        if check(entry) or time.monotonic() > deadline:
            return entry


@pytest.mark.parametrize("monitor", ["inotify"])
def test_changes_reach_the_next_build(tmp_path, monitor):
    site = Site(tmp_path, filemonitor=monitor)
    site.file("etc/motd/motd", "first\n")
    site.file("etc/gone/gone", "gone soon\n")
    site.client("h.example.com", ["g"], ["/etc/motd", "/etc/new/file", "/etc/gone",
                                         "/etc/inc"])
    site.start()
    try:
        assert site.entry("h.example.com", "/etc/motd").text == "first\n"
        site.file("etc/motd/motd", "second, longer\n")
        entry = _wait_for(site, "h.example.com", "/etc/motd",
                          lambda e: e.text == "second, longer\n")
        assert entry.text == "second, longer\n"
        site.file("etc/motd/motd.G10_g.jinja2", "group {{ metadata.hostname }}\n")
        entry = _wait_for(site, "h.example.com", "/etc/motd",
                          lambda e: e.text.startswith("group"))
        assert entry.text == "group h.example.com\n"
        os.unlink(site.cfg / "etc/motd/motd.G10_g.jinja2")
        entry = _wait_for(site, "h.example.com", "/etc/motd",
                          lambda e: e.text == "second, longer\n")
        assert entry.text == "second, longer\n"
        site.file("etc/new/file/file", "brand new\n")
        entry = _wait_for(site, "h.example.com", "/etc/new/file",
                          lambda e: e.text == "brand new\n")
        assert entry.text == "brand new\n"
        site.file("etc/motd/info.xml", '<FileInfo><Info mode="0600"/></FileInfo>')
        entry = _wait_for(site, "h.example.com", "/etc/motd",
                          lambda e: e.get("mode") == "0600")
        assert entry.get("mode") == "0600"
        site.file("etc/motd/info.xml", '<FileInfo><Info mode="0640"/></FileInfo>')
        entry = _wait_for(site, "h.example.com", "/etc/motd",
                          lambda e: e.get("mode") == "0640")
        assert entry.get("mode") == "0640"
        site.file("etc/inc/inc.jinja2", "{% include 'part.jinja2_include' %}")
        site.file("etc/inc/part.jinja2_include", "part one\n")
        entry = _wait_for(site, "h.example.com", "/etc/inc",
                          lambda e: e.text == "part one\n")
        assert entry.text == "part one\n"
        site.file("etc/inc/part.jinja2_include", "part two\n")
        entry = _wait_for(site, "h.example.com", "/etc/inc",
                          lambda e: e.text == "part two\n")
        assert entry.text == "part two\n"
        shutil.rmtree(site.cfg / "etc/gone")
        entry = _wait_for(site, "h.example.com", "/etc/gone",
                          lambda e: e.get("failure") == "no matching generator")
        assert entry.get("failure") == "no matching generator"
        assert "/etc/gone" not in site.plugin.Entries["Path"]
    finally:
        site.stop()


def test_deleting_the_last_file_keeps_the_registration(site):
    site.file("etc/last/last", "x\n")
    site.client("h.example.com", [], ["/etc/last"])
    site.start()
    os.unlink(site.cfg / "etc/last/last")
    site.plugin.tree.HandleEvent(_Event(str(site.cfg / "etc/last/last"), "deleted"))
    assert "/etc/last" in site.plugin.Entries["Path"]
    assert "has no file content" in site.entry("h.example.com", "/etc/last").get("failure")


class _Event:
    def __init__(self, filename, action):
        self.filename, self.action = filename, action

    def code2str(self):
        return self.action


def test_unexecutable_verifier_without_shebang(site):
    site.file("etc/v/v", "x\n")
    path = site.file("etc/v/:test", "exit 0\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    site.client("h.example.com", [], ["/etc/v"])
    site.start()
    assert "no #! line" in site.entry("h.example.com", "/etc/v").get("failure")


# ---------------------------------------------------------------- the benchmark repository

def test_benchmark_repository_builds_without_failures(tmp_path):
    """bench/genrepo.py makes a repository the real plugins serve completely."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "genrepo", os.path.join(os.path.dirname(os.path.dirname(HERE)), "bench",
                                "genrepo.py"))
    genrepo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(genrepo)
    counts = genrepo.generate(str(tmp_path / "repo"), clients=20, bundles=20)
    assert counts["templates"] and counts["host_files"] and counts["info_xml"]
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\nplugins = Metadata, Bundler, Rules, Cfg\n"
                    "filemonitor = pseudo\n" % (tmp_path / "repo"))
    core = LocalCore(Settings(str(conf))).load()
    try:
        for i in (0, 7, 13):
            config = core.BuildConfiguration(genrepo.client_name(i))
            entries = [e for bundle in config for e in bundle]
            assert len(entries) >= 240
            assert [e.get("name") for e in entries if e.get("failure")] == []
            texts = [e.text for e in entries if e.get("type") == "file"]
            assert any("member_of_" in (t or "") for t in texts)
    finally:
        core.shutdown()
