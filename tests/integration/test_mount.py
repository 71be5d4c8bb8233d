"""``bcfg2_cherry.mount``: a Bcfg2 server inside an existing CherryPy application.

The host application has its own root, pages and tools; Bcfg2 is mounted at /bcfg2 on
the same engine and server (HTTPS on 127.0.0.1, an ephemeral port). Both are called;
our tools must not touch the host's pages nor the host's tools ours. The core loads its
plugins when the engine starts and shuts down when it stops. ``wsgi_app`` is served by
a WSGI server that is not CherryPy's, in a subprocess.
"""
import os
import subprocess
import sys

import cherrypy
import pytest

import bcfg2_cherry
from bcfg2_cherry.server.cherrypy_core import HTTPServer
from bcfg2_cherry.server.tls import server_context
from tests.support.rawclient import RawClient, call_body
from tests.support.servers import (
    ROOT, WIRE_DIR, WIRE_PASSWORD, copy_repo, free_port, server_env, wait_ready,
    write_config)

pytestmark = pytest.mark.timeout(60)


class HostRoot:
    """The host application: a page, a form handler and a tool of its own."""

    @cherrypy.expose
    def index(self):
        return "host index"

    @cherrypy.expose
    def hello(self, name="world"):
        return "hello %s via %s" % (name, cherrypy.request.method)


def _mark_host():
    cherrypy.serving.response.headers["X-Host-Tool"] = "ran"


@pytest.fixture(scope="module", autouse=True)
def engine_exits():
    """Leave the process's CherryPy engine exited, not merely stopped."""
    yield
    cherrypy.engine.exit()


@pytest.fixture
def host_app(tmp_path, test_ca, request):
    """Host app at /, Bcfg2 at /bcfg2, engine started on HTTPS; yields the mount."""
    use_our_server = request.param
    if not hasattr(cherrypy.tools, "host_marker"):
        cherrypy.tools.host_marker = cherrypy.Tool("before_finalize", _mark_host)
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    conf = write_config(tmp_path / "bcfg2.conf", repo, tls=test_ca, port=6789)
    cherrypy.config.update({
        "engine.autoreload.on": False, "checker.on": False, "log.screen": False,
        "server.socket_host": "127.0.0.1", "server.socket_port": 0,
        "server.thread_pool": 8, "server.socket_timeout": 5,
        "server.ssl_module": "builtin", "server.ssl_certificate": test_ca.server_cert,
        "server.ssl_private_key": test_ca.server_key,
        # client certificates verified against the CA: SSL_CLIENT_* reach the apps
        "server.ssl_context": server_context(test_ca.server_cert, test_ca.server_key,
                                             test_ca.ca_cert, "xmlrpc/ssl"),
        "server.instance": ("bcfg2_cherry.server.cherrypy_core.HTTPServer"
                            if use_our_server else None),
    })
    cherrypy.server.httpserver = None
    cherrypy.tree.mount(HostRoot(), "", {"/": {"tools.host_marker.on": True}})
    app = bcfg2_cherry.mount(config=conf, script_name="/bcfg2", repository=repo)
    core = app.root
    assert not core.ready.is_set()
    cherrypy.engine.start()
    try:
        assert isinstance(cherrypy.server.httpserver, HTTPServer) == use_our_server
        yield app, cherrypy.server.bound_addr[1]
    finally:
        cherrypy.engine.stop()
        core.detach()
        cherrypy.tree.apps.pop("", None)
        cherrypy.tree.apps.pop("/bcfg2", None)
        cherrypy.server.httpserver = None
    assert core.shut_down


@pytest.mark.parametrize("host_app", [True, False], indirect=True,
                         ids=["our-http-server", "stock-cheroot"])
def test_host_pages_and_bcfg2_side_by_side(host_app, test_ca):
    app, port = host_app
    assert app.root.ready.is_set()  # plugins loaded when the engine started
    client = RawClient("127.0.0.1", port, ca=test_ca.ca_cert, password=WIRE_PASSWORD)

    page = client.request(None, method="GET", path="/", auth=False)
    assert (page.status, page.body) == (200, b"host index")
    assert page.headers["X-Host-Tool"] == "ran"
    assert "WWW-Authenticate" not in page.headers
    hello = client.request(None, method="GET", path="/hello?name=bcfg2", auth=False)
    assert (hello.status, hello.body) == (200, b"hello bcfg2 via GET")

    assert client.call("DeclareVersion", "1.4.0pre2", path="/bcfg2/RPC2") is True
    assert client.call("Metadata.list_clients", path="/bcfg2")[:1] == \
        ["web1.wiredemo.test"]
    ours = client.request(call_body("GetProbes"), path="/bcfg2/RPC2")
    assert ours.status == 200 and "X-Host-Tool" not in ours.headers
    assert client.request(None, method="GET", path="/bcfg2/").status == 405
    assert client.request(call_body("GetProbes"), path="/bcfg2/RPC2",
                          auth=False).status == 401


@pytest.mark.parametrize("host_app", [True, False], indirect=True,
                         ids=["our-http-server", "stock-cheroot"])
def test_client_certificate_reaches_a_mounted_core(host_app, test_ca):
    app, port = host_app
    cert, key = test_ca.client_cert("web1.wiredemo.test")
    # db1 is secure, so the global password alone is refused for it ...
    as_db1 = RawClient("127.0.0.1", port, ca=test_ca.ca_cert, user="db1.wiredemo.test",
                       password=WIRE_PASSWORD)
    assert as_db1.request(call_body("GetConfig"), path="/bcfg2").status == 401
    # ... but web1's certificate identifies web1, whichever server class decoded it
    with_cert = as_db1.with_credentials(cert=cert, key=key)
    config = with_cert.call("GetConfig", path="/bcfg2")
    assert 'Bundle name="web"' in config


WSGI_SCRIPT = r"""
import sys, wsgiref.simple_server
import bcfg2_cherry
app = bcfg2_cherry.wsgi_app(config=sys.argv[1], script_name="")
class Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass
server = wsgiref.simple_server.make_server("127.0.0.1", int(sys.argv[2]), app,
                                           handler_class=Quiet)
server.serve_forever()
"""


def test_wsgi_app_under_another_wsgi_server(tmp_path):
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), tmp_path / "repo")
    conf = write_config(tmp_path / "bcfg2.conf", repo, scheme="http", port=6789)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", WSGI_SCRIPT, conf, str(port)],
                            env=server_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_ready("127.0.0.1", port, "http", None, proc, timeout=30)
        client = RawClient("127.0.0.1", port, scheme="http", password=WIRE_PASSWORD)
        assert client.call("DeclareVersion", "1.4.0pre2") is True
        assert "<Configuration" in client.call("GetConfig")
        assert client.request(call_body("GetConfig"), auth=False).status == 401
    finally:
        proc.terminate()
        proc.wait(10)
