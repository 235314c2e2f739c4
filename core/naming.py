"""Workload names: the one owner of the naming rule.

A cell's name is `<prefix>-<project>-<model>-<dataset>-<key>-<value>...-<hash>`:
- a valid DNS-1123 label: lower case a-z, 0-9 and '-', at most 63 characters, alphanumeric at both ends;
- readable parts come from the visible hparams (keys without a leading `_`), in grid order;
- when too long, hparam keys and words are abbreviated (learning_rate -> lr), then the readable part
  is cut at a '-' boundary;
- the last 10 characters are a hash of the WHOLE cell identity (model, dataset and every hparam,
  hidden ones included), so two different cells never share a name, whatever was cut.
"""
import functools
import hashlib
import re
import unicodedata

MAX_NAME = 63
HASH_CHARS = 10                     # 40 bits (hex): collisions are negligible even for 10^5 cells
READABLE_BUDGET = MAX_NAME - HASH_CHARS - 1
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_LEADING_MINUS = re.compile(r"^-(?=\d)")
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")
_NUMBER = re.compile(r"^[0-9][0-9p]*(e-?[0-9]+)?$|^m[0-9][0-9p]*(e-?[0-9]+)?$")


def is_dns_label(name):
    return len(name) <= MAX_NAME and bool(_DNS_LABEL.match(name))


@functools.lru_cache(maxsize=65536)
def slug(text):
    """Any text -> lower-case [a-z0-9-] words: '0.001' -> '0p001', '-1' -> 'm1', 'Über/x' -> 'uber-x'."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii").lower()
    text = _LEADING_MINUS.sub("m", _DECIMAL_POINT.sub("p", text))
    return _NOT_ALLOWED.sub("-", text).strip("-")


@functools.lru_cache(maxsize=65536)
def abbreviate(word_slug):
    """Shorten a slug: numbers and short words stay, 'cosine-with-restarts' -> 'cwr', 'dropout' -> 'dro'."""
    if len(word_slug) <= 5 or _NUMBER.match(word_slug):
        return word_slug
    parts = [p for p in word_slug.split("-") if p]
    if len(parts) == 1:
        return parts[0][:3]
    return "".join(p[0] for p in parts)


def cell_hash(identity):
    """10 hex characters (40 bits) of a BLAKE2b digest of the cell identity string."""
    return hashlib.blake2b(identity.encode("utf-8"), digest_size=HASH_CHARS // 2).hexdigest()


def identity_string(model, dataset, pairs):
    """The whole identity of a cell as one unambiguous string (separators cannot occur in YAML text)."""
    return "\x1f".join([model, dataset] + [f"{k}\x1e{v}" for k, v in pairs])


def join_words(*parts):
    return "-".join(p for p in parts if p)


def fit(readable, budget=READABLE_BUDGET):
    """Cut readable text to budget at a '-' boundary (or hard, for one long word)."""
    if len(readable) <= budget:
        return readable
    cut = readable[:budget]
    if readable[budget] != "-" and "-" in cut:
        cut = cut[:cut.rindex("-")]
    return cut.strip("-")


def cell_name(heads, full_parts, short_parts, digest):
    """Name from the hparam fragments and the identity hash. `heads` are the readable heads to try,
    longest first (prefix-project-model-dataset, then with model and dataset shortened). Each is tried
    with full, then abbreviated hparam fragments; the shortest is cut to fit as a last resort."""
    for head in heads:
        for parts in (full_parts, short_parts):
            readable = join_words(head, *parts)
            if len(readable) <= READABLE_BUDGET:
                return f"{readable}-{digest}" if readable else digest
    readable = fit(join_words(heads[-1], *short_parts))
    return f"{readable}-{digest}" if readable else digest


def heads(prefix_project, model_slug, dataset_slug, part_limit=12):
    """Readable heads for cell_name: as is, then with model and dataset cut to `part_limit` characters."""
    full = join_words(prefix_project, model_slug, dataset_slug)
    short = join_words(prefix_project, fit(model_slug, part_limit), fit(dataset_slug, part_limit))
    return (full,) if short == full else (full, short)


def owner(settings):
    """Who a workload name starts with: `prefix` when set ('' for none), else `user`."""
    prefix = settings.get("prefix")
    return prefix if prefix is not None else settings.get("user") or ""


def owner_hash(user, project, *more):
    """8 hex characters of a BLAKE2b digest of the EXACT owner (and `more`): the names of per-user objects
    carry it, because their readable part is lossy — `alice` + `x-y` and `alice-x` + `y` both read
    `alice-x-y`, and `Alice`/`alice`, `a_b`/`a-b` slug alike."""
    text = "\x1f".join([user or "", project or "", *more])
    return hashlib.blake2b(text.encode("utf-8"), digest_size=4).hexdigest()


def object_name(owner_text, project, *words, digest=None):
    """`<owner>-<project>-<words>[-<digest>]` as a valid name: every object the toolbox creates."""
    readable = join_words(slug(owner_text or ""), slug(project or ""), *words)
    if digest:
        return f"{fit(readable, MAX_NAME - len(digest) - 1)}-{digest}" if readable else digest
    return fit(readable, MAX_NAME)


def indexed_job_name(name, completions):
    """The name of an Indexed Job: its pods' hostnames are `<name>-<index>`, which must stay DNS labels, so
    the API server refuses a name without room for `-<completions - 1>`. A cell's name too long for that keeps
    its hash (the last HASH_CHARS characters, unique per cell) and loses readable characters."""
    budget = MAX_NAME - 1 - len(str(max(completions - 1, 0)))
    if len(name) <= budget:
        return name
    readable, digest = name[:-HASH_CHARS - 1], name[-HASH_CHARS:]
    return f"{fit(readable, budget - HASH_CHARS - 1)}-{digest}"


def pod_name(prefix, project, suffix="interactive-pod"):
    """Name of the interactive pod: <prefix>-<project>-interactive-pod."""
    return object_name(prefix, project, suffix)


def next_free_name(name, taken, first=1, limit=MAX_NAME):
    """name, name-1, name-2, ... (from `first`) the first that is not taken, cut to stay within `limit`
    characters (None: no limit): the one rule for pods, volumes and tmux sessions."""
    if name not in taken:
        return name
    n = first
    while True:
        suffix = f"-{n}"
        candidate = (fit(name, limit - len(suffix)) if limit else name) + suffix
        if candidate not in taken:
            return candidate
        n += 1
