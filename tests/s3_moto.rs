//! What only moto can show about the S3 client. Everything the client and the engine share with the other
//! targets (objects, tags, versions, multipart, copies, listings, the engine's jobs, faults) runs against moto
//! in the conformance suite (`conformance::moto::*`).

use crate::util::moto::Moto;
use transfer_engine::store::PutOptions;
use transfer_engine::{BucketStore, ObjectRef, ObjectStore};

#[tokio::test]
async fn buckets_outside_us_east_1_carry_their_location() {
    // moto checks the LocationConstraint against the region the request is signed for, as S3 does.
    let moto = Moto::start("buckets_outside_us_east_1_carry_their_location");
    let s = moto.client_in("eu-west-1");
    s.create_bucket("europe").await.unwrap();
    s.put_object("europe", "k", b"x".to_vec().into(), &PutOptions::default()).await.unwrap();
    let got = s.get_object(&ObjectRef::new("europe", "k"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"x");
}
