"""Writing state files so that a crash never leaves one half-written."""
import os
import tempfile


def atomic_write(path, data, mode=None):
    """Write ``data`` (bytes or str) to ``path`` atomically: temp file, fsync, rename.

    A symlink at ``path`` is followed, so the link's target is replaced. The file keeps
    its permission bits when ``mode`` is not given.
    """
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".new",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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
