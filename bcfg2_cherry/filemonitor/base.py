"""The file monitor interface (FAM-style) shared by every backend.

A plugin calls ``AddMonitor(path, handler)``; events for that path are queued here
and later handed to ``handler.HandleEvent(event)`` by ``handle_event_set``, which the
core calls from its monitor thread under its lock. Backends only decide *when* to
look at a path again; what to report is worked out by :mod:`.monitor`.
"""
import collections
import fnmatch
import itertools
import logging
import os
import threading
import time

from bcfg2_cherry.plugin.base import Debuggable

from .monitor import Monitor

logger = logging.getLogger(__name__)

#: Event actions, as upstream Bcfg2 (and SGI FAM) name them.
ACTIONS = ("exists", "endExist", "created", "changed", "deleted")

#: Names always dropped: our own atomic-write temp files (``.NAME.XXXX.new``, see
#: :func:`bcfg2_cherry.state.atomic_write`), which are created and renamed away.
ALWAYS_IGNORE = (".*.new",)


class Event:
    """One change of one path, as a handler receives it.

    ``filename`` is the full path for the monitored path itself and the bare name for
    an entry of a monitored directory; ``requestID`` is the monitor's handle.
    """

    def __init__(self, request_id, filename, code):
        self.requestID = request_id
        self.filename = filename
        self.action = code

    def code2str(self):
        """The action (``exists``, ``endExist``, ``created``, ``changed``, ``deleted``)."""
        return self.action

    def __str__(self):
        return "Event: %s %s" % (self.filename, self.action)

    def __repr__(self):
        return "<Event %s %r (request %r)>" % (self.action, self.filename, self.requestID)


def _normalize(path):
    """Strip trailing slashes (upstream did), keeping ``/`` itself."""
    path = os.fspath(path)
    return path.rstrip("/") or ("/" if path.startswith("/") else path)


class FileMonitor(Debuggable):
    """Base of the backends; on its own it behaves like ``Pseudo``.

    Monitors added before :meth:`start` report their ``exists`` events at once and
    are made live by ``start()`` (after the server has daemonized, so no thread is
    started before). Subclasses override :meth:`_start_backend`, :meth:`_watch` and
    :meth:`_stop_backend`.
    """

    __rmi__ = Debuggable.__rmi__ + ["list_event_handlers"]
    #: ``default`` is the available backend with the highest priority.
    __priority__ = -1

    def __init__(self, ignore=(), debug=False, recursive_roots=()):
        # ``recursive_roots`` (the repository) only matters to the inotify backend,
        # which watches everything below one with a single recursive watch; every
        # backend accepts it so that the core can pass it whichever one is chosen.
        del recursive_roots
        Debuggable.__init__(self, name=self.__class__.__module__)
        self.set_debug(debug)
        #: handle -> the object whose ``HandleEvent`` gets that monitor's events
        self.handles = {}
        #: queued events, oldest first
        self.events = collections.deque()
        #: shell globs; an event whose full path or base name matches one is dropped
        self.ignore = list(ignore or ())
        self.started = False
        self._lock = threading.RLock()       # monitors and their reported state
        self._cond = threading.Condition()   # the event queue
        self._wakeups = 0
        self._monitors = {}                  # handle -> Monitor
        self._by_path = collections.defaultdict(list)  # abspath -> [Monitor]
        self._ids = itertools.count()

    def __str__(self):
        return "%s: %s" % (__name__, self.__class__.__name__)

    def __repr__(self):
        return "%s (%d events, %d monitors)" % (self.__class__.__name__, len(self.events),
                                               len(self._monitors))

    # ------------------------------------------------------------------ life cycle

    def start(self):
        """Make the monitors live: start the backend's threads (once)."""
        with self._lock:
            if self.started:
                return
            self.started = True
            self._start_backend()

    def shutdown(self):
        """Stop the backend's threads; safe to call twice. Wakes anyone in :meth:`wait`."""
        with self._lock:
            was_started, self.started = self.started, False
        if was_started:
            self.debug_log("Shutting down %s file monitor", self.__class__.__name__)
            self._stop_backend()
        with self._cond:
            self._wakeups += 1
            self._cond.notify_all()

    def _start_backend(self):
        """Start watching every monitor added so far (called under the state lock)."""

    def _stop_backend(self):
        """Stop threads and watches; must return quickly."""

    def _watch(self, monitor):
        """Start watching a monitor added after :meth:`start` (under the state lock),
        before its initial scan so that no change falls in between."""

    # ------------------------------------------------------------------ monitors

    def AddMonitor(self, path, obj, handleID=None):  # pylint: disable=invalid-name
        """Monitor ``path`` (a file, or a directory non-recursively) for ``obj``.

        Queues ``exists`` for the path and, for a directory, for each entry and then
        ``endExist``; a path that does not exist yet reports ``created`` when it
        appears. Returns the handle (``handleID`` when given) that events carry.
        """
        path = _normalize(path)
        with self._lock:
            if handleID is None:
                handleID = next(self._ids)
                while handleID in self._monitors:
                    handleID = next(self._ids)
            old = self._monitors.pop(handleID, None)
            if old is not None:
                self._by_path[old.abspath].remove(old)
            monitor = Monitor(handleID, path)
            self._monitors[handleID] = monitor
            self._by_path[monitor.abspath].append(monitor)
            if obj is not None:
                self.handles[handleID] = obj
            if self.started:
                self._watch(monitor)
            self._queue_changes(monitor, monitor.initial())
        self.debug_log("Added monitor %s on %s for %r", handleID, path, obj)
        return handleID

    def _queue_changes(self, monitor, changes):
        """Queue ``(action, filename)`` pairs for ``monitor``, dropping ignored names."""
        if not changes:
            return
        queued = 0
        with self._cond:
            for action, filename in changes:
                event = Event(monitor.handle, filename, action)
                path = filename if filename == monitor.path else \
                    os.path.join(monitor.path, filename)
                if not self.should_ignore(event, path):
                    self.events.append(event)
                    queued += 1
            if queued:
                self._cond.notify_all()

    def should_ignore(self, event, path=None):
        """True if the event's full path or base name matches an ignore glob, or is
        one of our own atomic-write temp files.

        ``path`` is the full path when known (events on directory entries carry the
        bare name only); it defaults to ``event.filename``.
        """
        path = event.filename if path is None else path
        name = os.path.basename(path)
        for pattern in ALWAYS_IGNORE:
            if fnmatch.fnmatch(name, pattern):
                return True
        for pattern in self.ignore:
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(name, pattern):
                self.debug_log("Ignoring %s", event)
                return True
        return False

    # ------------------------------------------------------------------ the queue

    def pending(self):
        """True if events are queued."""
        return bool(self.events)

    def get_event(self):
        """Remove and return the oldest queued event (IndexError if none)."""
        with self._cond:
            return self.events.popleft()

    def wait(self, timeout=None):
        """Block until an event is queued, ``timeout`` passes or :meth:`shutdown` is
        called; returns :meth:`pending`. Lets the core's thread sleep instead of poll."""
        with self._cond:
            wakeups = self._wakeups
            self._cond.wait_for(lambda: self.events or self._wakeups != wakeups, timeout)
            return bool(self.events)

    def handle_one_event(self, event):
        """Give ``event`` to its handler; a handler's exception is logged, not raised."""
        if self.should_ignore(event):
            return
        handler = self.handles.get(event.requestID)
        if handler is None:
            logger.info("Got event for unexpected id %s, file %s",
                        event.requestID, event.filename)
            return
        self.debug_log("Dispatching event %s %s to obj %r",
                       event.code2str(), event.filename, handler)
        try:
            handler.HandleEvent(event)
        except Exception:  # pylint: disable=broad-except
            self.logger.exception("Error in handling of event %s for %s",
                                  event.code2str(), event.filename)

    def handle_event_set(self, lock=None):
        """Handle every queued event (holding ``lock`` if given); returns how many."""
        count = 0
        start = time.monotonic()
        if lock is not None:
            lock.acquire()
        try:
            while True:
                try:
                    event = self.get_event()
                except IndexError:
                    break
                self.handle_one_event(event)
                count += 1
        finally:
            if lock is not None:
                lock.release()
        if count:
            self.logger.debug("Handled %d events in %.03fs", count, time.monotonic() - start)
        return count

    def handle_events_in_interval(self, interval):
        """Handle events until none has arrived for ``interval`` seconds."""
        end = time.monotonic() + interval
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            if self.wait(remaining):
                self.handle_event_set()
                end = time.monotonic() + interval

    # ------------------------------------------------------------------ RMI

    def list_event_handlers(self):
        """RMI: ``{handle: repr(handler)}``, for debugging."""
        return {str(handle): repr(obj) for handle, obj in list(self.handles.items())}
