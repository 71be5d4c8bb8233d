"""POSIXCompat and ServiceCompat through the Core, with the real Metadata plugin
deciding the client version (spec/repository.md §15)."""
import logging

import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.server.core import ClientAddress
from bcfg2_cherry.server.local_core import LocalCore

GROUPS = """<Groups>
  <Group name="base" profile="true" default="true"><Bundle name="base"/></Group>
</Groups>"""

#: client name -> clients.xml version attribute (None: none declared)
VERSIONS = {
    "old.example.com": "1.2.4",
    "unknown.example.com": None,
    "garbled.example.com": "one.two",
    "pre.example.com": "1.3.0pre1",
    "rc.example.com": "1.3.0rc2",
    "final.example.com": "1.3.0",
    "new.example.com": "1.4.0pre2",
}
OLD = ["old.example.com", "unknown.example.com", "garbled.example.com"]
NEW = ["pre.example.com", "rc.example.com", "final.example.com", "new.example.com"]

BUNDLE = """<Bundle>
  <BoundPath name="/etc/file" type="file" owner="root" group="root" mode="0640"/>
  <BoundPath name="/etc/link" type="symlink" to="/etc/file"/>
  <Path name="/etc/ruled"/>
  <BoundService name="plain" type="systemd" status="on"/>
  <BoundService name="interactive" type="systemd" status="on" restart="Interactive"/>
  <BoundService name="never" type="systemd" status="on" restart="false" install="FALSE"/>
  <BoundService name="odd" type="systemd" status="on" restart="false"/>
  <Service name="ruled"/>
  <BoundPackage name="pkg" type="deb" version="1">
    <Service name="nested" restart="false" install="false"/>
    <Path name="/nested" mode="0600"/>
  </BoundPackage>
</Bundle>"""

RULES = """<Rules priority="1">
  <Path name="/etc/ruled" type="directory" owner="root" group="root" mode="0755"/>
  <Service name="ruled" type="sysv" status="off" install="false"/>
</Rules>"""


def make_core(tmp_path, plugins="POSIXCompat, ServiceCompat"):
    repo = tmp_path / "repo"
    for sub in ("Metadata", "Bundler", "Rules"):
        (repo / sub).mkdir(parents=True)
    (repo / "Metadata" / "groups.xml").write_text(GROUPS)
    (repo / "Metadata" / "clients.xml").write_text("<Clients>%s</Clients>" % "".join(
        '<Client name="%s" profile="base"%s/>' % (
            name, "" if version is None else ' version="%s"' % version)
        for name, version in VERSIONS.items()))
    (repo / "Bundler" / "base.xml").write_text(BUNDLE)
    (repo / "Rules" / "rules.xml").write_text(RULES)
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\nplugins = Metadata, Bundler, Rules, %s\n"
                    "filemonitor = pseudo\n" % (repo, plugins))
    return LocalCore(Settings(str(conf))).load()


@pytest.fixture
def core(tmp_path):
    core = make_core(tmp_path)
    yield core
    core.shutdown()


def build(core, host):
    config = core.BuildConfiguration(host)
    assert config.tag == "Configuration"
    return config


def by_name(config, tag):
    return {e.get("name"): e for e in config.iter(tag)}


@pytest.mark.parametrize("host", OLD)
def test_old_and_unknown_clients_get_old_style_entries(core, host, caplog):
    caplog.set_level(logging.INFO, logger="bcfg2_cherry.plugins.compat")
    config = build(core, host)
    paths = by_name(config, "Path")
    assert paths["/etc/file"].get("perms") == "0640"
    assert paths["/etc/ruled"].get("perms") == "0755"       # bound by Rules first
    assert "perms" not in paths["/etc/link"].attrib           # no mode, no perms
    assert "perms" not in paths["/nested"].attrib             # only direct children
    modes = {name: e.get("mode") for name, e in by_name(config, "Service").items()}
    assert modes == {"plain": "default", "interactive": "interactive_only",
                     "never": "manual", "odd": "manual", "ruled": "manual",
                     "nested": "manual"}                       # at any depth
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO
            and "old-style Service mode" in r.getMessage()] == [
        "Could not map restart and install settings of Service:%s to an old-style "
        "Service mode for %s; using 'manual'" % (name, host) for name in ("odd", "ruled")]


@pytest.mark.parametrize("host", NEW)
def test_clients_of_1_3_0_or_newer_are_left_alone(core, host):
    config = build(core, host)
    assert not [e for e in config.iter() if "perms" in e.attrib]
    services = by_name(config, "Service")
    assert not [e for e in services.values() if "mode" in e.attrib]
    assert by_name(config, "Path")["/etc/file"].get("mode") == "0640"


def test_declared_version_takes_effect_on_the_next_build(core):
    host = "old.example.com"
    assert by_name(build(core, host), "Path")["/etc/file"].get("perms") == "0640"
    core.DeclareVersion(ClientAddress(("10.0.0.9", 1), host), "1.3.1")
    config = build(core, host)
    assert "perms" not in by_name(config, "Path")["/etc/file"].attrib
    assert "mode" not in by_name(config, "Service")["plain"].attrib


@pytest.mark.parametrize("plugins,perms,mode", [("POSIXCompat", "0640", None),
                                                ("ServiceCompat", None, "default")])
def test_each_plugin_does_only_its_own_part(tmp_path, plugins, perms, mode):
    core = make_core(tmp_path, plugins)
    try:
        config = build(core, "old.example.com")
        assert by_name(config, "Path")["/etc/file"].get("perms") == perms
        assert by_name(config, "Service")["plain"].get("mode") == mode
        assert not (tmp_path / "repo" / plugins).exists()    # no data directory
    finally:
        core.shutdown()
