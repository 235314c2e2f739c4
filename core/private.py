"""Which paths hold credentials (or the git database): they leave the machine (a ConfigMap, `make copy`,
an upload) only when the user names them, never as part of a folder or a pattern.

Protected path components: anything starting with `.env` (.env, .env.local, .env.production, .envrc...),
and the folders `.aws/`, `.ssh/` and `.git/`.
"""
PROTECTED_NAMES = (".git", ".aws", ".ssh")
PROTECTED_PREFIX = ".env"          # .env, .env.local, .envrc, ...


def protected_stem(part):
    """The protected name a path component falls under ('.env' for .env.local), or None."""
    if part.startswith(PROTECTED_PREFIX):
        return PROTECTED_PREFIX
    return part if part in PROTECTED_NAMES else None


def private_unnamed(path, named):
    """True when `path` (relative, '/'-separated) goes through a protected component that `named` (the
    path the user wrote) does not name itself."""
    said = set(named.split("/"))
    return any(protected_stem(part) and part not in said for part in path.split("/"))
