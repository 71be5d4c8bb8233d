"""File monitors: tell plugins when their files change (FAM-style events).

``load(name)`` returns the backend class named by ``[server] filemonitor``:

- ``inotify`` (and ``default``): watchdog's Observer, inotify on Linux;
- ``poll``: stats every monitored path each second, for file systems without inotify;
- ``pseudo``: initial ``exists`` events only, never notices a change.
"""
import logging

from .base import ACTIONS, Event, FileMonitor
from .inotify import HAVE_WATCHDOG, Inotify
from .poll import Poll
from .pseudo import Pseudo

logger = logging.getLogger(__name__)

#: backend name -> class; ``default`` is the best one available here.
available = {
    "inotify": Inotify,
    "poll": Poll,
    "polling": Poll,
    "pseudo": Pseudo,
    "default": Inotify if HAVE_WATCHDOG else Poll,
}

__all__ = ["ACTIONS", "Event", "FileMonitor", "Inotify", "Poll", "Pseudo", "available",
           "load"]


def load(name):
    """The FileMonitor class for a ``[server] filemonitor`` value (case-insensitive).

    ``gamin`` (upstream's other backend) is not supported and gives the default with a
    warning; an unknown name raises ValueError listing the valid ones.
    """
    if isinstance(name, type) and issubclass(name, FileMonitor):
        return name
    key = str(name or "default").strip().lower()
    if key == "gamin":
        logger.warning("The gamin file monitor is not supported; using the default (%s)",
                       available["default"].__name__)
        key = "default"
    if key in ("default", "inotify") and not HAVE_WATCHDOG:
        logger.warning("watchdog is not installed; using the polling file monitor")
        return Poll
    try:
        return available[key]
    except KeyError:
        raise ValueError("unknown file monitor %r; valid choices: %s"
                         % (name, ", ".join(sorted(set(available) | {"gamin"})))) from None
