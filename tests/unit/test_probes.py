"""Probes through the Core: GetProbes, RecvProbeData, probed.xml, the Connector data."""
import logging
import os
import pickle
import shutil
import xmlrpc.client

import lxml.etree
import pytest

from bcfg2_cherry import cache
from bcfg2_cherry.plugins.probes import ProbeData
from bcfg2_cherry.server.core import ClientAddress
from tests.unit import fakeplugins as fp
from tests.unit.test_rules import WIRE, make_core, refresh, write

WEB = "web1.example.com"
DB = "db1.example.com"


@pytest.fixture(autouse=True)
def clients(monkeypatch):
    monkeypatch.setattr(fp.FakeMetadata, "clients", {
        WEB: ("10.0.0.1", ["web", "debian"], []),
        DB: ("10.0.0.2", ["db"], []),
        "plain.example.com": ("10.0.0.3", [], []),
    })
    monkeypatch.setattr(fp.FakeMetadata, "builds", [])


def addr(host):
    return ClientAddress(("10.0.0.9", 1), host)


def pdir(tmp_path):
    return tmp_path / "repo" / "Probes"


def probes_of(core, host):
    return {p.get("name"): (p.get("interpreter"), p.text)
            for p in lxml.etree.fromstring(core.GetProbes(addr(host)))}


def upload(core, host, *items):
    doc = lxml.etree.Element("ProbeData")
    for name, text in items:
        lxml.etree.SubElement(doc, "probe-data", name=name, source="Probes").text = text
    return core.RecvProbeData(addr(host), lxml.etree.tostring(doc, encoding="unicode"))


def wire_call(filename, request=False):
    with open(os.path.join(WIRE, "raw", filename), "rb") as fh:
        body = fh.read().split(b"\r\n\r\n", 1)[1]
    params, _ = xmlrpc.client.loads(body)
    return params[0]


@pytest.mark.skipif(not os.path.isdir(WIRE), reason="no wire traces")
def test_wire_repository_probes_as_upstream_sent_them(tmp_path, monkeypatch):
    shutil.copytree(os.path.join(WIRE, "repo"), tmp_path / "repo")
    host = "web1.wiredemo.test"
    monkeypatch.setattr(fp.FakeMetadata, "clients", {
        host: ("127.0.0.1", ["webserver", "linux"], [])})
    core = make_core(tmp_path, ("Probes",))
    try:
        assert core.GetProbes(addr(host)) == \
            wire_call("02-a-address-GetProbes.response")
        assert core.RecvProbeData(addr(host),
                                  wire_call("03-a-address-RecvProbeData.request"))
        md = core.build_metadata(host)
        assert md.groups == {"webserver", "linux", "probed"}
        assert md.Probes == {"group": "", "hwinfo": '{"cpus": 4, "arch": "x86_64"}\n'}
        assert md.Probes["hwinfo"].json == {"cpus": 4, "arch": "x86_64"}
    finally:
        core.shutdown()


def test_most_specific_file_per_probe_and_interpreters(tmp_path, caplog):
    write(pdir(tmp_path) / "os", "echo all\n")
    write(pdir(tmp_path) / "os.G10_web", "#!/bin/bash\necho web\n")
    write(pdir(tmp_path) / "os.G50_debian", "#!  /usr/bin/env python3 -u\nprint(1)\n")
    write(pdir(tmp_path) / "os.H_db1.example.com", "#!/bin/ksh\necho db1\n")
    write(pdir(tmp_path) / "hw.G5_web", "echo quirk\n")
    for ignored in ("probed.xml", "os~", ".os.swp", ".#os", "os.orig", ".x.tmp"):
        write(pdir(tmp_path) / ignored, "ignored")
    write(pdir(tmp_path) / "bad name", "echo\n")
    (pdir(tmp_path) / "latin1").write_bytes(b"echo \xe9\n")
    (pdir(tmp_path) / "subdir").mkdir()
    caplog.set_level(logging.WARNING)
    core = make_core(tmp_path, ("Probes",))
    try:
        assert probes_of(core, WEB) == {
            "os": ("/usr/bin/env python3 -u", "#!  /usr/bin/env python3 -u\nprint(1)\n"),
            "hw.G5_web": ("/bin/sh", "echo quirk\n")}
        assert probes_of(core, DB) == {"os": ("/bin/ksh", "#!/bin/ksh\necho db1\n")}
        assert probes_of(core, "plain.example.com") == {"os": ("/bin/sh", "echo all\n")}
        messages = [r.getMessage() for r in caplog.records if "Probes" in r.getMessage()]
        assert any("bad name" in m for m in messages)
        assert any("latin1" in m and "UTF-8" in m for m in messages)
        assert any("hw.G5_web" in m and "two digits" in m for m in messages)
        assert not any(name in m for m in messages
                       for name in ("os~", ".os.swp", ".#os", "os.orig", "subdir"))
    finally:
        core.shutdown()


PROBED = """<Probed>
  <Client name="db1.example.com" timestamp="%s">
    <Probe name="os" value=""/>
  </Client>
  <Client name="web1.example.com" timestamp="%s">
    <Probe name="arch" value="x86_64&#10;"/>
    <Probe name="empty" value=""/>
    <Probe name="os" value="12&#10;more"/>
    <Group name="debian-12"/>
    <Group name="web-a"/>
  </Client>
</Probed>
"""


def test_received_data_groups_and_probed_xml(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    core = make_core(tmp_path, ("Probes",),
                     extra="[probes]\nallowed_groups = web-.*  debian-[0-9]+\n")
    try:
        assert (pdir(tmp_path) / "probed.xml").read_text() == "<Probed/>\n"
        assert upload(core, WEB, ("os", "group:debian-12\n12\ngroup:  web-a  x\nmore"),
                      ("arch", "x86_64\ngroup:evil\n"), ("empty", None))
        assert "disallowed group assignment evil" in caplog.text
        assert upload(core, DB, ("os", "group:debian-x"))
        md = core.build_metadata(WEB)
        assert md.groups == {"web", "debian", "debian-12", "web-a"}
        assert md.Probes == {"os": "12\nmore", "arch": "x86_64\n", "empty": ""}
        assert all(isinstance(v, ProbeData) for v in md.Probes.values())
        text = (pdir(tmp_path) / "probed.xml").read_text()
        store = core.plugins["Probes"].probestore
        assert text == PROBED % (int(store.records[DB].data.timestamp),
                                 int(store.records[WEB].data.timestamp))
        assert sorted(os.listdir(pdir(tmp_path))) == ["probed.xml"]
        # the next upload replaces everything: the missing probe and its groups go
        assert upload(core, WEB, ("arch", "aarch64"))
        md = core.build_metadata(WEB)
        assert md.groups == {"web", "debian"} and md.Probes == {"arch": "aarch64"}
    finally:
        core.shutdown()


def test_probed_xml_is_read_back_at_start(tmp_path):
    core = make_core(tmp_path, ("Probes",))
    try:
        upload(core, WEB, ("os", "group:probed\n12\n"))
        stamp = core.plugins["Probes"].probestore.records[WEB].data.timestamp
    finally:
        core.shutdown()
    core = make_core(tmp_path, ("Probes",))
    try:
        md = core.build_metadata(WEB)
        assert "probed" in md.groups and md.Probes == {"os": "12\n"}
        assert md.Probes.timestamp == int(stamp)
        assert core.build_metadata(DB).Probes == {}
    finally:
        core.shutdown()


def test_broken_probed_xml_is_moved_aside(tmp_path, caplog):
    write(pdir(tmp_path) / "probed.xml", "<Probed><Client")
    caplog.set_level(logging.ERROR)
    core = make_core(tmp_path, ("Probes",))
    try:
        assert "probed.xml" in caplog.text
        aside = [n for n in os.listdir(pdir(tmp_path)) if n.startswith("probed.xml.")]
        assert len(aside) == 1
        assert (pdir(tmp_path) / aside[0]).read_text() == "<Probed><Client"
        upload(core, WEB, ("os", "x"))
        assert core.build_metadata(WEB).Probes == {"os": "x"}
    finally:
        core.shutdown()


def test_cache_expiry(tmp_path):
    core = make_core(tmp_path, ("Probes",), extra="[caching]\nclient_metadata = "
                     "aggressive\n")
    builds = fp.FakeMetadata.builds
    try:
        upload(core, WEB, ("os", "group:g\n1"))
        del builds[:]
        core.build_metadata(WEB)
        core.build_metadata(WEB)
        assert builds.count(WEB) == 1
        upload(core, WEB, ("os", "group:g\n1"))      # same data: still expires
        assert "g" in core.build_metadata(WEB).groups
        assert builds.count(WEB) == 2
        plugin = core.plugins["Probes"]
        plugin.ReceiveData(core.build_metadata(WEB), [])   # nothing: groups change
        core.build_metadata(WEB)
        assert builds.count(WEB) == 3
        plugin.ReceiveData(core.build_metadata(WEB), [])   # nothing, same groups
        core.build_metadata(WEB)
        assert builds.count(WEB) == 3
        # a client without data is cached as such: it expires nobody else
        for _ in range(3):
            core.expire_metadata_cache(None, [DB])
            assert core.build_metadata(DB).Probes == {}
        core.build_metadata(WEB)
        assert builds.count(WEB) == 3 and builds.count(DB) == 3
    finally:
        core.shutdown()


def test_probed_xml_written_elsewhere_is_read_on_expiry(tmp_path):
    core = make_core(tmp_path, ("Probes",))
    try:
        assert core.build_metadata(DB).Probes == {}
        other = make_core(tmp_path / "other", ("Probes",))
        try:    # another process (e.g. the multiprocessing parent) stores data
            other.plugins["Probes"].probestore.filename = str(pdir(tmp_path) /
                                                              "probed.xml")
            upload(other, DB, ("os", "group:remote\n9"))
        finally:
            other.shutdown()
        cache.expire("Probes", "probedata", DB, exact=True)
        md = core.build_metadata(DB)
        assert md.Probes == {"os": "9"} and "remote" in md.groups
    finally:
        core.shutdown()


def test_probe_data_decodes_on_demand():
    assert ProbeData("<a><b/></a>").xdata[0].tag == "b"
    assert ProbeData('<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>').xdata is None
    assert ProbeData("{not json").json is None
    assert ProbeData("a: [1, 2]").yaml == {"a": [1, 2]}
    assert ProbeData("- !!python/object:os.system x").yaml is None
    value = ProbeData('{"k": 1}')
    assert value.json == {"k": 1} and value.data == '{"k": 1}'
    assert pickle.loads(pickle.dumps(value)).json == {"k": 1}


def test_edited_probes_change_the_next_probe_list(tmp_path):
    write(pdir(tmp_path) / "os", "echo one\n")
    core = make_core(tmp_path, ("Probes",), filemonitor="poll")
    try:
        assert probes_of(core, WEB) == {"os": ("/bin/sh", "echo one\n")}
        write(pdir(tmp_path) / "os", "#!/bin/bash\necho two\n")
        write(pdir(tmp_path) / "hw.H_web1.example.com", "echo hw\n")
        refresh(core)
        assert probes_of(core, WEB) == {"os": ("/bin/bash", "#!/bin/bash\necho two\n"),
                                        "hw": ("/bin/sh", "echo hw\n")}
        os.unlink(pdir(tmp_path) / "os")
        refresh(core)
        assert probes_of(core, WEB) == {"hw": ("/bin/sh", "echo hw\n")}
        upload(core, WEB, ("hw", "x"))      # writing probed.xml is not a probe
        refresh(core)
        assert set(probes_of(core, WEB)) == {"hw"}
    finally:
        core.shutdown()
