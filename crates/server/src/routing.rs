//! From a request line and `Host` to what is asked: the bucket, the key, the decoded query, and the
//! operation, chosen by the one dispatch table [`ROUTES`].

use http::Method;
use transfer_engine::util::{parse_query, pct_decode};
use transfer_engine::{Error, Result};

/// Where a request points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The bucket, from the host (virtual-host style) or the first path segment.
    pub(crate) bucket: Option<String>,
    /// The decoded object key; `None` for service and bucket requests.
    pub(crate) key: Option<String>,
    /// Decoded query pairs, in the order received.
    pub(crate) query: Vec<(String, String)>,
}

impl Target {
    /// The value of a query parameter (`Some("")` for a bare sub-resource such as `?uploads`).
    pub(crate) fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.query.iter().any(|(k, _)| k == name)
    }
}

fn invalid_uri(what: &str) -> Error {
    Error::code(400, "InvalidURI", format!("Couldn't parse the specified URI: {what}."))
}

/// The bucket named by a virtual-host `Host`: `<bucket>.<suffix>` for a configured suffix (such as `localhost`).
/// IP addresses and bare suffixes mean path style.
fn host_bucket(host: &str, suffixes: &[String]) -> Option<String> {
    let name = match host.strip_prefix('[') {
        Some(_) => return None, // IPv6 literal
        None => host
            .rsplit_once(':')
            .map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    suffixes.iter().find_map(|suffix| {
        let bucket = name.strip_suffix(suffix.as_str())?.strip_suffix('.')?;
        (!bucket.is_empty() && !bucket.contains('.')).then(|| bucket.to_owned())
    })
}

/// Parses the target of a request from its `Host`, raw path and raw query.
pub(crate) fn parse_target(
    host: Option<&str>,
    path: &str,
    raw_query: Option<&str>,
    suffixes: &[String],
) -> Result<Target> {
    // A `+` in the query is a space, as OSS reads it: oss2 sends its parameters form-encoded (`key-marker=a+b`
    // for "a b"); every client that means a plus sends `%2B`.
    let query = parse_query(&raw_query.unwrap_or_default().replace('+', "%20"))
        .map_err(|_| invalid_uri("the query is not valid UTF-8 once decoded"))?;
    let path = path.strip_prefix('/').unwrap_or(path);
    let decode = |s: &str| pct_decode(s).map_err(|_| invalid_uri("the path is not valid UTF-8 once decoded"));
    let (bucket, key) = match host.and_then(|h| host_bucket(h, suffixes)) {
        Some(bucket) => (Some(bucket), decode(path)?),
        None => {
            let (b, k) = path.split_once('/').unwrap_or((path, ""));
            let bucket = decode(b)?;
            ((!bucket.is_empty()).then_some(bucket), decode(k)?)
        }
    };
    let key = (!key.is_empty()).then_some(key);
    Ok(Target { bucket, key, query })
}

/// Every operation the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    ListBuckets,
    PutBucket,
    DeleteBucket,
    GetBucketInfo,
    GetBucketLocation,
    GetBucketAcl,
    GetBucketVersioning,
    PutBucketVersioning,
    ListObjects,
    ListObjectsV2,
    ListVersions,
    ListUploads,
    DeleteMultipleObjects,
    PutObject,
    CopyObject,
    GetObject,
    HeadObject,
    GetObjectMeta,
    DeleteObject,
    AppendObject,
    InitiateMultipart,
    UploadPart,
    UploadPartCopy,
    CompleteMultipart,
    AbortMultipart,
    ListParts,
    PutSymlink,
    GetSymlink,
    PutTagging,
    GetTagging,
    DeleteTagging,
    RestoreObject,
}

impl Op {
    /// True for operations whose handler reads the request body.
    pub(crate) fn reads_body(self) -> bool {
        matches!(
            self,
            Op::PutObject
                | Op::UploadPart
                | Op::AppendObject
                | Op::CompleteMultipart
                | Op::PutTagging
                | Op::PutBucket
                | Op::PutBucketVersioning
                | Op::DeleteMultipleObjects
                | Op::RestoreObject
        )
    }
}

/// What a route applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// No bucket (`GET /`).
    Service,
    /// A bucket, no key.
    Bucket,
    /// An object.
    Object,
}

/// One row of the dispatch table: a method, a scope, the sub-resources that must all be present, whether an
/// `x-oss-copy-source` header is required (`Some(true)`), forbidden (`Some(false)`) or irrelevant, and the
/// operation.
struct Route {
    method: Method,
    scope: Scope,
    sub: &'static [&'static str],
    copy: Option<bool>,
    op: Op,
}

const fn r(method: Method, scope: Scope, sub: &'static [&'static str], copy: Option<bool>, op: Op) -> Route {
    Route { method, scope, sub, copy, op }
}

/// The dispatch table: the first row whose method, scope, sub-resources and copy-source requirement match wins,
/// so more specific rows come first.
static ROUTES: &[Route] = &[
    r(Method::GET, Scope::Service, &[], None, Op::ListBuckets),
    // Bucket.
    r(Method::GET, Scope::Bucket, &["versioning"], None, Op::GetBucketVersioning),
    r(Method::PUT, Scope::Bucket, &["versioning"], None, Op::PutBucketVersioning),
    r(Method::GET, Scope::Bucket, &["bucketInfo"], None, Op::GetBucketInfo),
    r(Method::GET, Scope::Bucket, &["location"], None, Op::GetBucketLocation),
    r(Method::GET, Scope::Bucket, &["acl"], None, Op::GetBucketAcl),
    r(Method::GET, Scope::Bucket, &["uploads"], None, Op::ListUploads),
    r(Method::POST, Scope::Bucket, &["delete"], None, Op::DeleteMultipleObjects),
    r(Method::GET, Scope::Bucket, &["list-type"], None, Op::ListObjectsV2),
    r(Method::GET, Scope::Bucket, &["versions"], None, Op::ListVersions),
    r(Method::GET, Scope::Bucket, &[], None, Op::ListObjects),
    r(Method::PUT, Scope::Bucket, &[], None, Op::PutBucket),
    r(Method::DELETE, Scope::Bucket, &[], None, Op::DeleteBucket),
    // Object sub-resources.
    r(Method::PUT, Scope::Object, &["tagging"], None, Op::PutTagging),
    r(Method::GET, Scope::Object, &["tagging"], None, Op::GetTagging),
    r(Method::DELETE, Scope::Object, &["tagging"], None, Op::DeleteTagging),
    r(Method::PUT, Scope::Object, &["symlink"], None, Op::PutSymlink),
    r(Method::GET, Scope::Object, &["symlink"], None, Op::GetSymlink),
    r(Method::HEAD, Scope::Object, &["objectMeta"], None, Op::GetObjectMeta),
    // Multipart.
    r(Method::POST, Scope::Object, &["uploads"], None, Op::InitiateMultipart),
    r(Method::PUT, Scope::Object, &["partNumber", "uploadId"], Some(true), Op::UploadPartCopy),
    r(Method::PUT, Scope::Object, &["partNumber", "uploadId"], Some(false), Op::UploadPart),
    r(Method::POST, Scope::Object, &["uploadId"], None, Op::CompleteMultipart),
    r(Method::DELETE, Scope::Object, &["uploadId"], None, Op::AbortMultipart),
    r(Method::GET, Scope::Object, &["uploadId"], None, Op::ListParts),
    // Append.
    r(Method::POST, Scope::Object, &["append"], None, Op::AppendObject),
    r(Method::POST, Scope::Object, &["restore"], None, Op::RestoreObject),
    // Plain object operations.
    r(Method::PUT, Scope::Object, &[], Some(true), Op::CopyObject),
    r(Method::PUT, Scope::Object, &[], Some(false), Op::PutObject),
    r(Method::GET, Scope::Object, &[], None, Op::GetObject),
    r(Method::HEAD, Scope::Object, &[], None, Op::HeadObject),
    r(Method::DELETE, Scope::Object, &[], None, Op::DeleteObject),
];

/// Query parameters that select an operation (OSS sub-resources). A request naming one that its route does not
/// use asks for an operation this server does not implement (ListObjectVersions, bucket ACLs, lifecycle, ...):
/// it is answered 501 `NotImplemented` rather than served as the plain operation of the same path.
static SELECTORS: &[&str] = &[
    "acl",
    "append",
    "bucketInfo",
    "callback",
    "cname",
    "cors",
    "delete",
    "encryption",
    "img",
    "inventory",
    "lifecycle",
    "live",
    "location",
    "logging",
    "metaQuery",
    "objectMeta",
    "policy",
    "qos",
    "referer",
    "replication",
    "requestPayment",
    "resourceGroup",
    "restore",
    "seal",
    "stat",
    "style",
    "symlink",
    "tagging",
    "transferAcceleration",
    "uploads",
    "versioning",
    "versions",
    "website",
    "worm",
    "x-oss-async-process",
    "x-oss-process",
];

/// The operation a request asks for; 405 `MethodNotAllowed` when no row matches, 501 `NotImplemented` for an
/// operation of OSS this server does not have.
pub(crate) fn resolve(method: &Method, target: &Target, copy_source: bool) -> Result<Op> {
    let scope = match (&target.bucket, &target.key) {
        (None, _) => Scope::Service,
        (Some(_), None) => Scope::Bucket,
        (Some(_), Some(_)) => Scope::Object,
    };
    ROUTES
        .iter()
        .find(|route| {
            route.method == *method
                && route.scope == scope
                && route.sub.iter().all(|s| target.has(s))
                && !matches!(route.copy, Some(c) if c != copy_source)
        })
        .map(|route| {
            match target.query.iter().map(|(k, _)| k.as_str()).find(|k| SELECTORS.contains(k) && !route.sub.contains(k))
            {
                Some(sub) => Err(Error::code(
                    501,
                    "NotImplemented",
                    format!("The {method} ?{sub} operation is not implemented by this server."),
                )),
                None => Ok(route.op),
            }
        })
        .unwrap_or_else(|| {
            Err(Error::code(
                405,
                "MethodNotAllowed",
                format!("The specified method {method} is not allowed against this resource."),
            )
            .with_extra("Method", method.as_str())
            .with_extra(
                "ResourceType",
                match scope {
                    Scope::Service => "Service",
                    Scope::Bucket => "Bucket",
                    Scope::Object => "Object",
                },
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sfx() -> Vec<String> {
        vec!["localhost".into(), "oss.example.test".into()]
    }

    fn target(host: &str, uri: &str) -> Target {
        let (path, q) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));
        parse_target(Some(host), path, q, &sfx()).unwrap()
    }

    #[test]
    fn path_and_virtual_host_styles() {
        let t = target("127.0.0.1:9000", "/bkt/dir/a%20b%2Bc.txt?versionId=v1");
        assert_eq!(t.bucket.as_deref(), Some("bkt"));
        assert_eq!(t.key.as_deref(), Some("dir/a b+c.txt"));
        assert_eq!(t.q("versionId"), Some("v1"));
        let t = target("bkt.localhost:9000", "/dir/x");
        assert_eq!((t.bucket.as_deref(), t.key.as_deref()), (Some("bkt"), Some("dir/x")));
        let t = target("bkt.oss.example.test", "/");
        assert_eq!((t.bucket.as_deref(), t.key), (Some("bkt"), None));
        let t = target("localhost:9000", "/bkt/");
        assert_eq!((t.bucket.as_deref(), t.key), (Some("bkt"), None));
        let t = target("[::1]:9000", "/");
        assert_eq!((t.bucket, t.key), (None, None));
        let t = target("bkt.localhost", "/a/%E4%B8%AD");
        assert_eq!(t.key.as_deref(), Some("a/中"));
    }

    #[test]
    fn dispatch_table() {
        let op = |m: Method, uri: &str, copy: bool| resolve(&m, &target("127.0.0.1", uri), copy).unwrap();
        assert_eq!(op(Method::GET, "/", false), Op::ListBuckets);
        assert_eq!(op(Method::PUT, "/b/", false), Op::PutBucket);
        assert_eq!(op(Method::GET, "/b/?list-type=2&prefix=a", false), Op::ListObjectsV2);
        assert_eq!(op(Method::GET, "/b/?prefix=a", false), Op::ListObjects);
        assert_eq!(op(Method::GET, "/b/?uploads", false), Op::ListUploads);
        assert_eq!(op(Method::PUT, "/b/?versioning", false), Op::PutBucketVersioning);
        assert_eq!(op(Method::PUT, "/b/k", false), Op::PutObject);
        assert_eq!(op(Method::PUT, "/b/k", true), Op::CopyObject);
        assert_eq!(op(Method::PUT, "/b/k?partNumber=1&uploadId=u", false), Op::UploadPart);
        assert_eq!(op(Method::PUT, "/b/k?partNumber=1&uploadId=u", true), Op::UploadPartCopy);
        assert_eq!(op(Method::POST, "/b/k?uploads", false), Op::InitiateMultipart);
        assert_eq!(op(Method::POST, "/b/k?uploadId=u", false), Op::CompleteMultipart);
        assert_eq!(op(Method::DELETE, "/b/k?uploadId=u", false), Op::AbortMultipart);
        assert_eq!(op(Method::GET, "/b/k?uploadId=u", false), Op::ListParts);
        assert_eq!(op(Method::POST, "/b/k?append&position=0", false), Op::AppendObject);
        assert_eq!(op(Method::HEAD, "/b/k?objectMeta", false), Op::GetObjectMeta);
        assert_eq!(op(Method::HEAD, "/b/k?versionId=v", false), Op::HeadObject);
        assert_eq!(op(Method::PUT, "/b/k?tagging", false), Op::PutTagging);
        assert_eq!(op(Method::DELETE, "/b/k?tagging", false), Op::DeleteTagging);
        assert_eq!(op(Method::PUT, "/b/k?symlink", false), Op::PutSymlink);
        assert_eq!(op(Method::GET, "/b/k?symlink", false), Op::GetSymlink);
        assert_eq!(op(Method::DELETE, "/b/k?versionId=v", false), Op::DeleteObject);
        assert_eq!(op(Method::GET, "/b/?acl", false), Op::GetBucketAcl);
        assert_eq!(op(Method::POST, "/b/k?restore", false), Op::RestoreObject);
        let e = resolve(&Method::POST, &target("127.0.0.1", "/b/k"), false).unwrap_err();
        assert_eq!(e.status(), Some(405));
        assert_eq!(op(Method::GET, "/b/?versions", false), Op::ListVersions);
        for uri in ["/b/?inventory", "/b/?lifecycle", "/b/k?acl", "/b/k?restore", "/b/k?versions"] {
            let e = resolve(&Method::GET, &target("127.0.0.1", uri), false).unwrap_err();
            assert_eq!(e.service_code(), Some("NotImplemented"), "{uri}");
        }
        let e = resolve(&Method::PUT, &target("127.0.0.1", "/b/?tagging"), false).unwrap_err();
        assert_eq!(e.service_code(), Some("NotImplemented"));
    }
}
