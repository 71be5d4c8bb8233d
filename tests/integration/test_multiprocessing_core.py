"""What only the multiprocessing core does (the shared protocol is tests/conformance/):
children that render GetConfig one at a time, their death and replacement, cache
expiries and repository edits reaching every child, statistics, and a prompt stop.

Most tests run the core in this process (in a thread) so they can see and kill its
children; the stop test runs ``bcfg2-cherry serve --core multiprocessing``. All serve a
copy of the demo repository plus a Genshi template, ``/etc/demo/slow``, that sleeps
while rendering for web2 when the file ``slow-seconds`` beside the repository says so.
"""
import concurrent.futures
import os
import signal
import subprocess
import threading
import time
import xmlrpc.client

import lxml.etree
import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.resources import demo_repository
from bcfg2_cherry.server.multiprocessing_core import MultiprocessingCore
from tests.support.rawclient import RawClient
from tests.support.servers import (
    copy_repo, free_port, serve_command, server_env, start_server, wait_ready,
    write_config)

pytestmark = pytest.mark.timeout(120)

PLUGINS = "Metadata, Bundler, Rules, Defaults, Cfg, Probes, Decisions, GroupPatterns, " \
          "Properties"
PASSWORD = "demo"
WEB1, WEB2 = "web1.demo.example", "web2.demo.example"
SLOW_TEMPLATE = """\
{% python
import os, time
_flag = os.path.join(os.path.dirname(repo), 'slow-seconds')
_log = os.path.join(os.path.dirname(repo), 'builds.log')
if metadata.hostname == 'web2.demo.example' and os.path.exists(_flag):
    with open(_log, 'a') as _fh:
        _fh.write('%d start %f\\n' % (os.getpid(), time.time()))
    time.sleep(float(open(_flag).read()))
    with open(_log, 'a') as _fh:
        _fh.write('%d end %f\\n' % (os.getpid(), time.time()))
%}\\
rendered for ${metadata.hostname}
"""


def make_repo(directory):
    repo = copy_repo(demo_repository(), os.path.join(str(directory), "repo"))
    slow = os.path.join(repo, "Cfg", "etc", "demo", "slow")
    os.makedirs(slow)
    with open(os.path.join(slow, "slow.genshi"), "w", encoding="utf-8") as fh:
        fh.write(SLOW_TEMPLATE)
    base = os.path.join(repo, "Bundler", "base.xml")
    with open(base, encoding="utf-8") as fh:
        text = fh.read()
    with open(base, "w", encoding="utf-8") as fh:
        fh.write(text.replace('<Path name="/etc/motd"/>',
                              '<Path name="/etc/motd"/>\n  <Path name="/etc/demo/slow"/>'))
    return repo


def make_config(directory, tls, port=0, server=None, extra=""):
    options = {"children": 2, "filemonitor": "inotify"}
    options.update(server or {})
    return write_config(os.path.join(str(directory), "bcfg2.conf"), make_repo(directory),
                        tls=tls, port=port, password=PASSWORD, plugins=PLUGINS,
                        server=options, extra=extra)


class Running:
    """A MultiprocessingCore serving in a thread of this process."""

    def __init__(self, directory, tls, **kwargs):
        self.directory = str(directory)
        self.port = free_port()
        self.tls = tls
        self.core = MultiprocessingCore(Settings(make_config(directory, tls, self.port,
                                                             **kwargs)))
        self.thread = threading.Thread(target=self.core.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not (self.core.ready.is_set() and self.core.server is not None
                   and self.core.server.serve):
            assert self.thread.is_alive(), "the core stopped while starting"
            assert time.monotonic() < deadline, "the core did not start"
            time.sleep(0.05)
        assert self.core.wait_for_children(60)

    def client(self, user=WEB2, password=PASSWORD, timeout=30):
        return RawClient("127.0.0.1", self.port, ca=self.tls.ca_cert, user=user,
                         password=password, timeout=timeout)

    def config(self, user=WEB2):
        return lxml.etree.fromstring(self.client(user).call("GetConfig").encode("utf-8"))

    def slow(self, seconds):
        path = os.path.join(self.directory, "slow-seconds")
        if seconds:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(str(seconds))
        elif os.path.exists(path):
            os.unlink(path)

    def builds(self):
        """``{pid: [(start, end)]}`` of the slow renders so far."""
        result = {}
        try:
            with open(os.path.join(self.directory, "builds.log"), encoding="utf-8") as fh:
                lines = [line.split() for line in fh]
        except FileNotFoundError:
            return result
        open_at = {}
        for pid, what, when in lines:
            if what == "start":
                open_at[pid] = float(when)
            else:
                result.setdefault(pid, []).append((open_at.pop(pid), float(when)))
        return result

    def wait_busy(self, exclude_pids=(), timeout=10):
        """``(name, pid)`` of a child busy rendering (not one of ``exclude_pids``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.core.child_pids()
            for name in self.core.busy_children():
                if name in pids and pids[name] not in exclude_pids:
                    return name, pids[name]
            time.sleep(0.01)
        raise AssertionError("no child became busy")

    def stop(self):
        start = time.monotonic()
        pids = list(self.core.child_pids().values())
        self.core.stop()
        self.thread.join(15)
        assert not self.thread.is_alive()
        return time.monotonic() - start, pids


@pytest.fixture(scope="module")
def shared(tmp_path_factory, test_ca):
    """One running core for tests that leave no trace."""
    srv = Running(tmp_path_factory.mktemp("mp-shared"), test_ca)
    yield srv
    srv.stop()


@pytest.fixture
def fresh(tmp_path, test_ca):
    srv = Running(tmp_path, test_ca)
    yield srv
    srv.stop()


def entry(config, tag, name):
    found = config.xpath("//%s[@name=$n]" % tag, n=name)
    return found[0] if found else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------- rendering

def test_children_render_what_the_builtin_core_would(shared, tmp_path, test_ca):
    """A child's configuration is byte for byte the builtin core's for the same
    repository."""
    conf = make_config(tmp_path, test_ca, server={"filemonitor": "pseudo"})
    builtin = start_server("builtin", conf, tmp_path, tls=test_ca)
    try:
        for user in (WEB1, WEB2):
            expected = builtin.client(user=user, password=PASSWORD).call("GetConfig")
            assert shared.client(user).call("GetConfig") == expected
        assert "rendered for web2.demo.example" in expected
    finally:
        builtin.stop()


def test_a_busy_child_is_never_handed_a_second_configuration(shared):
    """While one child renders a slow configuration, other requests go to the free
    child and finish at once; no child ever renders two at a time."""
    shared.slow(2)
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            slow = pool.submit(shared.config, WEB2)
            shared.wait_busy()
            for _ in range(3):
                start = time.monotonic()
                assert entry(shared.config(WEB1), "Path", "/etc/motd") is not None
                assert time.monotonic() - start < 1.5
            assert slow.result(30) is not None
            # two slow renders at once take both children; neither overlaps itself
            list(pool.map(lambda _: shared.config(WEB2), range(3)))
    finally:
        shared.slow(0)
    builds = shared.builds()
    assert sum(len(v) for v in builds.values()) == 4
    for intervals in builds.values():
        intervals.sort()
        for (_, end), (start, _) in zip(intervals, intervals[1:]):
            assert start >= end


def test_statistics_have_child_and_total_entries(shared):
    shared.config(WEB1)
    shared.config(WEB2)
    stats = shared.client(WEB1).call("get_statistics")
    own = [name for name in stats if name.startswith("Child-")]
    assert own, sorted(stats)
    total = stats["Total:MultiprocessingCore:GetStructures"]
    per_child = [v for k, v in stats.items() if k.endswith(":MultiprocessingCore:"
                                                            "GetStructures")
                 and k.startswith("Child-")]
    assert total[3] == sum(v[3] for v in per_child)
    assert stats["GetConfig"][3] >= 2


def test_child_rmi_reaches_the_children(shared):
    """``__child_rmi__`` names (a plugin's set_debug) run in the parent and in every
    child, before anything sent to that child later."""
    client = shared.client(WEB1)
    rpc_q = shared.core.rpc_q
    try:
        assert client.call("Cfg.set_debug", True) is True
        for name in rpc_q.names():
            assert rpc_q.rpc(name, "Cfg.toggle_debug", timeout=30) is False
    finally:
        assert client.call("Cfg.set_debug", False) is False


# ---------------------------------------------------------------- dying children

def test_a_child_that_dies_is_replaced_and_its_request_answered(fresh):
    fresh.slow(1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        pending = pool.submit(fresh.config, WEB2)
        name, pid = fresh.wait_busy()
        os.kill(pid, signal.SIGKILL)
        config = pending.result(30)
    assert time.monotonic() - start < 15
    assert "rendered for web2.demo.example" in entry(config, "Path", "/etc/demo/slow").text
    fresh.slow(0)
    deadline = time.monotonic() + 30
    while fresh.core.child_pids().get(name) in (None, pid):
        assert time.monotonic() < deadline, "the dead child was not replaced"
        time.sleep(0.05)
    assert fresh.core.wait_for_children(60)
    new_pid = fresh.core.child_pids()[name]
    for _ in range(4):  # both children, the new one included, render
        assert entry(fresh.config(WEB2), "Path", "/etc/motd") is not None
    assert _alive(new_pid)


def test_a_request_whose_children_both_die_gets_a_fault(fresh):
    fresh.slow(2)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(fresh.client(WEB2).call, "GetConfig")
        _, first = fresh.wait_busy()
        os.kill(first, signal.SIGKILL)
        _, second = fresh.wait_busy(exclude_pids=(first,))
        os.kill(second, signal.SIGKILL)
        with pytest.raises(xmlrpc.client.Fault) as err:
            pending.result(30)
    assert err.value.faultCode == -32500
    assert "worker process died" in err.value.faultString
    fresh.slow(0)
    assert fresh.core.wait_for_children(60)
    assert entry(fresh.config(WEB1), "Path", "/etc/motd") is not None


# ---------------------------------------------------------------- what children see

def _service_names(config):
    return sorted(s.get("name") for s in config.iter("Service"))


def test_expiries_and_probe_data_reach_every_child(tmp_path, test_ca):
    """With cached metadata (aggressive), new probe groups from RecvProbeData are in
    the next configuration whichever child renders it."""
    srv = Running(tmp_path, test_ca, extra="\n[caching]\nclient_metadata = aggressive\n")
    try:
        client = srv.client(WEB2)
        for _ in range(2):  # each child caches web2's metadata
            assert "sshd" not in _service_names(srv.config(WEB2))
        for family, service in (("redhat", "sshd"), ("debian", "ssh")):
            data = ('<ProbeData><probe-data name="os" source="Probes">group:%s\n'
                    'Some OS\n</probe-data></ProbeData>' % family)
            assert client.call("RecvProbeData", data) is True
            for _ in range(4):
                assert service in _service_names(srv.config(WEB2)), family
        # an admin expiry reaches the children too
        assert srv.client(WEB1).call("expire_metadata_cache", None) is None
        for _ in range(2):
            assert "ssh" in _service_names(srv.config(WEB2))
    finally:
        srv.stop()


def test_a_profile_just_asserted_is_rendered_by_every_child(tmp_path, test_ca):
    """AssertProfile (the parent writes clients.xml), then at once GetConfig: the
    child re-reads clients.xml before rendering, without waiting for a file event
    (the pseudo monitor here never reports one)."""
    srv = Running(tmp_path, test_ca, server={"filemonitor": "pseudo"})
    try:
        for num in range(4):
            name = "new%d.demo.example" % num
            assert srv.client(name).call("AssertProfile", "webserver") is True
            bundles = sorted(b.get("name") for b in srv.config(name).iter("Bundle"))
            assert "web" in bundles, (name, bundles)
    finally:
        srv.stop()


def test_repository_edits_are_seen_by_every_child(fresh):
    motd = os.path.join(fresh.directory, "repo", "Cfg", "etc", "motd", "motd.G50_webserver")
    for _ in range(2):
        assert "edited" not in entry(fresh.config(WEB2), "Path", "/etc/motd").text
    with open(motd, "w", encoding="utf-8") as fh:
        fh.write("edited while serving\n")
    deadline = time.monotonic() + 15
    while "edited" not in entry(fresh.config(WEB2), "Path", "/etc/motd").text:
        assert time.monotonic() < deadline, "the edit never reached a configuration"
        time.sleep(0.1)
    time.sleep(0.5)  # every child's monitor has had the same event by now
    for _ in range(4):
        assert entry(fresh.config(WEB2), "Path", "/etc/motd").text == \
            "edited while serving\n"


# ---------------------------------------------------------------- stopping

def test_stop_takes_the_children_down_at_once(fresh):
    elapsed, pids = fresh.stop()
    assert elapsed < 3.0
    assert pids and not [pid for pid in pids if _alive(pid)]


def _session_members(sid):
    found = []
    for entry_name in os.listdir("/proc"):
        if not entry_name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry_name, encoding="utf-8") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry_name))
    return found


def test_sigterm_stops_server_and_children_quickly(tmp_path, test_ca):
    conf = make_config(tmp_path, test_ca, server={"filemonitor": "pseudo"})
    srv = start_server("multiprocessing", conf, tmp_path, tls=test_ca)
    try:
        client = srv.client(user=WEB2, password=PASSWORD)
        assert "rendered for" in client.call("GetConfig")
        assert len(_session_members(srv.proc.pid)) >= 4  # server, fork server, 2 children
    finally:
        start = time.monotonic()
        status = srv.stop(timeout=15)
    assert status == 0, srv.log()[-3000:]
    assert time.monotonic() - start < 3.0
    deadline = time.monotonic() + 3
    while _session_members(srv.proc.pid):
        assert time.monotonic() < deadline, _session_members(srv.proc.pid)
        time.sleep(0.05)


def test_daemon_mode_starts_children_after_detaching(tmp_path, test_ca):
    """-D: the command exits 0 once the daemon serves; its children render; SIGTERM
    stops daemon and children and removes the pid file."""
    port = free_port()
    conf = make_config(tmp_path, test_ca, port=port, server={"filemonitor": "pseudo"})
    pidfile = tmp_path / "run" / "server.pid"
    proc = subprocess.run(serve_command("multiprocessing", conf, "-D", str(pidfile)),
                          env=server_env(), timeout=90, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    pid = int(pidfile.read_text().strip())
    try:
        wait_ready("127.0.0.1", port, "https", test_ca.ca_cert, timeout=30)
        client = RawClient("127.0.0.1", port, ca=test_ca.ca_cert, user=WEB2,
                           password=PASSWORD)
        for _ in range(3):
            assert "rendered for" in client.call("GetConfig")
        sid = os.getsid(pid)
        assert len(_session_members(sid)) >= 4
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _session_members(sid):
        assert time.monotonic() < deadline, _session_members(sid)
        time.sleep(0.05)
    assert not pidfile.exists()


def test_children_do_not_outlive_a_killed_parent(tmp_path, test_ca):
    """SIGKILL leaves the parent no time to stop anything: its children (and the fork
    server) notice that their pipe to it is gone and exit by themselves."""
    conf = make_config(tmp_path, test_ca, server={"filemonitor": "pseudo"})
    srv = start_server("multiprocessing", conf, tmp_path, tls=test_ca)
    sid = srv.proc.pid
    try:
        assert "rendered for" in srv.client(user=WEB2, password=PASSWORD).call("GetConfig")
        assert len(_session_members(sid)) >= 4
    finally:
        srv.stop(sig=signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _session_members(sid):
        assert time.monotonic() < deadline, _session_members(sid)
        time.sleep(0.05)
