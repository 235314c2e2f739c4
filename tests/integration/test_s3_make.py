"""The S3 make targets end to end: real `make` in a temp project whose only S3 settings are in .env."""
import os
import subprocess
import sys

import pytest

from fixtures_s3 import S3_VARS, make_tree, read_tree, s3_environment


@pytest.fixture
def dotenv_project(s3, project, monkeypatch):
    """A project with the S3 settings in .env and nowhere else."""
    for var in S3_VARS:
        monkeypatch.delenv(var, raising=False)
    project.env("".join(f"{k}={v}\n" for k, v in s3_environment(s3.url).items()))
    return project


def test_targets_end_to_end(s3, dotenv_project, make):
    make_tree(dotenv_project.path, {"data/1.txt": "one", "data/sub/2.txt": "two", "data.txt": "sibling"})
    r = make("upload", "file=data/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("upload: 2 transferred, 0 skipped, 0 failed")
    assert s3.keys() == ["data/1.txt", "data/sub/2.txt"]
    assert make("up", "file=data").stdout.startswith("upload: 0 transferred, 2 skipped")

    r = make("ls", "file=data/")
    assert r.returncode == 0 and "data/sub/" in r.stdout and "data/1.txt" in r.stdout
    assert make("fd", "file=data/*2*").stdout == "data/sub/2.txt\n"

    r = make("down", "file=data", "local_path=copy")
    assert r.returncode == 0 and r.stdout.startswith("download: 2 transferred")
    assert read_tree(dotenv_project.path / "copy") == {"data/1.txt": b"one", "data/sub/2.txt": b"two"}

    make_tree(dotenv_project.path, {"data/new.txt": "new"})
    os.remove(dotenv_project.path / "data/1.txt")
    r = make("sync", "file=data/", "direction=up", "delete=true", "yes=1")
    assert r.returncode == 0, r.stderr
    assert s3.keys() == ["data/new.txt", "data/sub/2.txt"]

    r = make("rm", "file=data/")                       # no yes=1 and no terminal: nothing removed
    assert r.returncode != 0 and "cancelled: nothing removed" in r.stdout
    r = make("remove", "file=data/", "yes=1")
    assert r.returncode == 0 and s3.keys() == []


def test_hostile_file_values_are_literal_names(s3, dotenv_project, make):
    name = "odd/it's a \"file\"; touch pwned $(touch pwned2) `touch pwned3` *.txt"
    make_tree(dotenv_project.path, {name: "hostile", "odd/other.txt": "x"})
    r = make("upload", f"file={name}")
    assert r.returncode == 0, r.stderr
    assert s3.keys() == [name]
    r = make("download", f"file={name}", "local_path=back", "overwrite=true")
    assert r.returncode == 0, r.stderr
    assert read_tree(dotenv_project.path / "back") == {name: b"hostile"}
    assert not any(p.name.startswith("pwned") for p in dotenv_project.path.rglob("*"))


def test_errors_reach_the_user_as_one_line(s3, dotenv_project, make):
    r = make("download")                                   # no file=, stdin is not a terminal
    assert r.returncode != 0
    assert "error: file=: no path given" in r.stderr
    r = make("download", "file=../outside")
    assert "error: file=../outside: '..' leads outside the project root" in r.stderr and "Traceback" not in r.stderr
    dotenv_project.env(f"S3_ENDPOINT_URL={s3.url}\n")
    r = make("ls")
    assert "error: S3_BUCKET_NAME: not set" in r.stderr


def test_import_reads_nothing_and_connects_nowhere(dotenv_project):
    code = ("import sys, toolbox.s3utils as s\n"
            "print(sorted(m for m in ('boto3', 'botocore', 's3transfer') if m in sys.modules))\n"
            "try:\n    s.get_s3_objects('data/')\n"
            "except s.S3Error as e:\n    print(e.format())\n")
    env = {k: v for k, v in os.environ.items() if k not in S3_VARS}
    env["PYTHONPATH"] = "src"
    r = subprocess.run([sys.executable, "-c", code], cwd=dotenv_project.path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[]", "error: S3_BUCKET_NAME: not set",
                                     "hint: add S3_BUCKET_NAME=<bucket> to .env (or the environment)"]
