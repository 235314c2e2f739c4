"""The S3 make targets' handlers through launch.py (in-process), against both S3 test servers."""
import io
import sys

import pytest

from fixtures_s3 import ACCESS_KEY, SECRET_KEY, make_tree, read_tree


class Keyboard(io.StringIO):
    """stdin as a terminal with typed answers."""

    def isatty(self):
        return True


@pytest.fixture
def s3cli(s3, cli):
    """`cli` with the test bucket configured (S3 settings in the environment)."""
    return cli


def test_upload_then_download_print_one_summary_line(s3, s3cli, project):
    make_tree(project.path, {"data/1.txt": "one", "data/2.txt": "two", "data.txt": "sibling"})
    r = s3cli("upload", file="data/")
    assert r.code == 0, r
    assert r.out.startswith("upload: 2 transferred, 0 skipped, 0 failed, 6 B in ")
    assert r.out.rstrip().endswith("(s5cmd)")
    assert s3cli("upload", "--file", "data").out.startswith("upload: 0 transferred, 2 skipped, 0 failed, 0 B")
    r = s3cli("download", file="data", local_path="copy")
    assert r.code == 0 and r.out.startswith("download: 2 transferred, 0 skipped")
    assert read_tree(project.path / "copy") == {"data/1.txt": b"one", "data/2.txt": b"two"}
    assert s3cli("upload", file="data", overwrite="true").out.startswith("upload: 2 transferred")


@pytest.mark.parametrize("unset,message", [
    ("S3_BUCKET_NAME", "error: S3_BUCKET_NAME: not set\nhint: add S3_BUCKET_NAME=<bucket> to .env "
                       "(or the environment)\n"),
    ("S3_ENDPOINT_URL", "error: S3_ENDPOINT_URL: not set\nhint: add S3_ENDPOINT_URL=https://... to .env "
                        "(AWS: https://s3.<region>.amazonaws.com)\n"),
    ("AWS_SECRET_ACCESS_KEY", "error: AWS_SECRET_ACCESS_KEY: not set (but AWS_ACCESS_KEY_ID is)\n"
                              "hint: set both, or neither for anonymous access\n"),
])
def test_a_missing_setting_is_named(s3, s3cli, monkeypatch, unset, message):
    monkeypatch.delenv(unset)
    r = s3cli("download", file="data/")
    assert (r.code, r.err) == (2, message)


def test_settings_errors(s3, s3cli, monkeypatch):
    monkeypatch.setenv("S3_BACKEND", "fast")
    r = s3cli("list")
    assert (r.code, r.err) == (2, "error: S3_BACKEND=fast: unknown backend\n    valid: auto, s5cmd, boto3\n")
    monkeypatch.setenv("S3_BACKEND", "boto3")
    for value in ("nan", "inf", "soon"):
        monkeypatch.setenv("S3_RETRY_SECONDS", value)
        assert s3cli("list").err == f"error: S3_RETRY_SECONDS={value}: expected a number of seconds (0 or more)\n"
    monkeypatch.setenv("S3_RETRY_SECONDS", "-1")
    assert s3cli("list").err == "error: S3_RETRY_SECONDS=-1: must be at least 0\n"
    monkeypatch.delenv("S3_RETRY_SECONDS")
    monkeypatch.setenv("S3_BUCKET_NAME", "s3://bucket")
    assert s3cli("list").err == ("error: S3_BUCKET_NAME=s3://bucket: expected a bare bucket name "
                                 "(no s3://, '/' or spaces)\n")


def test_a_broken_credential_chain_is_one_line(s3, s3cli, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "nonexistent")
    r = s3cli("find", file="data/")
    assert (r.code, r.err) == (2, "error: AWS credentials: The config profile (nonexistent) could not be found\n")


def test_an_unknown_bucket_is_one_line_with_a_hint(s3, s3cli, monkeypatch):
    monkeypatch.setenv("S3_BUCKET_NAME", "no-such-bucket")
    r = s3cli("find", file="data/")
    assert r.code == 1
    assert r.err.splitlines()[0].startswith("error: s3://no-such-bucket/data/: NoSuchBucket: ")
    assert r.err.splitlines()[1] == "hint: check S3_BUCKET_NAME"


def test_bad_patterns_are_usage_errors(s3, s3cli):
    r = s3cli("download", file="../../etc")
    assert r.code == 2 and r.err.startswith("error: file=../../etc: '..' leads outside the project root and the "
                                            "bucket\n")
    assert "Traceback" not in r.err


def test_without_file_it_prompts_on_a_terminal_and_refuses_elsewhere(s3, s3cli, project, monkeypatch):
    r = s3cli("download")
    assert (r.code, r.err) == (2, "error: file=: no path given\nhint: make download file=data/  "
                                  "(quote patterns: file='runs/*/ckpt')\n")
    s3.seed({"data/1.txt": "one"})
    monkeypatch.setattr(sys, "stdin", Keyboard("data/\n"))
    r = s3cli("download")
    assert r.code == 0 and "S3 path or pattern" in r.err
    assert read_tree(project.path / "data") == {"1.txt": b"one"}


def test_remove_lists_and_asks_first(s3, s3cli):
    s3.seed({"data/1.txt": "1", "data/2.txt": "2", "data.txt": "sibling"})
    r = s3cli("remove", file="data/")
    assert r.code == 1
    assert r.out.splitlines()[:3] == [f"will remove 2 objects (2 B) from s3://{s3.bucket}/:", "  data/1.txt",
                                      "  data/2.txt"]
    assert "cancelled: nothing removed" in r.out
    assert "stdin is not a terminal; pass yes=1" in r.err
    assert s3.keys() == ["data.txt", "data/1.txt", "data/2.txt"]
    r = s3cli("remove", file="data/", yes="1")
    assert r.code == 0 and f"removed 2 objects (2 B) from s3://{s3.bucket}/" in r.out
    assert s3.keys() == ["data.txt"]


def test_remove_batches_deletes_by_1000(s3, s3cli):
    s3.seed({f"many/{i:04d}": "x" for i in range(1205)})
    s3.seed({"many-other": "keep"})
    s3.clear_log()
    r = s3cli("remove", file="many", yes="1")
    assert r.code == 0, r
    assert "  ... and 1175 more" in r.out
    assert s3.count("DELETE_OBJECTS") == 2
    assert s3.keys() == ["many-other"]


def test_remove_reports_each_refused_key(s3, s3cli):
    s3.seed({f"d/{i}": "x" for i in range(5)})
    s3.deny_delete(["d/1", "d/3"])
    r = s3cli("remove", file="d/", yes="1")
    assert r.code == 1
    assert r.err.splitlines() == [f"error: s3://{s3.bucket}/d/: 2 of 5 objects could not be removed",
                                  "    d/1: AccessDenied: Access Denied", "    d/3: AccessDenied: Access Denied"]
    assert s3.keys() == ["d/1", "d/3"]


def test_list_shows_one_level_with_sizes_and_never_siblings(s3, s3cli):
    s3.seed({"data/1.txt": "12345", "data/sub/x": "x", "data.txt": "s", "data2/y": "y"})
    r = s3cli("list", file="data")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["size", "modified", "name"]
    assert lines[2].split() == ["-", "data/sub/"]
    assert lines[3].split()[:2] == ["5", "B"] and lines[3].endswith("data/1.txt")
    assert lines[4] == "1 folder, 1 file, 5 B"
    assert "data.txt" not in r.out and "data2" not in r.out
    root = s3cli("list")                    # no file= and no terminal: the bucket root
    assert [line.split()[-1] for line in root.out.splitlines()[2:5]] == ["data/", "data2/", "data.txt"]
    r = s3cli("list", file="data/*")
    assert (r.code, r.err) == (2, "error: file=data/*: list takes a folder, not a pattern\n"
                                  "hint: make find file='data/*'\n")
    assert s3cli("list", file="nothing").code == 1


def test_find_prints_the_keys(s3, s3cli):
    s3.seed({"Model/Yelp/t5_wise_1419/config.json": "{}", "Model/t5_other/x": "x", "data.txt": "s"})
    r = s3cli("find", file="Model/*t5*wise*419*")
    assert (r.code, r.out) == (0, "Model/Yelp/t5_wise_1419/config.json\n")
    assert r.err == "1 object, 2 B\n"
    assert s3cli("find", file="nothing*").err == f"error: s3://{s3.bucket}/nothing*: no object matches\n"


def test_sync_needs_a_direction_and_confirms_deletes(s3, s3cli, project):
    make_tree(project.path, {"d/a": "a"})
    s3.seed({"d/old": "o"})
    r = s3cli("sync", file="d")
    assert (r.code, r.err) == (2, "error: direction=: sync needs a direction\n"
                                  "hint: direction=up (local -> S3) or direction=down\n")
    r = s3cli("sync", file="d", direction="up", delete="true")
    assert r.code == 1 and "  d/old" in r.out and "cancelled: nothing transferred or deleted" in r.out
    assert s3.keys() == ["d/old"]
    r = s3cli("sync", file="d", direction="up", delete="true", yes="1")
    assert r.code == 0 and r.out.splitlines()[-1].startswith("sync up: 1 transferred, 0 skipped, 0 failed")
    assert r.out.rstrip().endswith("; 1 extraneous deleted")
    assert s3.keys() == ["d/a"]


@pytest.mark.parametrize("answers,code,local,remote", [
    pytest.param("download\n", 0, {"d/a": b"remote", "d/b": b"local"}, ["d/a"], id="download"),
    pytest.param("up\n", 0, {"d/b": b"local"}, ["d/a", "d/b"], id="upload"),
    pytest.param("remove\n", 0, {"d/b": b"local"}, [], id="remove-S3"),
    pytest.param("delete\n", 0, {}, ["d/a"], id="delete-local"),
    pytest.param("dowload\nexit\n", 0, {"d/b": b"local"}, ["d/a"], id="typo-then-exit"),
    pytest.param("", 0, {"d/b": b"local"}, ["d/a"], id="end-of-input-exits"),
])
def test_interactive_shows_both_sides_then_acts(s3, s3cli, project, monkeypatch, answers, code, local, remote):
    s3.seed({"d/a": "remote"})
    make_tree(project.path, {"d/b": "local"})
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
    r = s3cli("interactive", file="d/", yes="1")
    assert r.code == code, r
    assert "Local files matching 'd/' under ./: 1 (5 B)" in r.out
    assert f"S3 objects matching 'd/' in s3://{s3.bucket}/: 1 (6 B)" in r.out
    if answers.startswith("dowload"):
        assert "invalid action 'dowload'; did you mean 'download'?" in r.err
    assert read_tree(project.path / "d") == {k[2:]: v for k, v in local.items()} if local else \
        not (project.path / "d").exists()
    assert s3.keys() == remote


def test_credentials_never_appear_in_output(s3, s3cli, project, monkeypatch):
    make_tree(project.path, {"d/a": "a"})
    s3.seed({"d/x": "x"})
    s3.cut_bodies(100, keep=0)
    outputs = []
    for backend in ("s5cmd", "boto3"):
        monkeypatch.setenv("S3_BACKEND", backend)
        monkeypatch.setenv("TOOLBOX_FULL_ERROR", "0")
        for argv in (["download", "--file", "d/x"], ["upload", "--file", "d/", "--overwrite", "1"]):
            r = s3cli(*argv)
            outputs.append(r.out + r.err)
        monkeypatch.setenv("S3_BUCKET_NAME", "no-such-bucket")
        r = s3cli("upload", file="d/")
        outputs.append(r.out + r.err)
        monkeypatch.setenv("S3_BUCKET_NAME", s3.bucket)
    text = "\n".join(outputs)
    assert "transfers failed" in text and "NoSuchBucket" in text      # the failures did happen
    assert SECRET_KEY not in text and ACCESS_KEY not in text


def test_credentials_in_the_endpoint_url_are_never_shown(s3, s3cli, project, monkeypatch):
    """S3_ENDPOINT_URL=http://user:password@host: every message shows http://***@host instead."""
    import socket

    make_tree(project.path, {"d/a": "a"})
    s3.seed({"d/x": "x"})
    s3.cut_bodies(100, keep=0)
    live = s3.url.replace("http://", "http://someuser:endpointpass@")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://someuser:endpointpass@127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("S3_RETRY_SECONDS", "0")
    outputs = []
    for backend in ("s5cmd", "boto3"):
        monkeypatch.setenv("S3_BACKEND", backend)
        for endpoint, commands in ((live, ["download"]), (dead, ["download", "upload"])):
            monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
            for command in commands:
                r = s3cli(command, file="d/x" if command == "download" else "d/")
                assert r.code == 1, r
                outputs.append(r.out + r.err)
    text = "\n".join(outputs)
    assert "***@127.0.0.1" in text and "cannot connect to the S3 endpoint" in text     # the failures did happen
    assert "endpointpass" not in text and "someuser" not in text
    monkeypatch.setenv("S3_ENDPOINT_URL", "ftp://someuser:endpointpass@host")
    r = s3cli("find", file="d/")
    assert (r.code, r.err) == (2, "error: S3_ENDPOINT_URL=ftp://***@host: expected a URL starting with http:// or "
                                  "https://\n")


@pytest.mark.parametrize("endpoint, what", [
    ("http://[::1", "not a valid URL: Invalid IPv6 URL"),
    ("http://:9000", "not a valid URL: no host name"),
    ("http://host:99999", "not a valid URL: Port out of range 0-65535"),
])
def test_a_malformed_endpoint_url_is_one_line(s3cli, monkeypatch, endpoint, what):
    monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
    r = s3cli("find", file="d/")
    assert r.code == 2, r
    assert r.err.splitlines()[0] == f"error: S3_ENDPOINT_URL={endpoint}: {what}", r.err
