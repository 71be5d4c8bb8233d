"""Packages through the Core with APT sources: real Metadata and Bundler plugins, a
LocalCore, repository metadata generated into tmp_path and fetched over file:// or
a local HTTP server on 127.0.0.1 (spec/packages.md §9)."""
import base64
import glob
import gzip
import http.server
import logging
import os
import shutil
import threading

import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.server.local_core import LocalCore

GROUPS = """<Groups>
  <Group name="deb-amd64" profile="true">
    <Group name="debian"/><Group name="amd64"/><Bundle name="base"/>
  </Group>
  <Group name="deb-i386" profile="true">
    <Group name="debian"/><Group name="i386"/><Bundle name="base"/>
  </Group>
  <Group name="rpm" profile="true">
    <Group name="centos"/><Group name="x86_64"/><Bundle name="base"/>
  </Group>
  <Group name="arch" profile="true">
    <Group name="archlinux"/><Group name="x86_64"/><Bundle name="base"/>
  </Group>
  <Group name="bsd" profile="true">
    <Group name="freebsd"/><Group name="amd64"/><Bundle name="base"/>
  </Group>
  <Group name="noarch" profile="true"><Group name="debian"/><Bundle name="base"/></Group>
</Groups>"""
CLIENTS = """<Clients>
  <Client name="deb1" profile="deb-amd64"/>
  <Client name="deb2" profile="deb-amd64"/>
  <Client name="deb32" profile="deb-i386"/>
  <Client name="rpm1" profile="rpm"/>
  <Client name="arch1" profile="arch"/>
  <Client name="bsd1" profile="bsd"/>
  <Client name="plain" profile="noarch"/>
</Clients>"""

#: a small Debian-like archive: name -> stanza lines after "Package:"
ARCHIVE = {
    "hello": ["Version: 2.10-3", "Depends: libc6 (>= 2.36), mail-transport-agent | exim4",
              "Pre-Depends: dpkg:any", "Provides: hello-world",
              "Description: example", " Depends: not-a-field"],
    "libc6": ["Depends: libgcc-s1"],
    "libgcc-s1": ["Depends: gcc-base (= 12)"],
    "gcc-base": [],
    "dpkg": ["Essential: yes", "Depends: tar"],
    "tar": ["Essential: yes"],
    "base-files": ["Essential: yes"],
    "exim4": ["Provides: mail-transport-agent"],
    "postfix": ["Provides: mail-transport-agent", "Recommends: postfix-doc"],
    "postfix-doc": [],
    "web": ["Depends: httpd, cron", "Recommends: web-doc"],
    "web-doc": [],
    "apache2": ["Provides: httpd (= 2.4)", "Depends: apache2-bin"],
    "apache2-bin": [],
    "cron": ["Depends: cron-daemon-common"],
    "cron-daemon-common": [],
    "tool": ["Pre-Depends: a1 | a2", "Depends: b1 | b2"],
    "a1": [], "a2": [], "b1": [], "b2": [],
}


def write_packages_gz(path, archive):
    """A gzipped Packages file of ``archive``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    stanzas = ["\n".join(["Package: %s" % name] + lines) for name, lines in
               archive.items()]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n\n".join(stanzas) + "\n")


def apt_archive(root, archive=None, suite="stable", component="main",
                arches=("amd64",)):
    for arch in arches:
        write_packages_gz(os.path.join(str(root), "dists", suite, component,
                                       "binary-%s" % arch, "Packages.gz"),
                          ARCHIVE if archive is None else archive)
    return "file://%s" % root


class Site:
    """A repository with the real Metadata, Bundler and Packages plugins."""

    def __init__(self, tmp_path, plugins=("Bundler", "Packages"), extra="",
                 filemonitor="pseudo"):
        self.tmp = tmp_path
        self.repo = tmp_path / "repo"
        for name in ("Metadata", "Bundler", "Packages"):
            (self.repo / name).mkdir(parents=True, exist_ok=True)
        (self.repo / "Metadata" / "groups.xml").write_text(GROUPS)
        (self.repo / "Metadata" / "clients.xml").write_text(CLIENTS)
        self.bundle('<Package name="hello"/>')
        self.plugins = plugins
        self.extra = extra
        self.filemonitor = filemonitor
        self.core = None

    @property
    def cache(self):
        return self.repo / "Packages" / "cache"

    def bundle(self, *entries, name="base"):
        (self.repo / "Bundler" / (name + ".xml")).write_text(
            "<Bundle>%s</Bundle>" % "".join(entries))

    def sources(self, body):
        (self.repo / "Packages" / "sources.xml").write_text(
            "<Sources>%s</Sources>" % body)

    def start(self):
        conf = self.tmp / "bcfg2.conf"
        conf.write_text("[server]\nrepository = %s\nplugins = Metadata, %s\n"
                        "filemonitor = %s\n%s" % (self.repo, ", ".join(self.plugins),
                                                   self.filemonitor, self.extra))
        self.core = LocalCore(Settings(str(conf))).load()
        return self.core

    @property
    def plugin(self):
        return self.core.plugins["Packages"]

    def restart(self):
        self.stop()
        return self.start()

    def config(self, host):
        return self.core.BuildConfiguration(host)

    def independent(self, host):
        """The Packages Independent structure of the client's configuration."""
        found = [s for s in self.config(host) if s.tag == "Independent" and
                 s.get("name") == "Packages"]
        return found[0] if found else None

    def added(self, host):
        """name -> attributes of the packages Packages added."""
        indep = self.independent(host)
        return {e.get("name"): dict(e.attrib) for e in indep if e.tag == "Package"}

    def entries(self, host):
        return {(e.tag, e.get("name")): e for s in self.config(host) for e in s}

    def refresh(self):
        self.core.fam.poll_once()
        self.core.handle_events(0.05)

    def stop(self):
        if self.core is not None:
            self.core.shutdown()
            self.core = None


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.stop()


def apt_source(url, attrs="", body=""):
    return ('<Group name="debian"><Source type="apt" url="%s" version="stable" %s>'
            '<Component>main</Component><Arch>amd64</Arch>%s</Source></Group>'
            % (url, attrs, body))


def test_dependencies_and_essential_packages_are_added(site, tmp_path, caplog):
    url = apt_archive(tmp_path / "mirror")
    site.sources(apt_source(url))
    site.bundle('<Package name="hello"/>', '<Package name="nosuchpkg"/>')
    site.start()
    with caplog.at_level(logging.INFO):
        config = site.config("deb1")
    [indep] = config.findall("Independent[@name='Packages']")
    added = {e.get("name"): dict(e.attrib) for e in indep}
    # Depends chain, Pre-Depends with :any, essential packages and their deps;
    # "mail-transport-agent | exim4" has two providers: nothing added for it
    assert sorted(added) == ["base-files", "dpkg", "gcc-base", "libc6", "libgcc-s1",
                             "tar"]
    assert added["libc6"] == {"name": "libc6", "version": "auto", "type": "deb",
                              "origin": "Packages"}
    assert [e.get("name") for e in indep] == sorted(added)
    bundle = [s for s in config if s.get("name") == "base"][0]
    hello = bundle.find("Package[@name='hello']")
    assert (hello.get("type"), hello.get("version")) == ("deb", "auto")
    # unknown packages are logged and still bound
    unknown = bundle.find("Package[@name='nosuchpkg']")
    assert unknown.get("failure") is None and unknown.get("type") == "deb"
    assert "Packages: Got 1 unknown entries" in caplog.text
    assert "'nosuchpkg'" in caplog.text
    # an indented continuation line is not a field
    assert "not-a-field" not in added


def test_virtual_packages_versioned_provides_and_choices(site, tmp_path):
    url = apt_archive(tmp_path / "mirror")
    site.sources(apt_source(url))
    # httpd: one provider, declared "Provides: httpd (= 2.4)" (upstream missed it)
    # mail-transport-agent: two providers, nothing added;
    # tool: Pre-Depends and Depends alternatives both stay choices (no collision)
    site.bundle('<Package name="web"/>', '<Package name="mail-transport-agent"/>',
                '<Package name="tool"/>')
    site.start()
    added = site.added("deb1")
    assert {"apache2", "apache2-bin", "cron", "cron-daemon-common"} <= set(added)
    assert not {"exim4", "postfix", "web-doc", "a1", "a2", "b1", "b2"} & set(added)
    # when one alternative is asked for, the choice is satisfied by it
    site.bundle('<Package name="tool"/>', '<Package name="a2"/>')
    site.restart()
    assert not {"a1", "b1", "b2"} & set(site.added("deb1"))


def test_recommended_by_source_and_by_entry(site, tmp_path):
    url = apt_archive(tmp_path / "mirror")
    site.sources(apt_source(url, 'recommended="TRUE"'))
    site.bundle('<Package name="web"/>', '<Package name="postfix" recommended="false"/>')
    site.start()
    added = site.added("deb1")
    assert "web-doc" in added and "postfix-doc" not in added
    site.sources(apt_source(url))
    site.bundle('<Package name="web"/>', '<Package name="postfix" recommended="true"/>')
    site.restart()
    added = site.added("deb1")
    assert "web-doc" not in added and "postfix-doc" in added


def test_blacklist_whitelist_and_essential_off(site, tmp_path):
    url = apt_archive(tmp_path / "mirror")
    site.sources(apt_source(url, 'essential="false"',
                            "<Blacklist>libgcc-s1</Blacklist>"))
    site.start()
    assert sorted(site.added("deb1")) == ["dpkg", "libc6", "tar"]
    site.sources(apt_source(url, "", "<Whitelist>hello</Whitelist>"
                            "<Whitelist>libc6</Whitelist><Whitelist>dpkg</Whitelist>"))
    site.restart()
    # essential packages are added whatever the lists say (as upstream)
    assert sorted(site.added("deb1")) == ["base-files", "dpkg", "libc6", "tar"]


def test_sources_apply_by_group_client_and_arch(site, tmp_path, caplog):
    url = apt_archive(tmp_path / "mirror", arches=("amd64", "i386"))
    site.sources('<Group name="debian"><Client name="deb2" negate="TRUE">'
                 '<Source type="apt" url="%s" version="stable">'
                 '<Component>main</Component><Arch>amd64</Arch><Arch>i386</Arch>'
                 '</Source></Client></Group>'
                 '<Group name="centos"><Source type="apt" url="%s" version="stable">'
                 '<Component>main</Component><Arch>amd64</Arch></Source></Group>'
                 % (url, url))
    site.start()
    assert "libc6" in site.added("deb1")
    assert "libc6" in site.added("deb32")    # the i386 arch group
    with caplog.at_level(logging.ERROR):
        # deb2 is excluded by the negated Client, plain has no arch group
        for host in ("deb2", "plain"):
            assert site.added(host) == {}
            hello = site.entries(host)[("Package", "hello")]
            assert hello.get("type") == "unknown" and hello.get("failure") is None
    assert "No sources found for deb2" in caplog.text
    assert "No sources found for plain" in caplog.text


def test_sources_xml_created_and_reloaded_with_xinclude(tmp_path):
    s = Site(tmp_path, filemonitor="poll")
    try:
        url = apt_archive(tmp_path / "mirror")
        s.start()
        assert (s.repo / "Packages" / "sources.xml").read_text().strip() == \
            "<Sources/>"
        assert s.added("deb1") == {}
        (s.repo / "Packages" / "apt.xml").write_text(apt_source(url))
        (s.repo / "Packages" / "sources.xml").write_text(
            '<Sources xmlns:xi="http://www.w3.org/2001/XInclude">'
            '<xi:include href="apt.xml"/></Sources>')
        s.refresh()
        assert "libc6" in s.added("deb1")
        # an edit of the included file alone reloads too
        (s.repo / "Packages" / "apt.xml").write_text(apt_source(
            url, "", "<Blacklist>libc6</Blacklist>"))
        s.refresh()
        assert "libc6" not in s.added("deb1")
    finally:
        s.stop()


def test_cache_state_is_reused_and_refresh_downloads_again(site, tmp_path):
    mirror = tmp_path / "mirror"
    url = apt_archive(mirror)
    site.sources(apt_source(url))
    site.start()
    assert "libc6" in site.added("deb1")
    raw = site.cache / ("%s/dists/stable/main/binary-amd64/Packages.gz" % url).replace(
        "/", "@")
    assert raw.exists()
    [state] = glob.glob(str(site.cache / "cache-*"))
    stale = site.cache / "cache-0123456789abcdef"
    stale.write_text("old")
    # the mirror goes away: a restart serves from the parsed state, no download
    shutil.rmtree(str(mirror))
    site.restart()
    assert "libc6" in site.added("deb1")
    assert not stale.exists() and os.path.exists(state)
    # a changed mirror is not seen by Reload, only by Refresh
    apt_archive(mirror, dict(ARCHIVE, hello=["Depends: cron"]))
    assert site.core._get_rmi()["Packages.Reload"]() is True
    assert "libc6" in site.added("deb1")
    assert site.core._get_rmi()["Packages.Refresh"]() is True
    added = site.added("deb1")
    assert "libc6" not in added and "cron" in added
    # the state file missing: the downloaded files are parsed again
    os.unlink(state)
    shutil.rmtree(str(mirror))
    site.restart()
    assert "cron" in site.added("deb1")


def test_failed_download_keeps_serving_the_loaded_data(site, tmp_path, caplog):
    mirror = tmp_path / "mirror"
    url = apt_archive(mirror)
    site.sources(apt_source(url) + apt_source("file://%s/nothing" % tmp_path))
    with caplog.at_level(logging.ERROR):
        site.start()
    assert "Some Packages will be missing" in caplog.text
    assert "libc6" in site.added("deb1")
    shutil.rmtree(str(mirror))
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert site.core._get_rmi()["Packages.Refresh"]() is True
    assert "Failed to load data" in caplog.text
    assert "libc6" in site.added("deb1")


def test_generated_sources_list(site, tmp_path):
    url = apt_archive(tmp_path / "mirror")
    site.sources(apt_source(url, 'debsrc="true"', "<Component>contrib</Component>") +
                 '<Source type="apt" rawurl="http://x.example/debian/binary">'
                 '<Arch>amd64</Arch></Source>')
    path = "/etc/apt/sources.list.d/bcfg2-packages-generated-sources.list"
    site.bundle('<Package name="hello"/>', '<Path name="%s"/>' % path)
    site.start()
    entry = site.entries("deb1")[("Path", path)]
    assert dict(entry.attrib) == {"name": path, "encoding": "ascii", "owner": "root",
                                  "group": "root", "type": "file", "mode": "0644",
                                  "important": "true"}
    assert entry.text == (
        "# This config was generated automatically by the Bcfg2 Packages plugin\n\n"
        "deb %s/ stable main contrib\ndeb-src %s/ stable main contrib\n\n"
        "deb http://x.example/debian binary/\n" % (url, url))
    # the configured path is the one handled
    site.stop()
    site.extra = "[packages]\napt_config = /etc/apt/sources.list\n"
    site.restart()
    assert site.entries("deb1")[("Path", path)].get("failure") == \
        "no matching generator"


def test_connector_data(site, tmp_path):
    url = apt_archive(tmp_path / "mirror")
    site.sources(apt_source(url, 'name="mine"'))
    site.start()
    md = site.core.build_metadata("deb1")
    data = md.Packages
    assert data["sources"] == [{
        "version": "stable", "component": "main", "arch": "amd64", "debsrc": False,
        "baseurl": url + "/", "url": url + "/stable/main/amd64/", "name": "mine"}]
    text = data["get_config"](md)
    assert text.splitlines()[2] == "deb %s/ stable main" % url
    assert site.core.build_metadata("plain").Packages["sources"] == []


def test_resolver_off_keeps_groups_and_adds_nothing(site, tmp_path):
    url = apt_archive(tmp_path / "mirror")
    site.sources(apt_source(url))
    site.bundle('<Package name="hello"/>', '<Package group="web" type="yum"/>')
    site.extra = "[packages]\nresolver = no\n"
    site.start()
    config = site.config("deb1")
    assert len(config.find("Independent[@name='Packages']")) == 0
    group = config.find("Bundle/Package[@group='web']")
    assert group.get("choose") == "yum"


def test_apt_has_no_package_groups(site, tmp_path, caplog):
    url = apt_archive(tmp_path / "mirror")
    site.sources(apt_source(url))
    site.bundle('<Package name="hello"/>', '<Package group="web"/>', '<Package/>')
    site.start()
    with caplog.at_level(logging.ERROR):
        config = site.config("deb1")
    assert config.find(".//Package[@group]") is None
    assert "Package groups are not supported by AptCollection" in caplog.text
    assert "Malformed Package" in caplog.text


def test_rmi_conflicts_and_rules_packages(tmp_path):
    s = Site(tmp_path, plugins=("Pkgmgr", "Bundler", "Packages"))
    try:
        s.start()
        assert "Pkgmgr" not in s.core.plugins and "Packages" in s.core.plugins
        rmi = s.core._get_rmi()
        assert {"Packages.Refresh", "Packages.Reload"} <= set(rmi)
        assert rmi["Packages.Reload"]() is True
        assert s.plugin.__child_rmi__[-2:] == [("Refresh", "child_reload"),
                                               ("Reload", "child_reload")]
    finally:
        s.stop()


class _AuthHandler(http.server.SimpleHTTPRequestHandler):
    expected = None

    def do_GET(self):  # noqa: N802
        if self.headers.get("Authorization") != self.expected:
            self.send_error(401)
            return
        http.server.SimpleHTTPRequestHandler.do_GET(self)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_mirror(tmp_path):
    root = tmp_path / "www"
    apt_archive(root)

    class Handler(_AuthHandler):
        expected = "Basic " + base64.b64encode(b"bob:s3cret").decode()

        def __init__(self, *args, **kwargs):
            _AuthHandler.__init__(self, *args, directory=str(root), **kwargs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_http_with_credentials(site, http_mirror, caplog):
    site.sources(apt_source("http://bob:s3cret@%s/" % http_mirror) +
                 apt_source("http://bob:wrong@%s/other" % http_mirror))
    with caplog.at_level(logging.ERROR):
        site.start()
    assert "libc6" in site.added("deb1")
    assert "HTTP response code 401" in caplog.text
    assert "s3cret" not in caplog.text


@pytest.fixture
def slow_mirror(tmp_path):
    """A mirror on 127.0.0.1 that answers only once ``release`` is set."""
    root = tmp_path / "www"
    apt_archive(root)
    release = threading.Event()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            http.server.SimpleHTTPRequestHandler.__init__(self, *args,
                                                          directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802
            release.wait(10)
            http.server.SimpleHTTPRequestHandler.do_GET(self)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/" % server.server_address[1], release
    release.set()
    server.shutdown()
    server.server_close()


def test_slow_download_never_blocks_client_runs(site, slow_mirror, caplog):
    url, release = slow_mirror
    site.sources(apt_source(url))
    site.extra = "[packages]\nload_wait = 0.2\n"
    with caplog.at_level(logging.WARNING):
        site.start()
    assert "continuing in the background" in caplog.text
    # served at once, without the data still being downloaded
    assert site.added("deb1") == {}
    release.set()
    assert site.plugin.wait_idle(10)
    assert "libc6" in site.added("deb1")


def test_download_timeout(site, slow_mirror, caplog):
    url, _ = slow_mirror
    site.sources(apt_source(url))
    site.extra = "[packages]\ntimeout = 0.3\n"
    with caplog.at_level(logging.ERROR):
        site.start()
    assert "timed out" in caplog.text
    assert "Some Packages will be missing" in caplog.text


def test_child_reload_follows_the_parent_load(tmp_path):
    """A multiprocessing child soft-loads what its parent's Refresh wrote."""
    mirror = tmp_path / "mirror"
    url = apt_archive(mirror)
    parent = Site(tmp_path)
    parent.sources(apt_source(url))
    child = Site(tmp_path)
    try:
        parent.start()
        child.core = LocalCore(Settings(str(tmp_path / "bcfg2.conf"))).load()
        assert "libc6" in child.added("deb1")
        apt_archive(mirror, dict(ARCHIVE, hello=["Depends: cron"]))
        assert child.plugin.child_reload() is True
        assert parent.core._get_rmi()["Packages.Refresh"]() is True
        for _ in range(100):
            if "cron" in child.added("deb1"):
                break
            threading.Event().wait(0.05)
        assert "cron" in child.added("deb1") and "libc6" not in child.added("deb1")
    finally:
        child.stop()
        parent.stop()
