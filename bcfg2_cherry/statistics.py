"""Call timing: a process-wide registry of name -> (min, max, mean, count)."""
import functools
import threading
import time


class Statistic:
    """Running min/max/mean/count of one timed name."""

    __slots__ = ("name", "min", "max", "total", "count")

    def __init__(self, name, value):
        self.name = name
        self.min = self.max = self.total = value
        self.count = 1

    def add_value(self, value):
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.total += value
        self.count += 1

    def get_value(self):
        return (self.name, (self.min, self.max, self.total / self.count, self.count))


class Statistics:
    """A thread-safe set of Statistic objects."""

    def __init__(self):
        self.data = {}
        self._lock = threading.Lock()

    def add_value(self, name, value):
        with self._lock:
            if name in self.data:
                self.data[name].add_value(value)
            else:
                self.data[name] = Statistic(name, value)

    def display(self):
        """``{name: [min, max, mean, count]}``, as get_statistics returns it."""
        with self._lock:
            return {name: list(stat.get_value()[1]) for name, stat in self.data.items()}

    def reset(self):
        with self._lock:
            self.data.clear()


#: The process-wide registry.
stats = Statistics()


def add_timing(name, seconds):
    """Record one timing of ``name``."""
    stats.add_value(name, seconds)


def track_statistics(name=None):
    """Decorator: time every call of a method under ``<runtime class>:<function>``.

    ``name`` replaces the function name in the key.
    """
    def decorator(func):
        label = name or func.__name__

        @functools.wraps(func)
        def wrapper(obj, *args, **kwargs):
            start = time.perf_counter()
            try:
                return func(obj, *args, **kwargs)
            finally:
                stats.add_value("%s:%s" % (obj.__class__.__name__, label),
                                time.perf_counter() - start)
        return wrapper
    return decorator
