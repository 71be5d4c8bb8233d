"""The ``inotify`` backend, built on watchdog's Observer (inotify on Linux).

inotify watches directories, so a monitor watches the directory it is in (to see the
path itself appear, change or go) and, while the path is a directory, the path too.
A path whose parent does not exist yet is covered by watching its nearest existing
ancestor until the missing directories appear.

watchdog's notifications are only *hints* of which names to look at again. They are
collected for a short debounce window (and, where watchdog reports close-write, until
the writer has closed the file), so a burst of writes becomes one ``changed`` and no
handler reads a half-written file. A directory that cannot be watched (no inotify,
watch limit reached) is polled instead.

watchdog runs one emitter thread per scheduled watch (and, before watchdog 7, one
inotify instance each), and a repository has a directory per Cfg entry, so
directories below one of ``recursive_roots`` (the repository) share a single
recursive watch on that root, scheduled when the first of them is watched; its
notifications are dropped unless they concern a watched directory or an entry of
one, exactly what per-directory watches would report. Other directories (that of
``bcfg2.conf``, say), and those reached through a symbolic link below a root (which
a recursive watch does not follow), get a watch of their own.
"""
import logging
import os
import queue
import stat
import threading
import time

from .base import FileMonitor

try:
    import watchdog.events as _wd_events
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer
    HAVE_WATCHDOG = True
except ImportError:  # pragma: no cover - watchdog is a dependency
    FileSystemEventHandler = object
    Observer = None
    _wd_events = None
    HAVE_WATCHDOG = False

logger = logging.getLogger(__name__)

_STOP = object()
_WAKE = object()  # no hint: makes the worker look at its poll deadline again

#: watchdog event classes we ask for (lets watchdog narrow the inotify mask, so that
#: reading the repository produces no notifications at all).
_EVENT_FILTER = [getattr(_wd_events, name) for name in (
    "FileCreatedEvent", "DirCreatedEvent", "FileDeletedEvent", "DirDeletedEvent",
    "FileModifiedEvent", "FileMovedEvent", "DirMovedEvent", "FileClosedEvent")
    if _wd_events is not None and hasattr(_wd_events, name)]


class _Hints(FileSystemEventHandler):
    """Turns watchdog events into ``(path, kind, is_dir)`` hints for the worker thread.

    Runs on watchdog's dispatch thread, so it only enqueues. A move is a deletion of
    its source and a creation of its destination, as upstream Bcfg2 reported it.
    Paths below ``real`` (the resolved path that was scheduled) are reported below
    ``logical`` (the path as monitors name it) instead.
    """

    def __init__(self, put, real=None, logical=None):
        super().__init__()
        self._put = put
        self._real = real if real != logical else None
        self._logical = logical

    def _path(self, path):
        path = os.fsdecode(path or "")
        if self._real is not None and path and _under(path, self._real):
            path = self._logical + path[len(self._real):]
        return path

    def dispatch(self, event):
        kind = event.event_type
        is_dir = bool(event.is_directory)
        src = self._path(event.src_path)
        if kind == "moved":
            if src:
                self._put((src, "deleted", is_dir))
            dest = self._path(getattr(event, "dest_path", ""))
            if dest:
                self._put((dest, "created", is_dir))
        elif kind in ("created", "deleted", "closed"):
            self._put((src, kind, is_dir))
        elif kind == "modified" and not is_dir:
            self._put((src, kind, is_dir))


class _Pending:
    """Hints gathered for one path until it is due to be looked at."""

    __slots__ = ("first", "deadline", "writing", "structural")

    def __init__(self, now):
        self.first = now
        self.deadline = now
        self.writing = False
        self.structural = False


def _ident(path):
    """``(st_dev, st_ino)`` of the directory at ``path``, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _watch_dirs(monitor):
    """Directories to watch for ``monitor``: its nearest existing ancestor, and the
    path itself while it is a directory."""
    dirs = set()
    if os.path.isdir(monitor.abspath):
        dirs.add(monitor.abspath)
    parent = os.path.dirname(monitor.abspath)
    while not os.path.isdir(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if os.path.isdir(parent):
        dirs.add(parent)
    return dirs


def _under(path, directory):
    """True if ``path`` is ``directory`` or inside it."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _recursive_roots(roots):
    """``recursive_roots`` as absolute paths, without ``/``, duplicates, roots below
    another root, or roots resolving to the same directory as another one."""
    if isinstance(roots, (str, bytes, os.PathLike)):
        roots = [roots]
    paths = set()
    for root in roots or ():
        if not root:
            continue
        root = os.path.abspath(os.fsdecode(root))
        if root == "/":
            logger.warning("Not watching / recursively; its directories are watched "
                           "one by one")
            continue
        paths.add(root)
    kept, real = [], set()
    for root in sorted(paths):  # a root sorts before the directories below it
        if any(_under(root, other) for other in kept):
            continue
        resolved = os.path.realpath(root)
        if resolved not in real and resolved != "/":
            kept.append(root)
            real.add(resolved)
    return tuple(kept)


class Inotify(FileMonitor):
    """watchdog (inotify) backend; see the module docstring.

    ``debounce``: seconds of quiet before a path is looked at; ``max_delay``: longest
    wait for a writer to close a file; ``poll_interval``: how often directories that
    could not be watched are polled; ``recursive_roots``: directories (the
    repository) whose watched subdirectories share one recursive watch.
    """

    __rmi__ = FileMonitor.__rmi__ + ["list_watches", "list_paths"]
    __priority__ = 99

    def __init__(self, ignore=(), debug=False, debounce=0.05, max_delay=2.0,
                 poll_interval=1.0, recursive_roots=()):
        FileMonitor.__init__(self, ignore=ignore, debug=debug)
        self.debounce = float(debounce)
        self.max_delay = float(max_delay)
        self.poll_interval = float(poll_interval)
        #: absolute directories below which one recursive watch serves every directory
        self.recursive_roots = _recursive_roots(recursive_roots)
        self._observer = None
        self._close_write = False
        self._filter = list(_EVENT_FILTER) or None
        self._handler = _Hints(self._put_hint) if HAVE_WATCHDOG else None
        #: watched directory -> (ObservedWatch, (st_dev, st_ino), recursive root or None);
        #: a directory below a root shares the root's watch
        self._watches = {}
        self._roots = {}        # recursive root -> (ObservedWatch, (st_dev, st_ino))
        self._root_failed = set()  # roots that failed since the last _plan: not retried
        self._root_warned = set()
        self._failed = set()    # directories we could not watch: polled instead
        self._hints = queue.SimpleQueue()
        self._thread = None

    # ------------------------------------------------------------------ life cycle

    def _start_backend(self):
        self._hints = queue.SimpleQueue()  # no stale stop marker after a restart
        if HAVE_WATCHDOG:
            try:
                observer = Observer()
                observer.start()
            except Exception as err:  # pylint: disable=broad-except
                logger.warning("watchdog cannot start (%s); polling every %ss instead",
                               err, self.poll_interval)
            else:
                self._observer = observer
                self._close_write = (type(observer).__name__ == "InotifyObserver" and
                                     "FileClosedEvent" in {c.__name__ for c in _EVENT_FILTER})
        else:
            logger.warning("watchdog is not installed; polling every %ss instead",
                           self.poll_interval)
        self._thread = threading.Thread(name="FileMonitorInotify", target=self._run,
                                        args=(self._hints,), daemon=True)
        self._thread.start()
        self._plan()
        # catch up with whatever changed between AddMonitor and now
        for monitor in list(self._monitors.values()):
            self._queue_changes(monitor, monitor.sync())

    def _stop_backend(self):
        self._hints.put(_STOP)
        with self._lock:
            observer, self._observer = self._observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(2)
            except Exception:  # pylint: disable=broad-except
                logger.exception("Stopping the watchdog observer failed")
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(2)
        with self._lock:
            self._watches.clear()
            self._roots.clear()
            self._root_failed.clear()
            self._root_warned.clear()
            self._failed.clear()

    def _watch(self, monitor):
        for directory in _watch_dirs(monitor):
            self._ensure_watch(directory)

    # ------------------------------------------------------------------ watches

    def _schedule(self, directory, handler=None, recursive=False):
        handler = self._handler if handler is None else handler
        if self._filter is not None:
            try:
                return self._observer.schedule(handler, directory, recursive=recursive,
                                               event_filter=self._filter)
            except TypeError:  # watchdog < 4 has no event_filter
                self._filter = None
        return self._observer.schedule(handler, directory, recursive=recursive)

    def _unschedule(self, directory):
        watch = self._watches.pop(directory, None)
        if watch is not None and watch[2] is None and self._observer is not None:
            try:
                self._observer.unschedule(watch[0])
            except Exception:  # pylint: disable=broad-except
                self.debug_log("Unscheduling %s failed", directory)

    def _unschedule_root(self, root):
        watch = self._roots.pop(root, None)
        if watch is not None and self._observer is not None:
            try:
                self._observer.unschedule(watch[0])
            except Exception:  # pylint: disable=broad-except
                self.debug_log("Unscheduling %s failed", root)

    def _root_for(self, directory):
        """The recursive root whose watch covers ``directory``, or None.

        A recursive watch does not follow symbolic links, so a directory reached
        through one below the root needs a watch of its own.
        """
        for root in self.recursive_roots:
            if _under(directory, root):
                path = directory
                while path != root:
                    if os.path.islink(path):
                        return None
                    path = os.path.dirname(path)
                return root
        return None

    def _ensure_root(self, root):
        """The recursive watch on ``root``, scheduled on first use (or again if the
        root was replaced); None if it cannot be watched."""
        ident = _ident(root)
        current = self._roots.get(root)
        if current is not None:
            if current[1] == ident:
                return current[0]
            self._unschedule_root(root)
        if ident is None or self._observer is None or root in self._root_failed:
            return None
        real = os.path.realpath(root)
        handler = _Hints(self._put_root_hint, real, root)
        try:
            watch = self._schedule(real, handler, recursive=True)
        except Exception as err:  # pylint: disable=broad-except
            if root not in self._root_warned:
                logger.warning("Cannot watch %s recursively (%s); polling the directories "
                               "below it every %ss", root, err, self.poll_interval)
            self._root_warned.add(root)
            self._root_failed.add(root)
            return None
        self._root_warned.discard(root)
        self._roots[root] = (watch, ident)
        self.debug_log("Watching %s recursively", root)
        return watch

    def _ensure_watch(self, directory):
        """Watch ``directory`` unless it already is (the same inode); True if new."""
        ident = _ident(directory)
        root = self._root_for(directory) if ident is not None else None
        current = self._watches.get(directory)
        if current is not None:
            if current[1] == ident and current[2] == root and (
                    root is None or self._ensure_root(root) is current[0]):
                return False
            self._unschedule(directory)  # gone, replaced, or its root watch was
        if ident is None:
            return False
        if self._observer is None:
            self._mark_failed(directory)
            return False
        if root is not None:
            watch = self._ensure_root(root)
            if watch is None:
                self._mark_failed(directory)
                return False
        else:
            try:
                watch = self._schedule(directory)
            except Exception as err:  # pylint: disable=broad-except
                if directory not in self._failed:
                    logger.warning("Cannot watch %s (%s); polling it every %ss",
                                   directory, err, self.poll_interval)
                self._mark_failed(directory)
                return False
        self._failed.discard(directory)
        self._watches[directory] = (watch, ident, root)
        self.debug_log("Watching %s%s", directory,
                       "" if root is None else " (below %s)" % root)
        return True

    def _mark_failed(self, directory):
        """Poll ``directory``: the worker, which may be asleep with nothing to poll,
        is woken to start."""
        if not self._failed:
            self._hints.put(_WAKE)
        self._failed.add(directory)

    def _wanted(self):
        wanted = set()
        for monitor in self._monitors.values():
            wanted |= _watch_dirs(monitor)
        return wanted

    def _plan(self):
        """Bring the watches in line with the monitors; returns the directories
        newly watched (their monitors must be looked at: things may have appeared
        before the watch did)."""
        self._root_failed.clear()  # a root that could not be watched is tried again
        fresh = set()
        wanted = self._wanted()
        for _ in range(10):
            for directory in list(self._watches):
                if directory not in wanted:
                    self._unschedule(directory)
            self._failed &= wanted
            new = {d for d in sorted(wanted) if self._ensure_watch(d)}
            fresh |= new
            if not new:
                break
            # directories may have appeared below the new watches before they were
            # in place; watch those too rather than wait for a notification
            again = self._wanted()
            if again == wanted:
                break
            wanted = again
        used = {watch[2] for watch in self._watches.values()}
        for root in list(self._roots):
            if root not in used:
                self._unschedule_root(root)
        return fresh

    # ------------------------------------------------------------------ the worker

    def _put_hint(self, hint):
        self._hints.put(hint)

    def _put_root_hint(self, hint):
        """A hint from a recursive watch: kept only if a per-directory watch would
        have reported it (the path, or its directory, is watched)."""
        path = hint[0]
        if path in self._watches or os.path.dirname(path) in self._watches:
            self._hints.put(hint)

    def _due_at(self, rec):
        if self._close_write and rec.writing:
            return max(rec.deadline, rec.first + self.max_delay)
        return rec.deadline

    def _run(self, hints_queue):
        """Gather hints, and look at each path once it has been quiet long enough."""
        pending = {}
        next_poll = time.monotonic() + self.poll_interval
        while True:
            wake = [self._due_at(rec) for rec in pending.values()]
            if self._observer is None or self._failed:
                wake.append(next_poll)
            timeout = max(0.0, min(wake) - time.monotonic()) if wake else None
            hints = []
            try:
                hints.append(hints_queue.get(timeout=timeout))
                while True:
                    hints.append(hints_queue.get_nowait())
            except queue.Empty:
                pass
            if _STOP in hints:
                return
            now = time.monotonic()
            for hint in hints:
                if hint is not _WAKE:
                    self._record(pending, now, *hint)
            due = [path for path, rec in pending.items() if self._due_at(rec) <= now]
            try:
                if due:
                    self._flush([(path, pending.pop(path)) for path in due])
                if (self._observer is None or self._failed) and now >= next_poll:
                    next_poll = now + self.poll_interval
                    self._poll_unwatched()
            except Exception:  # pylint: disable=broad-except
                logger.exception("File monitor failed to process changes")

    def _record(self, pending, now, path, kind, is_dir):
        rec = pending.get(path)
        if rec is None:
            rec = pending[path] = _Pending(now)
        rec.deadline = now + self.debounce
        rec.writing = kind == "modified" or (rec.writing and kind not in
                                             ("closed", "created", "deleted"))
        if is_dir or path in self._watches:
            rec.structural = True

    def _flush(self, due):
        """Look again at the paths in ``due`` (``[(path, _Pending)]``), oldest first."""
        due.sort(key=lambda item: item[1].first)
        with self._lock:
            if not self.started:
                return
            fresh = set()
            if any(rec.structural and self._affects_watches(path) for path, rec in due):
                for directory in self._plan():
                    for monitor in list(self._monitors.values()):
                        if _under(monitor.abspath, directory):
                            self._queue_changes(monitor, monitor.sync())
                            fresh.add(monitor.handle)
            for path, _ in due:
                for monitor in list(self._by_path.get(path, ())):
                    if monitor.handle not in fresh:
                        self._queue_changes(monitor, monitor.sync_self(hinted=True) +
                                            monitor.sync_entries())
                parent, name = os.path.split(path)
                for monitor in list(self._by_path.get(parent, ())):
                    if monitor.handle not in fresh:
                        self._queue_changes(monitor,
                                            monitor.sync_entries([name], hinted=True))

    def _affects_watches(self, path):
        """True if a directory appearing or going at ``path`` may change the watches."""
        return path in self._watches or any(_under(monitor.abspath, path)
                                            for monitor in self._monitors.values())

    def _poll_unwatched(self):
        """Look at the monitors that no watch covers (all of them without watchdog)."""
        with self._lock:
            if not self.started:
                return
            for monitor in list(self._monitors.values()):
                if self._observer is None or _watch_dirs(monitor) & self._failed:
                    self._queue_changes(monitor, monitor.sync())

    # ------------------------------------------------------------------ RMI

    def list_watches(self):
        """RMI: the directories being watched (inotify watches directories only);
        those below a recursive root all share the root's one watch."""
        with self._lock:
            return sorted(self._watches)

    def list_paths(self):
        """RMI: the monitored paths (files and directories), as plugins asked."""
        with self._lock:
            return sorted({monitor.path for monitor in self._monitors.values()})
