"""SSHbase through the Core: real files in tmp_path, the real Metadata and Bundler
plugins, a LocalCore. DNS is a table (socket functions and ``getent`` replaced) so
nothing depends on the network; one test uses the real resolver on a name that
cannot resolve."""
import base64
import logging
import os
import shutil
import socket
import stat
import time

import lxml.etree
import pytest

from bcfg2_cherry import encryption
from bcfg2_cherry.options import Settings
from bcfg2_cherry.plugins.sshbase import HostResolver
from bcfg2_cherry.server.local_core import LocalCore

KEYS = ["ssh_host_dsa_key", "ssh_host_ecdsa_key", "ssh_host_ed25519_key",
        "ssh_host_rsa_key", "ssh_host_key"]
LOCAL = "localhost,localhost.localdomain,127.0.0.1 "

GROUPS = """<Groups>
  <Group name="web" profile="true"><Bundle name="ssh"/></Group>
  <Group name="db" profile="true"><Bundle name="ssh"/></Group>
</Groups>"""
CLIENTS = """<Clients>
  <Client name="web1.test" profile="web" address="10.1.0.1">
    <Alias name="www.test" address="10.1.0.80"/>
  </Client>
  <Client name="web2.test" profile="web"/>
  <Client name="db1.test" profile="db"/>
</Clients>"""

needs_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                  reason="ssh-keygen not installed")


class FakeDNS:
    """The resolver's answers: forward name -> addresses, reverse address ->
    (name, aliases); anything else fails like an unknown name. Calls are counted."""

    def __init__(self):
        self.forward = {"web1.test": ["192.0.2.11", "2001:db8::11"],
                        "www.test": ["192.0.2.80"], "db1.test": ["192.0.2.21"]}
        self.reverse = {"192.0.2.11": ("web1.test", ["w1.lan.test"]),
                        "192.0.2.80": ("proxy.test", [])}
        self.slow = {}
        self.calls = []

    def getaddrinfo(self, host, port, *args, **kwargs):
        self.calls.append(host)
        time.sleep(self.slow.get(host, 0))
        if host not in self.forward:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6,
                 "", (a, 0)) for a in self.forward[host]]

    def gethostbyaddr(self, address):
        self.calls.append(address)
        if address not in self.reverse:
            raise socket.herror(1, "Unknown host")
        name, aliases = self.reverse[address]
        return name, aliases, [address]


@pytest.fixture
def dns(monkeypatch, tmp_path):
    """Table DNS, and a ``getent`` that knows only legacy.test."""
    fake = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    monkeypatch.setattr(socket, "gethostbyaddr", fake.gethostbyaddr)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    getent = bindir / "getent"
    getent.write_text('#!/bin/sh\n[ "$1" = hosts ] || exit 1\ncase "$2" in\n'
                      '  legacy.test) echo "198.51.100.7    legacy.test legacy";;\n'
                      '  *) exit 2;;\nesac\n')
    getent.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ.get("PATH", "")))
    return fake


class Site:
    """A repository with Metadata, one bundle ``ssh`` and SSHbase/."""

    def __init__(self, tmp_path, paths, conf="", filemonitor="pseudo",
                 clients=CLIENTS):
        self.tmp = tmp_path
        self.repo = tmp_path / "repo"
        self.ssh = self.repo / "SSHbase"
        self.ssh.mkdir(parents=True)
        (self.repo / "Metadata").mkdir()
        (self.repo / "Metadata" / "groups.xml").write_text(GROUPS)
        (self.repo / "Metadata" / "clients.xml").write_text(clients)
        (self.repo / "Bundler").mkdir()
        (self.repo / "Bundler" / "ssh.xml").write_text("<Bundle>%s</Bundle>" % "".join(
            '<Path name="/etc/ssh/%s"/>' % p for p in paths))
        self.conf = conf
        self.filemonitor = filemonitor
        self.core = None

    def file(self, name, content, mode=None):
        path = self.ssh / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        if mode is not None:
            path.chmod(mode)
        return path

    def start(self):
        conf = self.tmp / "bcfg2.conf"
        conf.write_text("[server]\nrepository = %s\nplugins = Metadata, Bundler, SSHbase"
                        "\nfilemonitor = %s\n%s" % (self.repo, self.filemonitor,
                                                    self.conf))
        self.core = LocalCore(Settings(str(conf))).load()
        return self.core

    @property
    def plugin(self):
        return self.core.plugins["SSHbase"]

    def build(self, host):
        config = self.core.BuildConfiguration(host)
        return {e.get("name").rsplit("/", 1)[-1]: e for b in config for e in b}

    def refresh(self):
        self.core.fam.poll_once()
        self.core.handle_events(0.05)

    def stop(self):
        if self.core is not None:
            self.core.shutdown()


@pytest.fixture
def make_site(tmp_path):
    sites = []

    def make(paths, **kwargs):
        site = Site(tmp_path, paths, **kwargs)
        sites.append(site)
        return site
    yield make
    for site in sites:
        site.stop()


def attrs(entry):
    return list(entry.attrib.items())


# ---------------------------------------------------------------- host keys

def test_best_matching_key_and_attributes(make_site, dns):
    site = make_site(["ssh_host_rsa_key", "ssh_host_rsa_key.pub", "ssh_host_key",
                      "ssh_host_key.pub", "ssh_host_dsa_key"])
    site.file("ssh_host_rsa_key", "plain\n")
    site.file("ssh_host_rsa_key.G10_web", "group web 10\n")
    site.file("ssh_host_rsa_key.G20_web", "group web 20\n")
    site.file("ssh_host_rsa_key.H_web2.test", "host web2\n")
    site.file("ssh_host_rsa_key.pub", "ssh-rsa AAAAplain\n")
    site.file("ssh_host_key.H_web1.test", b"\x00SSH1\xff")
    site.file("ssh_host_key.pub.H_web1.test", b"")
    site.file("ssh_host_dsa_key.H_web1.test", "bad \x01 control\n")
    site.start()
    web1, web2, db1 = site.build("web1.test"), site.build("web2.test"), \
        site.build("db1.test")
    assert web1["ssh_host_rsa_key"].text == "group web 20\n"
    assert web2["ssh_host_rsa_key"].text == "host web2\n"
    assert db1["ssh_host_rsa_key"].text == "plain\n"
    assert attrs(web1["ssh_host_rsa_key"]) == [
        ("name", "/etc/ssh/ssh_host_rsa_key"), ("owner", "root"), ("group", "root"),
        ("type", "file"), ("mode", "0600")]
    assert attrs(db1["ssh_host_rsa_key.pub"]) == [
        ("name", "/etc/ssh/ssh_host_rsa_key.pub"), ("owner", "root"), ("group", "root"),
        ("type", "file"), ("mode", "0644")]
    assert db1["ssh_host_rsa_key.pub"].text == "ssh-rsa AAAAplain\n"
    # SSH1 keys are sent base64-encoded; empty files as empty="true"
    ssh1 = web1["ssh_host_key"]
    assert attrs(ssh1) == [("name", "/etc/ssh/ssh_host_key"), ("owner", "root"),
                           ("group", "root"), ("type", "file"), ("encoding", "base64"),
                           ("mode", "0600")]
    assert base64.b64decode(ssh1.text) == b"\x00SSH1\xff"
    assert web1["ssh_host_key.pub"].get("empty") == "true"
    assert web1["ssh_host_key.pub"].text is None
    assert "needs encoding=\"base64\"" in web1["ssh_host_dsa_key"].get("failure")


def test_info_xml_and_its_failures(make_site, dns):
    site = make_site(["ssh_host_rsa_key", "ssh_host_rsa_key.pub", "ssh_known_hosts"])
    site.file("ssh_host_rsa_key", "private\n")
    site.file("ssh_host_rsa_key.pub", "ssh-rsa AAAA\n")
    site.file("info.xml", """<FileInfo>
  <Path name="/etc/ssh/ssh_host_rsa_key">
    <Info owner="root" group="wheel" mode="0640" sensitive="true"/>
  </Path>
  <Group name="web"><Info owner="root" group="root" mode="0644" paranoid="true"/></Group>
</FileInfo>""")
    site.start()
    web1 = site.build("web1.test")
    assert attrs(web1["ssh_host_rsa_key"]) == [
        ("name", "/etc/ssh/ssh_host_rsa_key"), ("owner", "root"), ("group", "wheel"),
        ("type", "file"), ("mode", "0640"), ("sensitive", "true")]
    assert attrs(web1["ssh_host_rsa_key.pub"])[-1] == ("paranoid", "true")
    assert web1["ssh_known_hosts"].get("paranoid") == "true"
    db1 = site.build("db1.test")
    assert db1["ssh_host_rsa_key"].get("group") == "wheel"
    for name in ("ssh_host_rsa_key.pub", "ssh_known_hosts"):
        assert "no Info in" in db1[name].get("failure")


def test_encrypted_private_keys(make_site, dns):
    site = make_site(["ssh_host_rsa_key"],
                     conf="[encryption]\nother = nope\nkeys = s3cret\n")
    site.file("ssh_host_rsa_key.H_web1.test.crypt",
              encryption.ssl_encrypt("PRIVATE web1\n", "s3cret"))
    site.file("ssh_host_rsa_key.crypt", encryption.ssl_encrypt("PRIVATE all\n", "s3cret"))
    site.file("ssh_host_rsa_key.H_web2.test.crypt",
              encryption.ssl_encrypt("x\n", "wrong"))
    site.start()
    assert site.build("web1.test")["ssh_host_rsa_key"].text == "PRIVATE web1\n"
    assert site.build("db1.test")["ssh_host_rsa_key"].text == "PRIVATE all\n"
    # never the encrypted text, and no new key in its place
    failure = site.build("web2.test")["ssh_host_rsa_key"].get("failure")
    assert "failed to decrypt" in failure
    assert sorted(os.listdir(site.ssh)) == [
        "ssh_host_rsa_key.H_web1.test.crypt", "ssh_host_rsa_key.H_web2.test.crypt",
        "ssh_host_rsa_key.crypt"]


def test_unknown_and_ignored_files(make_site, dns, caplog):
    site = make_site(["ssh_host_rsa_key"])
    site.file("ssh_host_rsa_key", "k\n")
    site.file("README", "notes")
    site.file("ssh_host_rsa_key.swp", "junk")
    site.file("ssh_host_rsa_key~", "junk")
    site.file("ssh_known_hosts.crypt", "junk")
    (site.ssh / "subdir").mkdir()
    (site.ssh / "subdir" / "ssh_host_rsa_key.H_web1.test").write_text("deep\n")
    caplog.set_level(logging.WARNING)
    site.start()
    assert site.build("web1.test")["ssh_host_rsa_key"].text == "k\n"
    assert "README is no key" in caplog.text
    assert "ssh_known_hosts.crypt is no key" in caplog.text
    for quiet in ("swp", "~", "subdir"):
        assert quiet not in caplog.text


# ---------------------------------------------------------------- ssh_known_hosts

KNOWN_FILES = {
    "ssh_host_dsa_key.pub": "ssh-dss AAAAall root@all\n",
    "ssh_host_rsa_key.pub.H_web1.test": "ssh-rsa AAAAweb1 root@web1.test\n",
    "ssh_host_rsa_key.pub.H_db1.test": "ssh-rsa AAAAdb1 root@db1.test",
    "ssh_host_ed25519_key.pub.G10_web": "ssh-ed25519 AAAAweb root@web\n",
    "ssh_host_ecdsa_key.pub.H_gone.test": "ecdsa-sha2-nistp256 AAAAgone\n",
    "ssh_host_ecdsa_key.pub": "ecdsa-sha2-nistp256 AAAAall\n",
    "ssh_host_ecdsa_key.pub.G10_nobody": "ecdsa-sha2-nistp256 AAAAnobody\n",
    "ssh_host_rsa_key.H_web1.test": "private, never listed\n",
    "a.static": "|1|hashed ssh-rsa AAAAstatic\n\n",
    "b.static": "legacy.test ssh-rsa AAAAb",
}
WEB1_NAMES = ("10.1.0.1,10.1.0.80,192.0.2.11,192.0.2.80,2001:db8::11,proxy.test,"
              "w1.lan.test,web1,web1.test,www,www.test")
WEB2_NAMES = "web2,web2.test"
DB1_NAMES = "192.0.2.21,db1,db1.test"
SHARED = "\n".join([
    "|1|hashed ssh-rsa AAAAstatic",
    "legacy.test ssh-rsa AAAAb",
    "%s,%s,%s ssh-dss AAAAall root@all" % (WEB1_NAMES, WEB2_NAMES, DB1_NAMES),
    "%s,%s,%s ecdsa-sha2-nistp256 AAAAall" % (WEB1_NAMES, WEB2_NAMES, DB1_NAMES),
    "%s,%s ssh-ed25519 AAAAweb root@web" % (WEB1_NAMES, WEB2_NAMES),
    "%s ssh-rsa AAAAdb1 root@db1.test" % DB1_NAMES,
    "%s ssh-rsa AAAAweb1 root@web1.test" % WEB1_NAMES,
]) + "\n"


def test_generated_known_hosts(make_site, dns, caplog):
    site = make_site(["ssh_known_hosts"])
    for name, text in KNOWN_FILES.items():
        site.file(name, text)
    caplog.set_level(logging.INFO)
    site.start()
    web1 = site.build("web1.test")["ssh_known_hosts"]
    assert web1.text == SHARED + (
        LOCAL + "ssh-dss AAAAall root@all\n" +
        LOCAL + "ecdsa-sha2-nistp256 AAAAall\n" +
        LOCAL + "ssh-ed25519 AAAAweb root@web\n" +
        LOCAL + "ssh-rsa AAAAweb1 root@web1.test\n")
    assert attrs(web1) == [("name", "/etc/ssh/ssh_known_hosts"), ("owner", "root"),
                           ("group", "root"), ("type", "file"), ("mode", "0644")]
    # the client's own key file is appended as it is (no newline added)
    assert site.build("db1.test")["ssh_known_hosts"].text == SHARED + (
        LOCAL + "ssh-dss AAAAall root@all\n" + LOCAL + "ecdsa-sha2-nistp256 AAAAall\n" +
        LOCAL + "ssh-rsa AAAAdb1 root@db1.test")
    assert caplog.text.count("ignoring key for unknown host gone.test") == 1
    assert caplog.text.count("ignoring key for unknown group nobody") == 1
    # every name and address was looked up once, and only once
    lookups = list(dns.calls)
    assert sorted(set(lookups)) == sorted(lookups)
    assert set(lookups) == {"web1.test", "www.test", "web2.test", "db1.test",
                            "192.0.2.11", "2001:db8::11", "192.0.2.80", "192.0.2.21"}
    site.build("web2.test")
    assert dns.calls == lookups


def test_known_hosts_cache_and_metadata_expiry(make_site, dns):
    site = make_site(["ssh_known_hosts"], filemonitor="poll",
                     conf="[caching]\nclient_metadata = cautious\n")
    site.file("ssh_host_rsa_key.pub.H_web1.test", "ssh-rsa AAAAweb1\n")
    site.file("one.static", "static one\n")
    site.start()
    first = site.build("web2.test")["ssh_known_hosts"].text
    assert first.startswith("static one\n%s ssh-rsa AAAAweb1\n" % WEB1_NAMES)
    assert site.core.build_metadata("web2.test").SSHbase == {}
    calls = len(dns.calls)
    # clients changing does not rebuild the shared part
    clients = site.repo / "Metadata" / "clients.xml"
    clients.write_text(CLIENTS.replace("</Clients>",
                                       '<Client name="new.test" profile="web"/></Clients>'))
    site.refresh()
    assert "new.test" in site.core.metadata.list_clients()
    assert site.build("web2.test")["ssh_known_hosts"].text == first
    # a new public key does, and expires the cached metadata
    site.file("ssh_host_ed25519_key.pub.H_web2.test", "ssh-ed25519 AAAAweb2\n")
    site.refresh()
    text = site.build("web2.test")["ssh_known_hosts"].text
    assert "web2,web2.test ssh-ed25519 AAAAweb2\n" in text
    assert "new,new.test" not in text  # no key of its own
    assert text.endswith(LOCAL + "ssh-ed25519 AAAAweb2\n")
    assert site.core.build_metadata("web2.test").SSHbase == {
        "ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAweb2\n"}
    assert dns.calls[calls:] == ["new.test"]  # only the new client's name
    # a static file changing or going away does too
    (site.ssh / "one.static").unlink()
    site.refresh()
    assert not site.build("web2.test")["ssh_known_hosts"].text.startswith("static")
    # deleting a key drops its line
    (site.ssh / "ssh_host_rsa_key.pub.H_web1.test").unlink()
    site.refresh()
    assert "AAAAweb1" not in site.build("web2.test")["ssh_known_hosts"].text


def test_static_known_hosts_file_wins(make_site, dns):
    site = make_site(["ssh_known_hosts"])
    site.file("ssh_known_hosts.H_web1.test", "only this\n")
    site.file("ssh_known_hosts.G10_db", "")
    site.file("ssh_host_rsa_key.pub.H_web2.test", "ssh-rsa AAAAweb2\n")
    site.start()
    assert site.build("web1.test")["ssh_known_hosts"].text == "only this\n"
    db1 = site.build("db1.test")["ssh_known_hosts"]
    assert db1.get("empty") == "true" and db1.text is None
    assert site.build("web2.test")["ssh_known_hosts"].text == (
        "web2,web2.test ssh-rsa AAAAweb2\n" + LOCAL + "ssh-rsa AAAAweb2\n")


def test_getent_fallback(make_site, dns):
    clients = '<Clients><Client name="legacy.test" profile="web"/></Clients>'
    site = make_site(["ssh_known_hosts"], clients=clients)
    site.file("ssh_host_rsa_key.pub.H_legacy.test", "ssh-rsa AAAAlegacy\n")
    dns.reverse["198.51.100.7"] = ("legacy.lan.test", ["old.test"])
    site.start()
    assert site.build("legacy.test")["ssh_known_hosts"].text.startswith(
        "198.51.100.7,legacy,legacy.lan.test,legacy.test,old.test ssh-rsa AAAAlegacy\n")


def test_dns_lookups_are_bounded_and_failures_cached(make_site, dns):
    site = make_site(["ssh_known_hosts"], conf="[sshbase]\ndns_timeout = 0.3\n")
    site.file("ssh_host_rsa_key.pub.H_web2.test", "ssh-rsa AAAAweb2\n")
    dns.slow = {"web2.test": 5, "web1.test": 5, "www.test": 5, "db1.test": 5}
    site.start()
    start = time.monotonic()
    text = site.build("web2.test")["ssh_known_hosts"].text
    assert time.monotonic() - start < 2.5  # looked up side by side, each cut short
    assert text.startswith("web2,web2.test ssh-rsa AAAAweb2\n")
    calls = len(dns.calls)
    site.plugin.invalidate_known_hosts()
    assert site.build("web2.test")["ssh_known_hosts"].text == text
    assert len(dns.calls) == calls


def test_real_resolver_on_unresolvable_name():
    resolver = HostResolver(timeout=3)
    start = time.monotonic()
    assert resolver.addresses("no-such-host.invalid") == ()
    assert resolver.addresses("no-such-host.invalid") == ()
    assert time.monotonic() - start < 7
    assert resolver.address_cache == {"no-such-host.invalid": ()}


# ---------------------------------------------------------------- key generation

@needs_keygen
def test_keys_generated_once_and_seen_through_file_events(make_site, dns):
    site = make_site(["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub",
                      "ssh_known_hosts"], filemonitor="poll")
    site.start()
    web1 = site.build("web1.test")
    private = web1["ssh_host_ed25519_key"].text
    public = web1["ssh_host_ed25519_key.pub"].text
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public.startswith("ssh-ed25519 ") and public.endswith(" root@web1.test\n")
    stored = site.ssh / "ssh_host_ed25519_key.H_web1.test"
    assert stored.read_text() == private
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    pubfile = site.ssh / "ssh_host_ed25519_key.pub.H_web1.test"
    assert pubfile.read_text() == public
    assert stat.S_IMODE(pubfile.stat().st_mode) == 0o644
    assert web1["ssh_known_hosts"].text.endswith(LOCAL + public)
    assert "%s %s" % (WEB1_NAMES, public) in web1["ssh_known_hosts"].text
    again = site.build("web1.test")
    assert again["ssh_host_ed25519_key"].text == private
    assert again["ssh_host_ed25519_key.pub"].text == public
    other = site.build("web2.test")
    assert other["ssh_host_ed25519_key"].text != private
    assert sorted(os.listdir(site.ssh)) == [
        "ssh_host_ed25519_key.H_web1.test", "ssh_host_ed25519_key.H_web2.test",
        "ssh_host_ed25519_key.pub.H_web1.test", "ssh_host_ed25519_key.pub.H_web2.test"]
    assert site.core.build_metadata("web1.test").SSHbase == {
        "ssh_host_ed25519_key.pub": public}


@needs_keygen
def test_generated_private_key_encrypted(make_site, dns):
    site = make_site(["ssh_host_ecdsa_key.pub", "ssh_host_ecdsa_key"],
                     conf="[sshbase]\npassphrase = keys\n[encryption]\nkeys = t0ps3cret\n")
    site.start()
    web1 = site.build("web1.test")
    private = web1["ssh_host_ecdsa_key"].text
    assert web1["ssh_host_ecdsa_key.pub"].text.startswith("ecdsa-sha2-nistp256 ")
    stored = (site.ssh / "ssh_host_ecdsa_key.H_web1.test.crypt").read_text()
    assert "PRIVATE KEY" not in stored
    assert encryption.ssl_decrypt(stored, "t0ps3cret").decode() == private
    assert not (site.ssh / "ssh_host_ecdsa_key.H_web1.test").exists()


@pytest.mark.parametrize("key, conf, expect", [
    ("ssh_host_key", "", "error running ssh-keygen -t rsa1"),  # refused by OpenSSH
    ("ssh_host_rsa_key", "[sshbase]\npassphrase = missing\n", "passphrase = missing"),
])
def test_generation_failures_are_bind_errors(make_site, dns, key, conf, expect):
    site = make_site([key], conf=conf)
    site.start()
    assert expect in site.build("web1.test")[key].get("failure")
    assert os.listdir(site.ssh) == []


@needs_keygen
def test_waiting_for_file_events_gives_up(make_site, dns):
    site = make_site(["ssh_host_ed25519_key"], filemonitor="poll")
    site.start()
    site.core.fam.shutdown()  # the monitor reports nothing any more
    site.plugin.key_wait = 0.3
    failure = site.build("web1.test")["ssh_host_ed25519_key"].get("failure")
    assert "still not registered" in failure
    assert (site.ssh / "ssh_host_ed25519_key.H_web1.test").exists()
    # the next request finds the stored file instead of making another pair
    site.plugin.HandleEvent(_Event("ssh_host_ed25519_key.H_web1.test", "created"))
    private = (site.ssh / "ssh_host_ed25519_key.H_web1.test").read_text()
    assert site.build("web1.test")["ssh_host_ed25519_key"].text == private


class _Event:
    def __init__(self, filename, action):
        self.filename, self.action = filename, action

    def code2str(self):
        return self.action


# ---------------------------------------------------------------- pull

def test_pull_stores_host_specific_files(make_site, dns):
    site = make_site(["ssh_host_rsa_key"])
    site.start()
    md = site.core.build_metadata("web1.test")
    plugin = site.plugin
    [choice] = plugin.AcceptChoices(None, md)
    assert choice.hostname == "web1.test"
    plugin.AcceptPullData(choice, {"name": "/etc/ssh/ssh_host_rsa_key",
                                   "text": "pulled\n"}, False)
    stored = site.ssh / "ssh_host_rsa_key.H_web1.test"
    assert stored.read_text() == "pulled\n"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    entry = lxml.etree.Element("Path", name="/etc/ssh/ssh_host_key.pub",
                               encoding="base64")
    entry.text = base64.b64encode(b"\x01bin").decode()
    plugin.AcceptPullData(choice, entry, True)
    assert (site.ssh / "ssh_host_key.pub.H_web1.test").read_bytes() == b"\x01bin"
    plugin.AcceptPullData(choice, {"name": "/etc/passwd", "text": "x"}, False)
    plugin.AcceptPullData(choice, {"name": "/etc/ssh/ssh_host_dsa_key"}, False)
    assert sorted(os.listdir(site.ssh)) == ["ssh_host_key.pub.H_web1.test",
                                            "ssh_host_rsa_key.H_web1.test"]
