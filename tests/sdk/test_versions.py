"""ListObjectVersions with Alibaba's SDKs against `transfer serve`: in a versioned bucket, an overwrite keeps
the older version and a delete leaves a delete marker; the listing gives every version and marker by key,
each key's newest first, with which one is current, and pages by key and version-id markers.
"""
import oss2
import alibabacloud_oss_v2 as oss


def _versioned(bucket):
    config = oss2.models.BucketVersioningConfig()
    config.status = oss2.BUCKET_VERSIONING_ENABLE
    bucket.put_bucket_versioning(config)


def test_oss2_list_object_versions(bucket):
    _versioned(bucket)
    v1 = bucket.put_object("doc a.txt", b"one").versionid
    v2 = bucket.put_object("doc a.txt", b"two!").versionid
    marker = bucket.delete_object("doc a.txt").versionid
    v3 = bucket.put_object("z.txt", b"three").versionid

    result = bucket.list_object_versions()
    versions = [(v.key, v.versionid, v.is_latest, v.size) for v in result.versions]
    markers = [(m.key, m.versionid, m.is_latest) for m in result.delete_marker]
    assert sorted(versions) == sorted([("doc a.txt", v2, False, 4), ("doc a.txt", v1, False, 3), ("z.txt", v3, True, 5)])
    assert markers == [("doc a.txt", marker, True)]
    assert not result.is_truncated

    # One entry a page, continued by the markers the previous page gave.
    seen, key_marker, version_marker = [], "", ""
    while True:
        page = bucket.list_object_versions(max_keys=1, key_marker=key_marker, versionid_marker=version_marker)
        seen += [v.versionid for v in page.versions] + [m.versionid for m in page.delete_marker]
        if not page.is_truncated:
            break
        assert len(seen) < 10, "the markers do not advance"
        key_marker, version_marker = page.next_key_marker, page.next_versionid_marker
    assert seen == [marker, v2, v1, v3]


def test_v2_list_object_versions(client, v2_bucket):
    client.put_bucket_versioning(
        oss.PutBucketVersioningRequest(
            bucket=v2_bucket, versioning_configuration=oss.VersioningConfiguration(status="Enabled")
        )
    )
    first = client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key="k", body=b"first")).version_id
    second = client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key="k", body=b"second")).version_id
    result = client.list_object_versions(oss.ListObjectVersionsRequest(bucket=v2_bucket))
    got = [(v.key, v.version_id, v.is_latest, v.size) for v in result.version]
    assert got == [("k", second, True, 6), ("k", first, False, 5)]
    assert not result.delete_marker
