"""Exclusive locks on files: one `make monitor` per folder, one environment build at a time."""
import contextlib
import fcntl
import os

from toolbox.errors import ToolboxError


@contextlib.contextmanager
def exclusive_lock(path, where=None, busy="locked by another process (pid {pid}); only one may run at a time"):
    """Hold an exclusive lock on `path` for the duration of the block; fail at once if it is taken
    (ToolboxError at `where`, saying `busy` with the holder's pid).

    flock is released by the kernel when the holder dies, so there are no stale locks to clean up.
    The lock file stays in place: removing it would let two later holders lock different files.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ToolboxError(where or path, busy.format(pid=holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)
