"""Parity: the same scenario on both backends gives identical keys, files, skip decisions and results."""
import os

from fixtures_s3 import make_tree
from toolbox import s3utils

T0 = 1_600_000_000
TREE = {"data/a.txt": "alpha", "data/b/c.txt": "charlie", "data/.hidden": "h", "data.txt": "sibling",
        "ckpt-1/w.bin": os.urandom(3000), "ckpt-10/w.bin": "ten", "odd/it's a \"name\"; $x.txt": "odd"}


def outcome(result):
    return list(result), sorted(result.skipped), sorted(result.failed), sorted(result.deleted), result.nbytes


def scenario(s3):
    """Upload, re-upload, change one file, download elsewhere, re-download, sync with delete, remove."""
    steps = []
    make_tree("src", TREE, mtime=T0)
    steps.append(outcome(s3utils.upload_s3_path("*", local_path="src", progress=False)))
    steps.append(outcome(s3utils.upload_s3_path("data", local_path="src", progress=False)))
    make_tree("src", {"data/a.txt": "alpha, edited"}, mtime=T0 + 100)
    steps.append(outcome(s3utils.upload_s3_path("data/", local_path="src", progress=False)))
    steps.append(outcome(s3utils.download_s3_path("data", local_path="dst", progress=False)))
    steps.append(outcome(s3utils.download_s3_path("data/*", local_path="dst", progress=False)))
    make_tree("dst", {"data/extra.txt": "not in S3"})
    steps.append(outcome(s3utils.sync_s3_path("data", "down", local_path="dst", delete=True, progress=False)))
    steps.append(s3utils.remove_s3_path("ckpt-1"))
    objects = {k: (s3.get(k), s3.head(k)["ETag"], s3.head(k)["LastModified"].timestamp()) for k in s3.keys()}
    files = {}
    for folder, _, names in os.walk("dst"):
        for name in names:
            path = os.path.join(folder, name)
            key = os.path.relpath(path, "dst")
            with open(path, "rb") as f:
                # a downloaded file carries its object's LastModified as mtime
                files[key] = (f.read(), os.stat(path).st_mtime == objects[key][2])
    return steps, {k: v[:2] for k, v in objects.items()}, files


def test_both_backends_behave_identically(s3, monkeypatch, tmp_path):
    results = {}
    for name in ("s5cmd", "boto3"):
        s3.reset()
        monkeypatch.setenv("S3_BACKEND", name)
        monkeypatch.chdir(tmp_path.joinpath(name).mkdir() or tmp_path / name)
        results[name] = scenario(s3)
    assert results["s5cmd"] == results["boto3"]
    steps, objects, files = results["boto3"]
    assert steps[1][0] == [] and steps[2][0] == ["data/a.txt"] and steps[4][0] == []   # skips happened
    assert steps[5][3] == ["dst/data/extra.txt"]
    assert sorted(objects) == sorted(k for k in TREE if not k.startswith("ckpt-1/"))
    assert files == {"data/a.txt": (b"alpha, edited", True), "data/b/c.txt": (b"charlie", True),
                     "data/.hidden": (b"h", True)}
