"""Packages through the Core with Yum sources: repodata generated in tmp_path and
read over file:// (builtin parser, comps groups, .repo generation, GPG keys)."""
import glob
import gzip
import logging
import os
import shutil

import pytest

from tests.unit.test_packages import Site

COMMON = "http://linux.duke.edu/metadata/common"
RPM = "http://linux.duke.edu/metadata/rpm"
KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQINBFzMWxkBEADHrskpBgN9OphmhRkc\n" \
      "-----END PGP PUBLIC KEY BLOCK-----\n"


def rpm_package(name, version="1.0", release="1", epoch="0", requires=(),
                provides=None):
    provides = [name] if provides is None else provides
    return ('<package type="rpm"><name>%s</name><arch>x86_64</arch>'
            '<version epoch="%s" ver="%s" rel="%s"/><format>'
            '<rpm:provides>%s</rpm:provides><rpm:requires>%s</rpm:requires>'
            '<file>/usr/share/doc/%s</file></format></package>' % (
                name, epoch, version, release,
                "".join('<rpm:entry name="%s"/>' % p for p in provides),
                "".join('<rpm:entry name="%s" flags="GE" ver="1"/>' % r
                        for r in requires), name))


PRIMARY = [
    rpm_package("hello", requires=["/bin/sh", "rpmlib(CompressedFileNames)",
                                   "libc.so.6()(64bit)", "/usr/bin/missing"]),
    # an older build listed later: ignored
    rpm_package("hello", version="0.9", requires=["oldstuff"]),
    rpm_package("bash", requires=["glibc"]),
    rpm_package("glibc", provides=["glibc", "libc.so.6()(64bit)"]),
    rpm_package("oldstuff"),
    rpm_package("core-a"), rpm_package("core-b"), rpm_package("core-c"),
    rpm_package("core-d"), rpm_package("evil"),
]
FILELISTS = {"bash": ["/bin/sh", "/bin/bash"], "glibc": ["/lib64/libc.so.6"]}
COMPS = ('<comps><group><id>base</id><packagelist>'
         '<packagereq type="mandatory">core-a</packagereq>'
         '<packagereq type="default">core-b</packagereq>'
         '<packagereq type="optional">core-c</packagereq>'
         '<packagereq type="conditional" requires="x">core-d</packagereq>'
         '</packagelist></group></comps>')


def yum_repo(root, primary=PRIMARY, filelists=FILELISTS, comps=COMPS):
    """A repository at ``root`` (repodata/ with gzip primary and filelists)."""
    repodata = os.path.join(str(root), "repodata")
    os.makedirs(repodata, exist_ok=True)
    data = ['<data type="primary"><location href="repodata/abc-primary.xml.gz"/></data>',
            '<data type="other"><location href="repodata/other.xml.gz"/></data>']
    with gzip.open(os.path.join(repodata, "abc-primary.xml.gz"), "wt") as fh:
        fh.write('<metadata xmlns="%s" xmlns:rpm="%s" packages="%d">%s</metadata>' % (
            COMMON, RPM, len(primary), "".join(primary)))
    if filelists is not None:
        data.append('<data type="filelists"><location href="repodata/'
                    'def-filelists.xml.gz"/></data>')
        with gzip.open(os.path.join(repodata, "def-filelists.xml.gz"), "wt") as fh:
            fh.write('<filelists xmlns="http://linux.duke.edu/metadata/filelists">%s'
                     '</filelists>' % "".join(
                         '<package pkgid="x" name="%s" arch="x86_64">%s</package>' % (
                             name, "".join("<file>%s</file>" % f for f in files))
                         for name, files in filelists.items()))
    if comps is not None:
        data.append('<data type="group"><location href="repodata/comps.xml"/></data>')
        with open(os.path.join(repodata, "comps.xml"), "w") as fh:
            fh.write(comps)
    with open(os.path.join(repodata, "repomd.xml"), "w") as fh:
        fh.write('<repomd xmlns="http://linux.duke.edu/metadata/repo">%s</repomd>'
                 % "".join(data))
    return "file://%s" % root


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def mirror(tmp_path):
    url = yum_repo(tmp_path / "mirror" / "yum")
    (tmp_path / "mirror" / "RPM-GPG-KEY-test").write_text(KEY)
    return url


def yum_source(url, body="", attrs=""):
    return ('<Group name="centos"><Source type="yum" rawurl="%s" %s><Arch>x86_64</Arch>'
            '%s</Source></Group>' % (url, attrs, body))


def test_yum_resolution_files_groups_and_versions(site, mirror, caplog):
    site.sources(yum_source(mirror, "<Blacklist>evil</Blacklist>"))
    site.bundle('<Package name="hello"/>', '<Package group="@base" type="mandatory"/>',
                '<Package name="evil"/>')
    site.start()
    with caplog.at_level(logging.INFO):
        config = site.config("rpm1")
    added = {e.get("name"): dict(e.attrib)
             for e in config.find("Independent[@name='Packages']")}
    # /bin/sh from filelists -> bash -> glibc; the soname -> glibc; the mandatory
    # group members (mandatory + conditional); not the older hello's "oldstuff"
    assert sorted(added) == ["bash", "core-a", "core-d", "glibc"]
    assert added["bash"] == {"name": "bash", "version": "auto", "type": "yum",
                             "origin": "Packages"}
    assert config.find(".//Package[@group]") is None
    hello = config.find("Bundle/Package[@name='hello']")
    assert (hello.get("type"), hello.get("version")) == ("yum", "auto")
    # rpmlib symbols are never reported; a blacklisted package still provides
    # its own name (a virtual symbol), so it is not unknown
    assert "Got 1 unknown entries" in caplog.text
    assert "['/usr/bin/missing']" in caplog.text


@pytest.mark.parametrize("gtype, members", [
    (None, ["core-a", "core-b", "core-d"]),
    ("optional", ["core-a", "core-b", "core-c", "core-d"]),
    ("all", ["core-a", "core-b", "core-c", "core-d"]),
])
def test_yum_group_types(site, mirror, gtype, members):
    site.sources(yum_source(mirror))
    site.bundle('<Package group="base"%s/>' % (' type="%s"' % gtype if gtype else ""))
    site.start()
    assert sorted(site.added("rpm1")) == members


def test_yum_config_and_gpg_keys(site, mirror, tmp_path, caplog):
    key = "file://%s/mirror/RPM-GPG-KEY-test" % tmp_path
    site.sources(yum_source(
        mirror, "<GPGKey>%s</GPGKey><Blacklist>evil</Blacklist>"
        '<Options serveronly="true" proxy="http://proxy.example:3128"/>'
        '<Options clientonly="TRUE" metadata_expire="0"/>' % key) +
        '<Group name="centos"><Source type="yum" url="%s/../" version="7" name="x">'
        '<Component>os</Component><Component>updates</Component><Arch>x86_64</Arch>'
        '<Arch>i386</Arch><Whitelist>hello</Whitelist></Source></Group>' % mirror)
    site.bundle('<Package name="hello"/>', '<Path name="/etc/yum.repos.d/bcfg2.repo"/>')
    site.start()
    assert (site.cache / "keys" / "RPM-GPG-KEY-test").read_text() == KEY
    with caplog.at_level(logging.WARNING):
        entries = site.entries("rpm1")
    repo = entries[("Path", "/etc/yum.repos.d/bcfg2.repo")]
    assert repo.get("type") == "file" and repo.get("mode") == "0644"
    assert repo.text == (
        "# This config was generated automatically by the Bcfg2 Packages plugin\n\n"
        "[centos-yum]\nname = centos-yum\nbaseurl = %s/\nenabled = 1\ngpgcheck = 1\n"
        "gpgkey = %s\nexclude = evil\nmetadata_expire = 0\n\n"
        "[x]\nname = x\nbaseurl = %s/../7/os/x86_64/\nenabled = 1\ngpgcheck = 0\n"
        "includepkgs = hello\n\n"
        "[x-2]\nname = x-2\nbaseurl = %s/../7/updates/x86_64/\nenabled = 1\n"
        "gpgcheck = 0\nincludepkgs = hello\n\n" % (mirror, key, mirror, mirror))
    path = entries[("Path", "/etc/pki/rpm-gpg/RPM-GPG-KEY-test")]
    assert path.text == KEY
    assert dict(path.attrib) == {
        "name": "/etc/pki/rpm-gpg/RPM-GPG-KEY-test", "encoding": "ascii",
        "owner": "root", "group": "root", "type": "file", "mode": "0644",
        "important": "true"}
    assert "no yum libraries were found" in caplog.text
    # a key file missing from the cache: no Independent at all
    os.unlink(str(site.cache / "keys" / "RPM-GPG-KEY-test"))
    config = site.config("rpm1")
    assert config.find("Independent[@name='Packages']") is None


def test_yum_gpg_keypath_and_key_cleanup(site, mirror, tmp_path):
    key = "file://%s/mirror/RPM-GPG-KEY-test" % tmp_path
    site.sources(yum_source(mirror, "<GPGKey>%s</GPGKey>" % key))
    site.extra = "[packages:yum]\ngpg_keypath = /etc/keys\n"
    (site.cache / "keys").mkdir(parents=True)
    (site.cache / "keys" / "stale-key").write_text("x")
    site.start()
    assert not (site.cache / "keys" / "stale-key").exists()
    assert ("Path", "/etc/keys/RPM-GPG-KEY-test") in site.entries("rpm1")


def test_yum_reparses_downloaded_files_without_network(site, mirror, tmp_path):
    site.sources(yum_source(mirror))
    site.start()
    assert "glibc" in site.added("rpm1")
    for state in glob.glob(str(site.cache / "cache-*")):
        os.unlink(state)
    shutil.rmtree(str(tmp_path / "mirror"))
    site.restart()
    assert "glibc" in site.added("rpm1")
    assert glob.glob(str(site.cache / "cache-*"))


def test_file_requirement_needs_filelists(site, tmp_path):
    url = yum_repo(tmp_path / "nofl", filelists=None, comps=None)
    site.sources(yum_source(url))
    site.start()
    added = site.added("rpm1")
    assert "bash" not in added and "glibc" in added
