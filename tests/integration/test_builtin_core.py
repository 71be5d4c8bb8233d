"""What only the builtin core does (the shared protocol is tests/conformance/): its
HTTP/1.0 response shape, TLS handshakes off the accepting thread, the listen backlog,
signals, and ``-D`` with python-daemon and a pid lock file.

Servers are real ``bcfg2-cherry serve --core builtin`` subprocesses on 127.0.0.1 with
the session test CA, serving a copy of the demo repository.
"""
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from bcfg2_cherry.resources import demo_repository
from tests.support.rawclient import RawClient, basic_auth, call_body, request_bytes
from tests.support.servers import (
    copy_repo, free_port, serve_command, server_env, start_server, wait_ready,
    write_config)

pytestmark = pytest.mark.timeout(90)

PLUGINS = "Metadata, Bundler, Rules, Defaults, Cfg, Probes, Decisions, GroupPatterns, " \
          "Properties"
PASSWORD = "demo:with:colons"
WEB2 = "web2.demo.example"


def demo_config(directory, tls, port=0, server=None):
    repo = copy_repo(demo_repository(), os.path.join(str(directory), "repo"))
    return write_config(os.path.join(str(directory), "bcfg2.conf.in"), repo, tls=tls,
                        port=port, password=PASSWORD, plugins=PLUGINS, server=server)


@pytest.fixture(scope="module")
def builtin(tmp_path_factory, test_ca):
    directory = tmp_path_factory.mktemp("builtin")
    conf = demo_config(directory, test_ca, server={"socket_timeout": 2})
    srv = start_server("builtin", conf, directory, tls=test_ca)
    yield srv
    srv.stop()


def raw_exchange(srv, raw):
    """Send raw bytes on a new TLS connection; return everything the server sent
    before it closed the connection."""
    sock = srv.client().connect()
    try:
        sock.sendall(raw)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        sock.close()


def test_response_shape_is_upstreams(builtin):
    """HTTP/1.0 200, upstream's header names, exact Content-length; then the server
    closes the connection (wire/README.md observation 2)."""
    body = call_body("DeclareVersion", "1.4.0pre2")
    data = raw_exchange(builtin, request_bytes("127.0.0.1", builtin.port, body,
                                               auth=basic_auth(WEB2, PASSWORD)))
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.0 200 OK"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-type"] == "text/xml"
    assert int(headers["Content-length"]) == len(payload)
    assert payload.startswith(b"<?xml version='1.0'?>\n<methodResponse>")
    assert b"<boolean>1</boolean>" in payload
    assert headers["Server"].startswith("BaseHTTP/")


def test_no_delayed_ack_stall_for_clients_without_nodelay(builtin):
    """A client that does not set TCP_NODELAY sends its request right after its TLS
    Finished; unless the server answers the Finished at once (TLS 1.3 session tickets
    do), the request waits for a delayed ACK: 40 ms on every call."""
    client = builtin.client(user=WEB2, password=PASSWORD)
    body = call_body("DeclareVersion", "1.4.0pre2")
    times = []
    for _ in range(9):
        sock = socket.create_connection(("127.0.0.1", builtin.port), 5)
        start = time.monotonic()
        try:
            tls = client.context.wrap_socket(sock)
            tls.sendall(request_bytes("127.0.0.1", builtin.port, body, auth=client.auth))
            assert tls.recv(12) == b"HTTP/1.0 200"
        finally:
            sock.close()
        times.append(time.monotonic() - start)
    assert sorted(times)[4] < 0.035, times


def test_password_is_split_at_the_first_colon(builtin):
    client = builtin.client(user=WEB2, password=PASSWORD)
    assert client.call("DeclareVersion", "1.4.0pre2") is True
    bad = builtin.client(user=WEB2, password=PASSWORD.split(":")[0])
    assert bad.request(call_body("DeclareVersion", "x")).status == 401


def test_401_has_a_challenge_and_no_traceback(builtin):
    resp = builtin.client(user=WEB2, password="wrong").request(call_body("GetConfig"))
    assert resp.status == 401
    assert resp.version == 10
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    assert b"Traceback" not in resp.body


def test_missing_content_length_is_411(builtin):
    head = ("POST /RPC2 HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
            "Content-Type: text/xml\r\n\r\n" % basic_auth(WEB2, PASSWORD)).encode()
    data = raw_exchange(builtin, head)
    assert data.startswith(b"HTTP/1.0 411 ")


def test_short_body_times_out_alone(builtin):
    """A body shorter than its Content-Length: the read times out (socket_timeout
    = 2 here) and the connection is dropped without an answer; other clients are
    served meanwhile."""
    raw = request_bytes("127.0.0.1", builtin.port, b"<methodCall>",
                        auth=basic_auth(WEB2, PASSWORD),
                        extra=()).replace(b"Content-Length: 12", b"Content-Length: 99")
    sock = builtin.client().connect()
    try:
        sock.sendall(raw)
        start = time.monotonic()
        assert builtin.client(user=WEB2, password=PASSWORD).call(
            "DeclareVersion", "1.4.0pre2") is True
        assert time.monotonic() - start < 1.5
        sock.settimeout(10)
        assert sock.recv(100) == b""  # closed after the timeout, nothing sent
    finally:
        sock.close()


def test_idle_tls_connections_hold_no_one_up(builtin):
    """Connections that finished their TLS handshake and then say nothing, and ones
    that never start it: new clients are served at once, and the idle ones are closed
    after the socket timeout (2 s here)."""
    idle, silent = [], []
    try:
        for _ in range(20):
            idle.append(builtin.client().connect())  # handshake done, no request
            silent.append(socket.create_connection(("127.0.0.1", builtin.port), 5))
        client = builtin.client(user=WEB2, password=PASSWORD, timeout=5)
        for _ in range(3):
            start = time.monotonic()
            assert client.call("DeclareVersion", "1.4.0pre2") is True
            assert time.monotonic() - start < 1.5
        idle[0].settimeout(10)
        start = time.monotonic()
        assert idle[0].recv(10) == b""
        assert time.monotonic() - start < 5
        silent[0].settimeout(10)
        try:
            assert silent[0].recv(10) == b""
        except ConnectionResetError:
            pass
    finally:
        for sock in idle + silent:
            sock.close()


def test_plain_http_to_the_tls_port_is_dropped(builtin):
    sock = socket.create_connection(("127.0.0.1", builtin.port), 5)
    try:
        sock.sendall(b"POST /RPC2 HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    finally:
        sock.close()
    assert builtin.client(user=WEB2, password=PASSWORD).call("DeclareVersion", "1") is True


def test_listen_backlog_comes_from_socket_queue_size(tmp_path, test_ca):
    from bcfg2_cherry.options import Settings
    from bcfg2_cherry.server.builtin_core import BuiltinCore
    conf = demo_config(tmp_path, test_ca, port=free_port(),
                       server={"socket_queue_size": 77})
    core = BuiltinCore(Settings(conf))
    try:
        assert core._run()  # pylint: disable=protected-access
        assert core.server.request_queue_size == 77
        assert core.bound_address[0] == "127.0.0.1"
    finally:
        core.shutdown()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_within_a_second(tmp_path, test_ca, sig):
    srv = start_server("builtin", demo_config(tmp_path, test_ca), tmp_path, tls=test_ca)
    idle = srv.client().connect()  # an idle connection must not delay the stop
    try:
        start = time.monotonic()
        assert srv.stop(sig=sig, timeout=10) == 0, srv.log()[-2000:]
        assert time.monotonic() - start < 1.5
    finally:
        idle.close()


def test_startup_failure_exits_1(tmp_path, test_ca):
    """Port taken: exit status 1, foreground and with -D (the waiting parent reports
    the daemon's failure instead of exiting 0)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        conf = demo_config(tmp_path, test_ca, port=port)
        conf_path = conf.replace(".in", "")
        os.rename(conf, conf_path)
        for extra in ((), ("-D", str(tmp_path / "run" / "server.pid"))):
            proc = subprocess.run(serve_command("builtin", conf_path, *extra),
                                  env=server_env(), timeout=60, capture_output=True)
            assert proc.returncode == 1, proc.stderr.decode()[-2000:]
        assert not (tmp_path / "run" / "server.pid").exists()


def _daemon(tmp_path, test_ca, pidfile, port):
    directory = tmp_path / ("d%d" % port)
    directory.mkdir()
    conf = demo_config(directory, test_ca, port=port)
    conf_path = conf.replace(".in", "")
    os.rename(conf, conf_path)
    return subprocess.run(serve_command("builtin", conf_path, "-D", str(pidfile)),
                          env=server_env(), timeout=60, capture_output=True)


def _wait_gone(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_daemon_pid_file(tmp_path, test_ca):
    """-D: the command returns 0 once the daemon serves; the pid file holds the
    daemon's pid; a second start aborts while it lives; SIGTERM stops it and removes
    the pid file; a stale pid file (dead process) is broken."""
    pidfile = tmp_path / "run" / "bcfg2.pid"
    port = free_port()
    proc = _daemon(tmp_path, test_ca, pidfile, port)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    pid = int(pidfile.read_text().strip())
    try:
        wait_ready("127.0.0.1", port, "https", test_ca.ca_cert, timeout=10)
        client = RawClient("127.0.0.1", port, ca=test_ca.ca_cert, user=WEB2,
                           password=PASSWORD)
        assert client.call("DeclareVersion", "1.4.0pre2") is True

        again = _daemon(tmp_path, test_ca, pidfile, free_port())
        assert again.returncode == 1
        assert int(pidfile.read_text().strip()) == pid
    finally:
        os.kill(pid, signal.SIGTERM)
    assert _wait_gone(pid), "daemon still running after SIGTERM"
    assert not pidfile.exists()

    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile.write_text("%d\n" % dead.pid)
    port = free_port()
    proc = _daemon(tmp_path, test_ca, pidfile, port)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    pid = int(pidfile.read_text().strip())
    try:
        assert pid != dead.pid
        wait_ready("127.0.0.1", port, "https", test_ca.ca_cert, timeout=10)
    finally:
        os.kill(pid, signal.SIGTERM)
    assert _wait_gone(pid)


def test_certificate_chain_failure_does_not_stop_the_server(builtin, tmp_path):
    """A client certificate from another CA fails its own handshake only."""
    import trustme
    other = trustme.CA()
    leaf = other.issue_cert(WEB2)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    client = builtin.client(user=WEB2, password=PASSWORD, cert=str(cert), key=str(key))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        client.call("DeclareVersion", "1")
    assert builtin.client(user=WEB2, password=PASSWORD).call("DeclareVersion", "1") is True
