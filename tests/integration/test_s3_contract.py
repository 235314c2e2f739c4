"""The S3 contract: one test class, inherited by both backends (s5cmd and boto3), against both S3 test
servers (moto and Ceph RGW). Every transfer row of the semantics table, skip-unchanged (counted on the
server), atomic downloads, retries, anonymous access, symbolic links, protected names, leftovers of killed
runs.
"""
import os
import subprocess
import time

import pytest

from fixtures_s3 import make_tree, read_tree
from toolbox.errors import S3Error
from toolbox import s3utils


YELP = "Model/Yelp/t5_model_12weeks_wise-sky-249-northern-dawn-288_epoch_1419"
TREE = {
    "data/1.txt": "one", "data/2.txt": "two", "data/10.txt": "ten", "data/.hidden": "dot",
    "data/sub/3.txt": "three", "data.txt": "sibling file", "data2/x.txt": "sibling folder",
    "ckpt-1/model.pt": "c1", "ckpt-10/model.pt": "c10",
    f"{YELP}/config.json": "{}", f"{YELP}/pytorch_model.bin": "weights",
    "Model/Yelp/t5_model_12weeks_wise-sky-249_epoch_1418/config.json": "{}",
    "runs/a[1]/x": "bracket", "runs/a1/x": "no bracket",
    "odd/my file;'q\".txt": "hostile", "odd/$HOME `id`.txt": "dollar", "odd/uni-é✓.txt": "unicode",
    "odd/carriage\rreturn.txt": "carriage return", "odd/-dash": "dash", "odd/star*q?mark\\back.txt": "globs",
}
DATA = ["data/.hidden", "data/1.txt", "data/10.txt", "data/2.txt", "data/sub/3.txt"]
ODD = sorted(k for k in TREE if k.startswith("odd/"))

ROWS = [
    pytest.param("data/1.txt", ["data/1.txt"], id="1-exact-file"),
    pytest.param("data/", DATA, id="2-folder-slash-never-siblings"),
    pytest.param("data", DATA, id="3-folder-never-siblings"),
    pytest.param("ckpt-1", ["ckpt-1/model.pt"], id="4-ckpt-1-never-ckpt-10"),
    pytest.param("Model/*t5*wise*419*", [f"{YELP}/config.json", f"{YELP}/pytorch_model.bin"],
                 id="5-star-crosses-folders"),
    pytest.param("data/?.txt", ["data/1.txt", "data/2.txt"], id="6-question-one-character"),
    pytest.param("*.txt", sorted(k for k in TREE if k.endswith(".txt")), id="7-star-any-depth"),
    pytest.param("data/*", DATA, id="8-hidden-files-included"),
    pytest.param("Model/*1419", [f"{YELP}/config.json", f"{YELP}/pytorch_model.bin"],
                 id="9-pattern-matching-a-folder-selects-its-content"),
    pytest.param("runs/a[1]", ["runs/a[1]/x"], id="10-brackets-literal"),
    pytest.param("odd/", ODD, id="11-spaces-quotes-dollar-unicode-control-chars-literal"),
    pytest.param("./data/1.txt", ["data/1.txt"], id="12-leading-dot-slash"),
    pytest.param("data//1.txt", ["data/1.txt"], id="16-double-slash-is-one"),
    pytest.param("data/sub/3.txt/../", ["data/sub/3.txt"], id="17-dot-dot-resolved-trailing-slash-kept"),
    pytest.param("data/./sub/..", DATA, id="17-dot-and-dot-dot-name-a-folder"),
]


class S3Contract:
    """Everything a backend must do identically. Subclasses set `backend_name`."""

    backend_name = None

    @pytest.fixture(autouse=True)
    def _setup(self, s3, monkeypatch, tmp_path):
        monkeypatch.setenv("S3_BACKEND", self.backend_name)
        monkeypatch.chdir(tmp_path)
        self.s3 = s3

    # ------------------------------------------------------------ the semantics table
    @pytest.mark.parametrize("pattern,expected", ROWS)
    def test_semantics_row(self, pattern, expected):
        make_tree("", TREE)
        assert list(s3utils.upload_s3_path(pattern, progress=False)) == expected
        assert self.s3.keys() == expected

        self.s3.seed(TREE)
        assert s3utils.get_s3_objects(pattern) == expected
        result = s3utils.download_s3_path(pattern, local_path="down", progress=False)
        assert list(result) == expected
        assert read_tree("down") == {k: TREE[k].encode() for k in expected}

        assert s3utils.remove_s3_path(pattern) == expected
        assert self.s3.keys() == sorted(set(TREE) - set(expected))

    def test_folder_markers_are_found_and_removed_but_never_downloaded(self):
        self.s3.seed({"data/1.txt": "one", "data/empty/": ""})
        assert s3utils.get_s3_objects("data/") == ["data/1.txt", "data/empty/"]
        assert list(s3utils.download_s3_path("data/", progress=False)) == ["data/1.txt"]
        assert read_tree("data") == {"1.txt": b"one"}
        assert s3utils.remove_s3_path("data/") == ["data/1.txt", "data/empty/"]
        assert self.s3.keys() == []

    def test_nothing_matches_is_an_error_with_a_suggestion(self):
        make_tree("", {"data/1.txt": "one"})
        self.s3.seed({"data/1.txt": "one"})
        with pytest.raises(S3Error) as info:
            s3utils.download_s3_path("dta")
        assert info.value.format() == (f"error: s3://{self.s3.bucket}/dta: no object matches\n"
                                       "    did you mean 'data'?")
        with pytest.raises(S3Error, match=r"^data/1: no local file matches$"):
            s3utils.upload_s3_path("data/1")
        assert self.s3.keys() == ["data/1.txt"]

    def test_local_path_relocates_only_the_local_side(self):
        make_tree("scratch/in", {"data/a.txt": "A", "data/b/c.txt": "C"})
        assert list(s3utils.upload_s3_path("data", local_path="scratch/in", progress=False)) == \
            ["data/a.txt", "data/b/c.txt"]
        assert self.s3.keys() == ["data/a.txt", "data/b/c.txt"]
        s3utils.download_s3_path("data/b/", local_path=os.path.abspath("scratch/out"), progress=False)
        assert read_tree("scratch/out") == {"data/b/c.txt": b"C"}

    # ------------------------------------------------------------ skip unchanged
    def test_unchanged_upload_sends_only_list_requests(self):
        make_tree("", {f"data/{i}.txt": f"content {i}" for i in range(20)})
        assert len(s3utils.upload_s3_path("data/", progress=False)) == 20
        self.s3.clear_log()
        again = s3utils.upload_s3_path("data/", progress=False)
        assert list(again) == [] and len(again.skipped) == 20
        assert self.s3.kinds() == ["LIST"]

    def test_unchanged_download_sends_only_list_requests_and_sets_mtime(self):
        self.s3.seed({f"data/{i}.txt": f"content {i}" for i in range(20)})
        assert len(s3utils.download_s3_path("data", progress=False)) == 20
        assert os.stat("data/7.txt").st_mtime == self.s3.last_modified("data/7.txt")
        self.s3.clear_log()
        again = s3utils.download_s3_path("data", progress=False)
        assert list(again) == [] and len(again.skipped) == 20
        assert self.s3.kinds() == ["LIST"]
        # the downloaded tree is "unchanged" for upload too: mtime = LastModified
        self.s3.clear_log()
        assert list(s3utils.upload_s3_path("data", progress=False)) == []
        assert self.s3.kinds() == ["LIST"]

    def test_only_changed_files_move_and_overwrite_forces(self):
        make_tree("", {"d/a": "aaa", "d/b": "bbb", "d/c": "ccc"}, mtime=1_600_000_000)
        s3utils.upload_s3_path("d", progress=False)
        make_tree("", {"d/b": "bigger now"})
        self.s3.clear_log()
        assert list(s3utils.upload_s3_path("d", progress=False)) == ["d/b"]
        assert self.s3.count("PUT") == 1 and self.s3.get("d/b") == b"bigger now"
        assert list(s3utils.upload_s3_path("d", overwrite=True, progress=False)) == ["d/a", "d/b", "d/c"]

    def test_checksum_sees_a_change_that_size_and_mtime_miss(self):
        make_tree("", {"d/a": "same", "d/b": "size"}, mtime=1_600_000_000)
        s3utils.upload_s3_path("d", progress=False)
        make_tree("", {"d/a": "SAME"}, mtime=1_600_000_000)     # same size, same mtime, new content
        assert list(s3utils.upload_s3_path("d", progress=False)) == []
        self.s3.clear_log()
        assert list(s3utils.upload_s3_path("d", checksum=True, progress=False)) == ["d/a"]
        assert self.s3.count("PUT") == 1 and self.s3.get("d/a") == b"SAME"
        os.utime("d/a", (1_900_000_000, 1_900_000_000))
        assert list(s3utils.download_s3_path("d", checksum=True, progress=False)) == []

    def test_multipart_objects_round_trip_and_checksum_skips_them(self, monkeypatch):
        monkeypatch.setenv("S3_PART_SIZE_MB", "5")
        blob = os.urandom(6 * 1024 * 1024 + 123)
        make_tree("", {"big/blob.bin": blob})
        s3utils.upload_s3_path("big/", progress=False)
        assert self.s3.head("big/blob.bin")["ETag"].endswith('-2"')
        self.s3.clear_log()
        assert list(s3utils.upload_s3_path("big/", checksum=True, progress=False)) == []
        assert "PUT" not in self.s3.kinds()
        assert list(s3utils.download_s3_path("big", local_path="copy", progress=False)) == ["big/blob.bin"]
        assert read_tree("copy") == {"big/blob.bin": blob}
        assert list(s3utils.download_s3_path("big", local_path="copy", checksum=True, progress=False)) == []

    def test_a_fresh_download_costs_one_get_per_object_and_no_head(self):
        self.s3.seed({f"ds/{i:02d}/x.bin": f"x{i}" for i in range(30)})
        assert len(s3utils.download_s3_path("ds/", progress=False)) == 30
        assert self.s3.count("GET") == 30 and self.s3.count("HEAD") == 0
        assert self.s3.count("LIST") <= 2

    def test_a_key_with_a_control_character_still_downloads(self):
        keys = {"w/a": "a", "w/b": "b", "w/bell\x07name": "bell"}
        self.s3.seed(keys)
        assert list(s3utils.download_s3_path("w", progress=False)) == sorted(keys)
        assert read_tree("w") == {k[2:]: v.encode() for k, v in keys.items()}
        # a listing without URL-encoding (s5cmd's) cannot carry such a name: it is not even tried
        assert all("encoding-type=url" in r.query for r in self.s3.requests if r.kind == "LIST")

    # ------------------------------------------------------------ sync
    def test_sync_up_with_delete_removes_extraneous_keys_only_under_the_pattern(self):
        self.s3.seed({"d/old": "x", "d/keep": "k", "d2/other": "o"})
        # files older than the objects (a second boundary between seed and write must not matter)
        make_tree("", {"d/keep": "k", "d/new": "n"}, mtime=time.time() - 3600)
        result = s3utils.sync_s3_path("d", "up", delete=True, progress=False)
        assert list(result) == ["d/new"] and result.skipped == ["d/keep"] and result.deleted == ["d/old"]
        assert self.s3.keys() == ["d/keep", "d/new", "d2/other"]

    def test_sync_down_with_delete_removes_extraneous_local_files(self):
        self.s3.seed({"d/a": "a"})
        make_tree("", {"d/stale/x": "s", "d.txt": "sibling"})
        result = s3utils.sync_s3_path("d/", "down", delete=True, progress=False)
        assert list(result) == ["d/a"] and result.deleted == ["d/stale/x"]
        assert read_tree(".") == {"d/a": b"a", "d.txt": b"sibling"}

    def test_sync_up_delete_keeps_what_a_linked_folder_holds(self):
        """`file=data/imagenet/` uploads through the link; `sync file=data/ delete=true` must see the same
        files, not delete their objects."""
        make_tree("", {"data/own.txt": "own", "shared/imagenet/x.jpg": "x", "shared/imagenet/sub/y.jpg": "y"})
        os.symlink("../shared/imagenet", "data/imagenet")
        assert list(s3utils.upload_s3_path("data/imagenet/", progress=False)) == \
            ["data/imagenet/sub/y.jpg", "data/imagenet/x.jpg"]
        self.s3.put("data/gone.txt", "its local file is a dangling link: still a local source")
        os.symlink("nowhere", "data/gone.txt")
        result = s3utils.sync_s3_path("data/", "up", delete=True, progress=False)
        assert list(result) == ["data/own.txt"] and result.deleted == []
        assert result.skipped == ["data/imagenet/sub/y.jpg", "data/imagenet/x.jpg"]
        assert self.s3.keys() == ["data/gone.txt", "data/imagenet/sub/y.jpg", "data/imagenet/x.jpg", "data/own.txt"]

    def test_links_are_followed_but_never_in_a_loop_nor_to_credentials(self, capfd):
        make_tree("", {"data/a.txt": "a", ".env": "TOKEN=secret", ".aws/credentials": "[default]",
                       "home/.ssh/id_rsa": "private key"})
        os.symlink("../.env", "data/settings.txt")              # a file link to the project's .env
        os.symlink("../.aws", "data/cloud")                     # a folder link to credentials
        os.symlink("../home/.ssh", "data/keys")
        os.symlink(".", "data/loop")                            # a folder link to its own folder
        assert list(s3utils.upload_s3_path("data/", progress=False)) == ["data/a.txt"]
        with pytest.raises(S3Error, match="no local file matches"):    # even named, the link leads to .env
            s3utils.upload_s3_path("data/settings.txt", progress=False)
        err = capfd.readouterr().err
        for name in ("data/settings.txt", "data/cloud", "data/keys"):
            assert f"warning: {name}: a symbolic link to " in err and "a protected path: skipped" in err
        assert "warning: data/loop: a symbolic link to " in err and "not followed (a loop)" in err
        assert self.s3.keys() == ["data/a.txt"]
        assert list(s3utils.upload_s3_path(".env", progress=False)) == [".env"]   # named: on purpose

    def test_credentials_are_uploaded_only_when_named(self):
        make_tree("", {"a.txt": "a", ".env.local": "S=1", ".envrc": "export S=1", ".aws/credentials": "[x]",
                       ".ssh/id_rsa": "key", ".git/HEAD": "ref", "sub/.env.prod": "S=2", ".github/ci.yml": "ci"})
        assert list(s3utils.upload_s3_path("*", progress=False)) == [".github/ci.yml", "a.txt"]
        assert list(s3utils.upload_s3_path(".env.local", progress=False)) == [".env.local"]
        assert list(s3utils.upload_s3_path(".aws/", progress=False)) == [".aws/credentials"]
        assert list(s3utils.upload_s3_path("*/.env*", progress=False)) == ["sub/.env.prod"]
        assert self.s3.keys() == [".aws/credentials", ".env.local", ".github/ci.yml", "a.txt", "sub/.env.prod"]
        result = s3utils.sync_s3_path("*", "down", delete=True, progress=False)
        assert result.deleted == [] and os.path.exists(".envrc") and os.path.exists(".ssh/id_rsa")

    def test_leftovers_of_a_killed_run_are_swept(self):
        self.s3.seed({"d/a": "a", "d/sub/b": "b", "e/x": "x"})
        dead = subprocess.Popen(["true"])
        dead.wait()                                             # a pid that no longer runs
        old, recent = time.time() - 3600, time.time() + 3600
        leftovers = {f"d/.toolbox-{dead.pid}-0123456789abcdef.part": old,          # a killed download
                     f"d/sub/.toolbox-{dead.pid}-00112233445566ff.part/b": old,    # a killed staging folder
                     f"e/.toolbox-{dead.pid}-aaaaaaaaaaaaaaaa.part": old,          # next to a single file
                     f"d/.toolbox-{os.getppid()}-bbbbbbbbbbbbbbbb.part": old,      # its writer still runs
                     f"d/.toolbox-{dead.pid}-cccccccccccccccc.part": recent}       # newer than this run
        make_tree("", {path: "partial" for path in leftovers})
        for path, mtime in leftovers.items():
            os.utime(path.rsplit("/", 1)[0] if path.endswith("/b") else path, (mtime, mtime))
        assert list(s3utils.download_s3_path("d/", progress=False)) == ["d/a", "d/sub/b"]
        assert list(s3utils.download_s3_path("e/x", progress=False)) == ["e/x"]
        assert read_tree(".") == {"d/a": b"a", "d/sub/b": b"b", "e/x": b"x",
                                  f"d/.toolbox-{os.getppid()}-bbbbbbbbbbbbbbbb.part": b"partial",
                                  f"d/.toolbox-{dead.pid}-cccccccccccccccc.part": b"partial"}

    # ------------------------------------------------------------ paths written like a shell would, the API
    def test_an_absolute_path_inside_the_project_is_taken_relative(self):
        make_tree("", {"out/batch/parsed.h5": "h5", "data/train/iter0.h5": "0", "data/train/iter1.h5": "1"})
        root = os.getcwd()
        assert list(s3utils.upload_s3_path(f"{root}/out/batch//parsed.h5", progress=False)) == ["out/batch/parsed.h5"]
        assert list(s3utils.upload_s3_path("data/train/iter0.h5/../", progress=False)) == \
            ["data/train/iter0.h5", "data/train/iter1.h5"]
        copy = os.path.join(root, "copy")
        assert list(s3utils.download_s3_path(f"{copy}/out//batch/", local_path=copy, progress=False)) == \
            ["out/batch/parsed.h5"]
        assert read_tree("copy") == {"out/batch/parsed.h5": b"h5"}
        for outside in ("../x", "data/../../x", "/etc/passwd", f"{root}/../x"):
            with pytest.raises(S3Error) as info:
                s3utils.upload_s3_path(outside, progress=False)
            assert info.value.exit_code == 2
        assert self.s3.keys() == ["data/train/iter0.h5", "data/train/iter1.h5", "out/batch/parsed.h5"]

    def test_the_python_api_keeps_two_positional_parameters(self):
        make_tree("src", {"data/a.txt": "a"})
        assert list(s3utils.upload_s3_path("data/", "src", progress=False)) == ["data/a.txt"]
        assert list(s3utils.download_s3_path(s3_path="data/", local_path="dst", progress=False)) == ["data/a.txt"]
        for call in (s3utils.download_s3_path, s3utils.upload_s3_path):
            with pytest.raises(TypeError):            # a third positional (api_call, in older scripts) is refused
                call("data/", "dst", True)
        assert read_tree("dst") == {"data/a.txt": b"a"}

    # ------------------------------------------------------------ failures
    def test_interrupted_download_leaves_the_old_file_and_no_partial_file(self):
        make_tree("", {"d/a.txt": "old content"}, mtime=1_500_000_000)
        self.s3.seed({"d/a.txt": "new content, longer", "d/b.txt": "fine"})
        self.s3.cut_bodies(100, keep=5, key="d/a.txt")
        with pytest.raises(S3Error) as info:
            s3utils.download_s3_path("d/", progress=False)
        assert info.value.what == "1 of 2 transfers failed"
        assert info.value.details[0].startswith("d/a.txt: ")
        assert list(info.value.result) == ["d/b.txt"]
        assert read_tree(".") == {"d/a.txt": b"old content", "d/b.txt": b"fine"}
        assert self.s3.count("GET", "d/a.txt") > 1          # it was retried before giving up

    def test_slowdown_answers_are_retried(self):
        make_tree("", {"d/a": "a", "d/b": "b"})
        self.s3.slow_down(2, kinds=("PUT",))
        assert list(s3utils.upload_s3_path("d", progress=False)) == ["d/a", "d/b"]
        self.s3.slow_down(2, kinds=("GET",))
        assert list(s3utils.download_s3_path("d", local_path="back", progress=False)) == ["d/a", "d/b"]
        assert self.s3.count("PUT") == 4 and self.s3.count("GET") == 4

    def test_a_folder_in_the_way_fails_that_key_only(self):
        self.s3.seed({"d/a": "a", "d/b": "b"})
        os.makedirs("d/a")
        with pytest.raises(S3Error) as info:
            s3utils.download_s3_path("d", progress=False)
        assert list(info.value.result) == ["d/b"] and list(info.value.result.failed) == ["d/a"]
        assert read_tree(".") == {"d/b": b"b"}

    def test_anonymous_access_without_keys(self, monkeypatch):
        self.s3.allow_public_listing()
        self.s3.client.put_object(Bucket=self.s3.bucket, Key="pub/a", Body=b"a", ACL="public-read")
        self.s3.client.put_object(Bucket=self.s3.bucket, Key="pub/private", Body=b"p")
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(var)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.path.abspath("none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", os.path.abspath("none"))
        self.s3.clear_log()
        assert s3utils.get_s3_objects("pub") == ["pub/a", "pub/private"]
        assert list(s3utils.download_s3_path("pub/a", progress=False)) == ["pub/a"]
        with pytest.raises(S3Error) as info:       # a private object stays private
            s3utils.download_s3_path("pub/private", progress=False)
        assert "anonymous" in info.value.hint
        assert read_tree(".") == {"pub/a": b"a"}
        assert self.s3.requests and not any(r.signed for r in self.s3.requests)


class TestS5cmdBackend(S3Contract):
    backend_name = "s5cmd"

    def test_when_the_wildcard_copy_fails_each_key_is_fetched_on_its_own(self):
        self.s3.seed({"w/a": "a", "w/b": "b"})
        # s5cmd's own listing (ours asks for URL-encoded keys, s5cmd's does not) is refused once
        self.s3.refuse(1, lambda r: r.kind == "LIST" and "encoding-type" not in r.query)
        assert list(s3utils.download_s3_path("w", progress=False)) == ["w/a", "w/b"]
        assert read_tree("w") == {"a": b"a", "b": b"b"}
        assert self.s3.count("HEAD") == 2           # the per-key path ran


class TestBoto3Backend(S3Contract):
    backend_name = "boto3"
