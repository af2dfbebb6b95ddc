"""One upload (or, with --get, one download) with one of Alibaba's Python SDKs, as the peer benchmark
(benches/peers.rs) runs it.

    python peers_sdk.py oss2|v2 default|equal SRC BUCKET DEST --endpoint URL --region R [--jobs N] [--part-size B]
    python peers_sdk.py oss2|v2 default|equal LOCAL BUCKET KEY --get ...   # KEY ending in /: a prefix to LOCAL/

Downloads: oss2's `resumable_download` (ranged GETs on `num_threads` threads above `multiget_threshold`, a
checkpoint file, a temporary file renamed at the end) and the SDK V2 Downloader (`client.downloader()
.download_file`), per object; a prefix is listed first. `default` and `equal` as for uploads.

SRC is a file (uploaded to the key DEST) or a directory (each file under it to DEST + its relative path).
Credentials come from OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET. Both SDKs sign with V4.

- oss2: `oss2.resumable_upload` per file (it sends one PutObject below `multipart_threshold`, else a multipart
  upload of `part_size` parts on `num_threads` threads), checkpoints in a throw-away directory.
  `default`: the SDK's defaults (10 MiB threshold, 1 thread); a directory is uploaded one file at a time.
  `equal`: threshold = part size = --part-size, --jobs threads; a directory on --jobs threads.
- v2 (alibabacloud-oss-v2): the Uploader (`client.uploader().upload_file`), which sends one PutObject below its
  part size, else a multipart upload. `default`: the Uploader's defaults (6 MiB parts, 3 in flight); a directory
  one file at a time. `equal`: --part-size parts, --jobs in flight; a directory on --jobs threads.
"""
import argparse
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor


def files_of(src, dest):
    if os.path.isfile(src):
        return [(src, dest)]
    out = []
    for root, _dirs, names in os.walk(src):
        for n in sorted(names):
            p = os.path.join(root, n)
            out.append((p, dest + os.path.relpath(p, src).replace(os.sep, "/")))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sdk", choices=["oss2", "v2"])
    ap.add_argument("mode", choices=["default", "equal"])
    ap.add_argument("src")
    ap.add_argument("bucket")
    ap.add_argument("dest")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--region", required=True)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--part-size", type=int, default=8 << 20)
    ap.add_argument("--get", action="store_true")
    a = ap.parse_args()
    ak, sk = os.environ["OSS_ACCESS_KEY_ID"], os.environ["OSS_ACCESS_KEY_SECRET"]
    equal = a.mode == "equal"
    if a.get:
        return download(a, ak, sk, equal)
    work = files_of(a.src, a.dest)

    if a.sdk == "oss2":
        import oss2

        bucket = oss2.Bucket(oss2.AuthV4(ak, sk), a.endpoint, a.bucket, region=a.region)
        ckpt = tempfile.mkdtemp(prefix="oss2-ckpt-")
        store = oss2.ResumableStore(root=ckpt)
        kwargs = {"store": store}
        if equal:
            kwargs.update(multipart_threshold=a.part_size, part_size=a.part_size, num_threads=a.jobs)

        def one(item):
            oss2.resumable_upload(bucket, item[1], item[0], **kwargs)

    else:
        import alibabacloud_oss_v2 as oss

        cfg = oss.config.load_default()
        cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(ak, sk)
        cfg.region, cfg.endpoint = a.region, a.endpoint
        client = oss.Client(cfg)
        uploader = client.uploader(part_size=a.part_size, parallel_num=a.jobs) if equal else client.uploader()

        def one(item):
            uploader.upload_file(oss.PutObjectRequest(bucket=a.bucket, key=item[1]), filepath=item[0])

    if equal and len(work) > 1:
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            list(pool.map(one, work))
    else:
        for item in work:
            one(item)
    print(f"uploaded {len(work)} file(s)", file=sys.stderr)


def download(a, ak, sk, equal):
    """Downloads the key a.dest (or every key under the prefix a.dest/) to a.src (a file, or a directory)."""
    if a.sdk == "oss2":
        import oss2

        bucket = oss2.Bucket(oss2.AuthV4(ak, sk), a.endpoint, a.bucket, region=a.region)
        keys = [o.key for o in oss2.ObjectIteratorV2(bucket, prefix=a.dest)] if a.dest.endswith("/") else [a.dest]
        store = oss2.ResumableDownloadStore(root=tempfile.mkdtemp(prefix="oss2-ckpt-"))
        kwargs = {"store": store}
        if equal:
            kwargs.update(multiget_threshold=a.part_size, part_size=a.part_size, num_threads=a.jobs)

        def one(key, path):
            oss2.resumable_download(bucket, key, path, **kwargs)

    else:
        import alibabacloud_oss_v2 as oss

        cfg = oss.config.load_default()
        cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(ak, sk)
        cfg.region, cfg.endpoint = a.region, a.endpoint
        client = oss.Client(cfg)
        keys = [a.dest]
        if a.dest.endswith("/"):
            pages = client.list_objects_v2_paginator().iter_page(oss.ListObjectsV2Request(bucket=a.bucket, prefix=a.dest))
            keys = [o.key for page in pages for o in (page.contents or [])]
        downloader = client.downloader(part_size=a.part_size, parallel_num=a.jobs) if equal else client.downloader()

        def one(key, path):
            downloader.download_file(oss.GetObjectRequest(bucket=a.bucket, key=key), filepath=path)

    work = [(k, os.path.join(a.src, k[len(a.dest):]) if a.dest.endswith("/") else a.src) for k in keys]
    for _k, path in work:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if equal and len(work) > 1:
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            list(pool.map(lambda item: one(*item), work))
    else:
        for item in work:
            one(*item)
    print(f"downloaded {len(work)} object(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
