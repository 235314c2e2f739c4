"""What a path is, for messages about files the toolbox reads (config/*.yaml, .env), and writing a file
whole or not at all."""
import errno
import os
import stat
import tempfile

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_a_file(path):
    """None when path is a regular file (after symbolic links), else what is wrong, as the end of a
    message about it: 'is a directory, not a file', 'is a symbolic link to x, which does not exist', ...
    (never opens it: a FIFO would block)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        return "does not exist"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link that loops"
        return f"cannot be read ({err.strerror})"
    if stat.S_ISREG(mode):
        return None
    kind = next((kind for test, kind in _KINDS if test(mode)), "something else")
    return f"is {kind}, not a file"


def write_atomically(path, text, mode=None):
    """Write text to path through a temporary file renamed over it: a reader (a browser reloading the
    report, a second toolbox process) sees the old file or the new one, never half of one. `mode` defaults
    to what a plain open() would give (0666 less the umask); the temporary file is removed on failure."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)       # mkstemp makes it 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return path
