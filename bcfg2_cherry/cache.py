"""A tagged cache: entries are keyed by tag sets, and expiring a tag set removes every
entry whose key contains it (spec/core.md §9). Expiry hooks let the multiprocessing
core forward expiries to its children.
"""
import threading

_hooks = []


class Cache(dict):
    """A dict keyed by tuples of tags, registered for process-wide expiry."""

    _caches = []

    def __init__(self, *tags):
        dict.__init__(self)
        self.tags = frozenset(tags)
        self._lock = threading.RLock()
        Cache._caches.append(self)

    def __setitem__(self, key, value):
        with self._lock:
            dict.__setitem__(self, key, value)

    def expire(self, key=None):
        """Drop one key, or everything."""
        with self._lock:
            if key is None:
                self.clear()
            else:
                self.pop(key, None)


def expire(*tags, **kwargs):
    """Expire the entries of every cache that carries all of ``tags``.

    ``exact=True`` drops only entries whose key is exactly ``tags`` (minus the cache's
    own tags); otherwise a cache carrying the tags is cleared whole, and a cache whose
    own tags are a subset has the entries keyed by the remaining tags dropped.
    """
    exact = kwargs.pop("exact", False)
    wanted = frozenset(tags)
    for cache in list(Cache._caches):
        if wanted <= cache.tags and not exact:
            cache.expire()
        elif cache.tags <= wanted:
            rest = wanted - cache.tags
            if not rest:
                cache.expire()
            else:
                with cache._lock:
                    for key in list(cache):
                        keyset = frozenset(key if isinstance(key, tuple) else (key,))
                        if (keyset == rest) if exact else (rest <= keyset):
                            cache.pop(key, None)
    for hook in list(_hooks):
        hook(tags, exact)


def add_expire_hook(func):
    """Call ``func(tags, exact)`` after every expiry (used to forward to children)."""
    _hooks.append(func)


def remove_expire_hook(func):
    if func in _hooks:
        _hooks.remove(func)
