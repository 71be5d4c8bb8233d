"""clients.xml write-back under concurrency, across processes, into included files,
and a broken groups.xml while the server runs (spec/repository.md §1.7)."""
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.plugins.metadata import clients_xml_lock, lock_file_path
from bcfg2_cherry.server.core import ClientAddress
from bcfg2_cherry.server.errors import Fault
from bcfg2_cherry.xml import XINCLUDE_NS, parse_repo_file
from tests.support.cores import TestNetworkCore

GLOBAL = "global-pw"

GROUPS = """<Groups>
  <Group name="pub" profile="true" public="true"><Bundle name="b-pub"/></Group>
  <Group name="base" profile="true" default="true"><Bundle name="b-base"/></Group>
</Groups>
"""

CLIENTS = """<?xml version="1.0" encoding="UTF-8"?>
<!-- before the root: kept -->
<Clients xmlns:xi="http://www.w3.org/2001/XInclude">
  <!-- pre-existing clients: Grüße -->
  <Client name="old1.example.com" profile="base" address="10.1.0.1"/>
  <!-- second -->
  <Client name="old2.example.com" profile="base" password="pw2">
    <Alias name="old2-alias.example.com"/>
  </Client>
  <xi:include href="clients.d/*.xml"/>
  <Client name="old3.example.com" profile="pub"/>
</Clients>
"""

INCLUDED = """<Clients>
  <!-- an included client -->
  <Client name="inc1.example.com" profile="base"/>
</Clients>
"""




@pytest.fixture
def repo(tmp_path):
    meta = tmp_path / "repo" / "Metadata"
    (meta / "clients.d").mkdir(parents=True)
    (meta / "groups.xml").write_text(GROUPS)
    (meta / "clients.xml").write_text(CLIENTS)
    (meta / "clients.d" / "inc.xml").write_text(INCLUDED)
    return tmp_path / "repo"


def start_core(tmp_path, repo, filemonitor="inotify", monitor_thread=True):
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\nplugins = Metadata\nfilemonitor = %s\n"
                    "[communication]\npassword = %s\n" % (repo, filemonitor, GLOBAL))
    core = TestNetworkCore(Settings(str(conf)))
    core.load()
    if monitor_thread:
        # the core's real file monitor thread, as a network core runs it
        core.fam_thread.start()
    return core


@pytest.fixture
def core(tmp_path, repo):
    core = start_core(tmp_path, repo)
    yield core
    core.shutdown()


def clients_on_disk(repo):
    root = parse_repo_file(str(repo / "Metadata" / "clients.xml")).getroot()
    return {c.get("name"): dict(c.attrib) for c in root.iter("Client")}


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    raise AssertionError("condition not reached within %ss" % timeout)


def test_fifty_concurrent_new_clients(core, repo):
    count = 50
    barrier = threading.Barrier(count)
    errors = []

    def run(i):
        try:
            name = "new%02d.example.com" % i
            address = ("10.2.0.%d" % (i + 1), 30000 + i)
            barrier.wait()
            ok, client = core.authenticate_client(None, name, GLOBAL, address)
            assert (ok, client) == (True, name)
            assert core.AssertProfile(ClientAddress(address, client), "pub") is True
            address = (address[0], 40000 + i)
            ok, client = core.authenticate_client(None, name, GLOBAL, address)
            assert core.DeclareVersion(ClientAddress(address, client),
                                       "1.4.%d" % i) is True
            # pre-existing clients are written at the same time, one in an include
            if i % 10 == 0:
                core.metadata.set_version("old1.example.com", "9.%d" % i)
                core.metadata.set_version("inc1.example.com", "8.%d" % i)
                core.metadata.set_version("old2-alias.example.com", "7.%d" % i)
        except Exception as err:  # pylint: disable=broad-except
            errors.append((i, err))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors

    text = (repo / "Metadata" / "clients.xml").read_text(encoding="utf-8")
    assert text.startswith("<?xml")
    for comment in ("before the root: kept", "pre-existing clients: Grüße", "second"):
        assert comment in text
    root = parse_repo_file(str(repo / "Metadata" / "clients.xml")).getroot()
    assert len(root.findall("{%s}include" % XINCLUDE_NS)) == 1
    on_disk = clients_on_disk(repo)
    for i in range(count):
        name = "new%02d.example.com" % i
        assert on_disk[name] == {"name": name, "uuid": name, "profile": "pub",
                                 "address": "10.2.0.%d" % (i + 1),
                                 "version": "1.4.%d" % i}
    assert {"old1.example.com", "old2.example.com", "old3.example.com"} <= set(on_disk)
    assert "inc1.example.com" not in on_disk
    assert on_disk["old2.example.com"]["password"] == "pw2"
    assert on_disk["old1.example.com"]["version"].startswith("9.")
    assert on_disk["old2.example.com"]["version"].startswith("7.")
    included = parse_repo_file(str(repo / "Metadata/clients.d/inc.xml")).getroot()
    assert included.find("Client").get("version").startswith("8.")
    assert "an included client" in (repo / "Metadata/clients.d/inc.xml").read_text()
    # the server's own view, without waiting for file events
    listed = core.metadata.list_clients()
    assert len(listed) == count + 4 and len(set(listed)) == count + 4
    for i in range(count):
        metadata = core.build_metadata("new%02d.example.com" % i)
        assert metadata.profile == "pub" and metadata.version == "1.4.%d" % i
    # nothing left behind
    leftovers = [n for n in os.listdir(repo / "Metadata") if n.endswith(".new")]
    assert leftovers == []


def test_writer_in_another_process_is_waited_for(core, repo):
    path = str(repo / "Metadata" / "clients.xml")
    script = (
        "import sys, time\n"
        "from bcfg2_cherry.plugins.metadata import clients_xml_lock, edit_client\n"
        "with clients_xml_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(0.5)\n"
        "    edit_client(sys.argv[1], 'admin-added.example.com',\n"
        "                create={'profile': 'base'})\n")
    proc = subprocess.Popen([sys.executable, "-c", script, path],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        start = time.monotonic()
        core.metadata.set_version("old3.example.com", "2.0")
        waited = time.monotonic() - start
    finally:
        proc.wait(10)
    assert proc.returncode == 0
    assert waited > 0.2
    on_disk = clients_on_disk(repo)
    assert on_disk["old3.example.com"]["version"] == "2.0"
    assert on_disk["admin-added.example.com"]["profile"] == "base"
    # our write re-read the file under the lock, so the admin's client is known too
    assert "admin-added.example.com" in core.metadata.list_clients()
    assert os.path.basename(lock_file_path(path)) == ".clients.xml.lock"


def test_lock_is_reentrant_and_serializes_threads(repo):
    path = str(repo / "Metadata" / "clients.xml")
    inside = []

    def worker(i):
        with clients_xml_lock(path):
            with clients_xml_lock(path):
                inside.append(i)
                time.sleep(0.01)
                assert inside[-1] == i
                inside.append(-i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(inside) == 16
    for pos in range(0, 16, 2):
        assert inside[pos] == -inside[pos + 1]


def test_profile_change_in_included_file(core, repo):
    address = ("10.3.0.1", 1)
    core.AssertProfile(ClientAddress(address, "inc1.example.com"), "pub")
    included = (repo / "Metadata/clients.d/inc.xml").read_text()
    assert 'profile="pub"' in included and "an included client" in included
    assert "inc1" not in (repo / "Metadata/clients.xml").read_text()
    assert core.build_metadata("inc1.example.com").profile == "pub"
    # asserting the same profile again writes nothing
    stat = os.stat(repo / "Metadata/clients.d/inc.xml")
    core.AssertProfile(ClientAddress(address, "inc1.example.com"), "pub")
    assert os.stat(repo / "Metadata/clients.d/inc.xml").st_ino == stat.st_ino


def test_write_refused_while_clients_xml_is_broken(tmp_path, repo):
    core = start_core(tmp_path, repo, filemonitor="pseudo", monitor_thread=False)
    try:
        broken = "<Clients><Client name='x'"
        (repo / "Metadata/clients.xml").write_text(broken)
        with pytest.raises(Fault, match="Cannot update client"):
            core.DeclareVersion(ClientAddress(("10.1.0.1", 1), "old1.example.com"),
                                "3.0")
        assert (repo / "Metadata/clients.xml").read_text() == broken
        # the last good tables still serve
        assert core.build_metadata("old1.example.com").profile == "base"
    finally:
        core.shutdown()


def test_broken_groups_xml_mid_run(core, repo, caplog):
    caplog.set_level(logging.ERROR)
    groups = repo / "Metadata" / "groups.xml"
    assert core.build_metadata("old3.example.com").bundles == {"b-pub"}
    tmp = groups.with_name("groups.xml.tmp")
    tmp.write_text(GROUPS.replace("</Groups>", "<Group name='x'>\n</Groups>"))
    os.replace(tmp, groups)
    wait_until(lambda: any("groups.xml" in r.getMessage() for r in caplog.records
                           if r.levelno >= logging.ERROR))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "line" in errors[0]
    # the old groups keep serving
    assert core.build_metadata("old3.example.com").bundles == {"b-pub"}
    assert core.build_metadata("old1.example.com").bundles == {"b-base"}
    # the fixed file is picked up by the file monitor, without a restart
    tmp.write_text(GROUPS.replace('<Bundle name="b-pub"/>', '<Bundle name="b-fixed"/>'))
    os.replace(tmp, groups)
    wait_until(lambda: core.build_metadata("old3.example.com").bundles == {"b-fixed"})
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def test_poll_monitor_picks_up_changes_with_handle_events(tmp_path, repo):
    core = start_core(tmp_path, repo, filemonitor="poll", monitor_thread=False)
    try:
        groups = repo / "Metadata" / "groups.xml"
        groups.write_text(GROUPS.replace('<Bundle name="b-pub"/>',
                                         '<Bundle name="b-polled"/>'))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            core.handle_events(settle=0.1)
            if core.build_metadata("old3.example.com").bundles == {"b-polled"}:
                break
        assert core.build_metadata("old3.example.com").bundles == {"b-polled"}
    finally:
        core.shutdown()
