//! Object tags: on PutObject, through Put/Get/DeleteObjectTagging, and on a specific version.

use super::{read, tags, tags_of, Target};
use transfer_engine::store::PutOptions;
use transfer_engine::TagSet;

pub async fn tags_on_put(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("tagged").await;
    let obj = scope.obj("k");
    let opts = PutOptions::default().tags(Some(tags()));
    s.put_object(&obj.bucket, &obj.key, b"tagged".to_vec().into(), &opts).await.unwrap();
    assert_eq!(tags_of(s, &obj).await, tags().sorted());
    // An object written without tags has none.
    let plain = scope.obj("plain");
    s.put_object(&plain.bucket, &plain.key, b"plain".to_vec().into(), &PutOptions::default()).await.unwrap();
    assert!(tags_of(s, &plain).await.is_empty());
}

pub async fn put_get_delete_tagging(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("tagging").await;
    let obj = scope.obj("dir/k x");
    s.put_object(&obj.bucket, &obj.key, b"x".to_vec().into(), &PutOptions::default()).await.unwrap();
    s.put_tagging(&obj, &tags()).await.unwrap();
    assert_eq!(tags_of(s, &obj).await, tags().sorted());
    // PutObjectTagging replaces the whole set.
    let other = TagSet::from_pairs([("only", "this")]).unwrap();
    s.put_tagging(&obj, &other).await.unwrap();
    assert_eq!(tags_of(s, &obj).await, other.sorted());
    s.delete_tagging(&obj).await.unwrap();
    assert!(tags_of(s, &obj).await.is_empty());
    // The bytes were left alone.
    assert_eq!(read(s, &obj).await, b"x");
    let e = s.get_tagging(&scope.obj("missing")).await.unwrap_err();
    assert_eq!((e.status(), e.service_code()), (Some(404), Some("NoSuchKey")), "{e}");
}

pub async fn tags_on_a_specific_version(t: &Target) {
    let s = &*t.store;
    let scope = t.versioned_scope("versions").await;
    let first = TagSet::from_pairs([("gen", "1")]).unwrap();
    let second = TagSet::from_pairs([("gen", "2")]).unwrap();
    let put = |t: &TagSet| PutOptions::default().tags(Some(t.clone()));
    let key = scope.key("k");
    let v1 = s.put_object(&scope.bucket, &key, b"one".to_vec().into(), &put(&first)).await.unwrap().version_id.unwrap();
    let v2 =
        s.put_object(&scope.bucket, &key, b"two".to_vec().into(), &put(&second)).await.unwrap().version_id.unwrap();
    assert_ne!(v1, v2);
    let current = scope.obj("k");
    let old = current.clone().at_version(&v1);
    assert_eq!(read(s, &old).await, b"one");
    assert_eq!(read(s, &current).await, b"two");
    assert_eq!(s.head_object(&old).await.unwrap().version_id.as_deref(), Some(v1.as_str()));
    assert_eq!(tags_of(s, &old).await, first.sorted());
    assert_eq!(tags_of(s, &current).await, second.sorted());

    // Tagging the old version leaves the current one alone.
    let changed = TagSet::from_pairs([("gen", "1"), ("reviewed", "yes")]).unwrap();
    let tagged = s.put_tagging(&old, &changed).await.unwrap();
    if t.caps.version_id_on_tagging {
        assert_eq!(tagged.as_deref(), Some(v1.as_str()));
    } else {
        println!("NOTE conformance::{}: declares PutObjectTagging without the version id; not checked", t.name);
    }
    assert_eq!(tags_of(s, &old).await, changed.sorted());
    assert_eq!(tags_of(s, &current).await, second.sorted());
    s.delete_tagging(&old).await.unwrap();
    assert!(tags_of(s, &old).await.is_empty());
    assert_eq!(tags_of(s, &current).await, second.sorted());

    // A delete marker hides the current version; the old one is still there, with its tags gone.
    let del = s.delete_object(&current).await.unwrap();
    assert!(del.delete_marker && del.version_id.is_some(), "{del:?}");
    assert_eq!(read(s, &old).await, b"one");
    let gone = s.delete_object(&old).await.unwrap();
    assert_eq!(gone.version_id.as_deref(), Some(v1.as_str()));
    for v in [v2, del.version_id.unwrap()] {
        s.delete_object(&current.clone().at_version(v)).await.unwrap();
    }
}
