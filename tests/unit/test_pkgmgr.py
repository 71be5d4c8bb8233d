"""Pkgmgr through the Core: package lists, priorities, conditionals, inherited
attributes, file names, multiarch Instances and reloads."""
import logging
import os

import pytest

from tests.unit import fakeplugins as fp
from tests.unit.test_rules import bundle, make_core, refresh, write

WEB = "web1.example.com"
DB = "db1.example.com"
SERVER = "server86.example.com"
URI = "http://www.example.com/yam/Centos44-x86_64"


@pytest.fixture(autouse=True)
def clients(monkeypatch):
    monkeypatch.setattr(fp.FakeMetadata, "clients", {
        WEB: ("10.0.0.1", ["centos", "x86_64", "web"], ["base"]),
        DB: ("10.0.0.2", ["centos", "i386", "db"], ["base"]),
        SERVER: ("10.0.0.3", ["centos", "x86_64"], ["base"]),
    })


def pkgmgr(tmp_path):
    return tmp_path / "repo" / "Pkgmgr"


def start(tmp_path, plugins=("Bundler", "Pkgmgr"), **kwargs):
    return make_core(tmp_path, plugins, **kwargs)


def packages(core, host):
    """name -> bound entry of every Package in the client's configuration."""
    config = core.BuildConfiguration(host)
    return {e.get("name"): e for b in config for e in b if e.tag == "Package"}


@pytest.fixture
def centos(tmp_path):
    """The package lists of upstream's documentation example."""
    bundle(tmp_path, "base", '<Package name="bash"/>', '<Package name="audit"/>',
           '<Package name="zlib"/>')
    write(pkgmgr(tmp_path) / "centos-4-x86_64.xml",
          "<PackageList uri='%s/RPMS.os/' type='yum' priority='0'>"
          "<Group name='centos'><Group name='x86_64'>"
          "<Package name='audit' version='1.0.13-1.EL4' type='yum'/>"
          "<Package name='bash' version='3.0-18.1' type='yum'/>"
          "<Package name='zlib' version='1.2.1.2-1.2' type='yum'/>"
          "</Group></Group></PackageList>" % URI)
    write(pkgmgr(tmp_path) / "updates" / "centos-4-x86_64-updates.xml",
          "<PackageList uri='%s/RPMS.updates/' type='yum' priority='5'>"
          "<Group name='centos'><Group name='x86_64'>"
          "<Package name='audit' version='1.0.14-1.EL4'/>"
          "<Package name='bash' version='3.0-19.3' type='yum'/>"
          "</Group></Group></PackageList>" % URI)
    write(pkgmgr(tmp_path) / "backup.example.com.xml",
          "<PackageList uri='%s/RPMS.os/' type='yum' priority='1000'>"
          "<Client name='%s'><Package name='bash' version='3.0-18.1'/></Client>"
          "</PackageList>" % (URI, SERVER))
    return pkgmgr(tmp_path)


def test_highest_priority_list_wins_and_list_attributes_are_inherited(tmp_path, centos):
    core = start(tmp_path)
    try:
        web = packages(core, WEB)
        assert dict(web["bash"].attrib) == {
            "name": "bash", "version": "3.0-19.3", "type": "yum",
            "uri": URI + "/RPMS.updates/", "priority": "5"}
        # type comes from the PackageList when the Package does not say
        assert dict(web["audit"].attrib) == {
            "name": "audit", "version": "1.0.14-1.EL4", "type": "yum",
            "uri": URI + "/RPMS.updates/", "priority": "5"}
        assert web["zlib"].get("version") == "1.2.1.2-1.2"   # only in the base list
        assert web["zlib"].get("priority") == "0"
        # the host-specific list outranks the updates for that host only
        server = packages(core, SERVER)
        assert server["bash"].get("version") == "3.0-18.1"
        assert server["bash"].get("priority") == "1000"
        assert server["audit"].get("version") == "1.0.14-1.EL4"
        # db1 is not in group x86_64: nothing applies, but Pkgmgr claims the names
        db = packages(core, DB)
        assert "No matching source" in db["bash"].get("failure")
        assert set(core.plugins["Pkgmgr"].Entries["Package"]) == {"audit", "bash",
                                                                  "zlib"}
    finally:
        core.shutdown()


def test_bound_attributes_overwrite_the_bundle_entry(tmp_path, centos):
    bundle(tmp_path, "base", '<Package name="bash" version="auto" type="deb" x="1"/>')
    core = start(tmp_path)
    try:
        bash = packages(core, WEB)["bash"]
        assert (bash.get("version"), bash.get("type"), bash.get("x")) == \
            ("3.0-19.3", "yum", "1")
    finally:
        core.shutdown()


def test_conditionals_negation_and_inherited_negate(tmp_path):
    bundle(tmp_path, "base", *['<Package name="%s"/>' % n
                               for n in ("notweb", "inner", "reset", "host", "nothost",
                                         "both")])
    write(pkgmgr(tmp_path) / "a.xml", '<PackageList priority="1" type="yum">'
          '<Group name="web" negate="TRUE"><Package name="notweb"/>'
          # the inner Group inherits negate="TRUE": "not web and not i386"
          '<Group name="i386"><Package name="inner"/></Group>'
          '<Group name="db" negate="false"><Package name="reset"/></Group></Group>'
          '<Client name="%s"><Package name="host"/></Client>'
          '<Client name="%s" negate="true"><Package name="nothost"/></Client>'
          '<Group name="centos"><Group name="web"><Package name="both"/></Group></Group>'
          '</PackageList>' % (SERVER, SERVER))
    core = start(tmp_path)
    try:
        def bound(host):
            return sorted(name for name, e in packages(core, host).items()
                          if e.get("failure") is None)
        assert bound(WEB) == ["both", "nothost"]
        assert bound(DB) == ["nothost", "notweb", "reset"]
        assert bound(SERVER) == ["host", "inner", "notweb"]
        assert packages(core, DB)["notweb"].get("negate") == "TRUE"   # as upstream
        assert packages(core, DB)["reset"].get("negate") == "false"
    finally:
        core.shutdown()


def test_inside_a_file_the_deeper_or_later_package_wins(tmp_path):
    bundle(tmp_path, "base", '<Package name="p"/>', '<Package name="q"/>')
    write(pkgmgr(tmp_path) / "a.xml", '<PackageList priority="3">'
          '<Group name="web"><Package name="p" version="group"/></Group>'
          '<Package name="p" version="top"/>'
          '<Package name="q" version="first"/><Package name="q" version="second"/>'
          '</PackageList>')
    core = start(tmp_path)
    try:
        assert packages(core, WEB)["p"].get("version") == "group"
        assert packages(core, DB)["p"].get("version") == "top"
        assert packages(core, WEB)["q"].get("version") == "second"
    finally:
        core.shutdown()


def test_equal_priorities_conflict_only_when_both_apply(tmp_path):
    bundle(tmp_path, "base", '<Package name="p"/>')
    write(pkgmgr(tmp_path) / "a.xml", '<PackageList priority="3">'
          '<Group name="centos"><Package name="p" version="a"/></Group></PackageList>')
    write(pkgmgr(tmp_path) / "b.xml", '<PackageList priority="3">'
          '<Group name="web"><Package name="p" version="b"/></Group></PackageList>')
    core = start(tmp_path)
    try:
        failure = packages(core, WEB)["p"].get("failure")
        assert "conflicting sources with same priority (3)" in failure
        assert "a.xml" in failure and "b.xml" in failure
        assert packages(core, DB)["p"].get("version") == "a"
    finally:
        core.shutdown()


def test_urls_and_names_from_file_names(tmp_path, caplog):
    bundle(tmp_path, "base", *['<Package name="%s"/>' % n for n in (
        "simple", "plain", "multi", "bcfg2-server", "tool", "named", "nomatch")])
    write(pkgmgr(tmp_path) / "a.xml", '<PackageList priority="1" uri="http://r/os">'
          '<Package name="simple" type="rpm" simplefile="simple-1-1.noarch.rpm"/>'
          '<Package name="plain" type="deb" file="pool/plain_1.deb"/>'
          '<Package name="multi" type="yum" file="%(src)s/multi.%(arch)s.rpm" '
          'multiarch="x86_64 i686" srcs="s64 s32"/>'
          '<Package type="rpm" file="bcfg2-server-1.3.6-1.el6.noarch.rpm" verify="false">'
          '<Ignore name="/etc/bcfg2.conf"/></Package>'
          '<Package type="encap" file="tool-2.1.encap.tar.gz"/>'
          '<Package name="named" type="rpm" file="other-1.0-2.x86_64.rpm"/>'
          '<Package name="nomatch" type="rpm" file="junk"/>'
          '</PackageList>')
    caplog.set_level(logging.ERROR)
    core = start(tmp_path)
    try:
        got = packages(core, WEB)
        assert got["simple"].get("url") == "http://r/os/simple-1-1.noarch.rpm"
        assert got["plain"].get("url") == "http://r/os/pool/plain_1.deb"
        assert got["multi"].get("url") == \
            "http://r/os/s64/multi.x86_64.rpm http://r/os/s32/multi.i686.rpm"
        server = got["bcfg2-server"]
        assert (server.get("version"), server.get("arch"), server.get("verify")) == \
            ("1.3.6-1.el6", "noarch", "false")
        assert server.get("url") == "http://r/os/bcfg2-server-1.3.6-1.el6.noarch.rpm"
        assert [(c.tag, c.get("name")) for c in server] == [("Ignore",
                                                             "/etc/bcfg2.conf")]
        assert got["tool"].get("version") == "2.1"
        # a named package whose file says otherwise: the file's name gets the data
        assert "version" not in got["named"].attrib and got["named"].get("failure") is None
        assert "Failed to match pkg junk" in caplog.text
        assert got["nomatch"].get("failure") is None and "url" not in got["nomatch"].attrib
        assert "other" in core.plugins["Pkgmgr"].Entries["Package"]
    finally:
        core.shutdown()


INSTANCES = ('<PackageList priority="1" type="rpm">'
             '<Package name="libfoo">'
             '<Instance arch="i386" version="1.0.4-12"/>'
             '<Instance arch="i586" version="1.0.4-12"/>'
             '<Instance arch="i686" version="1.0.4-12"/>'
             '<Instance arch="x86_64" version="1.0.4-12"/>'
             '</Package></PackageList>')


def test_arch_lists_keep_only_the_named_instances(tmp_path):
    write(tmp_path / "repo" / "Bundler" / "base.xml",
          '<Bundle><Package name="libfoo" altsrc="libfoo:i386,i686"/></Bundle>')
    write(tmp_path / "repo" / "Bundler" / "other.xml",
          '<Bundle><Package name="libfoo:x86_64"/></Bundle>')
    write(pkgmgr(tmp_path) / "a.xml", INSTANCES)
    fp.FakeMetadata.clients[DB] = ("10.0.0.2", ["db"], ["other"])
    core = start(tmp_path)
    try:
        web = packages(core, WEB)["libfoo"]
        assert [i.get("arch") for i in web] == ["i386", "i686"]
        assert dict(web.attrib) == {"name": "libfoo", "type": "rpm", "priority": "1"}
        # without altsrc the entry takes the package's name, as upstream
        db = packages(core, DB)["libfoo"]
        assert [i.get("arch") for i in db] == ["x86_64"]
        # the full list for a plain name
        bundle(tmp_path, "base", '<Package name="libfoo"/>')
        core.shutdown()
        core = start(tmp_path)
        assert len(packages(core, WEB)["libfoo"]) == 4
    finally:
        core.shutdown()


def test_other_generators_keep_what_pkgmgr_does_not_list(tmp_path):
    bundle(tmp_path, "base", '<Package name="bash"/>', '<Package name="ruled"/>',
           '<Package name="nowhere"/>', '<Path name="/etc/listed"/>')
    write(pkgmgr(tmp_path) / "a.xml", '<PackageList priority="1" type="deb">'
          '<Group name="db"><Package name="bash" version="5"/></Group>'
          '<Path name="/etc/listed" type="file" owner="root">text</Path>'
          '</PackageList>')
    write(tmp_path / "repo" / "Rules" / "r.xml", '<Rules priority="1">'
          '<Group name="web"><Package name="ruled" type="deb" version="auto"/>'
          '<Package name="bash" type="deb" version="auto"/></Group></Rules>')
    core = start(tmp_path, plugins=("Bundler", "Pkgmgr", "Rules"))
    try:
        got = packages(core, WEB)
        assert got["ruled"].get("version") == "auto"         # Rules' slow path
        assert got["nowhere"].get("failure") == "no matching generator"
        # Pkgmgr's fast path claims bash for every client, as upstream
        assert "No matching source" in got["bash"].get("failure")
        listed = core.BuildConfiguration(WEB).find(".//Path[@name='/etc/listed']")
        assert (listed.text, listed.get("owner"), listed.get("type")) == \
            ("text", "root", "file")
    finally:
        core.shutdown()


def test_an_empty_pkgmgr_leaves_every_entry_to_the_others(tmp_path):
    bundle(tmp_path, "base", '<Package name="ruled"/>')
    write(tmp_path / "repo" / "Rules" / "r.xml", '<Rules priority="1">'
          '<Group name="web"><Package name="ruled" type="deb"/></Group></Rules>')
    core = start(tmp_path, plugins=("Bundler", "Pkgmgr", "Rules"))
    try:
        assert core.plugins["Pkgmgr"].Entries == {}
        assert packages(core, WEB)["ruled"].get("type") == "deb"
        assert os.path.isdir(pkgmgr(tmp_path))
    finally:
        core.shutdown()


def test_broken_lists_are_logged_and_skipped(tmp_path, caplog):
    bundle(tmp_path, "base", '<Package name="p"/>', '<Package name="q"/>',
           '<Package name="r"/>')
    write(pkgmgr(tmp_path) / "good.xml",
          '<PackageList priority="1"><Package name="p" version="1"/></PackageList>')
    write(pkgmgr(tmp_path) / "nopriority.xml",
          '<PackageList><Package name="q" version="1"/></PackageList>')
    write(pkgmgr(tmp_path) / "broken.xml", '<PackageList priority="1"><Package name="r"')
    write(pkgmgr(tmp_path) / "good.xml~", '<PackageList priority="9">'
          '<Package name="p" version="backup"/></PackageList>')
    caplog.set_level(logging.ERROR)
    core = start(tmp_path)
    try:
        assert "Got bogus priority None for file %s" % (pkgmgr(tmp_path) /
                                                        "nopriority.xml") in caplog.text
        assert "broken.xml" in caplog.text
        got = packages(core, WEB)
        assert got["p"].get("version") == "1"
        assert got["q"].get("failure") == "no matching generator"
        assert got["r"].get("failure") == "no matching generator"
    finally:
        core.shutdown()


def test_edits_and_deletions_change_the_next_configuration(tmp_path, caplog):
    bundle(tmp_path, "base", '<Package name="p"/>')
    lst = pkgmgr(tmp_path) / "a.xml"
    write(lst, '<PackageList priority="1"><Package name="p" version="1"/></PackageList>')
    write(tmp_path / "repo" / "Rules" / "r.xml", '<Rules priority="1">'
          '<Group name="web"><Package name="p" version="rules"/></Group></Rules>')
    core = start(tmp_path, plugins=("Bundler", "Pkgmgr", "Rules"), filemonitor="poll")
    try:
        assert packages(core, WEB)["p"].get("version") == "1"
        write(lst, '<PackageList priority="1"><Group name="web">'
              '<Package name="p" version="22"/></Group></PackageList>')
        refresh(core)
        assert packages(core, WEB)["p"].get("version") == "22"
        write(lst, '<PackageList priority="1"><Package name="p"')       # half-saved
        refresh(core)
        assert packages(core, WEB)["p"].get("version") == "22"
        write(pkgmgr(tmp_path) / "sub" / "b.xml",
              '<PackageList priority="7"><Package name="p" version="7"/></PackageList>')
        refresh(core)
        assert packages(core, WEB)["p"].get("version") == "7"
        os.unlink(pkgmgr(tmp_path) / "sub" / "b.xml")
        os.unlink(lst)
        refresh(core)
        assert core.plugins["Pkgmgr"].Entries == {}
        assert packages(core, WEB)["p"].get("version") == "rules"
    finally:
        core.shutdown()
