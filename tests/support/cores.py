"""In-process cores for tests."""
from bcfg2_cherry.server.core import NetworkCore
from bcfg2_cherry.server.local_core import LocalCore


class TestNetworkCore(LocalCore, NetworkCore):
    """A LocalCore (no listener, no monitor thread) with NetworkCore's authentication."""

    __test__ = False
    name = "TestNetworkCore"
