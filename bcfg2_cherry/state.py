"""Writing state files so that a crash never leaves one half-written."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode=None):
    """A binary file to write ``path`` through: a temp file beside it, fsynced and
    renamed over ``path`` when the block ends, removed if the block raises.

    A symlink at ``path`` is followed, so the link's target is replaced. The file keeps
    its permission bits when ``mode`` is not given (0644 for a new file).
    """
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path)[:100],
                               suffix=".new", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write(path, data, mode=None):
    """Write ``data`` (bytes or str) to ``path`` atomically (see ``atomic_open``)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path, mode) as fh:
        fh.write(data)
