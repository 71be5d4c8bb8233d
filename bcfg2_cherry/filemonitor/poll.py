"""The ``poll`` backend: stat every monitored path at a fixed interval.

For file systems without inotify (NFS, some containers). Costs one ``stat`` per
monitored file and directory entry per interval; changes are seen up to
``interval`` seconds late.
"""
import logging
import threading

from .base import FileMonitor

logger = logging.getLogger(__name__)


class Poll(FileMonitor):
    """Looks at every monitored path (and each monitored directory's entries) every
    ``interval`` seconds on its own thread."""

    __priority__ = 10

    def __init__(self, ignore=(), debug=False, interval=1.0, recursive_roots=()):
        FileMonitor.__init__(self, ignore=ignore, debug=debug,
                             recursive_roots=recursive_roots)  # ignored: stats are per path
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread = None

    def _start_backend(self):
        self._stop.clear()
        self._thread = threading.Thread(name="FileMonitorPoll", target=self._run, daemon=True)
        self._thread.start()

    def _stop_backend(self):
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(2)

    def _run(self):
        # the first pass at once catches changes made between AddMonitor and start()
        while True:
            try:
                self.poll_once()
            except Exception:  # pylint: disable=broad-except
                logger.exception("File monitor poll failed")
            if self._stop.wait(self.interval):
                return

    def poll_once(self):
        """Look at every monitor now and queue what changed."""
        for monitor in list(self._monitors.values()):
            if self._stop.is_set():
                return
            with self._lock:  # per monitor, so AddMonitor never waits for a whole pass
                if self._monitors.get(monitor.handle) is monitor:
                    self._queue_changes(monitor, monitor.sync())
