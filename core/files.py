"""What a path is, for messages about files the toolbox reads (config/*.yaml, .env)."""
import errno
import os
import stat

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
