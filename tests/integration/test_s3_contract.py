"""The S3 contract: one test class, inherited by both backends (s5cmd and boto3), against moto's real
S3 server. Every transfer row of the semantics table, skip-unchanged (counted on the server), atomic
downloads, retries, anonymous access.
"""
import os

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
    "odd/carriage\rreturn.txt": "carriage return", "odd/-dash": "dash",
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
        self.s3.seed({f"data/{i}.txt": f"content {i}" for i in range(20)}, mtime=1_600_000_000)
        assert len(s3utils.download_s3_path("data", progress=False)) == 20
        assert os.stat("data/7.txt").st_mtime == 1_600_000_000
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
        make_tree("", {"d/keep": "k", "d/new": "n"})
        result = s3utils.sync_s3_path("d", "up", delete=True, progress=False)
        assert list(result) == ["d/new"] and result.skipped == ["d/keep"] and result.deleted == ["d/old"]
        assert self.s3.keys() == ["d/keep", "d/new", "d2/other"]

    def test_sync_down_with_delete_removes_extraneous_local_files(self):
        self.s3.seed({"d/a": "a"})
        make_tree("", {"d/stale/x": "s", "d.txt": "sibling"})
        result = s3utils.sync_s3_path("d/", "down", delete=True, progress=False)
        assert list(result) == ["d/a"] and result.deleted == ["d/stale/x"]
        assert read_tree(".") == {"d/a": b"a", "d.txt": b"sibling"}

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
