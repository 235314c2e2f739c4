"""S3 path and wildcard rules, and transfer planning: the one owner of "what does this pattern select".

Pure: no I/O (but for resolving an absolute pattern against the local root), no boto3. Callers give
listings (remote objects, local files) as plain data and get back explicit (key, local path) transfers.
Both backends only ever execute such explicit lists, so they cannot disagree about keys or skip decisions.
The rules are the numbered scenarios of docs/s3.md, "Path semantics".

A pattern P selects a key K (or the local file whose path relative to the local root is K) when
  - P matches K entirely, or P matches a folder of K (a prefix of K ending just before a "/");
  - P ending in "/" selects only what is under the folder (never an object named like the folder);
  - "*" matches any run of characters including "/", "?" exactly one character; nothing else is
    special ("[", "]", "\\" are literal).
So `data` selects `data` and `data/...` but never `data.txt` or `data2/...`, and `ckpt-1` never `ckpt-10`.
"""
from __future__ import annotations

import bisect
import os
import posixpath
import re
import secrets
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional

from toolbox.core.private import protected_stem
from toolbox.errors import S3UsageError

WILDCARDS = "*?"
# Names the toolbox itself writes next to user files; never matched locally (so never uploaded).
TEMP_PREFIX = ".toolbox-"
TEMP_SUFFIX = ".part"
LOCK_NAME = ".toolbox-monitor.lock"
# .toolbox-<pid>-<16 hex>.part: the pid tells a later run whether the writer is still alive (see
# stale_temp_owner); names without a pid come from earlier versions.
_TEMP_RE = re.compile(r"\.toolbox-(?:(\d+)-)?[0-9a-f]{16}\.part")
_ROOT_HINT = "give a path relative to the project root, e.g. file=data/ ('*' selects everything)"
_RELATIVE_HINT = "paths are relative to the project root locally and to the bucket root in S3"


@dataclass(frozen=True)
class Pattern:
    """A validated pattern. `text` is the normalised form (no "./", "//", "." or ".." components)."""

    text: str
    body: str               # text without the trailing "/"
    folder_only: bool       # written with a trailing "/" (or ending in "." or "..", which name folders)
    regex: "re.Pattern[str]" = field(compare=False, repr=False)

    @property
    def is_root(self):
        return self.body == ""

    @property
    def has_wildcards(self):
        return any(c in self.body for c in WILDCARDS)

    @property
    def literal_prefix(self):
        """The text before the first wildcard: every selected key starts with it."""
        cut = min([self.body.index(c) for c in WILDCARDS if c in self.body] or [len(self.body)])
        prefix = self.body[:cut]
        if not self.has_wildcards and self.folder_only and prefix:
            prefix += "/"
        return prefix

    @property
    def walk_root(self):
        """Where to look for local files ("" = the local root). A literal pattern names one file or one
        folder, so only that path is looked at; a wildcard pattern walks the folder of its literal part."""
        if self.is_root:
            return ""
        if not self.has_wildcards:
            return self.body
        return posixpath.dirname(self.literal_prefix)

    def matches(self, key):
        if self.regex.fullmatch(key) is None:
            return False
        return not ((key[:1] == "." or "/." in key) and self.hides(key.split("/")))

    def hides(self, parts) -> bool:
        """Do these path components include a protected name (credentials, the git database) that the
        pattern does not name? Also asked about the real path behind a symbolic link."""
        return any(protected_stem(part) and not self._names(part) for part in parts)

    def _names(self, part):
        stem = protected_stem(part)
        for named in self.body.split("/"):
            if named == part:
                return True
            literal = re.split(r"[*?]", named, 1)[0]
            if literal != named and literal.startswith(stem):   # `.env*`, `.aws*` name them; `.*` does not
                return True
        return False

    def select(self, keys: Iterable[str]) -> List[str]:
        return [k for k in keys if self.matches(k)]

    def __str__(self):
        return self.text


# Credentials and the git database are selected only by a pattern that names them (`file=.env`,
# `file=.aws/`, `file='*/.env*'`): `make upload file='*'` must not publish them, and
# `make sync file='*' direction=down delete=true` must not delete them.
# The protected names themselves are one rule with the file: list of pods (core/private.py).


def _glob(segment):
    return "".join("." if ch == "?" else re.escape(ch) for ch in segment)


def _to_regex(body, folder_only):
    """The pattern as a regex that never backtracks: each part between two `*` is found at its leftmost
    place, atomically (a lookahead captures it, a back-reference consumes it), which is enough for a glob
    and keeps any pattern linear in the key's length."""
    if body == "":
        return re.compile(".*", re.DOTALL)
    segments = re.sub(r"\*+", "*", body).split("*")
    if len(segments) == 1:
        core = _glob(body)
    else:
        first, *middle, last = segments
        core = _glob(first) + "".join(f"(?=(?P<s{i}>.*?{_glob(seg)}))(?P=s{i})" for i, seg in enumerate(middle))
        core += ".*" + _glob(last)
    tail = "/.*" if folder_only else "(?:/.*)?"
    return re.compile(core + tail, re.DOTALL)


def parse(text, allow_root=False, label="file", root=".") -> Pattern:
    """Validate and normalise a user pattern the way a shell reads a path: `//` is `/`, `.` components
    go, `..` removes the folder before it; the result must stay inside the project root (and the
    bucket). An absolute path inside `root` (the local root) becomes relative to it. Raises S3Error
    (exit 2) with a one-line reason that names the make variable (`label`) it came from."""
    raw = "" if text is None else str(text)

    def usage_error(what, hint=_RELATIVE_HINT):
        return S3UsageError(f"{label}={printable(raw)}", what, hint=hint)

    if raw.startswith("s3://"):
        rest = raw[5:].partition("/")[2]
        raise usage_error("give a path relative to the bucket root, not an s3:// URL", f"file={rest or '<path>'}")
    problem = text_problem(raw)
    if problem:
        raise usage_error(problem, None if "NUL" in problem else "S3 keys are UTF-8; rename the file")
    norm = raw
    if norm.startswith("/") and norm.strip("/"):
        norm = _relative_to_root(norm, root, usage_error)
    parts = norm.split("/")
    folder_only = parts[-1] in ("", ".", "..") and bool(norm.strip("/."))
    kept = []
    for part in parts:
        if part in ("", "."):
            continue
        if part != "..":
            kept.append(part)
        elif not kept:
            raise usage_error("'..' leads outside the project root and the bucket")
        elif any(c in kept[-1] for c in WILDCARDS):
            raise usage_error("'..' cannot undo a wildcard folder")
        else:
            kept.pop()
    body = "/".join(kept)
    if body == "":
        if allow_root:
            return Pattern("", "", True, _to_regex("", True))
        if norm.strip("/."):              # `data/..`: something was written, and it cancelled out
            raise usage_error("this is the project root itself", _ROOT_HINT)
        raise usage_error("no path given", _ROOT_HINT)
    return Pattern(body + ("/" if folder_only else ""), body, folder_only, _to_regex(body, folder_only))


def text_problem(text) -> Optional[str]:
    """Why text cannot be a path or a key: a NUL character, or not UTF-8 (a lone surrogate: bytes that
    were not UTF-8 on a command line, or a JSON escape)."""
    if "\x00" in text:
        return "a path cannot contain a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8 text"
    return None


def printable(text):
    """Text as a message can show it (NUL as \\0, lone surrogates as \\udcxx)."""
    return text.replace("\x00", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")


def _relative_to_root(path, root, usage_error):
    """An absolute path inside the local root, relative to it ("." for the root itself)."""
    trailing = "/" if path.endswith(("/", "/.", "/..")) else ""
    target = posixpath.normpath(path)
    for base in dict.fromkeys((os.path.abspath(root or "."), os.path.realpath(root or "."))):
        if target == base:
            return trailing or "."
        if target.startswith(base.rstrip("/") + "/"):
            return target[len(base.rstrip("/")) + 1:] + trailing
    raise usage_error(f"an absolute path outside the project root {os.path.abspath(root or '.')}",
                      "give a path relative to the project root, e.g. file=data/")


def parse_folder(text, label="folder") -> Pattern:
    """A folder (monitor): no wildcards; always folder_only."""
    pattern = parse(text, allow_root=True, label=label)
    if pattern.has_wildcards:
        raise S3UsageError(f"{label}={text}", "expected a folder, not a pattern with wildcards")
    if pattern.is_root:
        return pattern
    return parse(pattern.body + "/", label=label)


def unsafe_key_reason(key) -> Optional[str]:
    """Why an S3 key cannot become a local path under the local root (None if it can)."""
    if key.endswith("/"):
        return "a folder marker, not a file"
    if key.startswith("/") or "\x00" in key:
        return "not a relative path"
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "contains an empty, '.' or '..' path component"
    return None


def is_internal_name(name):
    """Files the toolbox writes itself (download temp files, staging folders, the monitor lock)."""
    return name == LOCK_NAME or _TEMP_RE.fullmatch(name) is not None


def temp_name(pid):
    """A fresh temporary name (a file or a staging folder) owned by process `pid`."""
    return f"{TEMP_PREFIX}{pid}-{secrets.token_hex(8)}{TEMP_SUFFIX}"


def temp_owner(name) -> Optional[int]:
    """The pid that wrote a temporary name (None: not ours, or written without a pid)."""
    found = _TEMP_RE.fullmatch(name)
    return int(found.group(1)) if found and found.group(1) else None


# ---------------------------------------------------------------- planning (listings -> transfers)

@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    mtime: float        # LastModified, seconds since the epoch
    etag: str = ""


@dataclass(frozen=True)
class LocalFile:
    relpath: str        # "/"-separated path relative to the local root: equals the key
    path: str           # path on disk
    size: int
    mtime: float


@dataclass(frozen=True)
class Transfer:
    key: str
    path: str           # local file (source of an upload, destination of a download)
    size: int
    mtime: Optional[float] = None   # downloads: LastModified, given to the local file


@dataclass
class Plan:
    direction: str                       # "up" or "down"
    transfers: List[Transfer] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)       # keys found unchanged
    problems: Dict[str, str] = field(default_factory=dict)  # key -> why it cannot be transferred
    extraneous: List[str] = field(default_factory=list)    # sync delete=true: keys (up) / local paths (down)
    local_root: str = "."
    # Set when the transfers are exactly every object under this prefix ("" = the bucket): a backend
    # may then fetch them with one wildcard copy instead of one request pair per key.
    whole_prefix: Optional[str] = None
    pattern: Optional[Pattern] = None    # what the plan was made for (messages name it)

    @property
    def total_bytes(self):
        return sum(t.size for t in self.transfers)


def local_path_for(key, local_root):
    """Where key K lives locally: <local_root>/K (local_root '.' gives the plain relative path)."""
    parts = key.split("/")
    return posixpath.join(*parts) if local_root in ("", ".") else posixpath.join(local_root, *parts)


def unchanged_for_upload(local: LocalFile, remote: RemoteObject) -> bool:
    """Same size and the object is not older than the file, to the second (LastModified's precision)."""
    return local.size == remote.size and int(local.mtime) <= int(remote.mtime)


def unchanged_for_download(remote: RemoteObject, local: LocalFile) -> bool:
    """Same size and the file is not older than the object, to the second (downloads set mtime = LastModified)."""
    return local.size == remote.size and int(local.mtime) >= int(remote.mtime)


# same_content(local, remote) -> bool: compares the local file's content hash with the ETag (checksum=true)
ContentCheck = Callable[[LocalFile, RemoteObject], bool]


def _is_unchanged(direction, local, remote, overwrite, same_content):
    if overwrite or local is None or remote is None:
        return False
    if same_content is not None:
        return local.size == remote.size and same_content(local, remote)
    if direction == "up":
        return unchanged_for_upload(local, remote)
    return unchanged_for_download(remote, local)


def plan_upload(local_files: Iterable[LocalFile], remote: Iterable[RemoteObject], overwrite=False,
                same_content: Optional[ContentCheck] = None, delete=False) -> Plan:
    plan = Plan("up")
    by_key = {o.key: o for o in remote}
    local_keys = set()
    for f in sorted(local_files, key=lambda f: f.relpath):
        local_keys.add(f.relpath)
        if _is_unchanged("up", f, by_key.get(f.relpath), overwrite, same_content):
            plan.skipped.append(f.relpath)
        else:
            plan.transfers.append(Transfer(f.relpath, f.path, f.size))
    if delete:
        plan.extraneous = sorted(k for k in by_key if k not in local_keys)
    return plan


def plan_download(remote: Iterable[RemoteObject], local_files: Iterable[LocalFile], local_root=".",
                  overwrite=False, same_content: Optional[ContentCheck] = None, delete=False) -> Plan:
    plan = Plan("down", local_root=local_root)
    objects = sorted(remote, key=lambda o: o.key)
    by_rel = {f.relpath: f for f in local_files}
    sorted_keys = [o.key for o in objects]
    keys = set(sorted_keys)
    for obj in objects:
        reason = unsafe_key_reason(obj.key)
        if reason is None and _has_children(sorted_keys, obj.key):
            reason = f"a file and a folder cannot share this name (keys under {obj.key}/ exist too)"
        if reason:
            if not obj.key.endswith("/"):  # folder markers are not files: ignored, not an error
                plan.problems[obj.key] = reason
            continue
        if _is_unchanged("down", by_rel.get(obj.key), obj, overwrite, same_content):
            plan.skipped.append(obj.key)
        else:
            plan.transfers.append(Transfer(obj.key, local_path_for(obj.key, local_root), obj.size, obj.mtime))
    if delete:
        plan.extraneous = sorted(f.path for rel, f in by_rel.items() if rel not in keys)
    return plan


GLOB_CHARS = "*?[]{}\\"
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def whole_prefix(pattern: Pattern, plan: Plan) -> Optional[str]:
    """The prefix P when a download plan is "every object under P" (a fresh download, overwrite=true)."""
    if plan.direction != "down" or plan.skipped or plan.problems or len(plan.transfers) < 2:
        return None
    if pattern.has_wildcards:
        if pattern.body != pattern.literal_prefix + "*":
            return None
        prefix = pattern.literal_prefix
    else:
        prefix = pattern.body + "/"
    if (prefix and not prefix.endswith("/")) or any(c in prefix for c in GLOB_CHARS):
        return None
    if not all(t.key.startswith(prefix) for t in plan.transfers):
        return None           # e.g. `data` also selected an object named exactly "data"
    if any(_CONTROL.search(t.key) for t in plan.transfers):
        return None           # listings without URL-encoding (s5cmd's) cannot carry these names intact
    return prefix


def _has_children(sorted_keys, key):
    """Is there a key under key/? (binary search in the sorted key list)"""
    probe = key + "/"
    i = bisect.bisect_left(sorted_keys, probe)
    return i < len(sorted_keys) and sorted_keys[i].startswith(probe)
