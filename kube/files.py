"""What a `file:` list ships: every path resolved through symbolic links and checked before anything is read.

- a path that resolves outside the project (a link to another project, to /dev/zero...) is refused, and so
  is a link that resolves to `.env` (its values reach pods through the Secret, never as a file);
- links inside the project are followed, folders included (a link to a folder that contains it is a loop);
- only regular files are shipped: named pipes, sockets and devices are refused (reading them blocks or never
  ends), and sizes come from stat() so nothing over the ConfigMap limit is ever read;
- credentials (core/private.py: .env.*, .envrc, .aws/, .ssh/) inside a listed folder are left out with a
  warning; they ship only when the `file:` entry names them;
- `.git` (folder, or a submodule's file) and `__pycache__` are skipped without a word.
Each problem names the `file:` entry it comes from (`file[2]`), so it is reported at that line.
"""
import os
import stat

from toolbox.core.files import not_a_file
from toolbox.core.private import private_unnamed
from toolbox.errors import Problem

SKIPPED = (".git", "__pycache__")     # a .git folder, or the .git file of a submodule
DOTENV = ".env"


class Found:
    """A regular file to ship: its path relative to the project (as listed), the file it resolves to."""

    __slots__ = ("path", "real", "size", "mode")

    def __init__(self, path, real, size, mode):
        self.path, self.real, self.size, self.mode = path, real, size, mode


class Gathered:
    """Everything a `file:` list selects (nothing read yet), the problems, the credentials left out."""

    def __init__(self):
        self.files, self.problems, self.private = [], [], []
        self._seen = set()

    def add(self, found):
        if found.path not in self._seen:
            self._seen.add(found.path)
            self.files.append(found)


def gather(paths, root=".", where="file"):
    """Resolve, walk and stat every entry of a `file:` list."""
    result = Gathered()
    top = os.path.realpath(root)
    for index, rel in enumerate(paths):
        walk = _Walk(top, result, f"{where}[{index}]", str(rel))
        norm = walk.check_syntax()
        if norm is not None:
            walk.visit(norm, frozenset())
    return result


def _inside(real, top):
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


class _Walk:
    """One `file:` entry: the files it selects, depth first in name order."""

    def __init__(self, top, result, field, entry):
        self.top, self.result, self.field, self.entry = top, result, field, entry

    def problem(self, what, details=()):
        self.result.problems.append(Problem(None, None, None, self.field, what, list(details)))

    def check_syntax(self):
        rel = self.entry
        norm = os.path.normpath(rel) if rel else ""
        if not rel or os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep):
            self.problem(f"'{rel}' must be a path inside the project", ["e.g. file: [config/extra.yaml, data/small]"])
            return None
        if "\0" in rel:
            self.problem(f"{rel!r}: a path cannot contain a NUL character")
            return None
        return norm.replace(os.sep, "/")

    def visit(self, rel, ancestors):
        """Ship `rel` (a file, or a folder recursively); `ancestors` are the resolved folders above it."""
        full = os.path.join(self.top, rel)
        is_link = os.path.islink(full)
        real = os.path.realpath(full)
        if not _inside(real, self.top):
            self.problem(f"'{rel}' leads outside the project (to {real})",
                         ["only files of the project are shipped; copy what pods need into the project"])
            return
        try:
            info = os.stat(full)
        except OSError:
            reason = not_a_file(full)
            missing = reason == "does not exist"
            hints = [f"paths are relative to the project root ({self.top})"] if missing else []
            self.problem(f"'{rel}' {reason}", hints)
            return
        is_dir = stat.S_ISDIR(info.st_mode)
        if not is_dir and DOTENV in (os.path.basename(rel), os.path.basename(real)):
            link = " is a link to .env:" if os.path.basename(rel) != DOTENV else ":"
            self.problem(f"'{rel}'{link} .env is never shipped as a file",
                         ["its values reach pods through the .env Secret (envFrom); remove it from file:"])
            return
        resolved = os.path.relpath(real, self.top).replace(os.sep, "/")
        if private_unnamed(rel, self.entry) or private_unnamed(resolved, self.entry):
            self.result.private.append(rel + ("/" if is_dir else ""))
            return
        if is_dir:
            if is_link and _inside(os.path.realpath(os.path.dirname(full)), real):
                self.problem(f"'{rel}' is a link to a folder that contains it (a loop)")
                return
            self._folder(rel, real, ancestors)
        elif stat.S_ISREG(info.st_mode):
            self._file(rel, real, info)
        else:
            self.problem(f"'{rel}' {not_a_file(full)}: only regular files are shipped")

    def _folder(self, rel, real, ancestors):
        if real in ancestors:
            self.problem(f"'{rel}' leads back to a folder it is in (a loop)")
            return
        try:
            names = sorted(os.listdir(real))
        except OSError as err:
            self.problem(f"'{rel}': {err.strerror}")
            return
        inner = ancestors | {real}
        for name in names:
            if name in SKIPPED:
                continue
            self.visit(name if rel == "." else f"{rel}/{name}", inner)

    def _file(self, rel, real, info):
        if "\n" in rel or "\t" in rel:
            self.problem(f"{rel!r}: a path with a tab or a newline cannot be shipped")
            return
        self.result.add(Found(rel, real, info.st_size, 0o755 if info.st_mode & stat.S_IXUSR else 0o644))


def read_bounded(found, limit):
    """The content of a gathered file, reading at most limit + 1 bytes (None: not a regular file any more,
    e.g. replaced by a named pipe since it was checked). O_NONBLOCK: opening a pipe must not block."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(found.real, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)

