"""Seed: "Set object tags (Python SDK V1)" — every flow, with oss2, against `transfer serve`.

Each test follows the seed's code as closely as a local endpoint allows (endpoint = the local server,
a fresh bucket per test, small files so multipart really has several parts) and asserts what the seed
promises: the tags read back are the tags set, bytes and sizes are equal.
"""
import os

import pytest

import oss2
from oss2 import SizedFileAdapter, determine_part_size
from oss2.credentials import EnvironmentVariableCredentialsProvider
from oss2.headers import OSS_OBJECT_TAGGING, OSS_OBJECT_TAGGING_COPY_DIRECTIVE
from oss2.models import BucketVersioningConfig, PartInfo, Tagging, TaggingRule

from conftest import ACCESS_KEY_ID, REGION

# What the seed's tagging string must read back as.
SEED_TAGS = {"k1": "v1", "k2": "v2", "k3": "v3", "k4+-=": "+-=._:/"}

OBJECT_NAME = "exampledir/exampleobject.txt"


def seed_tagging():
    """The seed's tagging string, built exactly as the seed builds it."""
    tagging = "k1=v1&k2=v2&k3=v3"
    k4 = "k4+-="
    v4 = "+-=._:/"
    tagging += "&" + oss2.urlquote(k4) + "=" + oss2.urlquote(v4)
    return tagging


def seed_headers():
    headers = dict()
    headers[OSS_OBJECT_TAGGING] = seed_tagging()
    return headers


def tags_of(bucket, key, **kwargs):
    result = bucket.get_object_tagging(key, **kwargs)
    return dict(result.tag_set.tagging_rule)


def write_file(path, size):
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_seed_tagging_string_is_what_the_seed_sends():
    # Guards the fixture itself: the header value the server must parse.
    assert seed_tagging() == "k1=v1&k2=v2&k3=v3&k4%2B-%3D=%2B-%3D._%3A/"


def test_simple_upload_with_tags(bucket):
    result = bucket.put_object(OBJECT_NAME, "content", headers=seed_headers())
    assert result.status == 200

    assert tags_of(bucket, OBJECT_NAME) == SEED_TAGS
    assert bucket.get_object(OBJECT_NAME).read() == b"content"


def test_multipart_upload_with_tags(bucket, tmp_path):
    filename = tmp_path / "examplefile.txt"
    data = write_file(filename, 350 * 1024 + 17)

    total_size = os.path.getsize(filename)
    part_size = determine_part_size(total_size, preferred_size=100 * 1024)
    assert total_size // part_size >= 3, "the file must really split into several parts"

    upload_id = bucket.init_multipart_upload(OBJECT_NAME, headers=seed_headers()).upload_id
    parts = []
    with open(filename, "rb") as fileobj:
        part_number = 1
        offset = 0
        while offset < total_size:
            num_to_upload = min(part_size, total_size - offset)
            result = bucket.upload_part(OBJECT_NAME, upload_id, part_number,
                                        SizedFileAdapter(fileobj, num_to_upload))
            parts.append(PartInfo(part_number, result.etag))
            offset += num_to_upload
            part_number += 1
    assert len(parts) == 4

    result = bucket.complete_multipart_upload(OBJECT_NAME, upload_id, parts)
    assert result.status == 200

    assert tags_of(bucket, OBJECT_NAME) == SEED_TAGS
    with open(filename, "rb") as fileobj:
        assert bucket.get_object(OBJECT_NAME).read() == fileobj.read()
    head = bucket.head_object(OBJECT_NAME)
    assert head.content_length == len(data)
    assert head.object_type == "Multipart"


def test_append_upload_with_tags(bucket):
    result = bucket.append_object(OBJECT_NAME, 0, "<yourContent>", headers=seed_headers())
    assert result.next_position == len("<yourContent>")

    # "Only the tags set in the first call to append_object take effect."
    later = {OSS_OBJECT_TAGGING: "ignored=yes"}
    result = bucket.append_object(OBJECT_NAME, result.next_position, "<more>", headers=later)
    assert result.next_position == len("<yourContent><more>")

    assert tags_of(bucket, OBJECT_NAME) == SEED_TAGS
    assert bucket.get_object(OBJECT_NAME).read() == b"<yourContent><more>"
    head = bucket.head_object(OBJECT_NAME)
    assert head.object_type == "Appendable"
    assert head.content_length == len("<yourContent><more>")


def test_append_at_wrong_position_is_rejected(bucket):
    bucket.append_object(OBJECT_NAME, 0, "abc")
    with pytest.raises(oss2.exceptions.PositionNotEqualToLength) as err:
        bucket.append_object(OBJECT_NAME, 1, "zzz")
    assert err.value.status == 409
    assert err.value.next_position == 3


def test_resumable_upload_with_tags(bucket, tmp_path):
    local_file = tmp_path / "examplefile.txt"
    data = write_file(local_file, 350 * 1024)
    store = oss2.ResumableStore(root=str(tmp_path / "store"))

    oss2.resumable_upload(bucket, OBJECT_NAME, str(local_file), headers=seed_headers(), store=store,
                          multipart_threshold=100 * 1024, part_size=100 * 1024)

    assert tags_of(bucket, OBJECT_NAME) == SEED_TAGS
    assert bucket.get_object(OBJECT_NAME).read() == data
    # It really went through InitiateMultipartUpload/UploadPart/CompleteMultipartUpload.
    assert bucket.head_object(OBJECT_NAME).object_type == "Multipart"


def test_resumable_upload_resumes_after_interruption(bucket, tmp_path):
    """Beyond the seed: a resumable upload whose first run died after two parts finishes on the second run
    by listing the uploaded parts (ListParts) and sending only the missing ones."""
    local_file = tmp_path / "examplefile.txt"
    data = write_file(local_file, 450 * 1024)
    store = oss2.ResumableStore(root=str(tmp_path / "store"))

    sent = []
    real_upload_part = bucket.upload_part

    def failing_upload_part(key, upload_id, part_number, data, *args, **kwargs):
        if part_number >= 3:
            raise RuntimeError("simulated crash")
        sent.append(part_number)
        return real_upload_part(key, upload_id, part_number, data, *args, **kwargs)

    bucket.upload_part = failing_upload_part
    with pytest.raises(RuntimeError):
        oss2.resumable_upload(bucket, OBJECT_NAME, str(local_file), headers=seed_headers(), store=store,
                              multipart_threshold=100 * 1024, part_size=100 * 1024, num_threads=1)
    assert sent == [1, 2]

    resent = []

    def counting_upload_part(key, upload_id, part_number, data, *args, **kwargs):
        resent.append(part_number)
        return real_upload_part(key, upload_id, part_number, data, *args, **kwargs)

    bucket.upload_part = counting_upload_part
    oss2.resumable_upload(bucket, OBJECT_NAME, str(local_file), headers=seed_headers(), store=store,
                          multipart_threshold=100 * 1024, part_size=100 * 1024, num_threads=1)
    assert sorted(resent) == [3, 4, 5]
    assert bucket.get_object(OBJECT_NAME).read() == data
    assert tags_of(bucket, OBJECT_NAME) == SEED_TAGS


def test_put_object_tagging_on_existing_object(bucket):
    bucket.put_object(OBJECT_NAME, "content")
    assert tags_of(bucket, OBJECT_NAME) == {}

    rule = TaggingRule()
    rule.add("key1", "value1")
    rule.add("key2", "value2")
    tagging = Tagging(rule)
    result = bucket.put_object_tagging(OBJECT_NAME, tagging)
    assert result.status == 200
    assert tags_of(bucket, OBJECT_NAME) == {"key1": "value1", "key2": "value2"}

    # Putting tags replaces the whole set.
    rule = TaggingRule()
    rule.add("key3", "value3")
    bucket.put_object_tagging(OBJECT_NAME, Tagging(rule))
    assert tags_of(bucket, OBJECT_NAME) == {"key3": "value3"}
    assert bucket.get_object(OBJECT_NAME).read() == b"content"


def test_put_object_tagging_on_a_version(bucket):
    config = BucketVersioningConfig()
    config.status = oss2.BUCKET_VERSIONING_ENABLE
    bucket.put_bucket_versioning(config)

    first = bucket.put_object(OBJECT_NAME, "first").versionid
    second = bucket.put_object(OBJECT_NAME, "second").versionid
    assert first and second and first != second

    tagging = Tagging()
    tagging.tag_set.add("owner", "John")
    tagging.tag_set.add("type", "document")
    params = dict()
    params["versionId"] = first
    bucket.put_object_tagging(OBJECT_NAME, tagging, params=params)

    assert tags_of(bucket, OBJECT_NAME, params={"versionId": first}) == {"owner": "John", "type": "document"}
    assert tags_of(bucket, OBJECT_NAME, params={"versionId": second}) == {}
    assert tags_of(bucket, OBJECT_NAME) == {}
    assert bucket.get_object(OBJECT_NAME, params={"versionId": first}).read() == b"first"
    assert bucket.get_object(OBJECT_NAME).read() == b"second"


def test_copy_with_tagging_directives(bucket):
    src_object_name = "srcexampledir/exampleobject.txt"
    dest_object_name1 = "destexampledir1/exampleobject.txt"
    dest_object_name2 = "destexampledir2/exampleobject.txt"
    src_tags = {"owner": "John", "type": "document"}
    bucket.put_object(src_object_name, "source content",
                      headers={OSS_OBJECT_TAGGING: "owner=John&type=document"})

    headers = dict()
    headers[OSS_OBJECT_TAGGING_COPY_DIRECTIVE] = "COPY"
    bucket.copy_object(bucket.bucket_name, src_object_name, dest_object_name1, headers=headers)

    headers[OSS_OBJECT_TAGGING_COPY_DIRECTIVE] = "REPLACE"
    headers[OSS_OBJECT_TAGGING] = seed_tagging()
    bucket.copy_object(bucket.bucket_name, src_object_name, dest_object_name2, headers=headers)

    assert tags_of(bucket, src_object_name) == src_tags
    assert tags_of(bucket, dest_object_name1) == src_tags
    assert tags_of(bucket, dest_object_name2) == SEED_TAGS
    for key in (dest_object_name1, dest_object_name2):
        assert bucket.get_object(key).read() == b"source content"


def test_copy_without_tagging_directive_copies_tags(bucket):
    bucket.put_object("src.txt", "x", headers=seed_headers())
    bucket.copy_object(bucket.bucket_name, "src.txt", "dst.txt")
    assert tags_of(bucket, "dst.txt") == SEED_TAGS


def test_multipart_copy_with_tags(bucket):
    src_object_name = "srcexampledir/exampleobject.txt"
    dest_object_name = "destexampledir/exampleobject.txt"
    data = os.urandom(350 * 1024 + 5)
    bucket.put_object(src_object_name, data)

    head_info = bucket.head_object(src_object_name)
    total_size = head_info.content_length
    assert total_size == len(data)

    part_size = determine_part_size(total_size, preferred_size=100 * 1024)

    upload_id = bucket.init_multipart_upload(dest_object_name, headers=seed_headers()).upload_id
    parts = []
    part_number = 1
    offset = 0
    while offset < total_size:
        num_to_upload = min(part_size, total_size - offset)
        end = offset + num_to_upload - 1
        result = bucket.upload_part_copy(bucket.bucket_name, src_object_name, (offset, end),
                                         dest_object_name, upload_id, part_number)
        assert result.etag, "oss2 takes the part ETag from the UploadPartCopy response header"
        parts.append(PartInfo(part_number, result.etag))
        offset += num_to_upload
        part_number += 1
    assert len(parts) == 4

    bucket.complete_multipart_upload(dest_object_name, upload_id, parts)

    head_info = bucket.head_object(dest_object_name)
    dest_object_size = head_info.content_length
    assert dest_object_size == total_size
    assert tags_of(bucket, src_object_name) == {}
    assert tags_of(bucket, dest_object_name) == SEED_TAGS
    assert bucket.get_object(dest_object_name).read() == data


def test_symlink_with_tags(bucket):
    object_name = OBJECT_NAME
    symlink_name = "shortcut/myobject.txt"
    bucket.put_object(object_name, "target content")

    result = bucket.put_symlink(object_name, symlink_name, headers=seed_headers())
    assert result.status == 200

    assert tags_of(bucket, symlink_name) == SEED_TAGS
    # The tags belong to the link, not to its target.
    assert tags_of(bucket, object_name) == {}
    assert bucket.get_symlink(symlink_name).target_key == object_name


def test_symlink_reads_through_to_target(bucket):
    bucket.put_object(OBJECT_NAME, "target content")
    bucket.put_symlink(OBJECT_NAME, "shortcut/myobject.txt")
    assert bucket.get_object("shortcut/myobject.txt").read() == b"target content"


def test_oss2_signature_v4(endpoint, bucket_name, tmp_path):
    """oss2 with V4 signing (ProviderAuthV4 + region): the same calls must be accepted."""
    auth = oss2.ProviderAuthV4(EnvironmentVariableCredentialsProvider())
    bucket = oss2.Bucket(auth, endpoint, bucket_name, region=REGION)
    bucket.create_bucket()

    bucket.put_object(OBJECT_NAME, "content", headers=seed_headers())
    assert tags_of(bucket, OBJECT_NAME) == SEED_TAGS

    local_file = tmp_path / "f.bin"
    data = write_file(local_file, 250 * 1024)
    oss2.resumable_upload(bucket, "big/obj.bin", str(local_file), headers=seed_headers(),
                          store=oss2.ResumableStore(root=str(tmp_path / "store")),
                          multipart_threshold=100 * 1024, part_size=100 * 1024)
    assert bucket.get_object("big/obj.bin").read() == data
    assert tags_of(bucket, "big/obj.bin") == SEED_TAGS

    bucket.copy_object(bucket.bucket_name, OBJECT_NAME, "copy.txt",
                       headers={OSS_OBJECT_TAGGING_COPY_DIRECTIVE: "REPLACE", OSS_OBJECT_TAGGING: "a=b"})
    assert tags_of(bucket, "copy.txt") == {"a": "b"}
    bucket.put_symlink(OBJECT_NAME, "link")
    assert bucket.head_object(OBJECT_NAME).content_length == 7


def test_head_missing_object_is_no_such_key(bucket):
    with pytest.raises(oss2.exceptions.NoSuchKey) as err:
        bucket.head_object("no/such/key")
    assert err.value.status == 404


def test_wrong_secret_is_signature_does_not_match(endpoint, bucket):
    bad = oss2.Bucket(oss2.Auth(ACCESS_KEY_ID, "not-the-secret"), endpoint, bucket.bucket_name)
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bad.put_object("k.txt", "data")
    assert err.value.status == 403
    assert err.value.code == "SignatureDoesNotMatch"
    assert isinstance(err.value, oss2.exceptions.SignatureDoesNotMatch)
    # Nothing was written.
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.head_object("k.txt")


def test_wrong_secret_v4_is_signature_does_not_match(endpoint, bucket):
    bad = oss2.Bucket(oss2.AuthV4(ACCESS_KEY_ID, "not-the-secret"), endpoint, bucket.bucket_name, region=REGION)
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch) as err:
        bad.get_object_tagging("k.txt")
    assert err.value.status == 403
