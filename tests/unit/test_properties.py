"""Properties through the Core: ``metadata.Properties`` and write-back."""
import json
import logging
import os

import lxml.etree
import pytest
import yaml

from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from tests.unit import fakeplugins as fp
from tests.unit.test_rules import make_core, refresh, write

WEB = "web1.example.com"
DB = "db1.example.com"

XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:complexType name="any"><xs:sequence>
    <xs:any processContents="skip" minOccurs="0" maxOccurs="unbounded"/>
  </xs:sequence><xs:anyAttribute processContents="skip"/></xs:complexType>
  <xs:element name="Ntp"><xs:complexType><xs:choice maxOccurs="unbounded">
    <xs:element name="Server"><xs:complexType>
      <xs:attribute name="name" type="xs:string" use="required"/>
    </xs:complexType></xs:element>
    <xs:element name="Group" type="any"/>
    <xs:element name="Client" type="any"/>
  </xs:choice></xs:complexType></xs:element>
</xs:schema>"""


@pytest.fixture(autouse=True)
def clients(monkeypatch):
    monkeypatch.setattr(fp.FakeMetadata, "clients", {
        WEB: ("10.0.0.1", ["web"], []), DB: ("10.0.0.2", ["db"], [])})
    monkeypatch.setattr(fp.FakeMetadata, "builds", [])


def pdir(tmp_path):
    return tmp_path / "repo" / "Properties"


@pytest.fixture
def repo(tmp_path):
    write(pdir(tmp_path) / "ntp.xml", '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
          '<Ntp><Server name="a"/><Group name="web"><Server name="w"/></Group>'
          '<Client name="db1.example.com"><Server name="d"/></Client></Ntp>')
    write(pdir(tmp_path) / "ntp.xsd", XSD)
    write(pdir(tmp_path) / "auto.xml", '<Auto automatch="true"><Group name="web">'
          '<Item name="w"/></Group><Item name="all"/></Auto>')
    write(pdir(tmp_path) / "site" / "dns.json", '{"servers": ["10.0.0.53"]}')
    write(pdir(tmp_path) / "users.yaml", "admins:\n  - alice\n")
    write(pdir(tmp_path) / "more.yml", "- 1\n")
    for ignored in ("ntp.xml.swp", ".#ntp.xml", "x.json~", "notes.txt"):
        write(pdir(tmp_path) / ignored, "junk")
    return pdir(tmp_path)


def names(elements):
    return [el.get("name") for el in elements]


def test_files_as_metadata_properties(tmp_path, repo):
    core = make_core(tmp_path, ("Properties",))
    try:
        props = core.build_metadata(WEB).Properties
        assert sorted(props) == ["auto.xml", "more.yml", "ntp.xml", "site/dns.json",
                                 "users.yaml"]
        ntp = props["ntp.xml"]
        assert names(ntp.xdata) == ["a", "web", DB]
        assert names(ntp.entries) == ["a", "web", DB]
        assert names(ntp.Match(core.build_metadata(WEB))) == ["a", "w"]
        assert names(ntp.XMLMatch(core.build_metadata(DB))) == ["a", "d"]
        assert isinstance(ntp.data, str) and "<Ntp>" in ntp.data
        assert names(props["auto.xml"]) == ["all", "w"]       # the XMLMatch result
        assert names(core.build_metadata(DB).Properties["auto.xml"]) == ["all"]
        assert props["site/dns.json"].json == {"servers": ["10.0.0.53"]}
        assert props["site/dns.json"].data == '{"servers": ["10.0.0.53"]}'
        assert props["users.yaml"].yaml == {"admins": ["alice"]}
        assert props["more.yml"].yaml == [1]
    finally:
        core.shutdown()


@pytest.mark.parametrize("option,attribute,matched", [
    ("true", None, True), ("true", "false", False), ("false", "TRUE", True),
    ("false", None, False)])
def test_automatch_option_and_attribute(tmp_path, option, attribute, matched):
    write(pdir(tmp_path) / "p.xml", '<P%s><Group name="db"><I/></Group></P>' % (
        ' automatch="%s"' % attribute if attribute else ""))
    core = make_core(tmp_path, ("Properties",),
                     extra="[properties]\nautomatch = %s\n" % option)
    try:
        value = core.build_metadata(WEB).Properties["p.xml"]
        assert isinstance(value, lxml.etree._Element) is matched
        if matched:
            assert len(value) == 0
    finally:
        core.shutdown()


def test_write_back(tmp_path, repo):
    core = make_core(tmp_path, ("Properties",))
    try:
        props = core.build_metadata(WEB).Properties
        props["site/dns.json"].json["servers"].append("10.0.0.54")
        assert props["site/dns.json"].write() is True
        assert json.loads((repo / "site" / "dns.json").read_text()) == {
            "servers": ["10.0.0.53", "10.0.0.54"]}
        props["users.yaml"].yaml["admins"].append("bob")
        props["users.yaml"].write()
        assert yaml.safe_load((repo / "users.yaml").read_text()) == {
            "admins": ["alice", "bob"]}
        ntp = props["ntp.xml"]
        lxml.etree.SubElement(ntp.xdata, "Server", name="new")
        assert ntp.write() is True
        assert 'name="new"' in (repo / "ntp.xml").read_text()
        lxml.etree.SubElement(ntp.xdata, "Bogus")
        with pytest.raises(PluginExecutionError, match="fails to validate"):
            ntp.write()
        assert "Bogus" not in (repo / "ntp.xml").read_text()
        props["site/dns.json"].json = {"bad": {1, 2}}
        with pytest.raises(PluginExecutionError, match="JSON"):
            props["site/dns.json"].write()
        assert [n for n in os.listdir(repo) if n.endswith(".new")] == []
    finally:
        core.shutdown()


def test_writes_can_be_disabled(tmp_path, repo):
    core = make_core(tmp_path, ("Properties",),
                     extra="[properties]\nwrites_enabled = false\n")
    try:
        with pytest.raises(PluginExecutionError, match="disabled"):
            core.build_metadata(WEB).Properties["users.yaml"].write()
    finally:
        core.shutdown()


def test_files_with_includes_or_secrets_are_not_written(tmp_path):
    write(pdir(tmp_path) / "inc.xml", '<P xmlns:xi="http://www.w3.org/2001/XInclude">'
          '<xi:include href="part.xml"/></P>')
    write(pdir(tmp_path) / "part.xml", "<Part/>")
    core = make_core(tmp_path, ("Properties",))
    try:
        inc = core.build_metadata(WEB).Properties["inc.xml"]
        assert inc.xdata[0].tag == "Part"
        with pytest.raises(PluginExecutionError, match="XInclude"):
            inc.write()
    finally:
        core.shutdown()


def test_broken_files_are_logged_and_skipped(tmp_path, caplog):
    write(pdir(tmp_path) / "bad.json", "{nope")
    write(pdir(tmp_path) / "bad.xml", "<P>")
    write(pdir(tmp_path) / "good.json", "[1]")
    caplog.set_level(logging.ERROR)
    core = make_core(tmp_path, ("Properties",))
    try:
        assert "bad.json" in caplog.text and "bad.xml" in caplog.text
        assert list(core.build_metadata(WEB).Properties) == ["good.json"]
    finally:
        core.shutdown()


def test_changes_expire_the_metadata_cache(tmp_path, repo):
    core = make_core(tmp_path, ("Properties",), filemonitor="poll",
                     extra="[caching]\nclient_metadata = cautious\n")
    try:
        assert core.build_metadata(WEB).Properties["more.yml"].yaml == [1]
        write(repo / "more.yml", "- 2\n")
        refresh(core)
        assert core.build_metadata(WEB).Properties["more.yml"].yaml == [2]
        os.unlink(repo / "more.yml")
        refresh(core)
        assert "more.yml" not in core.build_metadata(WEB).Properties
        assert fp.FakeMetadata.builds.count(WEB) == 3
    finally:
        core.shutdown()
