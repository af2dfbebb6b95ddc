//! The targets of the suite; the capabilities each declares, with the reason for every gap, are the matrix in
//! `tests/util/caps.rs`.

use super::{Dialect, Target, TargetCaps, TargetDef, Wire};
use crate::util::caps::{LOCAL, MOTO, S3S_FS, SERVE_OSS, SERVE_S3};
use crate::util::moto::{Moto, MOTO_KEY};
use crate::util::s3s::{S3sFs, S3S_KEY};
use crate::util::{Served, AK, SK};
use std::sync::Arc;
use transfer_engine::http::HttpStore;
use transfer_engine::local::LocalStore;
use transfer_engine::sign::{Credentials, SignatureVersion};

pub fn local() -> TargetDef {
    TargetDef {
        name: "local",
        caps: || LOCAL,
        start: |_| {
            let root = tempfile::tempdir().expect("temp root");
            let store = Arc::new(LocalStore::open(root.path()).expect("local store"));
            Target {
                name: "local",
                store: store.clone(),
                buckets: store,
                caps: LOCAL,
                wire: None,
                fixed_bucket: None,
                run_prefix: String::new(),
                _keep: Box::new(root),
            }
        },
    }
}

/// `transfer serve` through the OSS dialect (signature V4).
pub fn serve_oss() -> TargetDef {
    TargetDef { name: "serve_oss", caps: || SERVE_OSS, start: |_| served("serve_oss", Dialect::Oss, "cn-hangzhou") }
}

/// `transfer serve` through the S3 dialect (AWS SigV4), on the same port.
pub fn serve_s3() -> TargetDef {
    TargetDef { name: "serve_s3", caps: || SERVE_S3, start: |_| served("serve_s3", Dialect::S3, "us-east-1") }
}

fn served(name: &'static str, dialect: Dialect, region: &str) -> Target {
    let served = Served::start();
    let wire = Wire {
        endpoint: served.endpoint.clone(),
        dialect,
        region: region.into(),
        credentials: Credentials::new(AK, SK),
        path_style: Some(true),
    };
    let caps = if dialect == Dialect::Oss { SERVE_OSS } else { SERVE_S3 };
    with_wire(name, caps, wire, Box::new(served))
}

/// A target reached over `wire` (one client serves as both the object and the bucket store).
fn with_wire(name: &'static str, caps: TargetCaps, wire: Wire, keep: Box<dyn std::any::Any + Send + Sync>) -> Target {
    let (store, buckets): (Arc<dyn super::TestStore>, Arc<dyn transfer_engine::BucketStore>) = match wire.dialect {
        Dialect::Oss => {
            let c = Arc::new(oss_client(&wire));
            (c.clone(), c)
        }
        Dialect::S3 => {
            let c = Arc::new(s3_client(&wire, caps.tagging));
            (c.clone(), c)
        }
    };
    Target { name, store, buckets, caps, wire: Some(wire), fixed_bucket: None, run_prefix: String::new(), _keep: keep }
}

pub fn oss_client(w: &Wire) -> HttpStore {
    let b = HttpStore::oss()
        .endpoint(&w.endpoint)
        .region(&w.region)
        .credentials(w.credentials.clone())
        .signature_version(SignatureVersion::V4)
        .system_proxy(false);
    match w.path_style {
        Some(p) => b.path_style(p),
        None => b,
    }
    .build()
    .expect("OSS client")
}

pub fn s3_client(w: &Wire, tagging: bool) -> HttpStore {
    let b = HttpStore::s3()
        .endpoint(&w.endpoint)
        .region(&w.region)
        .credentials(w.credentials.clone())
        .tagging(tagging)
        .system_proxy(false);
    match w.path_style {
        Some(p) => b.path_style(p),
        None => b,
    }
    .build()
    .expect("S3 client")
}

pub fn moto() -> TargetDef {
    TargetDef {
        name: "moto",
        caps: || MOTO,
        start: |test| {
            let moto = Moto::start(test);
            let wire = Wire {
                endpoint: moto.endpoint.clone(),
                dialect: Dialect::S3,
                region: "us-east-1".into(),
                credentials: Credentials::new(MOTO_KEY.0, MOTO_KEY.1),
                path_style: Some(true),
            };
            with_wire("moto", MOTO, wire, Box::new(moto))
        },
    }
}

pub fn s3s_fs() -> TargetDef {
    TargetDef {
        name: "s3s_fs",
        caps: || S3S_FS,
        start: |test| {
            let server = S3sFs::start(test);
            let wire = Wire {
                endpoint: server.endpoint.clone(),
                dialect: Dialect::S3,
                region: "us-east-1".into(),
                credentials: Credentials::new(S3S_KEY.0, S3S_KEY.1),
                path_style: Some(true),
            };
            with_wire("s3s_fs", S3S_FS, wire, Box::new(server))
        },
    }
}

/// `TRANSFER_CONFORMANCE_<KIND>_<name>`, when set and not empty.
fn env(kind: &str, name: &str) -> Option<String> {
    std::env::var(format!("TRANSFER_CONFORMANCE_{kind}_{name}")).ok().filter(|v| !v.is_empty())
}

/// A real endpoint's declared capabilities: everything but bucket administration (the suite creates no
/// bucket there) and a test proxy in front (the signed Host would be the proxy's), and versioning only when
/// the bucket has it on (`TRANSFER_CONFORMANCE_<KIND>_VERSIONED=1`; the suite never changes a real bucket's
/// settings).
fn real_caps(kind: &str) -> TargetCaps {
    TargetCaps {
        bucket_admin: false,
        proxy: false,
        versioning: env(kind, "VERSIONED").as_deref() == Some("1"),
        ..TargetCaps::ALL
    }
}

/// A real endpoint named by `TRANSFER_CONFORMANCE_<KIND>_ENDPOINT`, `_REGION` and `_BUCKET` (an existing
/// bucket; the cases work under `transfer-conformance/<unique>/` in it and remove what they wrote), with
/// credentials from the dialect's usual variables. Its cases are ignored unless asked for; asked for without an
/// endpoint, they fail.
fn real(test: &str, name: &'static str, kind: &str, dialect: Dialect) -> Target {
    // Only run when asked for (the table marks these targets ignored): asked for without an endpoint is an error.
    let (Some(endpoint), Some(bucket)) = (env(kind, "ENDPOINT"), env(kind, "BUCKET")) else {
        panic!("{test}: no real endpoint: set TRANSFER_CONFORMANCE_{kind}_ENDPOINT, _REGION and _BUCKET to run it")
    };
    let credentials = match dialect {
        Dialect::Oss => Credentials::from_env(),
        Dialect::S3 => Credentials::from_aws_env(),
    }
    .unwrap_or_else(|e| panic!("{test}: TRANSFER_CONFORMANCE_{kind}_ENDPOINT is set but the credentials are not: {e}"));
    let region = env(kind, "REGION").unwrap_or_else(|| {
        if dialect == Dialect::S3 {
            "us-east-1".into()
        } else {
            "cn-hangzhou".into()
        }
    });
    let path_style = env(kind, "PATH_STYLE").map(|v| v == "1");
    let wire = Wire { endpoint, dialect, region, credentials, path_style };
    let mut target = with_wire(name, real_caps(kind), wire, Box::new(()));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    target.fixed_bucket = Some(bucket);
    target.run_prefix = format!("transfer-conformance/{nanos:x}-{}/", std::process::id());
    target
}

/// A real S3 endpoint (AWS or any S3-compatible service): `TRANSFER_CONFORMANCE_S3_ENDPOINT`, `_REGION`,
/// `_BUCKET`, optional `_VERSIONED=1` and `_PATH_STYLE=1`; `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`.
pub fn env_s3() -> TargetDef {
    TargetDef { name: "env_s3", caps: || real_caps("S3"), start: |test| real(test, "env_s3", "S3", Dialect::S3) }
}

/// A real OSS endpoint: `TRANSFER_CONFORMANCE_OSS_ENDPOINT`, `_REGION`, `_BUCKET`, optional `_VERSIONED=1` and
/// `_PATH_STYLE=1`; `OSS_ACCESS_KEY_ID`, `OSS_ACCESS_KEY_SECRET`, `OSS_SESSION_TOKEN`.
pub fn env_oss() -> TargetDef {
    TargetDef { name: "env_oss", caps: || real_caps("OSS"), start: |test| real(test, "env_oss", "OSS", Dialect::Oss) }
}
