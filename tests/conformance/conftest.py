"""Fixtures of the conformance suite: one suite, run against every network core.

Every test module here gets the parameter ``core_name`` for each core registered under
the ``bcfg2_cherry.cores`` entry point; a core whose module does not import (not written
yet) is skipped with the import error as reason. Servers are real ``bcfg2-cherry serve
--core NAME`` subprocesses on 127.0.0.1 with TLS from the session ``test_ca``
(tests/conftest.py), serving a copy of the repository the upstream traces were recorded
with (``wire/repo``, global password ``wiredemo-global``).

Fixtures for reuse:

- ``core_name``: the core under test (module scope).
- ``wire_server``: a ``tests.support.servers.ServerProcess`` serving the wire repository
  (module scope; its state, e.g. clients.xml, persists across the module's tests).
- ``fresh_wire_server``: the same, one per test.
- ``client``: a ``tests.support.rawclient.RawClient`` for ``wire_server`` (user root,
  global password, the test CA), behaving like the upstream client.
- ``start_wire_server(core_name, directory, **write_config_kwargs)``: start another.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.support.servers import (  # noqa: E402
    WIRE_DIR, available_cores, copy_repo, start_server, write_config)

CORES = available_cores()
#: max_request_size of the conformance servers (small, so 413 is cheap to provoke)
MAX_REQUEST = 1024 * 1024


@pytest.fixture(scope="module", params=sorted(CORES))
def core_name(request):
    """Each registered network core; skipped when its module does not import."""
    error = CORES[request.param]
    if error:
        pytest.skip("network core %s is not available: %s" % (request.param, error))
    return request.param


def start_wire_server(core_name, directory, tls, args=(), server=None, **kwargs):
    """A server for the wire repository in ``directory`` (a fresh copy)."""
    repo = copy_repo(os.path.join(WIRE_DIR, "repo"), os.path.join(str(directory), "repo"))
    options = {"max_request_size": MAX_REQUEST}
    options.update(server or {})
    conf = write_config(os.path.join(str(directory), "bcfg2.conf.in"), repo, tls=tls,
                        server=options, **kwargs)
    srv = start_server(core_name, conf, directory, tls=tls, args=args)
    srv.repository = repo
    return srv


@pytest.fixture(scope="module")
def wire_server(core_name, tmp_path_factory, test_ca):
    srv = start_wire_server(core_name, tmp_path_factory.mktemp("wire-" + core_name),
                            test_ca)
    yield srv
    srv.stop()


@pytest.fixture
def fresh_wire_server(core_name, tmp_path, test_ca):
    srv = start_wire_server(core_name, tmp_path, test_ca)
    yield srv
    srv.stop()


@pytest.fixture
def client(wire_server):
    return wire_server.client()
