"""x-oss-traffic-limit with Alibaba's SDKs against `transfer serve`: the header (bits per second, 245,760 to
838,860,800) holds an upload and a download to its rate, as OSS does, and a value outside the range is 400
InvalidArgument with nothing written. Durations are lower bounds only: a slow machine makes them longer, never
shorter.
"""
import time

import alibabacloud_oss_v2 as oss
import oss2
import pytest

LIMIT = 245760 * 8  # bits per second: 240 KiB/s
DATA = bytes(range(256)) * 2048  # 512 KiB: about 2.1 s at the limit


def test_oss2_traffic_limit_holds_each_request_to_its_rate(bucket):
    headers = {oss2.headers.OSS_TRAFFIC_LIMIT: str(LIMIT)}
    started = time.monotonic()
    bucket.put_object("slow.bin", DATA, headers=headers)
    assert time.monotonic() - started >= 1.8
    started = time.monotonic()
    assert bucket.get_object("slow.bin", headers=headers).read() == DATA
    assert time.monotonic() - started >= 1.8

    for bad in ["245759", "838860801", "fast"]:
        with pytest.raises(oss2.exceptions.ServerError) as err:
            bucket.put_object("bad.bin", b"x", headers={oss2.headers.OSS_TRAFFIC_LIMIT: bad})
        assert (err.value.status, err.value.code) == (400, "InvalidArgument"), bad
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.head_object("bad.bin")


def test_v2_traffic_limit_on_put_and_get(client, v2_bucket):
    started = time.monotonic()
    client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key="slow.bin", body=DATA, traffic_limit=LIMIT))
    assert time.monotonic() - started >= 1.8
    started = time.monotonic()
    got = client.get_object(oss.GetObjectRequest(bucket=v2_bucket, key="slow.bin", traffic_limit=LIMIT))
    assert got.body.read() == DATA
    assert time.monotonic() - started >= 1.8

    with pytest.raises(oss.exceptions.OperationError) as err:
        client.put_object(oss.PutObjectRequest(bucket=v2_bucket, key="bad.bin", body=b"x", traffic_limit=100))
    service = err.value.unwrap()
    assert (service.status_code, service.code) == (400, "InvalidArgument")
