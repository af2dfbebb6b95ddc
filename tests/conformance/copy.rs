//! Server-side copies through the store: UploadPartCopy in byte ranges, source preconditions, and CopyObject
//! with its metadata and tagging directives.

use super::{assert_meta, meta, read, tags, tags_of, Target};
use crate::util::data;
use transfer_engine::store::PartCopySource;
use transfer_engine::store::{
    ByteRange, CompleteOptions, CompletedPart, CopyConditions, CopyOptions, Directive, PutOptions,
};
use transfer_engine::{Metadata, TagSet};

const MIB: u64 = 1024 * 1024;

pub async fn upload_part_copy_with_ranges(t: &Target) {
    let s = &*t.store;
    let (src_scope, dst_scope) = (t.scope("copysrc").await, t.scope("copydst").await);
    let content = data(11 * MIB as usize + 3, 5);
    let opts = PutOptions::default().metadata(meta());
    let src_put =
        s.put_object(&src_scope.bucket, &src_scope.key("source"), content.clone().into(), &opts).await.unwrap();
    let src = src_scope.obj("source");
    // Every part pinned to the source's ETag, as the engine does.
    let pinned = CopyConditions::default().if_match(Some(src_put.etag.clone()));

    let key = dst_scope.key("copy");
    let id = s.initiate_multipart(&dst_scope.bucket, &key, &opts).await.unwrap();
    let m = 5 * MIB;
    let ranges =
        [ByteRange::inclusive(0, m - 1), ByteRange::inclusive(m, 2 * m - 1), ByteRange { first: 2 * m, last: None }];
    let mut done = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        let n = i as u32 + 1;
        let receipt = s
            .upload_part_copy(
                id.part(n),
                &PartCopySource { source: src.clone(), range: Some(*r), conditions: pinned.clone() },
            )
            .await
            .unwrap();
        assert_eq!(receipt.part_number, n);
        done.push(CompletedPart::from(&receipt));
    }
    let listed = s.list_parts(&id, None, None).await.unwrap();
    let sizes: Vec<u64> = listed.parts.iter().map(|p| p.size).collect();
    assert_eq!(sizes, [m, m, MIB + 3]);

    s.complete_multipart(&id, &done, &CompleteOptions::default()).await.unwrap();
    let dst = dst_scope.obj("copy");
    assert_eq!(read(s, &dst).await, content);
    assert_meta(&s.head_object(&dst).await.unwrap().metadata, &meta());

    // A whole-source part (no range), from a small source.
    s.put_object(&src_scope.bucket, &src_scope.key("small"), b"small source".to_vec().into(), &PutOptions::default())
        .await
        .unwrap();
    let key = dst_scope.key("whole");
    let id = s.initiate_multipart(&dst_scope.bucket, &key, &PutOptions::default()).await.unwrap();
    let r = s
        .upload_part_copy(
            id.part(1),
            &PartCopySource { source: src_scope.obj("small"), range: None, conditions: CopyConditions::default() },
        )
        .await
        .unwrap();
    let part = [CompletedPart::from(&r)];
    s.complete_multipart(&id, &part, &CompleteOptions::default()).await.unwrap();
    assert_eq!(read(s, &dst_scope.obj("whole")).await, b"small source");
}

pub async fn copies_check_the_source_etag(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("pinned").await;
    let put =
        s.put_object(&scope.bucket, &scope.key("src"), data(1000, 1).into(), &PutOptions::default()).await.unwrap();
    let src = scope.obj("src");
    let stale = CopyConditions::default().if_match(Some("0123456789abcdef0123456789abcdef".into()));

    let mut copy = CopyOptions::from(src.clone());
    copy.conditions = stale.clone();
    let e = s.copy_object(&scope.bucket, &scope.key("dst"), &copy).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(412), Some("PreconditionFailed"), false), "{e}");
    assert_eq!(e.kind(), transfer_engine::ErrorKind::PreconditionFailed, "{e}");
    let e = s.head_object(&scope.obj("dst")).await.unwrap_err();
    assert_eq!((e.status(), e.kind()), (Some(404), transfer_engine::ErrorKind::ObjectNotFound), "{e}");

    let key = scope.key("parts");
    let id = s.initiate_multipart(&scope.bucket, &key, &PutOptions::default()).await.unwrap();
    let e = s
        .upload_part_copy(
            id.part(1),
            &PartCopySource {
                source: src.clone(),
                range: Some(ByteRange::inclusive(0, 99)),
                conditions: stale.clone(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(412), Some("PreconditionFailed"), false), "{e}");
    // The right ETag copies.
    let current = CopyConditions::default().if_match(Some(put.etag));
    s.upload_part_copy(
        id.part(1),
        &PartCopySource { source: src.clone(), range: Some(ByteRange::inclusive(0, 99)), conditions: current.clone() },
    )
    .await
    .unwrap();
    s.abort_multipart(&id).await.unwrap();
}

pub async fn copy_object_metadata_directive(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("copies").await;
    let content = data(3000, 7);
    let opts = PutOptions::default().metadata(meta());
    s.put_object(&scope.bucket, &scope.key("src"), content.clone().into(), &opts).await.unwrap();
    let src = scope.obj("src");

    // A source condition that fails: nothing is copied.
    let mut unchanged = CopyOptions::from(src.clone());
    unchanged.conditions.if_none_match = Some(s.head_object(&src).await.unwrap().etag);
    let e = s.copy_object(&scope.bucket, &scope.key("never"), &unchanged).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(412), Some("PreconditionFailed"), false), "{e}");

    // COPY: the source's metadata.
    s.copy_object(&scope.bucket, &scope.key("kept"), &CopyOptions::from(src.clone())).await.unwrap();
    let kept = scope.obj("kept");
    assert_eq!(read(s, &kept).await, content);
    assert_meta(&s.head_object(&kept).await.unwrap().metadata, &meta());

    // REPLACE: the request's.
    let mut new_meta = Metadata::with_user([("origin", "copy")]).unwrap();
    new_meta.content_type = Some("text/plain".into());
    let mut replace = CopyOptions::from(src.clone());
    replace.metadata = Directive::Replace(new_meta.clone());
    s.copy_object(&scope.bucket, &scope.key("replaced"), &replace).await.unwrap();
    let replaced = scope.obj("replaced");
    assert_eq!(read(s, &replaced).await, content);
    assert_meta(&s.head_object(&replaced).await.unwrap().metadata, &new_meta);

    // An object copied onto itself with REPLACE changes only its metadata.
    let mut in_place = CopyOptions::from(replaced.clone());
    in_place.metadata = Directive::Replace(meta());
    s.copy_object(&scope.bucket, &scope.key("replaced"), &in_place).await.unwrap();
    assert_eq!(read(s, &replaced).await, content);
    assert_meta(&s.head_object(&replaced).await.unwrap().metadata, &meta());
}

pub async fn copy_object_tagging_directive(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("tag-copies").await;
    let opts = PutOptions::default().metadata(meta()).tags(Some(tags()));
    s.put_object(&scope.bucket, &scope.key("src"), data(3000, 8).into(), &opts).await.unwrap();
    let src = scope.obj("src");
    let mut new_meta = Metadata::with_user([("origin", "copy")]).unwrap();
    new_meta.content_type = Some("text/plain".into());
    let new_tags = TagSet::from_pairs([("copied", "yes")]).unwrap();

    // Both kept, both replaced, and each one alone.
    let cases = [
        ("kept", Directive::Copy, Directive::Copy),
        ("replaced", Directive::Replace(new_meta.clone()), Directive::Replace(new_tags.clone())),
        ("tags-replaced", Directive::Copy, Directive::Replace(new_tags.clone())),
        ("meta-replaced", Directive::Replace(new_meta.clone()), Directive::Copy),
    ];
    for (name, metadata, tagging) in cases {
        let mut copy = CopyOptions::from(src.clone());
        copy.metadata = metadata.clone();
        copy.tagging = tagging.clone();
        s.copy_object(&scope.bucket, &scope.key(name), &copy).await.unwrap();
        let obj = scope.obj(name);
        let want_meta = match metadata {
            Directive::Copy => meta(),
            Directive::Replace(m) => m,
        };
        let want_tags = match tagging {
            Directive::Copy => tags(),
            Directive::Replace(t) => t,
        };
        assert_meta(&s.head_object(&obj).await.unwrap().metadata, &want_meta);
        assert_eq!(tags_of(s, &obj).await, want_tags.sorted(), "{name}");
    }
    // REPLACE with no tags leaves the copy untagged.
    let mut untagged = CopyOptions::from(src);
    untagged.tagging = Directive::Replace(TagSet::new());
    s.copy_object(&scope.bucket, &scope.key("untagged"), &untagged).await.unwrap();
    assert!(tags_of(s, &scope.obj("untagged")).await.is_empty());
}
