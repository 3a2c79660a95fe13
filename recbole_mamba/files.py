"""Files that appear whole or not at all: write to a temporary name beside the target, then
rename (``os.replace`` is atomic within a folder). A leaf module: imports nothing of the project."""

import os
import tempfile
from contextlib import contextmanager

_UMASK = os.umask(0)  # read once, at import: os.umask can only be read by setting it
os.umask(_UMASK)


def as_created(path):
    """Give ``path`` the mode ``open()`` or ``os.mkdir()`` would have created it with (tempfile's
    mkstemp and mkdtemp make theirs private to the user)."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_UMASK)


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary file name in ``path``'s folder; when the block ends without an exception
    the file is renamed onto ``path``, otherwise it is removed. The folder is created if needed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    as_created(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_open(path, mode="w", **open_kwargs):
    """``open(path, mode)`` whose content replaces ``path`` only once the block has succeeded and
    the file is closed (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f
