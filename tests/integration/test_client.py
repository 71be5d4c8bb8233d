"""The protocol client: its requests are byte-identical to upstream's, its failures are
clear, and a client run against a real server gets the configuration.

Two kinds of server are used, both on 127.0.0.1 with real TLS (the session test CA):

- ``WireServer``: a small TLS socket server in this process that records the raw
  request bytes and answers with canned responses, here the ones recorded from upstream
  (tests/conformance/wire/raw, or $BCFG2_WIRE_DIR/raw);
- the real ``bcfg2-cherry serve`` started as a subprocess by tests/support/servers.py
  (fixture ``real_server``, on a copy of the demo repository).
"""
import gzip
import os
import re
import socket
import ssl
import sys
import threading
import time
import xmlrpc.client

import lxml.etree
import pytest

from bcfg2_cherry.cli.main import main
from bcfg2_cherry.client import (
    AuthenticationError,
    CertificateNameError,
    ClientRun,
    ConnectionFailure,
    HTTPError,
    Proxy,
    RunError,
    ServerFault,
    TLSError,
)
from bcfg2_cherry.client.run import run_probe
from bcfg2_cherry.resources import demo_repository
from tests.support.servers import (
    WIRE_DIR,
    available_cores,
    copy_repo,
    free_port,
    server_env,
    start_server,
    wait_ready,
    write_config,
)

pytestmark = pytest.mark.timeout(60)

WIRE = os.path.join(WIRE_DIR, "raw")
if not os.path.isdir(WIRE):
    WIRE = None
needs_wire = pytest.mark.skipif(WIRE is None, reason="recorded upstream exchanges "
                                "(wire/raw) not available")


def wire(name):
    """The bytes of one recorded file, e.g. ``wire("01-a-address-DeclareVersion.request")``."""
    with open(os.path.join(WIRE, name), "rb") as fh:
        return fh.read()


def http_response(body, status="200 OK", headers=()):
    """Raw bytes of an HTTP/1.0 response like upstream's builtin server sends."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    head = ["HTTP/1.0 %s" % status, "Server: test", "Content-type: text/xml",
            "Content-length: %d" % len(body)] + list(headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def xmlrpc_response(value):
    return http_response(xmlrpc.client.dumps((value,), methodresponse=True,
                                             allow_none=True))


def method_of(raw):
    """The methodName of a raw HTTP request."""
    match = re.search(rb"<methodName>([^<]*)</methodName>", raw)
    return match.group(1).decode() if match else None


def params_of(raw):
    body = raw.split(b"\r\n\r\n", 1)[1]
    return xmlrpc.client.loads(body)[0]


class WireServer:
    """A TLS server on 127.0.0.1 that records raw requests and replays answers.

    ``answer(raw_request) -> bytes or None`` gives the raw response; None means "say
    nothing" (the connection stays open until the client gives up). Each connection
    serves one request, then is closed, as upstream's server does.
    """

    def __init__(self, test_ca, answer, client_ca=None, tls=True):
        self.answer = answer
        self.requests = []
        self.peers = []
        self.client_cns = []
        self.context = None
        if tls:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(test_ca.server_cert, test_ca.server_key)
            if client_ca:
                self.context.load_verify_locations(client_ca)
                self.context.verify_mode = ssl.CERT_OPTIONAL
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn, peer), daemon=True).start()

    def _handle(self, conn, peer):
        conn.settimeout(10)
        self.peers.append(peer)
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
                cert = conn.getpeercert()
                if cert:
                    self.client_cns.append(dict(x[0] for x in cert["subject"])
                                           .get("commonName"))
            raw = self._read(conn)
            if raw is None:
                return
            self.requests.append(raw)
            response = self.answer(raw)
            if response is None:
                self._stop.wait(15)
                return
            conn.sendall(response)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _read(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body


def replay(*names):
    """An ``answer`` that responds to each method with its recorded response."""
    by_method = {}
    for name in names:
        method = name.rsplit("-", 1)[1]
        by_method[method] = wire(name + ".response")

    def answer(raw):
        return by_method[method_of(raw)]
    return answer


def same_request(ours, recorded, port):
    """Compare our raw request with a recorded one (only the port in Host differs)."""
    recorded = re.sub(rb"(?m)^Host: 127\.0\.0\.1:\d+\r$",
                      b"Host: 127.0.0.1:%d\r" % port, recorded)
    assert ours == recorded


DEMO_PLUGINS = ("Metadata, Bundler, Rules, Defaults, Cfg, Probes, Decisions, "
                "GroupPatterns, Properties")


def write_client_conf(path, url, ca, password="demo"):
    """A client-side bcfg2.conf: server URL, password, CA."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[components]\nbcfg2 = %s\n[communication]\npassword = %s\n"
                 "protocol = xmlrpc/ssl\nca = %s\nretries = 1\ntimeout = 20\n"
                 % (url, password.replace("%", "%%"), ca))
    return str(path)


def start_demo_server(directory, test_ca, core="cherrypy"):
    """``bcfg2-cherry serve --core CORE`` (tests/support/servers.py) on a copy of the
    demo repository, file monitor on; adds ``repo`` and ``client_conf`` to the
    ServerProcess it returns."""
    directory = str(directory)
    repo = copy_repo(demo_repository(), os.path.join(directory, "repo"))
    conf = write_config(os.path.join(directory, "bcfg2.conf.in"), repo, tls=test_ca,
                        password="demo", plugins=DEMO_PLUGINS,
                        server={"filemonitor": "default"})
    server = start_server(core, conf, directory, tls=test_ca)
    server.repo = repo
    server.client_conf = write_client_conf(os.path.join(directory, "client.conf"),
                                           server.url, test_ca.ca_cert)
    return server


@pytest.fixture(scope="module")
def real_server(tmp_path_factory, test_ca):
    """A real server on the demo repository, shared by the tests of a module."""
    server = start_demo_server(tmp_path_factory.mktemp("real-server"), test_ca)
    yield server
    server.stop()


# -- byte-for-byte: our requests are upstream's requests

@needs_wire
def test_run_requests_are_upstream_bytes_address_case(test_ca):
    """Case a (user root + global password): DeclareVersion, GetProbes, RecvProbeData
    (after running the recorded probes here) and GetConfig are byte-identical."""
    names = ["01-a-address-DeclareVersion", "02-a-address-GetProbes",
             "03-a-address-RecvProbeData", "04-a-address-GetConfig",
             "05-a-address-RecvStats"]
    with WireServer(test_ca, replay(*names)) as server:
        proxy = Proxy(server.url, password="wiredemo-global", ca=test_ca.ca_cert)
        result = ClientRun(proxy, report=True).run()
    assert [method_of(r) for r in server.requests] == [
        "DeclareVersion", "GetProbes", "RecvProbeData", "GetConfig", "RecvStats"]
    for ours, name in zip(server.requests[:4], names[:4]):
        same_request(ours, wire(name + ".request"), server.port)
    # one new connection per call, as upstream
    assert len(set(server.peers)) == 5
    # RecvStats: the same header lines in the same order; the document differs
    ours_head = server.requests[4].split(b"\r\n\r\n")[0].split(b"\r\n")
    theirs_head = wire(names[4] + ".request").split(b"\r\n\r\n")[0].split(b"\r\n")
    assert [h.split(b":")[0] for h in ours_head] == [h.split(b":")[0]
                                                     for h in theirs_head]
    assert ours_head[2] == theirs_head[2]  # Authorization
    assert result.config.tag == "Configuration"
    assert [p.name for p in result.probes] == ["group", "hwinfo"]


@needs_wire
def test_run_requests_are_upstream_bytes_name_and_decisions(test_ca):
    """Case b (-u db1 -x own password -l whitelist) including GetDecisionList."""
    names = ["06-b-name-secure-DeclareVersion", "07-b-name-secure-GetProbes",
             "08-b-name-secure-RecvProbeData", "09-b-name-secure-GetDecisionList",
             "10-b-name-secure-GetConfig"]
    with WireServer(test_ca, replay(*names)) as server:
        proxy = Proxy(server.url, user="db1.wiredemo.test", password="db1-own-pw",
                      ca=test_ca.ca_cert)
        result = ClientRun(proxy, decision="whitelist").run()
    assert len(server.requests) == 5  # no RecvStats without --report
    for ours, name in zip(server.requests, names):
        same_request(ours, wire(name + ".request"), server.port)
    assert result.decisions == []


@needs_wire
def test_run_requests_are_upstream_bytes_profile_first(test_ca):
    """Case c (-u new1 -p webserver): AssertProfile comes first, byte-identical."""
    names = ["12-c-profile-AssertProfile", "13-c-profile-DeclareVersion",
             "14-c-profile-GetProbes", "15-c-profile-RecvProbeData",
             "16-c-profile-GetConfig"]
    with WireServer(test_ca, replay(*names)) as server:
        proxy = Proxy(server.url, user="new1.wiredemo.test",
                      password="wiredemo-global", ca=test_ca.ca_cert)
        ClientRun(proxy, profile="webserver").run()
    assert [method_of(r) for r in server.requests][0] == "AssertProfile"
    for ours, name in zip(server.requests, names):
        same_request(ours, wire(name + ".request"), server.port)


@needs_wire
def test_xcmd_request_is_upstream_bytes(test_ca, tmp_path, capsys):
    """``admin xcmd Metadata.list_clients`` sends what bcfg2-admin sent."""
    name = "22-e-xcmd-Metadata.list_clients"
    with WireServer(test_ca, lambda raw: wire(name + ".response")) as server:
        conf = tmp_path / "bcfg2.conf"
        conf.write_text("[communication]\nprotocol = xmlrpc/ssl\npassword = "
                        "wiredemo-global\nca = %s\n[components]\nbcfg2 = %s\n"
                        % (test_ca.ca_cert, server.url))
        assert main(["admin", "-C", str(conf), "xcmd", "Metadata.list_clients"]) == 0
    same_request(server.requests[0], wire(name + ".request"), server.port)
    assert capsys.readouterr().out.split() == [
        "web1.wiredemo.test", "db1.wiredemo.test", "new1.wiredemo.test"]


@needs_wire
def test_recorded_fault_becomes_server_fault(test_ca):
    with WireServer(test_ca, lambda raw: wire("23-f-fault-NoSuchMethod.response")) \
            as server:
        proxy = Proxy(server.url, password="wiredemo-global", ca=test_ca.ca_cert)
        with pytest.raises(ServerFault) as info:
            proxy.NoSuchMethod("x")
    assert info.value.code == info.value.faultCode == -32601
    assert info.value.message == "Unknown method NoSuchMethod"
    assert str(info.value) == "server fault -32601: Unknown method NoSuchMethod"
    assert len(server.requests) == 1  # a Fault is never retried


@needs_wire
def test_recorded_401_is_authentication_error_without_retry(test_ca, tmp_path, capsys):
    """Upstream retried the 401 three times (files 18-20); we stop at once."""
    with WireServer(test_ca,
                    lambda raw: wire("18-d-wrongpw-DeclareVersion.response")) as server:
        proxy = Proxy(server.url, password="wrong-password", ca=test_ca.ca_cert,
                      retries=3, retry_delay=0.01)
        with pytest.raises(AuthenticationError) as info:
            proxy.DeclareVersion("1.4.0pre2")
        assert info.value.status == 401
        assert "authentication denied" in str(info.value)
        assert len(server.requests) == 1
        same_request(server.requests[0], wire("18-d-wrongpw-DeclareVersion.request"),
                     server.port)
        status = main(["client", "-S", server.url, "-x", "wrong", "--ca",
                       test_ca.ca_cert, "-C", str(tmp_path / "none.conf")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and err[0].startswith(
        "bcfg2-cherry client: Failed to declare version: authentication denied")


# -- the proxy on its own

def test_header_order_and_no_credentials(test_ca):
    """Without a password no Authorization header goes out and the URL path is used."""
    with WireServer(test_ca, lambda raw: xmlrpc_response(True)) as server:
        assert Proxy(server.url + "/custom", password=None,
                     ca=test_ca.ca_cert).ping() is True
        Proxy(server.url + "/custom", user="h.example", password="p w:x",
              ca=test_ca.ca_cert).ping()
    first = server.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert first[0] == b"POST /custom HTTP/1.1"
    assert [h.split(b":")[0] for h in first[1:]] == [
        b"Host", b"Accept-Encoding", b"Content-Type", b"User-Agent", b"Content-Length"]
    second = server.requests[1].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert second[0] == b"POST /RPC2 HTTP/1.1"
    # the password is sent exactly (upstream turned the space into "+")
    import base64
    assert second[2] == b"Authorization: Basic " + base64.b64encode(b"h.example:p w:x")


def test_values_both_ways(test_ca):
    """nil, lists, dicts and non-ASCII text survive the round trip; gzip is decoded."""
    def answer(raw):
        value = {"args": list(params_of(raw)), "text": "café ☃"}
        response = xmlrpc_response(value)
        head, body = response.split(b"\r\n\r\n", 1)
        packed = gzip.compress(body)
        head = re.sub(rb"Content-length: \d+", b"Content-length: %d" % len(packed), head)
        return head + b"\r\nContent-Encoding: gzip\r\n\r\n" + packed

    with WireServer(test_ca, answer) as server:
        proxy = Proxy(server.url, password="pw", ca=test_ca.ca_cert)
        result = proxy.expire_metadata_cache(None, ["a", "b"], {"k": 1})
    assert result == {"args": [None, ["a", "b"], {"k": 1}], "text": "café ☃"}


def test_dotted_names_and_call(test_ca):
    with WireServer(test_ca, lambda raw: xmlrpc_response(method_of(raw))) as server:
        proxy = Proxy(server.url, password="pw", ca=test_ca.ca_cert)
        assert proxy.Metadata.list_clients() == "Metadata.list_clients"
        assert proxy.call("Inotify.list_watches") == "Inotify.list_watches"


def test_connection_refused_is_retried_with_backoff(free_port_factory):
    port = free_port_factory()
    proxy = Proxy("https://127.0.0.1:%d" % port, password="pw", retries=3,
                  retry_delay=0.1)
    start = time.monotonic()
    with pytest.raises(ConnectionFailure) as info:
        proxy.GetConfig()
    elapsed = time.monotonic() - start
    assert "connection refused by https://127.0.0.1:%d" % port in str(info.value)
    assert 0.3 <= elapsed < 5  # slept 0.1 then 0.2


def test_retries_zero_still_makes_one_attempt(test_ca):
    with WireServer(test_ca, lambda raw: xmlrpc_response(True)) as server:
        assert Proxy(server.url, password="pw", ca=test_ca.ca_cert,
                     retries=0).DeclareVersion("1") is True
    assert len(server.requests) == 1


def test_timeout_after_sending_retries_only_repeatable_methods(test_ca):
    """A silent server: GetConfig is sent again, RecvStats never twice."""
    with WireServer(test_ca, lambda raw: None) as server:
        proxy = Proxy(server.url, password="pw", ca=test_ca.ca_cert, timeout=0.5,
                      retries=2, retry_delay=0.05)
        with pytest.raises(ConnectionFailure) as info:
            proxy.GetConfig()
        assert "no answer from %s within 0.5 s" % server.url in str(info.value)
        assert [method_of(r) for r in server.requests] == ["GetConfig", "GetConfig"]
        with pytest.raises(ConnectionFailure):
            proxy.RecvStats("<upload-statistics/>")
        assert [method_of(r) for r in server.requests][2:] == ["RecvStats"]


def test_handshake_timeout_is_bounded(test_ca):
    """A peer that accepts TCP but never speaks TLS costs at most timeout x retries."""
    with WireServer(test_ca, lambda raw: None, tls=False) as server:
        proxy = Proxy(server.url, password="pw", ca=test_ca.ca_cert, timeout=0.3,
                      retries=2, retry_delay=0.05)
        start = time.monotonic()
        with pytest.raises(ConnectionFailure):
            proxy.RecvStats("<x/>")  # nothing was sent yet: retried even so
        assert time.monotonic() - start < 5
        assert len(server.peers) == 2


def test_503_is_retried_for_any_method(test_ca):
    """503 means the server did not take the call (it is starting): safe to repeat."""
    answers = [http_response(b"starting", "503 Service Unavailable"),
               xmlrpc_response(True)]
    with WireServer(test_ca, lambda raw: answers.pop(0)) as server:
        assert Proxy(server.url, password="pw", ca=test_ca.ca_cert, retries=2,
                     retry_delay=0.01).RecvStats("<x/>") is True
    assert len(server.requests) == 2


def test_http_error_status(test_ca):
    with WireServer(test_ca, lambda raw: http_response(b"", "500 Internal Server Error")
                    ) as server:
        with pytest.raises(HTTPError) as info:
            Proxy(server.url, password="pw", ca=test_ca.ca_cert).GetConfig()
    assert info.value.status == 500
    assert len(server.requests) == 1


def test_wrong_ca_names_the_certificate_problem(test_ca, tmp_path):
    import trustme

    other = tmp_path / "other-ca.crt"
    other.write_bytes(trustme.CA().cert_pem.bytes())
    with WireServer(test_ca, lambda raw: xmlrpc_response(True)) as server:
        with pytest.raises(TLSError) as info:
            Proxy(server.url, password="pw", ca=str(other), retries=3,
                  retry_delay=0.01).GetConfig()
    message = str(info.value)
    assert "server certificate failed verification" in message
    assert "unable to get local issuer certificate" in message
    assert server.requests == []
    assert len(server.peers) == 1  # a certificate problem is not retried


def test_missing_ca_file_is_a_clear_error(tmp_path):
    with pytest.raises(TLSError) as info:
        Proxy("https://127.0.0.1:1", password="pw", ca=str(tmp_path / "nope.crt"))
    assert "cannot load the CA certificate" in str(info.value)


def test_server_common_names(test_ca):
    with WireServer(test_ca, lambda raw: xmlrpc_response(True)) as server:
        assert Proxy(server.url, password="pw", ca=test_ca.ca_cert,
                     server_cns=["bcfg2.example", "localhost"]).ping() is True
        with pytest.raises(CertificateNameError) as info:
            Proxy(server.url, password="pw", ca=test_ca.ca_cert,
                  server_cns=["bcfg2.example"]).ping()
        assert "'localhost' is not one of" in str(info.value)
        # checked even when no CA is configured
        with pytest.raises(CertificateNameError):
            Proxy(server.url, password="pw", server_cns=["bcfg2.example"]).ping()
    assert len(server.requests) == 1


def test_client_certificate_and_source_address(test_ca):
    cert, key = test_ca.client_cert("web2.demo.example")
    with WireServer(test_ca, lambda raw: xmlrpc_response(True),
                    client_ca=test_ca.ca_cert) as server:
        Proxy(server.url, password="pw", ca=test_ca.ca_cert, cert=cert, key=key,
              source_address="127.0.0.2").ping()
    assert server.client_cns == ["web2.demo.example"]
    assert server.peers[0][0] == "127.0.0.2"


def test_from_settings_ignores_server_key_defaults(tmp_path):
    from bcfg2_cherry.options import Settings

    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[components]\nbcfg2 = https://h.example:7000\n[communication]\n"
                    "password = s3%%cret\nuser = me\nretries = 5\nserverCommonNames = "
                    "a:b\n")
    proxy = Proxy.from_settings(Settings(str(conf)), retries=2)
    assert (proxy.url, proxy.user, proxy.password, proxy.retries,
            proxy.server_cns) == ("https://h.example:7000", "me", "s3%cret", 2,
                                  ["a", "b"])
    assert proxy._context.verify_mode == ssl.CERT_NONE  # no ca, and no client cert


# -- probes and the statistics document

def _probe(text, interpreter="/bin/sh", name="p"):
    el = lxml.etree.Element("probe", name=name, source="Probes",
                            interpreter=interpreter)
    el.text = text
    return el


def test_run_probe_interpreters_and_failures():
    ok = run_probe(_probe("#!/usr/bin/env python3\nprint('é')\n", "/usr/bin/env python3"))
    assert ok.ok and ok.stdout == "é\n"
    bad = run_probe(_probe("echo out; echo err >&2; exit 3"))
    assert (bad.returncode, bad.stdout, bad.stderr, bad.error) == (
        3, "out\n", "err\n", "exit status 3")
    missing = run_probe(_probe("x", "/nonexistent/interp"))
    assert "cannot start /nonexistent/interp" in missing.error
    start = time.monotonic()
    slow = run_probe(_probe("sleep 30 & sleep 30; echo never"), timeout=0.5)
    assert slow.error == "timed out after 0.5 s"
    assert time.monotonic() - start < 5


class FakeServer:
    """A protocol server in a few lines: answers a client run from a dict."""

    def __init__(self, probes, config, fail=()):
        self.calls = []
        self.answers = {"AssertProfile": True, "DeclareVersion": True,
                        "GetProbes": probes, "RecvProbeData": True,
                        "GetDecisionList": [["Path", "/etc/motd"]],
                        "GetConfig": config, "RecvStats": True}
        self.fail = fail

    def __call__(self, raw):
        method = method_of(raw)
        self.calls.append((method, params_of(raw)))
        if method in self.fail:
            return xmlrpc_response_fault(-32500, "Critical failure: " + method)
        return xmlrpc_response(self.answers[method])


def xmlrpc_response_fault(code, message):
    return http_response(xmlrpc.client.dumps(xmlrpc.client.Fault(code, message),
                                             methodresponse=True))


CONFIG = ('<Configuration version="2.0" revision="42"><Bundle name="b">'
          '<Path name="/etc/motd" type="file" owner="root">hello</Path>'
          '<Path name="/etc/none" failure="no matching generator"/>'
          '<Package name="p" type="deb" version="auto"/></Bundle></Configuration>')


def test_report_uploads_dry_run_statistics(test_ca):
    fake = FakeServer('<probes><probe name="p" source="Probes" interpreter="/bin/sh">'
                      'printf "group:x\\n\\001caf\\303\\251"</probe></probes>', CONFIG)
    with WireServer(test_ca, fake) as server:
        proxy = Proxy(server.url, password="pw", ca=test_ca.ca_cert)
        result = ClientRun(proxy, report=True, decision="blacklist",
                           profile="web").run()
    assert [c[0] for c in fake.calls] == [
        "AssertProfile", "DeclareVersion", "GetProbes", "RecvProbeData",
        "GetDecisionList", "GetConfig", "RecvStats"]
    probe_data = fake.calls[3][1][0]
    # control characters dropped, non-ASCII as a character reference (as upstream)
    assert probe_data == ('<ProbeData><probe-data name="p" source="Probes">group:x\n'
                          'caf&#233;</probe-data></ProbeData>')
    assert fake.calls[4][1] == ("blacklist",)
    stats = lxml.etree.fromstring(fake.calls[6][1][0])
    st = stats.find("Statistics")
    assert (st.get("total"), st.get("good"), st.get("state"), st.get("revision"),
            st.get("version")) == ("3", "2", "dirty", "42", "2.0")
    assert st.find("Flags/Flag[@name='dry_run']").get("value") == "True"
    assert [e.get("name") for e in st.find("Good")] == ["/etc/motd", "p"]
    assert st.find("Good/Path").text is None and st.find("Good/Path").get("qtext") == ""
    assert [e.get("name") for e in st.find("Bad")] == ["/etc/none"]
    assert set(st.find("OpStamps").attrib) >= {
        "start", "probe_download", "probe_upload", "config_download", "finished"}
    assert result.statistics is not None and result.report_error is None


def test_probe_failure_stops_the_run_unless_told_otherwise(test_ca):
    probes = '<probes><probe name="bad" source="Probes">exit 4</probe></probes>'
    fake = FakeServer(probes, CONFIG)
    with WireServer(test_ca, fake) as server:
        proxy = Proxy(server.url, password="pw", ca=test_ca.ca_cert)
        with pytest.raises(RunError) as info:
            ClientRun(proxy).run()
        assert str(info.value) == "Failed to execute probe bad: exit status 4"
        assert [c[0] for c in fake.calls] == ["DeclareVersion", "GetProbes"]
        ClientRun(proxy, exit_on_probe_failure=False).run()
        assert [c[0] for c in fake.calls][2:] == [
            "DeclareVersion", "GetProbes", "RecvProbeData", "GetConfig"]


def test_error_document_and_faults_stop_the_run(test_ca):
    fake = FakeServer("<probes/>", '<error type="structure error"/>')
    with WireServer(test_ca, fake) as server:
        proxy = Proxy(server.url, password="pw", ca=test_ca.ca_cert)
        with pytest.raises(RunError) as info:
            ClientRun(proxy, report=True).run()
        assert str(info.value) == "Server error: structure error"
        assert "RecvStats" not in [c[0] for c in fake.calls]
        fake.fail = ("DeclareVersion",)
        with pytest.raises(RunError) as info:
            ClientRun(proxy).run()
        assert str(info.value) == ("Failed to declare version: server fault -32500: "
                                   "Critical failure: DeclareVersion")


def test_client_command_output_file_and_report_failure(test_ca, tmp_path, capsys):
    fake = FakeServer("<probes/>", CONFIG, fail=("RecvStats",))
    conf = tmp_path / "bcfg2.conf"
    out = tmp_path / "config.xml"
    with WireServer(test_ca, fake) as server:
        conf.write_text("[components]\nbcfg2 = %s\n[communication]\npassword = pw\n"
                        "ca = %s\n[client]\nprofile = web\n" % (server.url,
                                                                test_ca.ca_cert))
        assert main(["client", "-C", str(conf), "-n", "-o", str(out)]) == 0
        assert out.read_text() == CONFIG
        assert os.stat(out).st_mode & 0o777 == 0o600
        assert fake.calls[0][0] == "AssertProfile"  # [client] profile
        capsys.readouterr()
        assert main(["client", "-C", str(conf), "--report"]) == 2
    captured = capsys.readouterr()
    assert '<Path name="/etc/motd"' in captured.out  # printed before the failure
    assert captured.err.strip().splitlines()[-1:] == [
        ("bcfg2-cherry client: Failed to upload statistics: server fault -32500: "
         "Critical failure: RecvStats")]


def test_client_command_connection_refused_is_one_line(tmp_path, capsys,
                                                      free_port_factory):
    port = free_port_factory()
    assert main(["client", "-C", str(tmp_path / "none.conf"), "-S",
                 "https://127.0.0.1:%d" % port, "-x", "pw", "-R", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("WARNING: no CA configured ([communication] ca): the server "
                    "certificate is not verified"),
                   ("bcfg2-cherry client: Failed to declare version: connection refused "
                    "by https://127.0.0.1:%d (is the server running?)" % port)]


# -- against the real server

DEMO_LOGINS = {"web1.demo.example": ["-u", "root"],
               "web2.demo.example": ["-u", "web2.demo.example"],
               "db1.demo.example": ["-u", "db1.demo.example", "-x", "db1-secret"],
               "ws1.demo.example": ["-u", "ws1.demo.example"]}


@pytest.mark.parametrize("host", sorted(DEMO_LOGINS))
def test_real_server_dry_run_of_each_demo_host(real_server, host, capsys):
    assert main(["client", "-C", real_server.client_conf, "--dry-run"]
                + DEMO_LOGINS[host]) == 0
    out = capsys.readouterr().out
    config = lxml.etree.fromstring(out.encode("utf-8"))
    assert config.tag == "Configuration"
    site = config.find(".//Path[@name='/etc/demo/site.conf']")
    assert "hostname = %s" % host in site.text
    bundles = {b.get("name") for b in config.findall("Bundle")}
    assert "base" in bundles
    assert ("web" in bundles) == host.startswith("web")


@pytest.mark.parametrize("core", sorted(available_cores()))
def test_client_run_against_every_core(core, tmp_path, test_ca, capsys):
    """One full run (probes, decisions, report) and one admin call per network core."""
    error = available_cores()[core]
    if error:
        pytest.skip("core %s is not available: %s" % (core, error))
    server = start_demo_server(tmp_path, test_ca, core)
    try:
        assert main(["client", "-C", server.client_conf, "-u", "web2.demo.example",
                     "-l", "whitelist", "--report"]) == 0, server.log()[-2000:]
        assert "hostname = web2.demo.example" in capsys.readouterr().out
        assert main(["admin", "-C", server.client_conf, "xcmd",
                     "Metadata.list_clients"]) == 0
        assert "web2.demo.example" in capsys.readouterr().out.split()
    finally:
        server.stop()


def test_readme_demo_flow(tmp_path, capsys):
    """What the README shows: ``serve --demo``, then a dry run of each demo host with
    conf/demo.conf and the CA the demo generated."""
    import subprocess

    from bcfg2_cherry.resources import demo_config

    port, state = free_port(), tmp_path / "state"
    with open(tmp_path / "demo.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bcfg2_cherry", "serve", "--demo", "--port",
             str(port), "--state-dir", str(state)], stdout=log, stderr=subprocess.STDOUT,
            env=server_env(), start_new_session=True)
    try:
        ca = str(state / "tls" / "ca.crt")
        wait_ready("127.0.0.1", port, "https", None, proc, 30,
                   log=lambda: (tmp_path / "demo.log").read_text(errors="replace"))
        for host, login in sorted(DEMO_LOGINS.items()):
            assert main(["client", "-C", demo_config(), "-S",
                         "https://127.0.0.1:%d" % port, "--ca", ca, "--dry-run"]
                        + login) == 0
            assert "hostname = %s" % host in capsys.readouterr().out
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_real_server_probes_report_decisions_and_output(real_server, tmp_path, capsys):
    out = tmp_path / "web2.xml"
    assert main(["client", "-C", real_server.client_conf, "-u", "web2.demo.example",
                 "-l", "whitelist", "--report", "-v", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "decision list (whitelist)" in err
    config = lxml.etree.fromstring(out.read_bytes())
    # the os probe ran here and its group reached the server
    site = config.find(".//Path[@name='/etc/demo/site.conf']").text
    assert re.search(r"(?m)^os\s+=\s+(debian|redhat|unknown)", site)
    with open(os.path.join(real_server.repo, "Probes", "probed.xml")) as fh:
        probed = fh.read()
    assert 'name="web2.demo.example"' in probed


def test_real_server_assert_profile_creates_client(real_server, capsys):
    assert main(["client", "-C", real_server.client_conf, "-u", "lab9.demo.example",
                 "-p", "webserver", "--no-probes"]) == 0
    with open(os.path.join(real_server.repo, "Metadata", "clients.xml")) as fh:
        clients = fh.read()
    assert re.search(r'<Client name="lab9.demo.example"[^>]*profile="webserver"',
                     clients)
    # a private profile is refused with a Fault: one line, exit 1
    capsys.readouterr()
    assert main(["client", "-C", real_server.client_conf, "-u", "lab9.demo.example",
                 "-p", "dbserver", "--no-probes"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("bcfg2-cherry client: Failed to set client profile: "
                             "server fault ")
    assert "private group" in err[0]


def test_real_server_client_certificate_identifies(real_server, test_ca, capsys):
    """The certificate's CN wins over user root's address (ws1 is floating, so the
    address need not be its own)."""
    cert, key = test_ca.client_cert("ws1.demo.example")
    assert main(["client", "-C", real_server.client_conf, "--cert", cert, "--key", key,
                 "--no-probes"]) == 0
    assert "hostname = ws1.demo.example" in capsys.readouterr().out


def test_real_server_refuses_foreign_client_certificate(real_server, tmp_path, capsys):
    import trustme

    leaf = trustme.CA().issue_cert("ws1.demo.example", common_name="ws1.demo.example")
    cert, key = tmp_path / "foreign.crt", tmp_path / "foreign.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    assert main(["client", "-C", real_server.client_conf, "--cert", str(cert),
                 "--key", str(key)]) == 1
    line = one_line(capsys)
    assert line.startswith("bcfg2-cherry client: Failed to declare version: TLS failure "
                           "with %s: " % real_server.url)
    assert "client certificate" in line


def one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("login", [["-x", "wrong"],
                                   ["-u", "db1.demo.example", "-x", "demo"]])
def test_real_server_refuses_bad_credentials(real_server, login, capsys):
    start = time.monotonic()
    assert main(["client", "-C", real_server.client_conf, "-R", "3"] + login) == 1
    assert time.monotonic() - start < 10  # a 401 is not retried
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("bcfg2-cherry client: Failed to declare version: "
                             "authentication denied by %s (HTTP 401)" % real_server.url)


def test_real_server_wrong_ca(real_server, tmp_path, capsys):
    import trustme

    other = tmp_path / "other.crt"
    other.write_bytes(trustme.CA().cert_pem.bytes())
    assert main(["client", "-C", real_server.client_conf, "--ca", str(other)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("bcfg2-cherry client: Failed to declare version: TLS "
                             "failure with %s: the server certificate failed "
                             "verification: " % real_server.url)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
