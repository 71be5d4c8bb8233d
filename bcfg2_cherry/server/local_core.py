"""An in-process core for introspection (``bcfg2-cherry info``), tests and benchmarks:
it loads the repository but listens on nothing, and handles file events when asked.
"""
from bcfg2_cherry.plugin.interfaces import Threaded
from bcfg2_cherry.server.core import Core


class LocalCore(Core):
    """A Core with no network and no monitor thread."""

    name = "LocalCore"

    def _run(self):
        return True

    def _block(self):
        pass

    def load(self):
        """Load the plugins and handle the initial file events; returns self."""
        self.load_plugins()
        self.fam.start()
        for plugin in self.plugins_by_type(Threaded):
            plugin.start_threads()
        self.block_for_fam_events(handle_events=True)
        self.ready.set()
        return self

    def handle_events(self, settle=0.1):
        """Handle what the file monitor has seen since the last call."""
        self.fam.handle_events_in_interval(settle)
        while self.fam.pending():
            self.fam.handle_event_set(self.lock)

    def __enter__(self):
        return self.load()

    def __exit__(self, *exc):
        self.shutdown()
