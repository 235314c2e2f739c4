"""The local side of a transfer: which files a pattern selects under the local root, their content
checks (checksum=true), and deleting them (sync direction=down delete=true, interactive delete).

Symbolic links are followed, files and folders alike, wherever they are in the walked tree (so
`file=data/` sees what `file=data/imagenet/` sees through a linked folder), with two exceptions: a link
back into its own folder tree (a loop) and a link whose target is a protected name (.env*, .aws/,
.ssh/, .git/) the pattern does not name. Both are skipped with a warning, once per process.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat as stat_mod
from typing import Iterable, List, Optional

from toolbox.errors import S3Error, warn
from toolbox.s3.paths import TEMP_PREFIX, LocalFile, Pattern, RemoteObject, is_internal_name, local_path_for, temp_owner

_warned = set()


def find_local(pattern: Pattern, local_root=".", leftovers: Optional[list] = None) -> List[LocalFile]:
    """The local files a pattern selects under local_root (hidden files included, the toolbox's own
    temporary files never). `leftovers` receives the paths of the toolbox's temporary files seen on the
    way (a later sweep removes those a killed run left behind)."""
    walker = _Walk(pattern, local_root, leftovers)
    if not pattern.has_wildcards and not pattern.folder_only and not pattern.is_root:
        path = local_path_for(pattern.body, local_root)
        if os.path.isfile(path):
            if walker.hidden_target(path, pattern.body):
                return []
            st = os.stat(path)
            return [LocalFile(pattern.body, path, st.st_size, st.st_mtime)]
    start = pattern.walk_root           # a literal pattern: that folder only (never its siblings)
    first_level = pattern.literal_prefix[len(start) + 1 if start else 0:] if pattern.has_wildcards else ""
    top = local_path_for(start, local_root) if start else (local_root or ".")
    if start and walker.hidden_target(top, start):
        return []
    found = [LocalFile(rel, path, st.st_size, st.st_mtime) for rel, path, st in walker.walk(top, start, first_level)
             if pattern.matches(rel)]
    return sorted(found, key=lambda f: f.relpath)


class _Walk:
    def __init__(self, pattern, local_root, leftovers):
        self.pattern, self.local_root, self.leftovers = pattern, local_root, leftovers
        self._root_real = None

    @property
    def root_real(self):
        if self._root_real is None:
            self._root_real = os.path.realpath(self.local_root or ".")
        return self._root_real

    def hidden_target(self, path, rel) -> bool:
        """Does `path` lead, through symbolic links, to a protected name the pattern does not name?"""
        real = os.path.realpath(path)
        if real == os.path.abspath(path):
            return False                 # no link on the way: the name itself is what the pattern checks
        common = os.path.commonpath([real, self.root_real])
        if self.pattern.hides(os.path.relpath(real, common).split(os.sep)):
            _warn_once(os.path.abspath(path), f"{rel}: a symbolic link to {real}, a protected path: skipped "
                            "(credentials and the git database are never selected through a link)")
            return True
        return False

    def walk(self, top, top_rel, first_level_prefix):
        """(relative path, path, stat) of every regular file under top."""
        # chain: the real folders in which a link was followed on the way down, to detect loops
        stack = [(top, top_rel, first_level_prefix, ())]
        while stack:
            folder, rel, name_prefix, chain = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except PermissionError:
                raise S3Error(folder, "permission denied while listing local files") from None
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX) and is_internal_name(entry.name):
                    if self.leftovers is not None:
                        self.leftovers.append(entry.path)
                    continue            # the toolbox's own temporary files, staging folders, lock
                if name_prefix and not entry.name.startswith(name_prefix):
                    continue
                child_rel = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    found = self._follow(entry, child_rel, folder, chain)
                    if found is None:
                        continue
                    if isinstance(found, tuple):
                        stack.append((entry.path, child_rel, "", found))
                        continue
                    st = found
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, child_rel, "", chain))
                    continue
                else:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                if stat_mod.S_ISREG(st.st_mode):
                    yield child_rel, local_path_for(child_rel, self.local_root), st

    def _follow(self, entry, rel, folder, chain):
        """A link: its stat (a file), the new chain (a folder to walk), or None (skipped)."""
        try:
            st = entry.stat()
        except OSError:
            return None                 # a broken link
        if self.hidden_target(entry.path, rel):
            return None
        if not stat_mod.S_ISDIR(st.st_mode):
            return st
        real, here = os.path.realpath(entry.path), os.path.realpath(folder)
        if any(seen == real or seen.startswith(real.rstrip(os.sep) + os.sep) for seen in chain + (here,)):
            _warn_once(os.path.abspath(entry.path), f"{rel}: a symbolic link to {real}, which contains it: "
                                                    "not followed (a loop)")
            return None
        return chain + (here,)


def _warn_once(key, text):
    if key not in _warned:
        _warned.add(key)
        warn(text)


def leftovers_in(folder) -> List[str]:
    """The toolbox's temporary names directly in one folder."""
    try:
        with os.scandir(folder or ".") as entries:
            return [e.path for e in entries if e.name.startswith(TEMP_PREFIX) and is_internal_name(e.name)]
    except OSError:
        return []


def sweep_leftovers(paths: Iterable[str], started: float) -> List[str]:
    """Remove temporary files and staging folders that a killed run left behind: older than this run
    and not written by a process that is still alive. Returns what was removed."""
    removed = []
    for path in paths:
        name = os.path.basename(path)
        owner = temp_owner(name)
        if not is_internal_name(name) or owner is None or (owner != os.getpid() and _alive(owner)):
            continue
        try:
            if os.lstat(path).st_mtime >= started:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed.append(path)
        except OSError:
            continue
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # another user's process
        return True
    return True


def same_content(local: LocalFile, remote: RemoteObject, part_sizes=()) -> bool:
    """checksum=true: does the file's MD5 (or multipart MD5 for "md5-N" ETags) equal the ETag?"""
    etag = remote.etag.strip('"')
    try:
        if "-" not in etag:
            return _md5_parts(local.path, None) == etag
        count = int(etag.rsplit("-", 1)[1])
    except (OSError, ValueError):
        return False
    mib = 1024 * 1024
    derived = -(-local.size // max(count, 1))
    candidates = list(part_sizes) + [8 * mib, 5 * mib, 16 * mib, 50 * mib, 64 * mib, 100 * mib,
                                     -(-derived // mib) * mib]
    for part in dict.fromkeys(candidates):       # ordered, unique
        if part and -(-local.size // part) == count:
            try:
                if _md5_parts(local.path, part) == etag:
                    return True
            except OSError:
                return False
    return False


def _md5_parts(path, part_size):
    whole, parts = hashlib.md5(), []
    with open(path, "rb") as f:
        while True:
            block = f.read(part_size or 8 * 1024 * 1024)
            if not block:
                break
            if part_size:
                parts.append(hashlib.md5(block).digest())
            else:
                whole.update(block)
    if not part_size:
        return whole.hexdigest()
    return hashlib.md5(b"".join(parts)).hexdigest() + f"-{len(parts)}"


def delete_local_files(paths: Iterable[str], root=".") -> List[str]:
    """Delete local files, then the folders under `root` that became empty. Returns the files deleted."""
    deleted = []
    stop = os.path.abspath(root or ".")
    for path in paths:
        try:
            os.unlink(path)
            deleted.append(path)
        except FileNotFoundError:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        while folder.startswith(stop + os.sep):
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)
    return deleted
