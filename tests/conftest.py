"""Fixtures shared by every test directory (unit, conformance, integration).

- ``demo_repo``: a private copy of conf/demo-repo, safe to change.
- ``test_ca``: a throw-away CA (trustme) with a server certificate for 127.0.0.1,
  localhost and ::1, and client certificates whose commonName is a client name.
- ``free_port()``: an unused TCP port on 127.0.0.1 (also as the ``free_port_factory``
  fixture, for tests that prefer not to import it).

``tests`` is a package, so test modules import these helpers as
``from tests.conftest import free_port``.
"""
import os
import shutil
import socket
import threading

import pytest

#: the source checkout (this file is tests/conftest.py)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF_DIR = os.path.join(ROOT, "conf")
DEMO_REPO = os.path.join(CONF_DIR, "demo-repo")
DEMO_CONF = os.path.join(CONF_DIR, "demo.conf")

#: the clients of conf/demo-repo/Metadata/clients.xml
DEMO_CLIENTS = ("web1.demo.example", "web2.demo.example", "db1.demo.example",
                "ws1.demo.example")
#: the names and addresses the test server certificate is valid for
SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


def free_port(host="127.0.0.1"):
    """Return a TCP port on ``host`` that nothing listens on at the moment.

    The port is only free when asked: another process may take it before the
    caller binds it, so a server started on it should fail loudly, not hang.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port_factory():
    """The ``free_port`` helper, as a fixture."""
    return free_port


@pytest.fixture
def cores():
    """A list to put the cores a test makes in; each is shut down after the test."""
    made = []
    yield made
    for core in made:
        core.shutdown()


@pytest.fixture
def demo_repo(tmp_path):
    """A copy of conf/demo-repo in tmp_path; return its path (a pathlib.Path)."""
    target = tmp_path / "demo-repo"
    shutil.copytree(DEMO_REPO, target, symlinks=True)
    return target


class TestCA:
    """PEM files of a trustme CA, a server certificate and client certificates.

    Attributes are file paths (str): ``ca_cert``, ``server_cert`` (certificate
    chain), ``server_key``. ``client_cert(name)`` returns ``(cert, key)`` paths
    of a certificate whose subject commonName is ``name``; certificates for
    names outside DEMO_CLIENTS are issued on first use. ``ca`` is the
    ``trustme.CA`` itself, for anything else (e.g. ``ca.configure_trust(ctx)``).
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, directory):
        import trustme

        self.dir = str(directory)
        self.ca = trustme.CA(organization_name="bcfg2_cherry tests")
        self.ca_cert = self._write("ca.crt", self.ca.cert_pem.bytes())
        server = self.ca.issue_cert(*SERVER_NAMES, common_name="localhost")
        self.server_cert = self._write(
            "server.crt", b"".join(pem.bytes() for pem in server.cert_chain_pems))
        self.server_key = self._write("server.key", server.private_key_pem.bytes())
        self._clients = {}
        self._lock = threading.Lock()
        for name in DEMO_CLIENTS:
            self.client_cert(name)

    def _write(self, filename, data):
        path = os.path.join(self.dir, filename)
        with open(path, "wb") as fh:
            fh.write(data)
        if filename.endswith(".key"):
            os.chmod(path, 0o600)
        return path

    def client_cert(self, name):
        """Return ``(cert_path, key_path)`` for client ``name`` (CN and SAN)."""
        with self._lock:
            if name not in self._clients:
                leaf = self.ca.issue_cert(name, common_name=name)
                stem = "client-" + name.replace(os.sep, "_")
                self._clients[name] = (
                    self._write(stem + ".crt",
                                b"".join(pem.bytes() for pem in leaf.cert_chain_pems)),
                    self._write(stem + ".key", leaf.private_key_pem.bytes()))
            return self._clients[name]


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    """A TestCA for the whole session, its files in a private temporary directory."""
    return TestCA(tmp_path_factory.mktemp("test-ca"))
