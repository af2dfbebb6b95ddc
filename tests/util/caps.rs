//! The capability matrix: what each server the tests run against can do. The conformance suite ignores a case
//! where its target lacks what the case needs; the CLI tests that run against every server drop a check only
//! where the server's entry here says it cannot be made. `cargo test --test conformance declared` prints it.

/// What a target can do, as far as the tests are concerned. Every `false` is a declared gap of that server
/// (with the reason at its constant below), never a way to hide a failure: a conformance case that needs it is
/// reported ignored there, and a CLI test drops only the check it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetCaps {
    /// Reached over HTTP: signatures can be tested.
    pub http: bool,
    /// A proxy on 127.0.0.1 can stand in between (damaged bodies, injected faults): the target is on loopback
    /// too, so the Host header the client signs is one the target accepts.
    pub proxy: bool,
    /// The suite may create and delete buckets (not on a real endpoint: it works in the bucket it is given).
    pub bucket_admin: bool,
    /// Object tagging: `x-*-tagging` on PutObject, InitiateMultipartUpload and CopyObject, and
    /// Put/Get/DeleteObjectTagging.
    pub tagging: bool,
    /// Bucket versioning, reads and tags of a specific version.
    pub versioning: bool,
    /// PutObjectTagging answers the version it tagged (`x-*-version-id`).
    pub version_id_on_tagging: bool,
    /// ListMultipartUploads.
    pub list_uploads: bool,
    /// ListMultipartUploads honours `max-uploads`, `key-marker` and `upload-id-marker` (pages).
    pub list_uploads_paging: bool,
    /// ListParts honours `max-parts` and `part-number-marker` (pages).
    pub list_parts_paging: bool,
    /// ListParts reports each part's ETag (what a resume reconciles its ledger with).
    pub list_parts_etags: bool,
    /// An upload id the server does not know (aborted, completed) is answered `NoSuchUpload` by every
    /// multipart call.
    pub no_such_upload: bool,
    /// A request to a bucket that does not exist is answered `NoSuchBucket`.
    pub no_such_bucket: bool,
    /// DeleteBucket refuses a bucket that holds objects (`BucketNotEmpty`).
    pub bucket_not_empty: bool,
    /// CopyObject and UploadPartCopy honour `x-*-copy-source-if-match` (412 when the source's ETag differs).
    pub copy_source_if_match: bool,
    /// A write that must not overwrite (`x-oss-forbid-overwrite`, `If-None-Match: *`) is refused when the key
    /// exists: PutObject and CompleteMultipartUpload.
    pub conditional_put: bool,
    /// CopyObject too.
    pub conditional_copy: bool,
    /// Requests signed with a wrong secret or an unknown key are refused.
    pub checks_signatures: bool,
    /// A body that does not match its `Content-MD5` is refused.
    pub checks_content_md5: bool,
    /// A PutObject or UploadPart body damaged on the way fails the call under the client's default protection:
    /// the CRC-64 an OSS server reports of what it received, the `x-amz-checksum-crc32c` an S3 server checks.
    pub checks_default_digests: bool,
    /// A download of a multipart object can be checked end to end: the store reports its CRC-64 (OSS), its
    /// CRC-32C (S3 checksum mode), or the part layout its multipart ETag is made over (HEAD `?partNumber=`).
    pub checks_multipart_downloads: bool,
    /// HEAD of a key that is only the prefix of others (`2026` beside `2026/a.txt`) answers "not found".
    pub prefix_is_no_object: bool,
    /// Archive storage classes: a read of an archived object is refused until RestoreObject restored it.
    pub archive: bool,
    /// ListObjects reports each object's ETag (a sync tells an object it wrote from its listing, without a HEAD).
    pub listed_etags: bool,
    /// S3: a multipart object's CRC-32C is reported (checksum mode), so its download is checked by it.
    pub s3_multipart_crc32c: bool,
    /// S3: HEAD `?partNumber=` tells a multipart object's part layout, so its download is checked by its ETag.
    pub s3_head_part_number: bool,
}

impl TargetCaps {
    /// What this target lacks, by name: the per-target gaps `declared_skips` prints.
    #[allow(dead_code)] // Used by the conformance binary only.
    pub fn gaps(&self) -> Vec<&'static str> {
        let all = [
            ("http", self.http),
            ("proxy", self.proxy),
            ("bucket_admin", self.bucket_admin),
            ("tagging", self.tagging),
            ("versioning", self.versioning),
            ("version_id_on_tagging", self.version_id_on_tagging),
            ("list_uploads", self.list_uploads),
            ("list_uploads_paging", self.list_uploads_paging),
            ("list_parts_paging", self.list_parts_paging),
            ("list_parts_etags", self.list_parts_etags),
            ("no_such_upload", self.no_such_upload),
            ("no_such_bucket", self.no_such_bucket),
            ("bucket_not_empty", self.bucket_not_empty),
            ("copy_source_if_match", self.copy_source_if_match),
            ("conditional_put", self.conditional_put),
            ("conditional_copy", self.conditional_copy),
            ("checks_signatures", self.checks_signatures),
            ("checks_content_md5", self.checks_content_md5),
            ("checks_default_digests", self.checks_default_digests),
            ("checks_multipart_downloads", self.checks_multipart_downloads),
            ("prefix_is_no_object", self.prefix_is_no_object),
            ("archive", self.archive),
            ("listed_etags", self.listed_etags),
            ("s3_multipart_crc32c", self.s3_multipart_crc32c),
            ("s3_head_part_number", self.s3_head_part_number),
        ];
        all.into_iter().filter(|(_, has)| !has).map(|(name, _)| name).collect()
    }

    /// Every capability.
    pub const ALL: TargetCaps = TargetCaps {
        http: true,
        proxy: true,
        bucket_admin: true,
        tagging: true,
        versioning: true,
        version_id_on_tagging: true,
        list_uploads: true,
        list_uploads_paging: true,
        list_parts_paging: true,
        list_parts_etags: true,
        no_such_upload: true,
        no_such_bucket: true,
        bucket_not_empty: true,
        copy_source_if_match: true,
        conditional_put: true,
        conditional_copy: true,
        checks_signatures: true,
        checks_content_md5: true,
        checks_default_digests: true,
        checks_multipart_downloads: true,
        prefix_is_no_object: true,
        archive: true,
        listed_etags: true,
        s3_multipart_crc32c: true,
        s3_head_part_number: true,
    };
}

/// The local filesystem store, in process. It has no wire: nothing is signed or digested on the way.
#[allow(dead_code)] // Used by the conformance binary only.
pub const LOCAL: TargetCaps = TargetCaps {
    http: false,
    proxy: false,
    checks_signatures: false,
    checks_content_md5: false,
    s3_multipart_crc32c: false,
    s3_head_part_number: false,
    ..TargetCaps::ALL
};

/// `transfer serve` answering the OSS dialect: everything; a multipart download is checked by its CRC-64, so
/// the S3 means of checking one do not apply.
pub const SERVE_OSS: TargetCaps =
    TargetCaps { s3_multipart_crc32c: false, s3_head_part_number: false, ..TargetCaps::ALL };

/// `transfer serve` answering the S3 dialect: it keeps the CRC-64 OSS reports, not a CRC-32C of a multipart
/// object (its part layout, by HEAD `?partNumber=`, checks the download).
pub const SERVE_S3: TargetCaps = TargetCaps { s3_multipart_crc32c: false, ..TargetCaps::ALL };

/// moto 5.2.5's S3 server. It checks neither signatures nor Content-MD5 nor `x-amz-checksum-*`;
/// PutObjectTagging sends no `x-amz-version-id`; CopyObject and UploadPartCopy ignore
/// `x-amz-copy-source-if-match`; ListMultipartUploads has no pages (`max-uploads` is not implemented);
/// UploadPart and CompleteMultipartUpload on an aborted upload fail with a 500 HTML page instead of
/// `NoSuchUpload`; CopyObject ignores `If-None-Match: *`.
pub const MOTO: TargetCaps = TargetCaps {
    checks_signatures: false,
    checks_content_md5: false,
    checks_default_digests: false,
    version_id_on_tagging: false,
    copy_source_if_match: false,
    list_uploads_paging: false,
    no_such_upload: false,
    conditional_copy: false,
    ..TargetCaps::ALL
};

/// s3s-fs 0.14.1. It checks SigV4, the payload's SHA-256 and (on PutObject) Content-MD5, but implements no
/// object tagging, no versioning and no ListMultipartUploads; its ListParts has no pages, no ETags and no
/// order, and lists nothing (rather than `NoSuchUpload`) for an unknown upload id, which UploadPart answers
/// `AccessDenied`; its ListObjects has no ETags; it has no archive storage class and no RestoreObject; a HEAD of a
/// key that is a directory of its tree (`2026` beside `2026/a.txt`) is a 500; a missing bucket is `NoSuchKey`, and DeleteBucket removes a
/// bucket with its objects; its UploadPartCopy ignores `x-amz-copy-source-if-match`, its CopyObject
/// `If-None-Match: *`; it checks `x-amz-checksum-crc32c` on PutObject but not on UploadPart; it reports no
/// checksum of a multipart object and ignores `?partNumber=` on HEAD.
pub const S3S_FS: TargetCaps = TargetCaps {
    checks_default_digests: false,
    checks_multipart_downloads: false,
    tagging: false,
    versioning: false,
    version_id_on_tagging: false,
    list_uploads: false,
    list_uploads_paging: false,
    list_parts_paging: false,
    list_parts_etags: false,
    no_such_upload: false,
    no_such_bucket: false,
    bucket_not_empty: false,
    copy_source_if_match: false,
    conditional_copy: false,
    prefix_is_no_object: false,
    archive: false,
    listed_etags: false,
    s3_multipart_crc32c: false,
    s3_head_part_number: false,
    ..TargetCaps::ALL
};
