"""What one monitor knows about its path, and the events that a rescan implies.

Every backend keeps, per monitor, the last state it reported (a signature for the
monitored path and, while that path is a directory, one per entry). Turning a fresh
``stat`` into events by comparing with that state keeps each handler's event stream
consistent whatever the backend saw: a name is ``created`` (or ``exists``) before it
is ``changed``, and ``deleted`` only once. inotify events become *hints* saying which
names to look at again; the polling backend simply looks at everything.
"""
import os
import stat

#: The signature of any directory: the entries of a directory are reported, the
#: directory's own modifications are not.
DIR = ("dir",)


def signature(path):
    """A value that changes when the file at ``path`` is rewritten; ``DIR``; or None.

    Symbolic links are followed; a dangling link still counts as an (empty) file.
    """
    try:
        st = os.stat(path)
    except OSError:
        try:
            st = os.lstat(path)
        except OSError:
            return None
    if stat.S_ISDIR(st.st_mode):
        return DIR
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _diff(old, new, filename, hinted):
    """Events turning the reported state ``old`` into ``new`` for one name."""
    if old is None:
        return [] if new is None else [("created", filename)]
    if new is None:
        return [("deleted", filename)]
    if (old is DIR) != (new is DIR):
        return [("deleted", filename), ("created", filename)]
    if new is DIR:
        return []
    if hinted or old != new:
        return [("changed", filename)]
    return []


class Monitor:
    """One ``AddMonitor`` request: its handle, its path and what was last reported.

    ``path`` is the path as given (events on it carry it unchanged); ``abspath`` is
    the key backends match their notifications against. The methods return lists of
    ``(action, filename)`` and update the stored state; callers serialise them.
    """

    __slots__ = ("handle", "path", "abspath", "own", "entries")

    def __init__(self, handle, path):
        self.handle = handle
        self.path = path
        self.abspath = os.path.abspath(path)
        #: signature last reported for the path itself (None: not there)
        self.own = None
        #: bare entry name -> signature last reported, while ``path`` is a directory
        self.entries = {}

    @property
    def is_dir(self):
        """True while the monitored path is (as last reported) a directory."""
        return self.own is DIR

    def __repr__(self):
        return "Monitor(%r, %r)" % (self.handle, self.path)

    def initial(self):
        """The ``exists`` events a new monitor sends at once, ``endExist`` closing a directory."""
        self.own = signature(self.abspath)
        self.entries = {}
        if self.own is None:
            return []
        events = [("exists", self.path)]
        if self.own is DIR:
            for name in sorted(_listdir(self.abspath)):
                self.entries[name] = signature(os.path.join(self.abspath, name))
                events.append(("exists", name))
            events.append(("endExist", self.path))
        return events

    def sync_self(self, hinted=False):
        """Look at the monitored path again.

        When it stops being a directory its known entries are reported ``deleted``
        first; when it becomes one, its entries are reported ``created`` after it.
        """
        new = signature(self.abspath)
        events = []
        if self.own is DIR and new is not DIR:
            events.extend(("deleted", name) for name in sorted(self.entries))
            self.entries = {}
        old, self.own = self.own, new
        events.extend(_diff(old, new, self.path, hinted))
        if new is DIR and old is not DIR:
            for name in sorted(_listdir(self.abspath)):
                sig = signature(os.path.join(self.abspath, name))
                if sig is not None:
                    self.entries[name] = sig
                    events.append(("created", name))
        return events

    def sync_entries(self, names=None, hinted=False):
        """Look again at ``names`` (bare names; None: every entry) of a directory monitor."""
        if self.own is not DIR:
            return []
        if names is None:
            names = set(_listdir(self.abspath)) | set(self.entries)
        events = []
        for name in sorted(names):
            new = signature(os.path.join(self.abspath, name))
            events.extend(_diff(self.entries.get(name), new, name, hinted))
            if new is None:
                self.entries.pop(name, None)
            else:
                self.entries[name] = new
        return events

    def sync(self):
        """Look at everything again (the polling backend's whole job)."""
        return self.sync_self() + self.sync_entries()
