"""RestoreObject with Alibaba's SDKs against `transfer serve`, which emulates archived objects as OSS keeps
them: a GET of an Archive or ColdArchive object is refused (403 InvalidObjectState) until it is restored;
RestoreObject answers 202, then 409 RestoreAlreadyInProgress while the restore runs (`transfer serve
--restore-delay`, 2 s by default), HEAD carries `x-oss-restore`, and a request after the restore answers 200.
"""
import time

import pytest

import oss2
import alibabacloud_oss_v2 as oss

DATA = b"frozen bytes, thawed"
ONGOING = 'ongoing-request="true"'


def _wait_restored(restore_header, timeout=30.0):
    """Polls `restore_header()` (the x-oss-restore value) until the restore is done; returns the last value."""
    deadline = time.monotonic() + timeout
    value = restore_header()
    while value == ONGOING:
        assert time.monotonic() < deadline, "the restore never finished"
        time.sleep(0.2)
        value = restore_header()
    return value


def test_oss2_restore_object(bucket):
    key = "archive/a.bin"
    bucket.put_object(key, DATA, headers={"x-oss-storage-class": oss2.BUCKET_STORAGE_CLASS_ARCHIVE})
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.get_object(key)
    assert (err.value.status, err.value.code) == (403, "InvalidObjectState")
    assert "x-oss-restore" not in bucket.head_object(key).resp.headers

    assert bucket.restore_object(key).status == 202
    with pytest.raises(oss2.exceptions.RestoreAlreadyInProgress):
        bucket.restore_object(key)
    assert bucket.head_object(key).resp.headers["x-oss-restore"] == ONGOING

    # The loop of oss2's own documentation, as written there.
    done = _wait_restored(lambda: bucket.head_object(key).resp.headers["x-oss-restore"])
    assert done.startswith('ongoing-request="false", expiry-date="'), done
    assert bucket.get_object(key).read() == DATA
    assert bucket.restore_object(key).status == 200

    bucket.put_object("standard.bin", DATA)
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.restore_object("standard.bin")
    assert (err.value.status, err.value.code) == (400, "OperationNotSupported")


def test_oss2_restore_cold_archive_with_a_tier(bucket):
    key = "cold.bin"
    bucket.put_object(key, DATA, headers={"x-oss-storage-class": oss2.BUCKET_STORAGE_CLASS_COLD_ARCHIVE})
    config = oss2.models.RestoreConfiguration(
        days=2, job_parameters=oss2.models.RestoreJobParameters(oss2.models.RESTORE_TIER_EXPEDITED)
    )
    assert bucket.restore_object(key, input=config).status == 202
    _wait_restored(lambda: bucket.head_object(key).resp.headers["x-oss-restore"])
    assert bucket.get_object(key).read() == DATA


def test_v2_restore_object(client, v2_bucket):
    key = "archive/v2.bin"
    client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key=key, body=DATA, storage_class="Archive"))
    with pytest.raises(oss.exceptions.OperationError) as err:
        client.get_object(oss.GetObjectRequest(bucket=v2_bucket, key=key))
    service_error = err.value.unwrap()
    assert (service_error.status_code, service_error.code) == (403, "InvalidObjectState")

    request = oss.RestoreObjectRequest(
        bucket=v2_bucket,
        key=key,
        restore_request=oss.RestoreRequest(days=1, job_parameters=oss.JobParameters(tier="Expedited")),
    )
    assert client.restore_object(request).status_code == 202
    with pytest.raises(oss.exceptions.OperationError) as err:
        client.restore_object(request)
    service_error = err.value.unwrap()
    assert (service_error.status_code, service_error.code) == (409, "RestoreAlreadyInProgress")

    head = lambda: client.head_object(oss.HeadObjectRequest(bucket=v2_bucket, key=key))
    assert head().restore == ONGOING
    done = _wait_restored(lambda: head().restore)
    assert done.startswith('ongoing-request="false"'), done
    got = client.get_object(oss.GetObjectRequest(bucket=v2_bucket, key=key))
    assert got.body.read() == DATA
