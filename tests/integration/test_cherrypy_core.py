"""What is particular to the CherryPy core: its HTTP answers, error mapping, TLS
context, certificate parsing, proxy policy, the demo mode and the ``serve`` command.

The protocol itself (the same for every core) is in tests/conformance/.
"""
import base64
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import xmlrpc.client

import pytest

from bcfg2_cherry.server.dispatch import parse_basic_auth
from bcfg2_cherry.server.errors import AuthenticationFailure, CoreInitError, RequestError
from bcfg2_cherry.server.proxy import ProxyPolicy
from bcfg2_cherry.server import tls
from tests.support.rawclient import RawClient, call_body
from tests.support.servers import (
    ROOT, WIRE_DIR, WIRE_PLUGINS, copy_repo, free_port, server_env,
    start_server, write_config)

pytestmark = pytest.mark.timeout(90)


# ---------------------------------------------------------------- pure functions

@pytest.mark.parametrize("header,expected", [
    ("Basic " + base64.b64encode(b"root:pw").decode(), ("root", "pw")),
    ("basic " + base64.b64encode(b"u:p:with:colons").decode(), ("u", "p:with:colons")),
    ("Basic " + base64.b64encode("k\u00f6ln:caf\u00e9".encode()).decode(),
     ("k\u00f6ln", "caf\u00e9")),
    ("Basic " + base64.b64encode(b"u:").decode(), ("u", "")),
])
def test_basic_auth_parsing(header, expected):
    assert parse_basic_auth(header) == expected


@pytest.mark.parametrize("header", [None, "", "Basic", "Basic ", "Digest abc",
                                    "Basic !!!", "Basic " + base64.b64encode(b"x").decode()])
def test_basic_auth_refusals(header):
    with pytest.raises(AuthenticationFailure):
        parse_basic_auth(header)


@pytest.mark.parametrize("text", [
    "", "plain", "<Configuration a=\"1&amp;2\"><Path name='/x'>&lt;&gt;</Path>"
    "</Configuration>", "]]> & < > \" '", "k\u00f6ln caf\u00e9 \u4e2d\u6587 \U0001f600",
    "tab\tnewline\nreturn\r", "&amp;&&<<>>" * 1000])
def test_string_results_encode_as_xmlrpc_does(text):
    """encode_result's fast path for strings (GetConfig) gives xmlrpc.client's bytes."""
    from bcfg2_cherry.server.dispatch import encode_result
    expected = xmlrpc.client.dumps((text,), methodresponse=True, allow_none=True,
                                   encoding="utf-8").encode("utf-8")
    assert encode_result(text) == expected
    # (an XML parser reads a bare CR as a newline)
    assert xmlrpc.client.loads(encode_result(text).decode("utf-8"))[0] == \
        (text.replace("\r", "\n"),)


def test_other_results_encode_as_before():
    from bcfg2_cherry.server.dispatch import encode_result
    for value, plain in [(True, True), (None, None), (3, 3),
                         ([["Path", "/a&b"]], [["Path", "/a&b"]]),
                         ({"k": b"v<"}, {"k": "v<"}), ({"b", "a"}, ["a", "b"])]:
        assert encode_result(value) == xmlrpc.client.dumps(
            (plain,), methodresponse=True, allow_none=True,
            encoding="utf-8").encode("utf-8")


def test_dispatch_signature_cache_matches_inspect():
    import inspect
    from bcfg2_cherry.server.dispatch import _signature

    class Thing:
        def method(self, address, value, *rest):
            return value

        @classmethod
        def klass(cls, one):
            return one

        def __call__(self, x):
            return x

    for func in (Thing().method, Thing().method, Thing.klass, Thing(), len,
                 lambda a, b=1: a):
        try:
            expected = inspect.signature(func)
        except ValueError:
            continue
        assert _signature(func) == expected


def test_access_log_skipped_unless_enabled():
    import logging
    from bcfg2_cherry.server.cherrypy_core import _access_if_enabled
    calls = []
    log = type("Log", (), {})()
    log.access_log = logging.getLogger("test.bcfg2.access")
    log.access_log.setLevel(logging.WARNING)
    _access_if_enabled(log, lambda: calls.append(1))
    assert calls == []
    log.access_log.setLevel(logging.DEBUG)
    _access_if_enabled(log, lambda: calls.append(1))
    assert calls == [1]
    log.access_log.setLevel(logging.NOTSET)


def _pem(path):
    with open(path, encoding="ascii") as fh:
        return fh.read()


def test_pem_parsing_matches_getpeercert(test_ca):
    """pem_to_dict gives what ssl.SSLSocket.getpeercert() gives for the same cert."""
    cert, key = test_ca.client_cert("web1.wiredemo.test")
    server_ctx = tls.server_context(test_ca.server_cert, test_ca.server_key,
                                    test_ca.ca_cert)
    client_ctx = ssl.create_default_context(cafile=test_ca.ca_cert)
    client_ctx.check_hostname = False
    client_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    seen = {}

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tconn:
            seen["cert"] = tconn.getpeercert()

    thread = threading.Thread(target=serve)
    thread.start()
    with socket.create_connection(listener.getsockname()) as raw:
        with client_ctx.wrap_socket(raw) as tsock:
            try:
                tsock.recv(1)  # until the server has looked and closed
            except (ssl.SSLError, OSError):
                pass
    thread.join(10)
    listener.close()
    ours = tls.pem_to_dict(_pem(cert))
    for key_ in ("subject", "issuer", "subjectAltName", "serialNumber", "notBefore",
                 "notAfter", "version"):
        assert ours[key_] == seen["cert"][key_], key_
    # nginx's $ssl_client_escaped_cert is URL-encoded PEM
    from urllib.parse import quote
    assert tls.pem_to_dict(quote(_pem(cert)))["subject"] == seen["cert"]["subject"]
    assert tls.pem_to_dict("not a certificate") is None


def test_proxy_policy():
    policy = ProxyPolicy(["127.0.0.1", "10.0.0.0/8"], "X-SSL-Client-Cert",
                         "X-SSL-Client-Verify")
    xff = {"X-Forwarded-For": "6.6.6.6, 192.0.2.10"}
    # from a trusted proxy: the last hop, not the client-supplied first entry
    assert policy.resolve(("127.0.0.1", 5000), xff)[0] == ("192.0.2.10", 5000)
    assert policy.resolve(("::ffff:10.1.2.3", 5000), xff)[0] == ("192.0.2.10", 5000)
    # from anyone else: ignored
    assert policy.resolve(("192.0.2.99", 5000), xff, "tlscert") == \
        (("192.0.2.99", 5000), "tlscert")
    # no header from a trusted peer: the peer itself
    assert policy.resolve(("127.0.0.1", 5000), {}) == (("127.0.0.1", 5000), None)
    with pytest.raises(RequestError) as info:
        policy.resolve(("127.0.0.1", 1), {"X-Forwarded-For": "1.2.3.4, nonsense"})
    assert info.value.status == 400
    assert not ProxyPolicy().is_trusted("127.0.0.1")


def test_proxy_certificate_header_needs_success(test_ca):
    from urllib.parse import quote
    cert = quote(_pem(test_ca.client_cert("db1.wiredemo.test")[0]))
    policy = ProxyPolicy(["127.0.0.1"])
    ok = policy.resolve(("127.0.0.1", 1), {"X-SSL-Client-Cert": cert,
                                           "X-SSL-Client-Verify": "SUCCESS"})[1]
    assert (("commonName", "db1.wiredemo.test"),) in ok["subject"]
    for verify in ("NONE", "FAILED:self signed certificate", ""):
        assert policy.resolve(("127.0.0.1", 1), {"X-SSL-Client-Cert": cert,
                                                 "X-SSL-Client-Verify": verify})[1] is None
    # untrusted peer: header ignored, its own TLS certificate counts
    assert policy.resolve(("192.0.2.1", 1), {"X-SSL-Client-Cert": cert,
                                             "X-SSL-Client-Verify": "SUCCESS"},
                          "own")[1] == "own"


# ---------------------------------------------------------------- TLS

def test_protocol_mapping():
    assert tls.minimum_version("xmlrpc/ssl") == ssl.TLSVersion.TLSv1_2
    assert tls.minimum_version("xmlrpc/tlsv1") == ssl.TLSVersion.TLSv1_2
    assert tls.minimum_version("XMLRPC/TLSv1_3") == ssl.TLSVersion.TLSv1_3
    with pytest.raises(CoreInitError):
        tls.minimum_version("xmlrpc/sslv3")


def test_server_context(test_ca, tmp_path):
    ctx = tls.server_context(test_ca.server_cert, test_ca.server_key, test_ca.ca_cert)
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    ctx = tls.server_context(test_ca.server_cert, test_ca.server_key)
    assert ctx.verify_mode == ssl.CERT_NONE
    with pytest.raises(CoreInitError, match="key"):
        tls.server_context(test_ca.server_cert, str(tmp_path / "missing.key"))
    with pytest.raises(CoreInitError):
        tls.server_context(test_ca.server_cert, test_ca.ca_cert)  # not its key


def test_server_context_lists_ciphers_once(test_ca):
    """get_ciphers (cheroot asks on every connection) is computed once, as the plain
    method computes it, handed out as copies and recomputed after set_ciphers."""
    ctx = tls.server_context(test_ca.server_cert, test_ca.server_key, test_ca.ca_cert)
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert ctx.get_ciphers() == plain.get_ciphers() == ssl.SSLContext.get_ciphers(ctx)
    ctx.get_ciphers()[0]["name"] = "changed"
    ctx.get_ciphers().clear()
    assert ctx.get_ciphers() == plain.get_ciphers()
    ctx.set_ciphers("ECDHE+AESGCM")
    plain.set_ciphers("ECDHE+AESGCM")
    assert ctx.get_ciphers() == plain.get_ciphers() == ssl.SSLContext.get_ciphers(ctx)


def test_demo_certificates(tmp_path):
    paths = tls.ensure_demo_certificates(str(tmp_path))
    stamps = {k: os.stat(p).st_mtime_ns for k, p in paths.items()}
    assert oct(os.stat(paths["key"]).st_mode & 0o777) == "0o600"
    ctx = tls.server_context(paths["certificate"], paths["key"], paths["ca"])
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    # reused while valid
    again = tls.ensure_demo_certificates(str(tmp_path))
    assert {k: os.stat(p).st_mtime_ns for k, p in again.items()} == stamps
    # regenerated when it no longer covers the names asked for
    tls.ensure_demo_certificates(str(tmp_path), names=("localhost", "bcfg2.example"))
    cert = tls.pem_to_dict(_pem(paths["certificate"]))
    assert ("DNS", "bcfg2.example") in cert["subjectAltName"]


# ---------------------------------------------------------------- a real server

@pytest.fixture(scope="module")
def server(tmp_path_factory, test_ca):
    directory = tmp_path_factory.mktemp("cherrypy-core")
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), directory / "repo")
    conf = write_config(directory / "bcfg2.conf.in", repo, tls=test_ca,
                        plugins=WIRE_PLUGINS + ", tests.support.oddities:Oddities",
                        server={"max_request_size": "64K", "thread_pool": 4})
    srv = start_server("cherrypy", conf, directory, tls=test_ca)
    yield srv
    srv.stop()


def test_idle_connections_hold_no_worker(server):
    """With 4 worker threads, 12 connections that finished their TLS handshake but
    send no request (and 12 that never handshake) leave every worker free."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    idle = []
    try:
        for _ in range(12):
            idle.append(ctx.wrap_socket(socket.create_connection(
                ("127.0.0.1", server.port), timeout=5)))
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.2)
        client = server.client(timeout=5)
        for _ in range(8):
            start = time.monotonic()
            assert client.call("Oddities.echo", "x") == "x"
            assert time.monotonic() - start < 1.0
    finally:
        for sock in idle:
            sock.close()


def test_401_carries_www_authenticate(server):
    resp = server.client().request(call_body("GetConfig"), auth=False)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert resp.headers["Content-Type"].startswith("text/html")


def test_405_carries_allow(server):
    for method in ("GET", "PUT", "DELETE", "OPTIONS"):
        resp = server.client().request(None, method=method)
        assert resp.status == 405, method
        assert resp.headers["Allow"] == "POST"


def test_errors_never_carry_a_traceback(server):
    client = server.client()
    for resp in (client.request(b"garbage"), client.request(None, method="GET"),
                 client.request(call_body("x"), auth="Basic !!")):
        assert b"Traceback" not in resp.body and b".py" not in resp.body
    assert "Traceback" not in server.log().split("Unexpected error")[0]


def test_faults_keep_their_codes(server):
    client = server.client()
    with pytest.raises(xmlrpc.client.Fault) as info:
        client.call("Oddities.fault")
    assert (info.value.faultCode, info.value.faultString) == \
        (4242, "a fault of the plugin's own")
    with pytest.raises(xmlrpc.client.Fault) as info:
        client.call("Oddities.explode")
    assert info.value.faultCode == 1 and "kaboom" in info.value.faultString


def test_an_unencodable_result_is_a_generic_fault(server):
    with pytest.raises(xmlrpc.client.Fault) as info:
        server.client().call("Oddities.huge")
    assert (info.value.faultCode, info.value.faultString) == \
        (-32603, "Internal server error")
    assert "Unexpected error" in server.log()
    assert server.client().call("Oddities.echo", "still fine") == "still fine"


def test_non_ascii_round_trip(server):
    text = "Grüße ☃ 日本 \U0001f600"
    resp = server.client().request(call_body("Oddities.echo", text))
    assert int(resp.headers["Content-Length"]) == len(resp.body)
    assert resp.value() == text


def test_keep_alive_requests_are_each_authenticated(server):
    client = server.client()
    ok = call_body("DeclareVersion", "x")
    two = (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
           b"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s"
           % (client.auth.encode(), len(ok), ok)) + \
          (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(ok), ok))
    sock = client.connect()
    try:
        sock.sendall(two)
        import http.client
        first = http.client.HTTPResponse(sock)
        first.begin()
        first.read()
        second = http.client.HTTPResponse(sock)
        second.begin()
        assert (first.status, second.status) == (200, 401)
    finally:
        sock.close()


def test_chunked_request_body(server):
    client = server.client()
    body = call_body("Oddities.echo", "chunked")
    raw = (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
           b"Content-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"%x\r\n%s\r\n0\r\n\r\n" % (client.auth.encode(), len(body), body))
    assert client.send(raw).value() == "chunked"
    big = call_body("Oddities.echo", "x" * 70000)
    raw = (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
           b"Content-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"%x\r\n%s\r\n0\r\n\r\n" % (client.auth.encode(), len(big), big))
    assert client.send(raw).status == 413


def test_tls_1_1_is_refused(server, test_ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(raw).do_handshake()


def test_plain_http_to_the_tls_port_does_not_hurt(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        raw.settimeout(5)
        try:
            raw.recv(100)
        except OSError:
            pass
    assert server.client().call("DeclareVersion", "x") is True


# ---------------------------------------------------------------- the serve command

def test_sighup_rereads_bcfg2_conf(tmp_path, test_ca):
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    conf = write_config(tmp_path / "bcfg2.conf.in", repo, tls=test_ca,
                        server={"max_request_size": "1M"})
    srv = start_server("cherrypy", conf, tmp_path, tls=test_ca)
    try:
        body = call_body("DeclareVersion", "x" * 4000)
        assert srv.client().request(body).status == 200
        with open(srv.config, encoding="utf-8") as fh:
            text = fh.read()
        with open(srv.config, "w", encoding="utf-8") as fh:
            fh.write(text.replace("max_request_size = 1M", "max_request_size = 2K"))
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if srv.client().request(body).status == 413:
                break
            time.sleep(0.1)
        assert srv.client().request(body).status == 413
        assert srv.proc.poll() is None  # SIGHUP did not stop or restart it
        assert srv.client().call("DeclareVersion", "y") is True
    finally:
        assert srv.stop() == 0


def _serve(args, timeout=30):
    return subprocess.run([sys.executable, "-m", "bcfg2_cherry", "serve", *args],
                          env=server_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_serve_exits_nonzero_when_it_cannot_listen(tmp_path, test_ca):
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        conf = write_config(tmp_path / "bcfg2.conf", repo, tls=test_ca,
                            port=busy.getsockname()[1])
        result = _serve(["-C", conf])
    assert result.returncode == 1
    assert "Cannot listen" in result.stderr


@pytest.mark.parametrize("problem", ["no metadata", "bad protocol", "missing key"])
def test_serve_exits_nonzero_when_the_core_cannot_start(tmp_path, test_ca, problem):
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    kwargs = {"port": free_port()}
    if problem == "no metadata":
        kwargs["plugins"] = "Bundler, Rules"
    elif problem == "bad protocol":
        kwargs["communication"] = {"protocol": "xmlrpc/sslv2"}
    conf = write_config(tmp_path / "bcfg2.conf", repo, tls=test_ca, **kwargs)
    args = ["-C", conf] + (["--ssl-key", str(tmp_path / "nope.key")]
                           if problem == "missing key" else [])
    result = _serve(args)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_serve_unknown_core(tmp_path):
    result = _serve(["--core", "nosuchcore", "-C", str(tmp_path / "none.conf")])
    assert result.returncode == 1
    assert "no network core named 'nosuchcore'" in result.stderr


def test_demo_serves_the_bundled_repository(tmp_path):
    """The README's first command: ``bcfg2-cherry serve --demo``."""
    port = free_port()
    state = tmp_path / "state"
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcfg2_cherry", "serve", "--demo", "--port", str(port),
         "--state-dir", str(state)], env=server_env(), cwd=ROOT, stdout=log,
        stderr=subprocess.STDOUT)
    log.close()
    try:
        from tests.support.servers import wait_ready
        ca = state / "tls" / "ca.crt"
        deadline = time.monotonic() + 30
        while not ca.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        wait_ready("127.0.0.1", port, "https", str(ca), proc, timeout=30,
                   log=lambda: (tmp_path / "demo.log").read_text())
        client = RawClient("127.0.0.1", port, ca=str(ca), password="demo")
        results = client.client_run(probe_output={"os": "group:debian\n12\n"})
        assert "<Configuration" in results["GetConfig"]
        assert "web1.demo.example" in client.call("Metadata.list_clients")
        # the packaged demo repository is not written to; the state copy is
        assert (state / "demo-repo" / "Metadata" / "clients.xml").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_server_config_comes_from_bcfg2_conf(tmp_path, test_ca):
    from bcfg2_cherry.options import Settings
    from bcfg2_cherry.server.cherrypy_core import CherrypyCore
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    conf = write_config(tmp_path / "bcfg2.conf", repo, tls=test_ca, port=6789)
    core = CherrypyCore(Settings(conf))
    try:
        config = core.server_config()
        assert (config["server.socket_host"], config["server.socket_port"]) == \
            ("127.0.0.1", 6789)
        assert config["server.thread_pool"] == 32
        assert config["server.socket_queue_size"] == 128
        assert config["server.socket_timeout"] == 10
        assert config["server.ssl_context"].verify_mode == ssl.CERT_OPTIONAL
        core.setup.overrides.update(listen_all=True, thread_pool=4,
                                    socket_queue_size=512)
        core.setup.reload()
        config = core.server_config()
        assert config["server.socket_host"] == "0.0.0.0"
        assert (config["server.thread_pool"], config["server.socket_queue_size"]) == \
            (4, 512)
    finally:
        core.shutdown()


def test_cherryd_options(tmp_path, test_ca):
    """--import mounts more on the engine; --cherrypy-config and --environment apply."""
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    conf = write_config(tmp_path / "bcfg2.conf.in", repo, tls=test_ca)
    extra = tmp_path / "cherrypy.conf"
    extra.write_text("[global]\nserver.thread_pool: 7\n")
    srv = start_server("cherrypy", conf, tmp_path, tls=test_ca,
                       args=["--import", "tests.support.extra_app", "--cherrypy-config",
                             str(extra), "--environment", "production"])
    try:
        page = srv.client().request(None, method="GET", path="/extra/", auth=False)
        assert (page.status, page.body) == (200, b"extra page, thread_pool=7")
        assert srv.client().call("DeclareVersion", "x") is True
    finally:
        assert srv.stop() == 0


@pytest.mark.skipif(os.getuid() != 0, reason="dropping privileges needs root")
def test_daemon_drops_privileges(test_ca):
    import pwd
    import tempfile
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="bcfg2-drop-")
    try:
        os.chmod(base, 0o755)
        repo = copy_repo(os.path.join(WIRE_DIR, "repo"), os.path.join(base, "repo"))
        port = free_port()
        # the TLS files stay in root's private test directory: read before the switch
        conf = write_config(os.path.join(base, "bcfg2.conf"), repo, tls=test_ca,
                            port=port, server={"user": "nobody", "group": nobody.pw_gid,
                                               "umask": "0027"})
        pidfile = os.path.join(base, "run", "server.pid")
        result = _serve(["-C", conf, "-D", pidfile, "-o", os.path.join(base, "log")])
        assert result.returncode == 0, result.stderr
        pid = int(open(pidfile).read())
        try:
            with open("/proc/%d/status" % pid) as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            assert status["Uid"].split()[0] == str(nobody.pw_uid)
            assert status["Gid"].split()[0] == str(nobody.pw_gid)
            assert status["Umask"].strip() == "0027"
            # the key was read as root, before the switch: TLS works
            client = RawClient("127.0.0.1", port, ca=test_ca.ca_cert,
                               password="wiredemo-global")
            assert "<probes" in client.call("GetProbes")
        finally:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
            with open("/proc/%d/stat" % pid) as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        assert not os.path.exists(pidfile)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("serial,text", [(0x0816959795927A, "0816959795927A"),
                                         (0xABCD, "ABCD"), (1, "01")])
def test_serial_number_is_written_in_whole_bytes(serial, text):
    """getpeercert() pads the hex serial to whole bytes; so must the proxy path."""
    assert tls._serial_hex(serial) == text
