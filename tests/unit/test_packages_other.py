"""Packages through the Core with Pacman and pkgng sources, mixed source types and
the legacy files (spec/packages.md §1, §3, §4.3, §5)."""
import io
import json
import logging
import lzma
import os
import tarfile

import pytest

from tests.unit.test_packages import Site, apt_archive, apt_source

PAC_DB = {
    "hello-1.0-1": {"desc": "%NAME%\nhello\n\n%VERSION%\n1.0-1\n\n%GROUPS%\nbase\n",
                    "depends": "%DEPENDS%\nglibc>=2.30\nsh\n\n%OPTDEPENDS%\n"
                               "perl: for scripts\n"},
    "glibc-2.38-1": {"desc": "%NAME%\nglibc\n\n%GROUPS%\nbase\n",
                     "depends": "%DEPENDS%\nfilesystem\n"},
    "bash-5-1": {"desc": "%NAME%\nbash\n\n%PROVIDES%\nsh=5\n"},
    "filesystem-1-1": {"desc": "%NAME%\nfilesystem\n"},
    "perl-5-1": {"desc": "%NAME%\nperl\n"},
}


def add_member(tar, name, text):
    data = text.encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def pac_repo(root, repo="core", arch="x86_64"):
    path = os.path.join(str(root), repo, "os", arch, "%s.db.tar.gz" % repo)
    os.makedirs(os.path.dirname(path))
    with tarfile.open(path, "w:gz") as tar:
        for pkgdir, files in PAC_DB.items():
            for fname, text in files.items():
                add_member(tar, "%s/%s" % (pkgdir, fname), text)
    return "file://%s" % root


def pkgng_repo(root, version="13", arch="amd64", component="latest"):
    path = os.path.join(str(root), "freebsd:%s:%s" % (version, arch), component,
                        "packagesite.txz")
    os.makedirs(os.path.dirname(path))
    lines = [{"name": "hello", "deps": {"gettext": {"origin": "devel/gettext"}}},
             {"name": "gettext", "deps": {"libiconv": {}}},
             {"name": "libiconv"}, {"name": "other"}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add_member(tar, "packagesite.yaml",
                   "".join(json.dumps(line) + "\n" for line in lines))
    with lzma.open(path, "wb") as fh:
        fh.write(buf.getvalue())
    return "file://%s" % root


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.stop()


def test_pacman(site, tmp_path):
    url = pac_repo(tmp_path / "arch")
    site.sources('<Group name="archlinux"><Source type="pac" url="%s">'
                 '<Component>core</Component><Arch>x86_64</Arch></Source></Group>' % url)
    site.bundle('<Package name="hello"/>')
    site.start()
    added = site.added("arch1")
    # versioned dependency cut at ">", "sh" provided by bash alone
    assert sorted(added) == ["bash", "filesystem", "glibc"]
    assert added["bash"]["type"] == "pacman"
    site.bundle('<Package name="hello" recommended="true"/>',
                '<Package group="@base"/>')
    site.restart()
    assert "perl" in site.added("arch1")
    assert site.entries("arch1")[("Package", "hello")].get("type") == "pacman"


def test_pacman_rawurl_cannot_load(site, tmp_path, caplog):
    site.sources('<Group name="archlinux"><Source type="pac" rawurl="file://%s/x">'
                 '<Arch>x86_64</Arch></Source></Group>' % tmp_path)
    with caplog.at_level(logging.ERROR):
        site.start()
    assert "rawurl is not supported" in caplog.text
    assert site.added("arch1") == {}


def test_pkgng(site, tmp_path):
    url = pkgng_repo(tmp_path / "bsd")
    site.sources('<Group name="freebsd"><Source type="pkgng" url="%s" version="13">'
                 '<Component>latest</Component><Arch>amd64</Arch></Source></Group>' % url)
    site.start()
    added = site.added("bsd1")
    assert sorted(added) == ["gettext", "libiconv"]
    assert added["gettext"]["type"] == "pkgng"


def test_mixed_source_types_and_backends_option(site, tmp_path, caplog):
    apt = apt_archive(tmp_path / "mirror")
    pkgng = pkgng_repo(tmp_path / "bsd")
    site.sources(apt_source(apt).replace("debian", "freebsd") +
                 '<Group name="freebsd"><Source type="pkgng" url="%s" version="13">'
                 '<Component>latest</Component><Arch>amd64</Arch></Source></Group>'
                 '<Source type="nosuch" url="http://x/"><Arch>amd64</Arch></Source>'
                 '<Source url="http://y/"><Arch>amd64</Arch></Source>' % pkgng)
    path = "/etc/apt/sources.list.d/bcfg2-packages-generated-sources.list"
    site.bundle('<Package name="hello"/>', '<Path name="%s"/>' % path)
    with caplog.at_level(logging.WARNING):
        site.start()
        entries = site.entries("bsd1")
    assert "Unknown source type nosuch" in caplog.text
    assert "No type specified for source at http://y/" in caplog.text
    assert "Multiple source types found for bsd1" in caplog.text
    assert "Cannot generate config for host bsd1" in caplog.text
    # the first applicable source's type; dependencies of a package from the first
    # source that has it
    assert entries[("Package", "hello")].get("type") == "deb"
    assert not entries[("Path", path)].text
    added = set(site.added("bsd1"))
    assert "libc6" in added and "gettext" not in added
    # only the listed backends load
    site.stop()
    site.extra = "[packages]\nbackends = Pkgng\n"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        site.start()
    assert "Unknown source type apt" in caplog.text
    assert site.entries("bsd1")[("Package", "hello")].get("type") == "pkgng"


def test_legacy_config_xml_refused_and_packages_conf_warned(tmp_path, caplog):
    s = Site(tmp_path)
    try:
        (s.repo / "Packages" / "config.xml").write_text("<Sources><APTSource/></Sources>")
        (s.repo / "Packages" / "packages.conf").write_text("[global]\nresolver=0\n")
        with caplog.at_level(logging.WARNING):
            s.start()
        assert "Packages" not in s.core.plugins
        assert "packages-convert.py" in caplog.text
        assert "packages.conf is ignored" in caplog.text
        # the Package entries stay unbound
        assert s.entries("deb1")[("Package", "hello")].get("failure")
    finally:
        s.stop()


def test_metadata_off_binds_without_fetching(site, tmp_path):
    url = apt_archive(tmp_path / "mirror")
    site.sources(apt_source(url))
    site.extra = "[packages]\nmetadata = disabled\ncache = %s\n" % (tmp_path / "c")
    site.start()
    assert site.added("deb1") == {}
    assert site.entries("deb1")[("Package", "hello")].get("type") == "deb"
    assert os.listdir(str(tmp_path / "c")) == ["keys"] or \
        sorted(os.listdir(str(tmp_path / "c"))) == [".generation", "keys"]
