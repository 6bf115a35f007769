"""Blob stores by URL: a local directory, and S3 (against moto's server on 127.0.0.1)."""

from __future__ import annotations

import pytest

from serve_app.platform.blobs import LocalBlobStore, S3BlobStore, open_blob_store
from serve_app.platform.errors import ConfigurationError, NotFound


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_blob_store((tmp_path / "blobs").as_uri())
    endpoint = request.getfixturevalue("s3_endpoint")
    request.getfixturevalue("s3_env")
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="voices")
    return open_blob_store(f"s3://voices/qtts/prod?endpoint_url={endpoint}")


def test_blobs_round_trip_and_delete(store):
    store.put("voices/t1/v1/prompt", b"\x00sealed\xff")
    assert store.exists("voices/t1/v1/prompt")
    assert store.get("voices/t1/v1/prompt") == b"\x00sealed\xff"
    store.put("voices/t1/v1/prompt", b"replaced")
    assert store.get("voices/t1/v1/prompt") == b"replaced"
    store.delete("voices/t1/v1/prompt")
    assert not store.exists("voices/t1/v1/prompt")
    with pytest.raises(NotFound):
        store.get("voices/t1/v1/prompt")


def test_the_s3_store_writes_under_its_prefix(s3_endpoint, s3_env):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="prefixed")
    store = open_blob_store(f"s3://prefixed/a/b?endpoint_url={s3_endpoint}")
    assert isinstance(store, S3BlobStore)
    store.put("jobs/x/result-1.wav", b"RIFF")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="prefixed")["Contents"]]
    assert keys == ["a/b/jobs/x/result-1.wav"]


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", ""])
def test_keys_that_could_leave_the_store_are_refused(tmp_path, key):
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path).put(key, b"x")


@pytest.mark.parametrize("url", ["ftp://host/x", "s3:///no-bucket", "s3://b/p?colour=red"])
def test_bad_blob_store_urls_are_configuration_errors(url):
    with pytest.raises(ConfigurationError):
        open_blob_store(url)
