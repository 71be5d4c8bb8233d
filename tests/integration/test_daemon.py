"""``bcfg2-cherry serve -D PIDFILE``: CherryPy's Daemonizer and PIDFile.

The command returns once the daemon serves (0) or could not start (1, not CherryPy's
unconditional 0); the pid file names the daemon; SIGTERM stops it within a couple of
seconds, the core shuts down once and the pid file is gone.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.servers import (
    ROOT, WIRE_DIR, copy_repo, free_port, server_env, wait_ready, write_config)

pytestmark = pytest.mark.timeout(90)


def alive(pid):
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def daemon(tmp_path, conf, *extra):
    pidfile = tmp_path / "run" / "bcfg2-cherry.pid"  # the directory does not exist yet
    logfile = tmp_path / "daemon.log"
    result = subprocess.run(
        [sys.executable, "-m", "bcfg2_cherry", "serve", "-C", conf, "-D", str(pidfile),
         "-o", str(logfile), *extra], env=server_env(), cwd=ROOT, capture_output=True,
        text=True, timeout=60)
    return result, pidfile, logfile


def test_daemonize_serve_and_stop(tmp_path, test_ca):
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    port = free_port()
    conf = write_config(tmp_path / "bcfg2.conf", repo, tls=test_ca, port=port)
    start = time.monotonic()
    result, pidfile, logfile = daemon(tmp_path, conf, "-d")
    assert result.returncode == 0, result.stderr + logfile.read_text()
    pid = int(pidfile.read_text().strip())
    assert pid != os.getpid() and alive(pid)
    # the foreground process returned only once the daemon was serving
    client_ca = test_ca.ca_cert
    wait_ready("127.0.0.1", port, "https", client_ca, timeout=1)
    from tests.support.rawclient import RawClient
    client = RawClient("127.0.0.1", port, ca=client_ca, password="wiredemo-global")
    assert client.call("DeclareVersion", "1.4.0pre2") is True
    assert time.monotonic() - start < 30

    stop = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    assert wait_gone(pid, 10), "the daemon did not stop"
    assert time.monotonic() - stop < 2.5
    deadline = time.monotonic() + 2
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pidfile.exists()
    log = logfile.read_text()
    assert log.count("Shutting down core") == 1, log[-3000:]


def test_daemon_that_cannot_start_exits_nonzero(tmp_path, test_ca):
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    conf = write_config(tmp_path / "bcfg2.conf", repo, tls=test_ca, port=free_port(),
                        plugins="Bundler, Rules")  # no Metadata plugin
    result, pidfile, logfile = daemon(tmp_path, conf)
    assert result.returncode == 1, result.stderr
    time.sleep(0.2)
    assert not pidfile.exists()
    assert "No Metadata Plugin" in logfile.read_text()


def test_daemon_refuses_a_busy_port_before_forking(tmp_path, test_ca):
    import socket
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        conf = write_config(tmp_path / "bcfg2.conf", repo, tls=test_ca,
                            port=busy.getsockname()[1])
        result, pidfile, _ = daemon(tmp_path, conf)
    assert result.returncode == 1
    assert not pidfile.exists()
