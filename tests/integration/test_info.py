"""``bcfg2-cherry info`` on the bundled demo repository, as a user runs it."""
import subprocess
import sys

import lxml.etree
import pytest

from tests.conftest import DEMO_CLIENTS, DEMO_CONF


def info(repo, *args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "bcfg2_cherry", "info", "-C", DEMO_CONF, "-Q", str(repo)]
        + list(args), capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_clients_groups_bundles_plugins(demo_repo):
    assert info(demo_repo, "clients").stdout.split() == sorted(DEMO_CLIENTS)
    groups = info(demo_repo, "groups").stdout
    assert groups.splitlines()[0].split() == ["group", "profile", "public", "category",
                                              "bundles"]
    assert any(line.split()[:3] == ["webserver", "yes", "yes"] or
               line.split()[:2] == ["webserver", "yes"] for line in groups.splitlines())
    bundles = info(demo_repo, "bundles").stdout.split()
    assert {"base", "ssh", "web", "db"} <= set(bundles)
    plugins = info(demo_repo, "plugins").stdout
    for name in ("Metadata", "Bundler", "Rules", "Cfg", "Probes", "DefaultACL"):
        assert name in plugins


@pytest.mark.parametrize("host", DEMO_CLIENTS)
def test_build_prints_a_configuration_for_each_demo_host(demo_repo, host):
    out = info(demo_repo, "build", host).stdout
    config = lxml.etree.fromstring(out.encode())
    assert config.tag == "Configuration" and config.get("version") == "2.0"
    names = [b.get("name") for b in config]
    assert "base" in names and names == sorted(names)
    motd = config.find(".//Path[@name='/etc/motd']")
    assert motd is not None and motd.get("failure") is None and motd.text


def test_showclient(demo_repo):
    out = info(demo_repo, "showclient", "db1.demo.example").stdout
    fields = dict(line.split(":", 1) for line in out.splitlines())
    assert fields["Hostname"].strip() == "db1.demo.example"
    assert fields["Profile"].strip() == "dbserver"
    assert "dbserver" in fields["Groups"]


def test_buildfile_prints_one_entry(demo_repo):
    out = info(demo_repo, "buildfile", "/etc/motd", "db1.demo.example").stdout
    entry = lxml.etree.fromstring(out.encode())
    assert entry.tag == "Path" and entry.get("name") == "/etc/motd"
    assert entry.get("type") == "file" and entry.get("mode")
    missing = info(demo_repo, "buildfile", "/etc/nowhere", "db1.demo.example", check=False)
    assert missing.returncode == 1
    assert 'failure="no matching generator"' in missing.stdout


def test_build_writes_file(demo_repo, tmp_path):
    target = tmp_path / "web1.xml"
    info(demo_repo, "build", "web1.demo.example", "-f", str(target))
    assert lxml.etree.parse(str(target)).getroot().tag == "Configuration"


def test_bad_option_is_one_clear_line(tmp_path):
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\numask = 9z\n")
    proc = subprocess.run([sys.executable, "-m", "bcfg2_cherry", "info", "-C", str(conf),
                           "clients"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bcfg2-cherry: %s: [server] umask = 9z: expected an " \
        "octal number" % conf


def test_no_metadata_plugin_exits_non_zero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bcfg2_cherry", "info", "-Q",
                           str(tmp_path), "--plugins", "Bundler", "clients"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "No Metadata Plugin" in proc.stderr
