"""Writing output folders so that a reader sees the old one or the new one, never half of one."""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary folder that replaces `path` when the block succeeds.

    The temporary folder sits beside `path` (same file system, so the final
    rename is atomic). If the block raises, it is removed and `path` is left as
    it was; if it succeeds, an older `path` is swapped out and removed.

    Args:
        path: the folder to write.

    Yields:
        The temporary folder to write into.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    # mkdtemp makes the folder 0700; give it the mode a plain makedirs would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    try:
        yield staging
        retired = None
        if os.path.exists(path):
            retired = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
            os.replace(path, os.path.join(retired, "previous"))
        os.replace(staging, path)
        if retired:
            shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
