"""The pure S3 path rules (s3path.py): the semantics table of docs/s3.md ("Path semantics"), parse errors, skip rules.

No server here: these are the rules both backends are handed the results of.
"""
import fnmatch

import pytest
from hypothesis import given, settings, strategies as st

from toolbox.errors import S3Error
from toolbox.s3.paths import (LOCK_NAME, LocalFile, RemoteObject, is_internal_name, local_path_for, parse,
                              parse_folder, plan_download, plan_upload, unsafe_key_reason, whole_prefix)

KEYS = ["data", "data/1.txt", "data/2.txt", "data/10.txt", "data/.hidden", "data/sub/3.txt", "data.txt",
        "data2/x.txt", "ckpt-1", "ckpt-1/model.pt", "ckpt-10", "ckpt-10/model.pt",
        "Model/Yelp/t5_model_12weeks_wise-sky-249-northern-dawn-288_epoch_1419/config.json",
        "Model/Yelp/t5_model_12weeks_wise-sky-249-northern-dawn-288_epoch_1419/pytorch_model.bin",
        "Model/Yelp/t5_model_12weeks_wise-sky-249_epoch_1418/config.json", "Model/Amazon/bert_419/config.json",
        "runs/a[1]/x", "runs/a1/x", "my file;'q\".txt", ".env", ".git/config", "sub/.git/HEAD", "sub/.envrc",
        ".env.local", ".aws/credentials", "home/.ssh/id_rsa", ".github/workflows/ci.yml"]


# The semantics table (docs/s3.md, "Path semantics"): row id -> pattern -> exactly the keys selected.
SEMANTICS = [
    pytest.param("data/1.txt", ["data/1.txt"], id="1-exact-file"),
    pytest.param("data/", ["data/.hidden", "data/1.txt", "data/10.txt", "data/2.txt", "data/sub/3.txt"],
                 id="2-folder-slash-never-siblings"),
    pytest.param("data", ["data", "data/.hidden", "data/1.txt", "data/10.txt", "data/2.txt", "data/sub/3.txt"],
                 id="3-folder-no-slash-never-siblings"),
    pytest.param("ckpt-1", ["ckpt-1", "ckpt-1/model.pt"], id="4-ckpt-1-never-ckpt-10"),
    pytest.param("Model/*t5*wise*419*",
                 ["Model/Yelp/t5_model_12weeks_wise-sky-249-northern-dawn-288_epoch_1419/config.json",
                  "Model/Yelp/t5_model_12weeks_wise-sky-249-northern-dawn-288_epoch_1419/pytorch_model.bin"],
                 id="5-star-crosses-folders"),
    pytest.param("data/?.txt", ["data/1.txt", "data/2.txt"], id="6-question-one-character"),
    pytest.param("*.txt", ["data.txt", "data/1.txt", "data/10.txt", "data/2.txt", "data/sub/3.txt",
                           "data2/x.txt", "my file;'q\".txt"], id="7-star-any-depth"),
    pytest.param("data/*", ["data/.hidden", "data/1.txt", "data/10.txt", "data/2.txt", "data/sub/3.txt"],
                 id="8-hidden-included-and-star-after-slash-keeps-it"),
    pytest.param("Model/*419", ["Model/Amazon/bert_419/config.json",
                                "Model/Yelp/t5_model_12weeks_wise-sky-249-northern-dawn-288_epoch_1419/config.json",
                                "Model/Yelp/t5_model_12weeks_wise-sky-249-northern-dawn-288_epoch_1419/"
                                "pytorch_model.bin"], id="9-pattern-matching-a-folder-selects-its-content"),
    pytest.param("runs/a[1]/x", ["runs/a[1]/x"], id="10-brackets-are-literal"),
    pytest.param("my file;'q\".txt", ["my file;'q\".txt"], id="11-spaces-quotes-semicolon-literal"),
    pytest.param("./data/1.txt", ["data/1.txt"], id="12-leading-dot-slash-ignored"),
    pytest.param("data/1", [], id="13-no-prefix-matching"),
    pytest.param("*", sorted(set(KEYS) - {".env", ".git/config", "sub/.git/HEAD", "sub/.envrc", ".env.local",
                                          ".aws/credentials", "home/.ssh/id_rsa"}),
                 id="14-star-is-everything-but-credentials-and-git"),
    pytest.param(".env", [".env"], id="15-credentials-only-when-named"),
    pytest.param(".git/", [".git/config"], id="15-git-only-when-named"),
    pytest.param("*/.git/*", ["sub/.git/HEAD"], id="15-named-after-a-wildcard"),
    pytest.param("sub/", [], id="15-envrc-is-a-credential-file"),
    pytest.param("home/", [], id="15-ssh-keys-are-credentials"),
    pytest.param(".aws/", [".aws/credentials"], id="15-aws-only-when-named"),
    pytest.param("*/.env*", ["sub/.envrc"], id="15-a-wildcard-after-the-protected-name-names-it"),
    pytest.param(".*", [".github/workflows/ci.yml"], id="15-a-bare-dot-star-names-nothing-protected"),
    pytest.param("data//1.txt", ["data/1.txt"], id="16-double-slash-is-one"),
    pytest.param("data/sub/3.txt/../", ["data/sub/3.txt"], id="17-dot-dot-resolved-trailing-slash-kept"),
    pytest.param("data/sub/..", ["data/.hidden", "data/1.txt", "data/10.txt", "data/2.txt", "data/sub/3.txt"],
                 id="17-dot-dot-names-a-folder"),
    pytest.param("data/./1.txt", ["data/1.txt"], id="17-dot-components-dropped"),
]


@pytest.mark.parametrize("pattern,expected", SEMANTICS)
def test_semantics_table(pattern, expected):
    assert sorted(parse(pattern).select(KEYS)) == sorted(expected)


@pytest.mark.parametrize("text,normalised,literal_prefix,walk_root", [
    ("data/1.txt", "data/1.txt", "data/1.txt", "data/1.txt"),
    ("data/", "data/", "data/", "data"),
    ("data", "data", "data", "data"),
    ("./data//", "data/", "data/", "data"),
    ("out/batch//parsed.h5", "out/batch/parsed.h5", "out/batch/parsed.h5", "out/batch/parsed.h5"),
    ("data/train/iter0.h5/../", "data/train/", "data/train/", "data/train"),
    ("data/train/iter0.h5/..", "data/train/", "data/train/", "data/train"),
    ("data/.", "data/", "data/", "data"),
    ("a/b/../../c/", "c/", "c/", "c"),
    ("data/../*.txt", "*.txt", "", ""),
    ("Model/*t5*wise*419*", "Model/*t5*wise*419*", "Model/", "Model"),
    ("data/ckpt-?", "data/ckpt-?", "data/ckpt-", "data"),
    ("*.txt", "*.txt", "", ""),
])
def test_parse_normalises(text, normalised, literal_prefix, walk_root):
    p = parse(text)
    assert (p.text, p.literal_prefix, p.walk_root) == (normalised, literal_prefix, walk_root)


@pytest.mark.parametrize("text,message", [
    ("", "error: file=: no path given\nhint: give a path relative to the project root, e.g. file=data/ "
         "('*' selects everything)"),
    ("../secret", "error: file=../secret: '..' leads outside the project root and the bucket\nhint: paths are "
                  "relative to the project root locally and to the bucket root in S3"),
    ("data/../../x", "error: file=data/../../x: '..' leads outside the project root and the bucket\nhint: paths "
                     "are relative to the project root locally and to the bucket root in S3"),
    ("data/*/../x", "error: file=data/*/../x: '..' cannot undo a wildcard folder\nhint: paths are relative to "
                    "the project root locally and to the bucket root in S3"),
    ("data/..", "error: file=data/..: this is the project root itself\nhint: give a path relative to the "
                "project root, e.g. file=data/ ('*' selects everything)"),
    ("/etc/passwd", "error: file=/etc/passwd: an absolute path outside the project root <ROOT>\nhint: give a path "
                    "relative to the project root, e.g. file=data/"),
    ("data/\udcff.txt", "error: file=data/\\udcff.txt: not valid UTF-8 text\nhint: S3 keys are UTF-8; rename "
                         "the file"),
    ("s3://bucket/data/", "error: file=s3://bucket/data/: give a path relative to the bucket root, not an "
                          "s3:// URL\nhint: file=data/"),
])
def test_parse_errors_are_one_clear_line(text, message, tmp_path):
    with pytest.raises(S3Error) as info:
        parse(text, root=str(tmp_path))
    assert info.value.format() == message.replace("<ROOT>", str(tmp_path))
    assert info.value.exit_code == 2


def test_an_absolute_path_inside_the_local_root_is_made_relative(tmp_path):
    root = tmp_path / "proj"
    assert parse(f"{root}/data//1.txt", root=str(root)).text == "data/1.txt"
    assert parse(f"{root}/data/", root=str(root)).text == "data/"
    assert parse(f"{root}/runs/*/ckpt", root=str(root)).text == "runs/*/ckpt"
    assert parse(str(root), allow_root=True, root=str(root)).is_root
    with pytest.raises(S3Error, match="outside the project root"):
        parse(f"{root}/../other/data", root=str(root))
    with pytest.raises(S3Error, match="outside the project root"):
        parse(f"{root}x/data", root=str(root))         # a sibling whose name starts like the root


def test_root_only_where_allowed():
    assert parse("/", allow_root=True).is_root
    assert parse("", allow_root=True).select(["a", "b/c"]) == ["a", "b/c"]
    assert parse_folder("ckpt").text == "ckpt/"
    with pytest.raises(S3Error, match="expected a folder"):
        parse_folder("ckpt/*")


@pytest.mark.parametrize("key,reason", [
    ("data/1.txt", None),
    ("data/", "a folder marker, not a file"),
    ("../../etc/passwd", "contains an empty, '.' or '..' path component"),
    ("a//b", "contains an empty, '.' or '..' path component"),
    ("/abs", "not a relative path"),
])
def test_unsafe_keys_never_become_local_paths(key, reason):
    assert unsafe_key_reason(key) == reason


def test_local_path_for_relocates_only_the_local_side():
    assert local_path_for("data/1.txt", ".") == "data/1.txt"
    assert local_path_for("data/1.txt", "/scratch/x") == "/scratch/x/data/1.txt"


def test_toolbox_files_are_never_selected_locally():
    assert is_internal_name(LOCK_NAME)
    assert is_internal_name(".toolbox-0123456789abcdef.part")
    assert is_internal_name(".toolbox-4242-0123456789abcdef.part")
    assert not is_internal_name(".toolbox-notes.part")


def test_many_wildcards_match_without_backtracking():
    """A pattern with a dozen `*` against a 40-character key that does not match: a backtracking regex
    takes minutes; run it in a child process with a generous limit so a regression fails instead of hanging."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import importlib.util as u; s = u.spec_from_file_location('l', 'launch.py'); m = u.module_from_spec(s); "
            "s.loader.exec_module(m); m._register_toolbox_package()\n"
            "from toolbox.s3.paths import parse\n"
            "p = parse('*a' * 12 + '*b')\n"
            "print(p.matches('a' * 40), p.matches('a' * 40 + '/x'), p.matches('a' * 12 + 'b'), "
            "p.matches('a' * 30 + 'b/c'))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["False", "False", "True", "True"], r.stderr


# ----------------------------------------------------------------- properties
name_chars = st.sampled_from(list("ab.-_ [];'\"$") + ["/"])
keys = st.text(name_chars, min_size=1, max_size=12).filter(lambda k: not k.startswith("/") and "//" not in k)
globs = st.text(st.sampled_from(list("ab*?") + ["/"]), min_size=1, max_size=10).filter(
    lambda k: not k.startswith("/") and "//" not in k)
glob_keys = st.text(st.sampled_from(list("ab") + ["/"]), min_size=1, max_size=14).filter(
    lambda k: not k.startswith("/") and "//" not in k)


def reference_select(pattern_text, key):
    """An independent statement of the rule: fnmatch (with [ ] escaped) on the key or any of its folders."""
    body = pattern_text.rstrip("/")
    glob = body.replace("[", "[[]")      # a literal "[" for fnmatch; "]" alone is already literal
    candidates = [key[:i] for i, c in enumerate(key) if c == "/"]
    if not pattern_text.endswith("/"):
        candidates.append(key)
    return any(fnmatch.fnmatchcase(c, glob) for c in candidates)


@settings(max_examples=300, deadline=None)
@given(pattern=keys, key=keys)
def test_rule_equals_independent_reference(pattern, key):
    try:
        p = parse(pattern)
    except S3Error:
        return
    assert p.matches(key) == reference_select(p.text, key)


@settings(max_examples=400, deadline=None)
@given(pattern=globs, key=glob_keys)
def test_wildcards_equal_independent_reference(pattern, key):
    p = parse(pattern)
    assert p.matches(key) == reference_select(p.text, key)


@settings(max_examples=200, deadline=None)
@given(name=st.text(st.sampled_from("abc-_1"), min_size=1, max_size=8),
       suffix=st.text(st.sampled_from("abc.0x"), min_size=1, max_size=5))
def test_a_literal_name_never_selects_a_sibling(name, suffix):
    for pattern in (name, name + "/"):
        assert not parse(pattern).matches(name + suffix)       # data -> never data.txt / data2
        assert parse(pattern).matches(name + "/" + suffix)


# ----------------------------------------------------------------- skip rules and plans
T = 1_700_000_000.0


def local(rel, size=3, mtime=T):
    return LocalFile(rel, "L/" + rel, size, mtime)


def remote(key, size=3, mtime=T, etag='"e"'):
    return RemoteObject(key, size, mtime, etag)


@pytest.mark.parametrize("local_file,obj,transfer", [
    pytest.param(local("a"), None, True, id="new-file"),
    pytest.param(local("a"), remote("a"), False, id="same-size-same-second"),
    pytest.param(local("a", mtime=T + 0.9), remote("a"), False, id="same-second-is-unchanged"),
    pytest.param(local("a", mtime=T - 100), remote("a"), False, id="object-newer-than-file"),
    pytest.param(local("a", mtime=T + 1), remote("a"), True, id="file-modified-after-upload"),
    pytest.param(local("a", size=4), remote("a"), True, id="size-differs"),
])
def test_upload_skip_rule(local_file, obj, transfer):
    plan = plan_upload([local_file], [obj] if obj else [])
    assert [t.key for t in plan.transfers] == (["a"] if transfer else [])
    assert plan.skipped == ([] if transfer else ["a"])


@pytest.mark.parametrize("obj,local_file,transfer", [
    pytest.param(remote("a"), None, True, id="missing-locally"),
    pytest.param(remote("a"), local("a"), False, id="mtime-equals-last-modified"),
    pytest.param(remote("a", mtime=T + 5), local("a"), True, id="object-replaced-later"),
    pytest.param(remote("a"), local("a", mtime=T + 50), False, id="local-newer-same-size-kept"),
    pytest.param(remote("a", size=9), local("a", mtime=T + 50), True, id="size-differs"),
])
def test_download_skip_rule(obj, local_file, transfer):
    plan = plan_download([obj], [local_file] if local_file else [], "L")
    assert [t.key for t in plan.transfers] == (["a"] if transfer else [])
    if transfer:
        assert plan.transfers[0].path == "L/a" and plan.transfers[0].mtime == obj.mtime


def test_overwrite_and_checksum_override_size_and_mtime():
    files, objects = [local("a"), local("b")], [remote("a"), remote("b")]
    assert len(plan_upload(files, objects, overwrite=True).transfers) == 2
    plan = plan_upload(files, objects, same_content=lambda f, o: f.relpath == "a")
    assert [t.key for t in plan.transfers] == ["b"] and plan.skipped == ["a"]
    plan = plan_download(objects, files, "L", same_content=lambda f, o: False)
    assert [t.key for t in plan.transfers] == ["a", "b"]


def test_sync_delete_lists_extraneous_on_the_destination():
    up = plan_upload([local("a")], [remote("a"), remote("old")], delete=True)
    assert up.extraneous == ["old"]
    down = plan_download([remote("a")], [local("a"), local("stale")], "L", delete=True)
    assert down.extraneous == ["L/stale"]
    assert plan_upload([local("a")], [remote("old")]).extraneous == []


def test_download_refuses_keys_that_cannot_be_files():
    plan = plan_download([remote("x"), remote("x/y"), remote("../evil"), remote("folder/")], [], ".")
    assert [t.key for t in plan.transfers] == ["x/y"]
    assert plan.problems == {"x": "a file and a folder cannot share this name (keys under x/ exist too)",
                             "../evil": "contains an empty, '.' or '..' path component"}


@pytest.mark.parametrize("pattern,objects,local_files,expected", [
    pytest.param("data/", ["data/a", "data/b/c"], [], "data/", id="fresh-folder"),
    pytest.param("data", ["data/a", "data/b/c"], [], "data/", id="folder-without-slash"),
    pytest.param("data/*", ["data/a", "data/b"], [], "data/", id="folder-star"),
    pytest.param("*", ["a", "b/c"], [], "", id="whole-bucket"),
    pytest.param("data", ["data", "data/a"], [], None, id="an-object-named-like-the-folder"),
    pytest.param("data/", ["data/a", "data/b"], ["data/a"], None, id="something-skipped"),
    pytest.param("data/*.txt", ["data/a.txt", "data/b.txt"], [], None, id="a-real-filter"),
    pytest.param("da?a/", ["data/a", "data/b"], [], None, id="wildcard-inside-the-prefix"),
    pytest.param("r[1]/", ["r[1]/a", "r[1]/b"], [], None, id="glob-characters-in-the-prefix"),
    pytest.param("data/", ["data/a"], [], None, id="a-single-object"),
])
def test_whole_prefix_only_when_the_plan_is_everything_under_it(pattern, objects, local_files, expected):
    p = parse(pattern)
    plan = plan_download([remote(k) for k in objects if p.matches(k)], [local(k) for k in local_files], ".")
    assert whole_prefix(p, plan) == expected


# ----------------------------------------------------------------- the local side (files, no server)
@pytest.mark.parametrize("pattern,walked", [
    pytest.param("data", ["data", "data/sub"], id="literal-walks-only-that-folder"),
    pytest.param("data/", ["data", "data/sub"], id="folder"),
    pytest.param("data/sub/x", [], id="a-file-walks-nothing"),
    pytest.param("data/s*", ["data", "data/sub"], id="wildcard-starts-at-its-literal-folder"),
])
def test_local_search_never_walks_outside_the_pattern(tmp_path, monkeypatch, pattern, walked):
    import os

    from fixtures_s3 import make_tree
    from toolbox.s3.localfiles import find_local

    make_tree(str(tmp_path), {"data/sub/x": "x", "data.txt": "s", "big/tree/y": "y", ".venv/z": "z"})
    seen = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: seen.append(os.path.relpath(p, tmp_path)) or real_scandir(p))
    found = find_local(parse(pattern), str(tmp_path))
    assert sorted(seen) == walked
    assert [f.relpath for f in found] == ["data/sub/x"]
