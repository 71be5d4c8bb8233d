"""A plugin whose RMI misbehaves on purpose, to see how a core reports it:
``Oddities.huge`` returns an int XML-RPC cannot carry, ``Oddities.explode`` raises a
RuntimeError, ``Oddities.fault`` raises Fault 4242."""
from bcfg2_cherry.plugin import Plugin
from bcfg2_cherry.server.errors import Fault


class Oddities(Plugin):
    """Misbehaving RMI for error-path tests."""

    create = False
    __rmi__ = Plugin.__rmi__ + ["huge", "explode", "fault", "echo"]

    def huge(self):
        return 2 ** 40

    def explode(self):
        raise RuntimeError("kaboom in a plugin")

    def fault(self):
        raise Fault(4242, "a fault of the plugin's own")

    def echo(self, value):
        return value
