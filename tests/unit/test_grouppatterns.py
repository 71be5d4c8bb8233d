"""The GroupPatterns plugin through the Core: NamePattern, NameRange, reloads
(spec/repository.md §9)."""
import logging
import os
import time

import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.plugins.grouppatterns import PatternMap
from bcfg2_cherry.server.local_core import LocalCore

GROUPS = """<Groups>
  <Group name="base" profile="true" default="true"/>
  <Group name="compute"><Bundle name="slurm"/></Group>
</Groups>"""

CONFIG = r"""<GroupPatterns>
  <GroupPattern>
    <NamePattern>^(web|db)(\d+)\.example\.com$</NamePattern>
    <Group>$1-server</Group>
    <Group>rack-$2</Group>
  </GroupPattern>
  <GroupPattern>
    <NameRange>cn[[1-16,20-24]]</NameRange>
    <Group>compute</Group>
  </GroupPattern>
  <GroupPattern>
    <NamePattern>example\.com</NamePattern>
    <NamePattern>^cn</NamePattern>
    <Group>site</Group>
  </GroupPattern>
  <GroupPattern>
    <NamePattern>(unclosed</NamePattern>
    <Group>never</Group>
  </GroupPattern>
</GroupPatterns>"""


def make_core(tmp_path, config=CONFIG, filemonitor="pseudo", extra=""):
    repo = tmp_path / "repo"
    (repo / "Metadata").mkdir(parents=True)
    (repo / "Metadata" / "groups.xml").write_text(GROUPS)
    (repo / "Metadata" / "clients.xml").write_text("<Clients/>")
    if config is not None:
        (repo / "GroupPatterns").mkdir()
        (repo / "GroupPatterns" / "config.xml").write_text(config)
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\nplugins = Metadata, GroupPatterns\n"
                    "filemonitor = %s\n%s" % (repo, filemonitor, extra))
    core = LocalCore(Settings(str(conf)))
    core.load()
    return core


@pytest.fixture
def core(tmp_path):
    core = make_core(tmp_path)
    yield core
    core.shutdown()


def groups_of(core, name):
    return core.plugins["GroupPatterns"].get_additional_groups(
        core.metadata.get_initial_metadata(name))


def test_name_pattern_with_substitution(core):
    assert groups_of(core, "web12.example.com") == ["web-server", "rack-12", "site"]
    assert groups_of(core, "db3.example.com") == ["db-server", "rack-3", "site"]
    # searched, not anchored, unless the pattern anchors itself
    assert groups_of(core, "xweb1.example.com.au") == ["site"]


def test_name_range(core):
    for name in ("cn1", "cn16", "cn20", "cn24", "cn7.example.com"):
        assert "compute" in groups_of(core, name), name
    for name in ("cn17", "cn19", "cn25", "cn0", "xcn5"):
        assert "compute" not in groups_of(core, name), name


def test_groups_reach_metadata(core):
    md = core.build_metadata("cn7.example.com")
    assert md.groups == {"base", "compute", "site"}
    assert md.bundles == {"slurm"}


def test_bad_pattern_logged_and_skipped(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    core = make_core(tmp_path)
    try:
        assert any("(unclosed" in r.getMessage() for r in caplog.records)
        assert "never" not in groups_of(core, "unclosed")
    finally:
        core.shutdown()


def test_missing_config_is_created(tmp_path):
    core = make_core(tmp_path, config=None)
    try:
        assert (tmp_path / "repo/GroupPatterns/config.xml").read_text().strip() == \
            "<GroupPatterns/>"
        assert groups_of(core, "web1.example.com") == []
    finally:
        core.shutdown()


def test_pattern_map_details():
    assert PatternMap(pattern=r"^(a)(b)?x", groups=["g-$1-$2-$3"]).process("ax") == \
        ["g-a--$3"]
    assert PatternMap(rangestr="n[[5-]]", groups=["big"]).process("n500") == ["big"]
    assert PatternMap(rangestr="r[[1-2]]u[[3]]", groups=["g"]).process("r2u3") == ["g"]
    assert PatternMap(rangestr="r[[1-2]]u[[3]]", groups=["g"]).process("r2u4") is None


def test_change_expires_metadata_cache(tmp_path):
    core = make_core(tmp_path, filemonitor="inotify",
                     extra="[caching]\nclient_metadata = aggressive\n")
    try:
        assert "site" in core.build_metadata("web1.example.com").groups
        path = tmp_path / "repo/GroupPatterns/config.xml"
        tmp = path.with_name("config.xml.tmp")
        tmp.write_text(CONFIG.replace("<Group>site</Group>", "<Group>moved</Group>"))
        os.replace(tmp, path)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            core.handle_events(settle=0.05)
            if "moved" in core.build_metadata("web1.example.com").groups:
                break
        groups = core.build_metadata("web1.example.com").groups
        assert "moved" in groups and "site" not in groups
    finally:
        core.shutdown()
