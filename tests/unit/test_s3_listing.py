"""Which endpoints s3/listing.py lists itself (the rest keep boto3's listing), and how it reads a listing."""
from xml.etree import ElementTree

import pytest

from toolbox.s3 import listing
from toolbox.s3.settings import load_settings

PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
           "all_proxy")


@pytest.mark.parametrize("url,proxy,no_proxy,covered", [
    ("http://127.0.0.1:9000", None, None, True),
    ("https://s3-west.nrp-nautilus.io", None, None, True),
    ("https://s3.us-east-1.amazonaws.com", None, None, False),      # virtual-host style, region redirects
    ("http://user:secret@127.0.0.1:9000", None, None, False),
    ("http://127.0.0.1:9000/prefix", None, None, False),
    ("https://s3-west.nrp-nautilus.io", "http://proxy:3128", None, False),
    ("https://s3-west.nrp-nautilus.io", "http://proxy:3128", "nrp-nautilus.io", True),
])
def test_which_endpoints_it_covers(monkeypatch, url, proxy, no_proxy, covered):
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    if proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    settings = load_settings({"S3_BUCKET_NAME": "b", "S3_ENDPOINT_URL": url, "S3_BACKEND": "boto3"})
    assert listing.covers(settings) is covered


def test_an_entry_is_decoded_and_its_time_is_whole_seconds():
    item = ElementTree.fromstring(
        f'<Contents xmlns="{listing.NS[1:-1]}"><Key>a%2Fb+c%2Bd%07</Key><LastModified>2024-05-01T12:00:07.871Z'
        '</LastModified><ETag>"abc-2"</ETag><Size>12</Size></Contents>')
    obj = listing._object(item)
    assert (obj.key, obj.size, obj.mtime, obj.etag) == ("a/b c+d\x07", 12, 1714564807, '"abc-2"')


def test_a_listing_without_the_s3_namespace_is_read_too():
    ns = listing._namespace(ElementTree.fromstring("<ListBucketResult><Contents/></ListBucketResult>"))
    assert ns == ""
    item = ElementTree.fromstring("<Contents><Key>k</Key><LastModified>2024-05-01T12:00:07Z</LastModified>"
                                  "<Size>1</Size></Contents>")
    assert listing._object(item, ns) == listing.RemoteObject("k", 1, 1714564807, "")
