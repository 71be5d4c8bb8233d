"""NagiosGen through the Core: real files in tmp_path, the real Metadata and Bundler
plugins, a LocalCore; client addresses come from a table (socket.getaddrinfo
replaced), so nothing depends on DNS."""
import os
import socket
import stat

import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.server.local_core import LocalCore

GROUPS = """<Groups>
  <Group name="web" profile="true">
    <Group name="base"/><Group name="dc2"/><Bundle name="nagios-client"/>
    <Bundle name="ntp"/><Bundle name="apache"/>
  </Group>
  <Group name="monitor" profile="true">
    <Group name="base"/><Bundle name="nagios-client"/><Bundle name="nagios-server"/>
  </Group>
</Groups>"""
CLIENTS = """<Clients>
  <Client name="web1.test" profile="web"/>
  <Client name="web2.test" profile="web"/>
  <Client name="mon.test" profile="monitor"/>
  <Client name="lost.test" profile="web"/>
</Clients>"""
BUNDLES = {
    "nagios-client": '<Path name="/etc/nagiosgen.status"/>',
    "nagios-server": '<Path name="/etc/nagios/conf.d/bcfg2.cfg"/>',
    "ntp": "", "apache": "",
}
CONFIG = """<NagiosGen>
  <Option name="check_interval">5</Option>
  <Group name="dc2">
    <Option name="parents">dc2-switch</Option>
    <Option name="check_interval">10</Option>
  </Group>
  <Client name="web2.test"><Option name="use">web-host</Option></Client>
  <Client name="web1.test" negate="true"><Option name="notes"/></Client>
</NagiosGen>"""
ADDRESSES = {"web1.test": ["192.0.2.1", "2001:db8::1"], "web2.test": ["2001:db8::2"],
             "mon.test": ["192.0.2.9"]}


@pytest.fixture(autouse=True)
def dns(monkeypatch):
    def getaddrinfo(host, port, *args, **kwargs):
        if host not in ADDRESSES:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6,
                 "", (a, 0)) for a in ADDRESSES[host]]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class Site:
    def __init__(self, tmp_path, filemonitor="pseudo"):
        self.tmp = tmp_path
        self.repo = tmp_path / "repo"
        self.nagios = self.repo / "NagiosGen"
        self.nagios.mkdir(parents=True)
        (self.repo / "Metadata").mkdir()
        (self.repo / "Metadata" / "groups.xml").write_text(GROUPS)
        (self.repo / "Metadata" / "clients.xml").write_text(CLIENTS)
        (self.repo / "Bundler").mkdir()
        for name, body in BUNDLES.items():
            (self.repo / "Bundler" / (name + ".xml")).write_text(
                "<Bundle>%s</Bundle>" % body)
        self.filemonitor = filemonitor
        self.core = None

    def file(self, name, text):
        (self.nagios / name).write_text(text)

    def start(self):
        conf = self.tmp / "bcfg2.conf"
        conf.write_text("[server]\nrepository = %s\nplugins = Metadata, Bundler, "
                        "NagiosGen\nfilemonitor = %s\n" % (self.repo, self.filemonitor))
        self.core = LocalCore(Settings(str(conf))).load()
        return self.core

    def entry(self, host, name):
        config = self.core.BuildConfiguration(host)
        [found] = [e for b in config for e in b if e.get("name") == name]
        return found

    def status(self, host):
        return self.entry(host, "/etc/nagiosgen.status")

    def stop(self):
        if self.core is not None:
            self.core.shutdown()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    s.file("config.xml", CONFIG)
    for name in ("base-group.cfg", "dc2-group.cfg", "ntp-bundle.cfg", "default-group.cfg",
                 "unused-group.cfg"):
        s.file(name, "# %s\n" % name)
    yield s
    s.stop()


def line(key, value):
    return "\t%s %s" % (key.ljust(32), value)


def host_text(name, address, groups, *options):
    return "\n".join(["define host {", line("host_name", name), line("alias", name),
                      line("address", address), line("hostgroups", groups)] +
                     [line(k, v) for k, v in options] + ["}"]) + "\n"


WEB1 = host_text("web1.test", "192.0.2.1", "base,dc2,ntp",
                 ("check_interval", "10"), ("parents", "dc2-switch"), ("use", "default"))
WEB2 = host_text("web2.test", "2001:db8::2", "base,dc2,ntp",
                 ("check_interval", "10"), ("parents", "dc2-switch"), ("use", "web-host"),
                 ("notes", "None"))
MON = host_text("mon.test", "192.0.2.9", "base",
                ("check_interval", "5"), ("notes", "None"), ("use", "default"))


def test_host_definition(site):
    site.start()
    web1 = site.status("web1.test")
    assert web1.text == WEB1
    assert list(web1.attrib.items()) == [
        ("name", "/etc/nagiosgen.status"), ("encoding", "ascii"), ("owner", "root"),
        ("group", "root"), ("type", "file"), ("mode", "0400")]
    # a later Option of the same name wins in the first one's place; `use` replaces
    # the default; an empty Option says None, as upstream
    assert site.status("web2.test").text == WEB2
    assert site.status("mon.test").text == MON
    stored = site.nagios / "web1.test-host.cfg"
    assert stored.read_text() == WEB1
    assert not [n for n in os.listdir(site.nagios) if n.endswith(".new")]


def test_unresolvable_client_is_a_bind_error(site):
    site.start()
    failure = site.status("lost.test").get("failure")
    assert "failed to find an IP address for lost.test" in failure
    assert not (site.nagios / "lost.test-host.cfg").exists()


def test_server_configuration(site):
    site.file("default-host.cfg", "define host {\n\tname default\n}\n")
    site.file("stale.test-host.cfg", "# stale\n\thostgroups unused-not\n")
    site.file("other-bundle.cfg", "# other-bundle.cfg\n")  # no client's bundle
    site.start()
    for host in ("web1.test", "web2.test", "mon.test"):
        site.status(host)
    server = site.entry("mon.test", "/etc/nagios/conf.d/bcfg2.cfg")
    hosts = ["define host {\n\tname default\n}\n", MON, "# stale\n\thostgroups unused-not\n",
             WEB1, WEB2]
    groups = ["# base-group.cfg\n", "# dc2-group.cfg\n", "# default-group.cfg\n",
              "# ntp-bundle.cfg\n"]
    assert server.text == "\n".join(groups) + "\n\n" + "\n".join(hosts)
    assert list(server.attrib.items()) == [
        ("name", "/etc/nagios/conf.d/bcfg2.cfg"), ("encoding", "ascii"),
        ("owner", "nagios"), ("group", "nagios"), ("type", "file"), ("mode", "0440")]
    stored = site.nagios / "nagiosgen.cfg"
    assert stored.read_text() == server.text
    assert stat.S_IMODE(stored.stat().st_mode) == 0o644


def test_config_xml_created_and_reloaded(tmp_path):
    site = Site(tmp_path, filemonitor="poll")
    try:
        site.start()
        assert (site.nagios / "config.xml").read_text() == "<NagiosGen/>\n"
        assert site.status("mon.test").text == "\n".join([
            "define host {", line("host_name", "mon.test"), line("alias", "mon.test"),
            line("address", "192.0.2.9"), line("use", "default"), "}\n"])
        site.file("config.xml", '<NagiosGen><Option name="use">x</Option></NagiosGen>')
        site.core.fam.poll_once()
        site.core.handle_events(0.05)
        assert site.status("mon.test").text.endswith(line("use", "x") + "\n}\n")
    finally:
        site.stop()
