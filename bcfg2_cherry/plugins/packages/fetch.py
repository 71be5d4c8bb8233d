"""Downloading repository metadata (spec/packages.md §2.3): urllib with a timeout.

``http``, ``https``, ``ftp`` and ``file`` URLs work; ``scheme://user:password@host/``
becomes HTTP Basic credentials (taken out of the URL). Data go to a temporary file
beside the target and are renamed into place only when complete, so a failed or
concurrent download never leaves half a file behind.
"""
import base64
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request

from bcfg2_cherry.state import atomic_open

logger = logging.getLogger(__name__)

#: seconds a connection or a read may stall before the download fails
DEFAULT_TIMEOUT = 30.0
#: refuse downloads larger than this (bytes)
MAX_SIZE = 2 * 1024 * 1024 * 1024
CHUNK = 1024 * 1024


class FetchError(Exception):
    """A URL could not be downloaded (the message names the URL and the reason)."""


def split_credentials(url):
    """``(url without user:password@, (user, password) or None)``."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    if parts.port is not None:
        host = "%s:%s" % (host, parts.port)
    clean = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query,
                                     parts.fragment))
    return clean, (urllib.parse.unquote(parts.username),
                   urllib.parse.unquote(parts.password or ""))


def _request(url):
    clean, creds = split_credentials(url)
    request = urllib.request.Request(clean)
    if creds is not None:
        token = base64.b64encode(("%s:%s" % creds).encode("utf-8")).decode("ascii")
        request.add_header("Authorization", "Basic %s" % token)
    return clean, request


def _describe(err):
    if isinstance(err, urllib.error.HTTPError):
        return "HTTP response code %s" % err.code
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or err.__class__.__name__


def fetch_url(url, timeout=DEFAULT_TIMEOUT):
    """The bytes at ``url`` (small documents: repomd.xml)."""
    clean, request = _request(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(MAX_SIZE + 1)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise FetchError("Failed to fetch %s: %s" % (clean, _describe(err))) from None
    if len(data) > MAX_SIZE:
        raise FetchError("Failed to fetch %s: larger than %d bytes" % (clean, MAX_SIZE))
    return data


def fetch_to_file(url, path, timeout=DEFAULT_TIMEOUT):
    """Download ``url`` to ``path`` (atomically replaced); returns the size."""
    clean, request = _request(url)
    size = 0
    with atomic_open(path) as out:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > MAX_SIZE:
                        raise FetchError("Failed to fetch %s: larger than %d bytes"
                                         % (clean, MAX_SIZE))
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise FetchError("Failed to fetch %s: %s" % (clean, _describe(err))) \
                from None
    return size


class FailureLog:
    """Logs a URL's failure once, until it succeeds again (spec §10)."""

    def __init__(self):
        self._failed = {}
        self._lock = threading.Lock()

    def failed(self, url, message, log=logger):
        with self._lock:
            again = self._failed.get(url) == message
            self._failed[url] = message
        if again:
            log.debug("Packages: %s (again)", message)
        else:
            log.error("Packages: %s", message)

    def succeeded(self, url):
        with self._lock:
            self._failed.pop(url, None)
