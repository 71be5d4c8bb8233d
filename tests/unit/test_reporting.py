"""Reporting: the latest statistics of each client, stored from the plugin's thread,
and queued uploads kept across a restart (ThreadedStatistics)."""
import time

import lxml.etree
import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.server.core import ClientAddress
from tests.unit import fakeplugins as fp
from tests.support.cores import TestNetworkCore

PLUGINS = ["tests.unit.fakeplugins:FakeMetadata", "Reporting"]


def make_core(tmp_path, plugins):
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\nplugins = %s\nfilemonitor = pseudo\n"
                    % (tmp_path / "repo", ", ".join(plugins)))
    (tmp_path / "repo").mkdir(exist_ok=True)
    return TestNetworkCore(Settings(str(conf))).load()
DOC = ('<upload-statistics><Statistics version="2.0" state="%s" total="2" good="1">'
       '<Good><Path name="/etc/motd" qtext=""/></Good></Statistics></upload-statistics>')


@pytest.fixture(autouse=True)
def clients():
    fp.FakeMetadata.clients = {"web1.example.com": ("10.0.0.1", ["web"], []),
                               "db1.example.com": ("10.0.0.2", ["db"], [])}
    yield


def wait_for_file(path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return lxml.etree.parse(str(path)).getroot()
        time.sleep(0.02)
    raise AssertionError("%s never appeared" % path)


def test_recv_stats_stores_the_latest_document(tmp_path):
    core = make_core(tmp_path, PLUGINS)
    try:
        addr = ClientAddress(("10.0.0.1", 1))
        assert core.RecvStats(addr, DOC % "dirty") is True
        stored = wait_for_file(tmp_path / "repo" / "Reporting" / "web1.example.com.xml")
        stats = stored.find("Statistics")
        assert stats.get("state") == "dirty" and stats.get("time")
        assert stored.find("Statistics/Good/Path").get("name") == "/etc/motd"
        core.RecvStats(addr, DOC % "clean")
        path = tmp_path / "repo" / "Reporting" / "web1.example.com.xml"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "clean" not in path.read_text():
            time.sleep(0.02)
        assert lxml.etree.parse(str(path)).getroot().find("Statistics").get("state") == \
            "clean"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    finally:
        core.shutdown()


def test_queued_statistics_survive_a_restart(tmp_path):
    core = make_core(tmp_path, PLUGINS)
    plugin = core.plugins["Reporting"]
    core.terminate.set()          # the plugin's thread stops taking work
    plugin.join(2)
    md = core.build_metadata("db1.example.com")
    plugin.process_statistics(md, lxml.etree.fromstring(DOC % "dirty"))
    core.shutdown()
    pending = tmp_path / "repo" / "etc" / "Reporting.pending"
    assert pending.exists()
    assert not (tmp_path / "repo" / "Reporting" / "db1.example.com.xml").exists()

    again = make_core(tmp_path, PLUGINS)
    try:
        stored = wait_for_file(tmp_path / "repo" / "Reporting" / "db1.example.com.xml")
        assert stored.find("Statistics").get("state") == "dirty"
        assert not pending.exists()
    finally:
        again.shutdown()


def test_unsafe_client_names_are_not_used_as_file_names(tmp_path):
    core = make_core(tmp_path, PLUGINS)
    try:
        plugin = core.plugins["Reporting"]
        for bad in ("../evil", ".hidden", ""):
            with pytest.raises(ValueError):
                plugin.path_for(bad)
    finally:
        core.shutdown()
