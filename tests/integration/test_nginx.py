"""bcfg2-cherry behind a real nginx, configured with the shipped conf/nginx file.

nginx terminates TLS (the test CA) and checks client certificates on 127.0.0.1; the
server listens on plain HTTP with ``[server] trusted_proxies = 127.0.0.1``. A Metadata
plugin that records what reaches ``identify_connection`` (tests/support/recording.py)
shows the address and certificate authentication was given: through nginx, the address
nginx saw (the last X-Forwarded-For hop) and the certificate nginx verified; the same
headers sent by a client, to nginx or directly, change nothing.

nginx comes from the project's CI set-up (.ci/run installs Debian's package); without
the ``nginx`` binary the test is skipped.
"""
import os
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import quote

import lxml.etree
import pytest

from tests.support.rawclient import HTTPStatusError, RawClient, call_body
from tests.support.recording import read_calls
from tests.support.servers import (
    ROOT, WIRE_DIR, WIRE_PASSWORD, copy_repo, free_port, start_server, write_config)

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
SHIPPED = os.path.join(ROOT, "conf", "nginx", "bcfg2-cherry.conf")

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(NGINX is None, reason="the nginx binary is not "
                                 "installed (.ci/run installs Debian's nginx)")]

WEB1, DB1, LB2 = "web1.wiredemo.test", "db1.wiredemo.test", "lb2.wiredemo.test"


def render_nginx(directory, nginx_port, backend_port, tls):
    """The shipped file with this test's ports and certificates, in a minimal
    nginx.conf that keeps everything inside ``directory``."""
    with open(SHIPPED, encoding="utf-8") as fh:
        site = fh.read()
    replacements = [
        ("server 127.0.0.1:6790;", "server 127.0.0.1:%d;" % backend_port),
        ("listen 6789 ssl;", "listen 127.0.0.1:%d ssl;" % nginx_port),
        ("listen [::]:6789 ssl;", ""),
        ("/etc/pki/tls/certs/bcfg2.crt", tls.server_cert),
        ("/etc/pki/tls/private/bcfg2.key", tls.server_key),
        ("/etc/pki/tls/certs/bcfg2-ca.crt", tls.ca_cert),
        ("shared:bcfg2:10m", "shared:bcfg2test%d:1m" % nginx_port),
    ]
    for old, new in replacements:
        assert old in site, "the shipped nginx file no longer contains %r" % old
        site = site.replace(old, new)
    site_path = os.path.join(directory, "bcfg2-cherry.conf")
    with open(site_path, "w", encoding="utf-8") as fh:
        fh.write(site)
    temp = os.path.join(directory, "temp")
    os.makedirs(temp, exist_ok=True)
    main = """
daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    include {site};
}}
""".format(d=directory, t=temp, site=site_path)
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(main)
    return conf


@pytest.fixture(scope="module")
def stack(tmp_path_factory, test_ca):
    """(nginx port, backend ServerProcess) with the recording Metadata plugin."""
    directory = tmp_path_factory.mktemp("nginx")
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), directory / "repo")
    clients = os.path.join(repo, "Metadata", "clients.xml")
    with open(clients, encoding="utf-8") as fh:
        text = fh.read()
    with open(clients, "w", encoding="utf-8") as fh:
        fh.write(text.replace("</Clients>", '  <Client name="%s" profile="webserver" '
                              'address="127.0.0.2"/>\n</Clients>' % LB2))
    conf = write_config(directory / "bcfg2.conf.in", repo, tls=None, scheme="http",
                        plugins="tests.support.recording:Metadata, Bundler, Rules, "
                                "Cfg, Probes",
                        server={"trusted_proxies": "127.0.0.1"},
                        communication={"ca": test_ca.ca_cert})
    backend = start_server("cherrypy", conf, directory, scheme="http")
    port = free_port()
    nginx_conf = render_nginx(str(directory), port, backend.port, test_ca)
    log = open(directory / "nginx.out", "wb")
    nginx = subprocess.Popen([NGINX, "-c", nginx_conf, "-p", str(directory)],
                             stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + 15
        while True:
            if nginx.poll() is not None:
                raise RuntimeError("nginx exited: %s\n%s" % (
                    (directory / "nginx.out").read_text(),
                    (directory / "error.log").read_text()
                    if (directory / "error.log").exists() else ""))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        backend.repository = repo
        yield port, backend
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
        backend.stop()


def via_nginx(port, test_ca, source="127.0.0.1", user="root", password=WIRE_PASSWORD,
              cert_of=None):
    client = RawClient("127.0.0.1", port, ca=test_ca.ca_cert, user=user,
                       password=password, source_address=source)
    if cert_of:
        cert, key = test_ca.client_cert(cert_of)
        client = client.with_credentials(cert=cert, key=key)
    return client


def last_call(backend):
    calls = read_calls(backend.repository)
    assert calls, "authentication was never called"
    return calls[-1]


def test_address_is_the_one_nginx_saw(stack, test_ca):
    port, backend = stack
    client = via_nginx(port, test_ca, source="127.0.0.2")
    assert client.call("DeclareVersion", "1.4.0pre2") is True
    call = last_call(backend)
    assert call["address"][0] == "127.0.0.2"
    assert (call["user"], call["client"], call["cert_cn"]) == ("root", LB2, None)


def test_client_supplied_forwarded_for_is_not_believed(stack, test_ca):
    port, backend = stack
    client = via_nginx(port, test_ca, source="127.0.0.2")
    # the client claims to be 127.0.0.1 (web1); nginx appends the real 127.0.0.2
    resp = client.request(call_body("DeclareVersion", "x"),
                          extra=[("X-Forwarded-For", "127.0.0.1")])
    assert resp.value() is True
    assert last_call(backend)["address"][0] == "127.0.0.2"
    assert last_call(backend)["client"] == LB2


def test_certificate_verified_by_nginx_reaches_authentication(stack, test_ca):
    port, backend = stack
    # db1 is secure: the global password alone is refused ...
    with pytest.raises(HTTPStatusError):
        via_nginx(port, test_ca, user=DB1).call("DeclareVersion", "x")
    assert last_call(backend)["cert_cn"] is None
    # ... with web1's certificate the commonName decides
    client = via_nginx(port, test_ca, user=DB1, cert_of=WEB1)
    config = client.call("GetConfig")
    assert 'Bundle name="web"' in config
    call = last_call(backend)
    assert (call["cert_cn"], call["client"], call["address"][0]) == \
        (WEB1, WEB1, "127.0.0.1")


def test_certificate_headers_sent_by_the_client_to_nginx_are_ignored(stack, test_ca):
    port, backend = stack
    pem = quote(open(test_ca.client_cert(WEB1)[0], encoding="ascii").read())
    client = via_nginx(port, test_ca, user=DB1)
    resp = client.request(call_body("DeclareVersion", "x"),
                          extra=[("X-SSL-Client-Cert", pem),
                                 ("X-SSL-Client-Verify", "SUCCESS")])
    assert resp.status == 401
    assert last_call(backend)["cert_cn"] is None


def test_the_same_headers_sent_directly_are_ignored(stack, test_ca):
    port, backend = stack
    pem = quote(open(test_ca.client_cert(WEB1)[0], encoding="ascii").read())
    # straight to the backend from 127.0.0.2, which is not a trusted proxy
    direct = RawClient("127.0.0.1", backend.port, scheme="http", user="root",
                       password=WIRE_PASSWORD, source_address="127.0.0.2")
    resp = direct.request(call_body("DeclareVersion", "x"),
                          extra=[("X-Forwarded-For", "127.0.0.1"),
                                 ("X-SSL-Client-Cert", pem),
                                 ("X-SSL-Client-Verify", "SUCCESS")])
    assert resp.value() is True
    call = last_call(backend)
    assert (call["address"][0], call["cert_cn"], call["client"]) == \
        ("127.0.0.2", None, LB2)


def test_a_certificate_from_another_ca_is_refused_by_nginx(stack, test_ca, tmp_path):
    import trustme
    port, backend = stack
    leaf = trustme.CA().issue_cert(WEB1, common_name=WEB1)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    before = len(read_calls(backend.repository))
    client = via_nginx(port, test_ca).with_credentials(cert=str(cert), key=str(key))
    try:
        status = client.request(call_body("DeclareVersion", "x")).status
    except OSError:
        status = None  # refused in the handshake
    assert status in (None, 400)
    assert len(read_calls(backend.repository)) == before


def test_full_client_run_through_nginx(stack, test_ca):
    port, _ = stack
    results = via_nginx(port, test_ca, source="127.0.0.2").client_run(
        probe_output={"group": "group:probed\n"})
    config = lxml.etree.fromstring(results["GetConfig"].encode("utf-8"))
    assert config.xpath("string(//Path[@name='/etc/wiredemo/unicode.txt'])") == \
        "Gr\u00fc\u00dfe aus K\u00f6ln \u2014 caf\u00e9 \u2603 \u65e5\u672c\n"
