"""Seed: "Manage object metadata (OSS SDK for Python V2)" — every flow, with alibabacloud-oss-v2,
against `transfer serve`.

Put with user metadata, HeadObject, GetObjectMeta, CopyObject with metadata_directive=REPLACE, and the
Copier (single and multipart) — plus the V1 signature through SDK V2 and a wrong-secret negative test.
"""
import base64
import hashlib
import os

import crcmod
import pytest

import alibabacloud_oss_v2 as oss

from conftest import make_v2_client

_CRC64 = crcmod.Crc(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)

KEY = "exampledir/exampleobject.txt"
DATA = "Hello, OSS!".encode("utf-8")
SEED_METADATA = {"key1": "value1", "key2": "value2"}
# The V1 seed's tag set (header form and parsed form), reused to tag sources here.
SEED_TAGGING = "k1=v1&k2=v2&k3=v3&k4%2B-%3D=%2B-%3D._%3A/"
SEED_TAGS = {"k1": "v1", "k2": "v2", "k3": "v3", "k4+-=": "+-=._:/"}

KIB = 1024
BIG = 350 * KIB + 3  # above the copier thresholds used below: four 100 KiB parts


def crc64(data: bytes) -> str:
    c = _CRC64.new()
    c.update(data)
    return str(c.crcValue)


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest().upper() + '"'


def read_all(client, bucket, key) -> bytes:
    return client.get_object(oss.GetObjectRequest(bucket=bucket, key=key)).body.read()


def tags(client, bucket, key, version_id=None) -> dict:
    r = client.get_object_tagging(oss.GetObjectTaggingRequest(bucket=bucket, key=key, version_id=version_id))
    if r.tag_set is None or not r.tag_set.tags:
        return {}
    return {t.key: t.value for t in r.tag_set.tags}


def head(client, bucket, key, version_id=None):
    return client.head_object(oss.HeadObjectRequest(bucket=bucket, key=key, version_id=version_id))


def enable_versioning(client, bucket):
    client.put_bucket_versioning(oss.PutBucketVersioningRequest(
        bucket=bucket, versioning_configuration=oss.VersioningConfiguration(status="Enabled")))


def test_put_object_with_metadata(client, v2_bucket):
    result = client.put_object(oss.PutObjectRequest(
        bucket=v2_bucket,
        key=KEY,
        body=DATA,
        metadata={
            'key1': 'value1',
            'key2': 'value2'
        }
    ))

    assert result.status_code == 200
    assert result.request_id
    assert result.etag == md5_etag(DATA)
    assert result.hash_crc64 == crc64(DATA)
    if result.content_md5 is not None:
        assert result.content_md5 == base64.b64encode(hashlib.md5(DATA).digest()).decode()
    assert result.version_id is None  # versioning not enabled

    assert read_all(client, v2_bucket, KEY) == DATA
    assert head(client, v2_bucket, KEY).metadata == SEED_METADATA


def test_head_object(client, v2_bucket):
    put = client.put_object(oss.PutObjectRequest(
        bucket=v2_bucket, key=KEY, body=DATA, metadata=SEED_METADATA, tagging="a=1&b=2"))

    result = client.head_object(oss.HeadObjectRequest(
        bucket=v2_bucket,
        key=KEY,
    ))

    assert result.status_code == 200
    assert result.request_id
    assert result.content_length == len(DATA)
    assert result.etag == put.etag
    assert result.hash_crc64 == crc64(DATA)
    assert result.last_modified is not None
    assert result.content_type  # stored type, e.g. text/plain guessed from the .txt name
    assert result.storage_class == "Standard"
    assert result.object_type == "Normal"
    assert result.metadata == SEED_METADATA
    assert result.tagging_count == 2
    assert result.version_id is None


def test_head_object_versioned(client, v2_bucket):
    enable_versioning(client, v2_bucket)
    first = client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key=KEY, body=b"one",
                                                   metadata={"gen": "1"}))
    second = client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key=KEY, body=b"second",
                                                    metadata={"gen": "2"}))
    assert first.version_id and second.version_id and first.version_id != second.version_id

    current = head(client, v2_bucket, KEY)
    assert current.version_id == second.version_id
    assert current.content_length == len(b"second")
    assert current.metadata == {"gen": "2"}

    old = head(client, v2_bucket, KEY, version_id=first.version_id)
    assert old.version_id == first.version_id
    assert old.content_length == 3
    assert old.metadata == {"gen": "1"}
    assert old.hash_crc64 == crc64(b"one")


def test_head_missing_object_is_no_such_key(client, v2_bucket):
    with pytest.raises(oss.exceptions.OperationError) as err:
        head(client, v2_bucket, "no/such/key")
    service_error = err.value.unwrap()
    assert isinstance(service_error, oss.exceptions.ServiceError)
    assert service_error.status_code == 404
    assert service_error.code == "NoSuchKey"


def test_get_object_meta(client, v2_bucket):
    enable_versioning(client, v2_bucket)
    put = client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key=KEY, body=DATA, metadata=SEED_METADATA))

    result = client.get_object_meta(oss.GetObjectMetaRequest(
        bucket=v2_bucket,
        key=KEY,
    ))

    # The six fields the seed promises.
    assert result.status_code == 200
    assert result.content_length == len(DATA)
    assert result.etag == put.etag
    assert result.last_modified is not None
    assert result.last_access_time is not None
    assert result.version_id == put.version_id
    assert result.hash_crc64 == crc64(DATA)


def test_copy_object_replace_metadata_onto_itself(client, v2_bucket):
    client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key=KEY, body=DATA,
                                           metadata={"old1": "x", "old2": "y"}))

    result = client.copy_object(oss.CopyObjectRequest(
        bucket=v2_bucket,
        key=KEY,
        source_key=KEY,
        source_bucket=v2_bucket,
        metadata={'key1': 'value1', 'key2': 'value2'},
        metadata_directive='REPLACE',  # Replace all metadata with the values above.
    ))

    assert result.status_code == 200
    assert result.etag
    assert result.last_modified is not None
    assert result.hash_crc64 == crc64(DATA), "the copy answers the CRC-64 of what it wrote"
    h = head(client, v2_bucket, KEY)
    assert h.metadata == SEED_METADATA  # old metadata gone, new present
    assert h.content_length == len(DATA)
    assert read_all(client, v2_bucket, KEY) == DATA


def test_copy_object_replace_metadata_to_another_key(client, v2_bucket):
    client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key="src.txt", body=DATA, metadata={"old": "x"}))
    client.copy_object(oss.CopyObjectRequest(
        bucket=v2_bucket, key="dst.txt", source_key="src.txt", source_bucket=v2_bucket,
        metadata=SEED_METADATA, metadata_directive="REPLACE"))
    assert head(client, v2_bucket, "dst.txt").metadata == SEED_METADATA
    assert head(client, v2_bucket, "src.txt").metadata == {"old": "x"}
    assert read_all(client, v2_bucket, "dst.txt") == DATA

    # Default directive (COPY) carries the source metadata over.
    client.copy_object(oss.CopyObjectRequest(
        bucket=v2_bucket, key="dst2.txt", source_key="src.txt", source_bucket=v2_bucket))
    assert head(client, v2_bucket, "dst2.txt").metadata == {"old": "x"}


def test_copier_replace_metadata_single_copy(client, v2_bucket):
    """The seed's Copier call as written (default options: a small object takes the single CopyObject path)."""
    client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key=KEY, body=DATA, metadata={"old": "x"}))

    copier = client.copier()
    result = copier.copy(
        oss.CopyObjectRequest(
            bucket=v2_bucket,
            key=KEY,
            source_bucket=v2_bucket,
            source_key=KEY,
            metadata={'key1': 'value1', 'key2': 'value2'},
            metadata_directive="REPLACE",  # Replace all metadata with the values above.
        )
    )

    assert result.status_code == 200
    assert not result.upload_id
    assert head(client, v2_bucket, KEY).metadata == SEED_METADATA
    assert read_all(client, v2_bucket, KEY) == DATA


def test_copier_replace_metadata_multipart(client, v2_bucket):
    """Copier above its multipart threshold: HeadObject, InitiateMultipartUpload, UploadPartCopy x4 (three
    in parallel), CompleteMultipartUpload, then the SDK compares Complete's CRC-64 with the source's.

    Options are Copier kwargs (client.copier(**kw) or copier.copy(req, **kw)). For a same-bucket copy
    without SSE/storage-class change the copier would first try a "shallow" single CopyObject even above
    the threshold (falling back only on EntityTooLarge); disable_shallow_copy=True forces multipart."""
    data = os.urandom(BIG)
    client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key=KEY, body=data, metadata={"old": "x"}))

    copier = client.copier(part_size=100 * KIB, multipart_copy_threshold=100 * KIB, disable_shallow_copy=True)
    result = copier.copy(oss.CopyObjectRequest(
        bucket=v2_bucket,
        key=KEY,
        source_bucket=v2_bucket,
        source_key=KEY,
        metadata={'key1': 'value1', 'key2': 'value2'},
        metadata_directive="REPLACE",
    ))

    assert result.upload_id, "the copy must have gone through multipart"
    assert result.hash_crc64 == crc64(data), "Complete answers the CRC-64 of the object"
    h = head(client, v2_bucket, KEY)
    assert h.metadata == SEED_METADATA
    assert h.content_length == len(data)
    assert h.object_type == "Multipart"
    assert read_all(client, v2_bucket, KEY) == data


def test_copier_replace_metadata_shallow_above_threshold(client, v2_bucket):
    """Same as above with shallow copy allowed (the SDK default): a single CopyObject is used."""
    data = os.urandom(BIG)
    client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key="src.bin", body=data, metadata={"old": "x"}))
    copier = client.copier(part_size=100 * KIB, multipart_copy_threshold=100 * KIB)
    result = copier.copy(oss.CopyObjectRequest(
        bucket=v2_bucket, key="dst.bin", source_bucket=v2_bucket, source_key="src.bin",
        metadata=SEED_METADATA, metadata_directive="REPLACE"))
    assert not result.upload_id
    assert head(client, v2_bucket, "dst.bin").metadata == SEED_METADATA
    assert read_all(client, v2_bucket, "dst.bin") == data


def test_copier_default_directive_multipart_copies_tags_and_metadata(client, v2_bucket):
    """Default directives on a multipart copy: the copier itself carries metadata and tags over — it reads
    x-oss-meta-*/Content-Type from HeadObject and, since x-oss-tagging-count > 0, calls GetObjectTagging on
    the source and puts the tags on InitiateMultipartUpload (see the next test for the SDK's encoding bug;
    these tags need no encoding)."""
    data = os.urandom(BIG)
    client.put_object(oss.PutObjectRequest(
        bucket=v2_bucket, key="src.bin", body=data, metadata=SEED_METADATA, tagging="k1=v1&k2=v2&k3=v3",
        content_type="application/x-seed"))

    copier = client.copier(part_size=100 * KIB, multipart_copy_threshold=100 * KIB, disable_shallow_copy=True)
    result = copier.copy(oss.CopyObjectRequest(
        bucket=v2_bucket, key="dst.bin", source_bucket=v2_bucket, source_key="src.bin"))

    assert result.upload_id, "the copy must have gone through multipart"
    assert tags(client, v2_bucket, "dst.bin") == {"k1": "v1", "k2": "v2", "k3": "v3"}
    h = head(client, v2_bucket, "dst.bin")
    assert h.metadata == SEED_METADATA
    assert h.content_type == "application/x-seed"
    assert h.content_length == len(data)
    assert read_all(client, v2_bucket, "dst.bin") == data


def test_copier_default_directive_with_seed_tags_hits_the_sdk_tag_bug(client, v2_bucket):
    """SDK bug (alibabacloud-oss-v2 1.4.1, copier.py overwrite_tag_prop): on the multipart path the copier
    re-sends the source tags as `k=v&k=v` WITHOUT URL-encoding, so the V1 seed's `k4+-=` / `+-=._:/` tag
    reaches InitiateMultipartUpload as `x-oss-tagging: k1=v1&k2=v2&k3=v3&k4+-==+-=._:/`. OSS refuses a tag
    string with an unencoded `=` in a value (EC 0010-00000219), and so does `transfer serve`: the copy fails
    with InvalidTag before any upload exists, and nothing appears at the destination. The workaround,
    tagging_directive='Replace' with a correctly encoded tagging string, keeps every tag exactly."""
    data = os.urandom(BIG)
    client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key="src.bin", body=data, metadata=SEED_METADATA,
                                           tagging=SEED_TAGGING))
    assert tags(client, v2_bucket, "src.bin") == SEED_TAGS

    copier = client.copier(part_size=100 * KIB, multipart_copy_threshold=100 * KIB, disable_shallow_copy=True)
    with pytest.raises(Exception) as err:
        copier.copy(oss.CopyObjectRequest(bucket=v2_bucket, key="dst.bin", source_bucket=v2_bucket,
                                          source_key="src.bin"))
    assert "InvalidTag" in str(err.value)
    assert not client.is_object_exist(v2_bucket, "dst.bin")
    uploads = client.list_multipart_uploads(oss.ListMultipartUploadsRequest(bucket=v2_bucket))
    assert not uploads.uploads, "a refused initiate must not leave an upload behind"

    # The workaround: Replace with a correctly encoded tagging string keeps every tag exactly.
    copier.copy(oss.CopyObjectRequest(bucket=v2_bucket, key="dst2.bin", source_bucket=v2_bucket,
                                      source_key="src.bin", tagging_directive="Replace", tagging=SEED_TAGGING))
    assert tags(client, v2_bucket, "dst2.bin") == SEED_TAGS
    assert head(client, v2_bucket, "dst2.bin").metadata == SEED_METADATA
    assert read_all(client, v2_bucket, "dst2.bin") == data


def test_sdk_v2_signature_v1(endpoint, bucket_name):
    """SDK V2 with cfg.signature_version='v1': the seed flows must be accepted with V1 signing too."""
    client = make_v2_client(endpoint, signature_version="v1")
    client.put_bucket(oss.PutBucketRequest(bucket=bucket_name))

    put = client.put_object(oss.PutObjectRequest(bucket=bucket_name, key=KEY, body=DATA, metadata=SEED_METADATA,
                                                 tagging=SEED_TAGGING))
    assert put.hash_crc64 == crc64(DATA)
    h = head(client, bucket_name, KEY)
    assert h.metadata == SEED_METADATA and h.tagging_count == 4
    meta = client.get_object_meta(oss.GetObjectMetaRequest(bucket=bucket_name, key=KEY))
    assert meta.content_length == len(DATA)
    assert tags(client, bucket_name, KEY) == SEED_TAGS

    client.copy_object(oss.CopyObjectRequest(bucket=bucket_name, key=KEY, source_bucket=bucket_name,
                                             source_key=KEY, metadata={"key3": "value3"},
                                             metadata_directive="REPLACE"))
    assert head(client, bucket_name, KEY).metadata == {"key3": "value3"}

    data = os.urandom(BIG)
    client.put_object(oss.PutObjectRequest(bucket=bucket_name, key="big.bin", body=data))
    result = client.copier().copy(
        oss.CopyObjectRequest(bucket=bucket_name, key="big2.bin", source_bucket=bucket_name, source_key="big.bin",
                              metadata=SEED_METADATA, metadata_directive="REPLACE"),
        part_size=100 * KIB, multipart_copy_threshold=100 * KIB, disable_shallow_copy=True)
    assert result.upload_id
    assert read_all(client, bucket_name, "big2.bin") == data
    assert head(client, bucket_name, "big2.bin").metadata == SEED_METADATA


@pytest.mark.parametrize("signature_version", [None, "v1"])
def test_wrong_secret_is_signature_does_not_match(endpoint, v2_bucket, signature_version):
    bad = make_v2_client(endpoint, signature_version=signature_version, secret="not-the-secret")
    with pytest.raises(oss.exceptions.OperationError) as err:
        bad.put_object(oss.PutObjectRequest(bucket=v2_bucket, key="k.txt", body=b"data"))
    service_error = err.value.unwrap()
    assert isinstance(service_error, oss.exceptions.ServiceError)
    assert service_error.status_code == 403
    assert service_error.code == "SignatureDoesNotMatch"

    # On HEAD the error comes back in the x-oss-err header.
    with pytest.raises(oss.exceptions.OperationError) as err:
        head(bad, v2_bucket, "k.txt")
    assert err.value.unwrap().code == "SignatureDoesNotMatch"
