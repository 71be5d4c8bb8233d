"""The Plugin base class and the debug-toggling mix-in shared by plugins and the core."""
import logging
import os


def parse_bool(value):
    """Upstream's reading of a debug flag: a bool, or a string that is "true" in any case."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


class Debuggable:
    """Something whose debug logging can be switched on and off at run time (RMI)."""

    __rmi__ = ["toggle_debug", "set_debug"]

    def __init__(self, name=None):
        self.debug_flag = False
        self.logger = logging.getLogger(name or self.__class__.__name__)

    def set_debug(self, debug):
        """Set debug logging on or off; returns the new state."""
        self.debug_flag = parse_bool(debug)
        return self.debug_flag

    def toggle_debug(self):
        """Flip debug logging; returns the new state."""
        return self.set_debug(not self.debug_flag)

    def debug_log(self, message, *args):
        """Log ``message`` at debug level only while debugging is on."""
        if self.debug_flag:
            self.logger.info(message, *args)


class Plugin(Debuggable):
    """Base of every server plugin.

    A plugin owns the repository sub-directory named like the plugin (``self.data``);
    ``create`` makes it if missing. Plugin interfaces (``bcfg2_cherry.plugin.interfaces``)
    are mixed in to say what the plugin does.
    """

    #: Plugins with a lower sort_order are asked first (``Core.plugins_by_type``).
    sort_order = 500
    #: Names of plugins that cannot be loaded beside this one.
    conflicts = []
    #: Create the plugin's data directory when it is missing.
    create = True
    experimental = False
    deprecated = False
    #: Methods of this plugin that clients may call as ``Name.method`` (plugin RMI).
    __rmi__ = Debuggable.__rmi__
    #: RMI names the multiprocessing core also runs in every child.
    __child_rmi__ = Debuggable.__rmi__

    def __init__(self, core):
        Debuggable.__init__(self, name=self.name)
        self.core = core
        self.Entries = {}
        self.running = True
        self.data = os.path.join(core.setup.repository, self.name)
        if self.create and not os.path.exists(self.data):
            self.logger.warning("%s: %s does not exist, creating", self.name, self.data)
            os.makedirs(self.data)

    @property
    def name(self):
        """The plugin's name as written in bcfg2.conf (the class name)."""
        return self.__class__.__name__

    @classmethod
    def plugin_name(cls):
        return cls.__name__

    @property
    def fam(self):
        """The file monitor of the core that loaded this plugin."""
        return self.core.fam

    def shutdown(self):
        """Release what the plugin holds; called once when the core stops."""
        self.running = False

    def set_debug(self, debug):
        # Upstream stores the argument as given for plugins; we parse it like the core does.
        return Debuggable.set_debug(self, debug)

    def __str__(self):
        return "%s Plugin" % self.name
