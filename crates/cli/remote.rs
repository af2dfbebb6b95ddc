//! Where the stores are: endpoint options, per-side source options, named profiles, and opening a store for an
//! address.
//!
//! A profile lives in a TOML file (`$TRANSFER_CONFIG`, else `$XDG_CONFIG_HOME/transfer/config.toml`, else
//! `~/.config/transfer/config.toml`):
//!
//! ```toml
//! [profiles.hangzhou]
//! endpoint = "https://oss-cn-hangzhou.aliyuncs.com"
//! region = "cn-hangzhou"
//! dialect = "oss"                 # or "s3" (then the address is s3://, signed with AWS SigV4)
//! signature_version = "v4"        # or "v1"
//! checksum = "md5"                # optional: --checksum's default (crc32c, s3:// only, or md5)
//! # Where the credentials come from: the names of environment variables (default: OSS_ACCESS_KEY_ID,
//! # OSS_ACCESS_KEY_SECRET, OSS_SESSION_TOKEN; for s3:// the AWS_* ones). Never the secrets themselves.
//! access_key_id_env = "HZ_KEY_ID"
//! access_key_secret_env = "HZ_KEY_SECRET"
//! session_token_env = "HZ_TOKEN"
//! ```
//!
//! Command-line options win over the profile; the profile wins over the `TRANSFER_*` environment variables.
//! Profiles hold no secrets, so a job's options (kept in the ledger for `transfer resume`) never do either.

use crate::addr::Scheme;
use crate::Usage;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use transfer_engine::http::HttpStore;
use transfer_engine::local::LocalStore;
use transfer_engine::s3::S3Checksum;
use transfer_engine::sign::{Credentials, CredentialsFile, CredentialsProvider, SignatureVersion};
use transfer_engine::{BucketStore, OssExtensions, Store};

/// Signature version, as the command line and profiles spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SigArg {
    V4,
    V1,
}

/// How bodies sent to a store are protected, as the command line and profiles spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ChecksumArg {
    /// s3:// only: `x-amz-checksum-crc32c` on every body (the s3:// default).
    Crc32c,
    /// `Content-MD5` on every body: on s3:// instead of the CRC-32C (servers without S3's checksums), on
    /// oss:// in addition to the CRC-64 check.
    Md5,
}

/// Options naming the destination's store (and, for commands with one side, the only store).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub(crate) struct StoreArgs {
    /// Endpoint URL, e.g. https://oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9000.
    #[arg(long, env = "TRANSFER_ENDPOINT", hide_env_values = true)]
    pub endpoint: Option<String>,
    /// Region of the endpoint (V4 signatures); inferred from oss-<region>.aliyuncs.com endpoints.
    #[arg(long, env = "TRANSFER_REGION", hide_env_values = true)]
    pub region: Option<String>,
    /// Signature version [default: v4, or the profile's].
    #[arg(long, value_enum)]
    pub signature_version: Option<SigArg>,
    /// Named profile from the config file (endpoint, region, dialect, where credentials come from).
    #[arg(long, env = "TRANSFER_PROFILE", hide_env_values = true)]
    pub profile: Option<String>,
    /// How bodies sent are checked: set from `cp --checksum` (the only command that sends bodies), or a
    /// recorded job's options.
    #[arg(skip)]
    pub checksum: Option<ChecksumArg>,
    /// The bandwidth limits every body sent, and every object body received, take their bytes from: set from
    /// `cp --bwlimit`, one pair for the whole process.
    #[arg(skip)]
    #[serde(skip)]
    pub limits: Option<crate::bwlimit::Limits>,
    /// Requests per second each store opened may start: set from `cp --tpslimit`.
    #[arg(skip)]
    #[serde(skip)]
    pub tpslimit: Option<f64>,
    /// `x-oss-traffic-limit` on every request that carries object data, in bits per second: set from
    /// `cp --traffic-limit`.
    #[arg(skip)]
    #[serde(skip)]
    pub traffic_limit: Option<u64>,
    /// A JSON file of credentials (AccessKeyId, AccessKeySecret, SecurityToken, Expiration), re-read when it
    /// changes: an STS token renewed while a long job runs [default: the environment's, or the profile's].
    #[arg(long, env = "TRANSFER_CREDENTIALS_FILE", value_name = "PATH", hide_env_values = true)]
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Root directory of the embedded local store behind local:// addresses
    /// [default: $XDG_DATA_HOME/transfer/local].
    #[arg(long, env = "TRANSFER_LOCAL_ROOT", hide_env_values = true)]
    pub local_root: Option<PathBuf>,
}

/// Options naming the source's store when it differs from the destination's (a migration between endpoints).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub(crate) struct SrcStoreArgs {
    /// The source's endpoint [default: --endpoint].
    #[arg(long)]
    pub src_endpoint: Option<String>,
    /// The source's region [default: --region when both sides speak one dialect].
    #[arg(long)]
    pub src_region: Option<String>,
    /// The source's profile [default: --profile when both sides speak one dialect].
    #[arg(long)]
    pub src_profile: Option<String>,
}

impl SrcStoreArgs {
    /// True when any source-side option is given.
    pub(crate) fn any(&self) -> bool {
        self.src_endpoint.is_some() || self.src_region.is_some() || self.src_profile.is_some()
    }

    /// The source side's store options: each given source option replaces the destination's. A source that
    /// speaks another dialect than the destination (`same_dialect` false) takes only the destination's endpoint
    /// (and local root): a region, profile, signature version or checksum of one dialect says nothing of the
    /// other's.
    pub(crate) fn over(&self, dst: &StoreArgs, same_dialect: bool) -> StoreArgs {
        let mut s = dst.clone();
        if !same_dialect {
            s = StoreArgs {
                endpoint: dst.endpoint.clone(),
                local_root: dst.local_root.clone(),
                limits: dst.limits.clone(),
                tpslimit: dst.tpslimit,
                ..Default::default()
            };
        }
        if let Some(p) = &self.src_profile {
            // Another profile: the destination's endpoint and region are not its.
            s.profile = Some(p.clone());
            s.endpoint = None;
            s.region = None;
        }
        if let Some(e) = &self.src_endpoint {
            s.endpoint = Some(e.clone());
        }
        if let Some(r) = &self.src_region {
            s.region = Some(r.clone());
        }
        s
    }
}

/// One named profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    endpoint: Option<String>,
    region: Option<String>,
    dialect: Option<String>,
    signature_version: Option<SigArg>,
    checksum: Option<ChecksumArg>,
    access_key_id_env: Option<String>,
    access_key_secret_env: Option<String>,
    session_token_env: Option<String>,
    credentials_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// The config file's path.
pub(crate) fn config_path() -> Option<PathBuf> {
    let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("TRANSFER_CONFIG")
        .or_else(|| var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()).map(|p| p.join("transfer/config.toml")))
        .or_else(|| var("HOME").map(|h| h.join(".config/transfer/config.toml")))
}

fn load_profile(name: &str, scheme: Scheme) -> Result<Profile, Usage> {
    let path = config_path()
        .ok_or_else(|| Usage(format!("--profile {name}: no config file (set TRANSFER_CONFIG or HOME)")))?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Usage(format!("--profile {name}: cannot read the config file {}: {e}", path.display())))?;
    let config: ConfigFile =
        toml::from_str(&text).map_err(|e| Usage(format!("config file {}: {}", path.display(), e.message())))?;
    let profile = config.profiles.get(name).cloned().ok_or_else(|| {
        let known: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
        Usage(format!("--profile {name}: no [profiles.{name}] in {} (it has: {})", path.display(), known.join(", ")))
    })?;
    match (profile.dialect.as_deref(), scheme) {
        (None, _) | (Some("oss"), Scheme::Oss) | (Some("s3"), Scheme::S3) => Ok(profile),
        (Some(d @ ("oss" | "s3")), _) => Err(Usage(format!(
            "profile {name} in {} is for {d}:// addresses, not {}://",
            path.display(),
            scheme.name()
        ))),
        (Some(other), _) => Err(Usage(format!(
            "profile {name} in {}: unknown dialect {other:?}; use \"oss\" or \"s3\"",
            path.display()
        ))),
    }
}

/// What the commands call on a store: the engine's contract ([`Store`]) and OSS's own operations (`stat`'s
/// GetObjectMeta; a store without them says so).
pub(crate) trait CliStore: Store + OssExtensions {}

impl<T: Store + OssExtensions + ?Sized> CliStore for T {}

/// A store opened for an address: the same store behind both traits.
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    pub objects: Arc<dyn CliStore>,
    pub buckets: Arc<dyn BucketStore>,
    /// Where it is, for messages: the endpoint or the local root.
    pub what: String,
}

fn opened<S: CliStore + BucketStore + 'static>(store: S, what: String) -> Opened {
    let store = Arc::new(store);
    Opened { objects: store.clone(), buckets: store, what }
}

/// The local store's root: `--local-root`, else `$XDG_DATA_HOME/transfer/local`, else
/// `~/.local/share/transfer/local`.
fn local_root(args: &StoreArgs) -> Result<PathBuf, Usage> {
    if let Some(r) = &args.local_root {
        return Ok(r.clone());
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| Usage("no HOME: give --local-root DIR for local:// addresses".into()))?;
    Ok(base.join("transfer/local"))
}

/// The process's one pacer for `endpoint`: every store of the process that talks to it (a relay's source and
/// destination on one endpoint, each job of `cp SRC...`) slows down together, and `--tpslimit` caps them together.
fn pacer_for(endpoint: &str, tps: Option<f64>) -> Arc<transfer_engine::run::Pacer> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static PACERS: OnceLock<Mutex<HashMap<String, Arc<transfer_engine::run::Pacer>>>> = OnceLock::new();
    let mut pacers = PACERS.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    let key = endpoint.trim_end_matches('/').to_ascii_lowercase();
    pacers
        .entry(key)
        .or_insert_with(|| Arc::new(transfer_engine::run::Pacer::new().with_tps(tps.unwrap_or(0.0))))
        .clone()
}

impl StoreArgs {
    /// This side's options with relative paths made absolute, so a job's recorded options work from any directory.
    pub(crate) fn absolute(mut self) -> Result<StoreArgs, Usage> {
        if let Some(r) = &self.local_root {
            self.local_root = Some(std::path::absolute(r)?);
        }
        if let Some(f) = &self.credentials_file {
            self.credentials_file = Some(std::path::absolute(f)?);
        }
        Ok(self)
    }

    /// Opens the store behind `scheme` (no request is made).
    pub(crate) fn open(&self, scheme: Scheme) -> Result<Opened, Usage> {
        if self.traffic_limit.is_some() && scheme != Scheme::Oss {
            return Err(Usage(format!(
                "--traffic-limit is OSS's own per-request limit (x-oss-traffic-limit); {}:// has none: use --bwlimit",
                scheme.name()
            )));
        }
        match scheme {
            Scheme::Local => {
                let root = local_root(self)?;
                let store = open_local(&root)?;
                Ok(opened(store, format!("local root {}", root.display())))
            }
            Scheme::Oss | Scheme::S3 => {
                let profile = match &self.profile {
                    Some(name) => load_profile(name, scheme)?,
                    None => Profile::default(),
                };
                let endpoint = self.endpoint.clone().or(profile.endpoint.clone()).ok_or_else(|| {
                    Usage(format!(
                        "{}:// needs an endpoint: --endpoint URL, TRANSFER_ENDPOINT, or a --profile with one",
                        scheme.name()
                    ))
                })?;
                if !endpoint.contains("://") {
                    return Err(Usage(format!(
                        "endpoint {endpoint:?} has no scheme: write http://{endpoint} or https://{endpoint} \
                         (--endpoint, TRANSFER_ENDPOINT or the profile's endpoint)"
                    )));
                }
                let (id, secret, token) = match scheme {
                    Scheme::S3 => ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
                    _ => ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN"),
                };
                let creds: Arc<dyn CredentialsProvider> =
                    match self.credentials_file.as_ref().or(profile.credentials_file.as_ref()) {
                        Some(path) => {
                            let file = CredentialsFile::new(path);
                            // Read once now: a missing or malformed file is a usage error before any request.
                            file.read().map_err(|e| Usage(e.to_string()))?;
                            Arc::new(file)
                        }
                        None => Arc::new(Credentials::from_env_vars(
                            profile.access_key_id_env.as_deref().unwrap_or(id),
                            profile.access_key_secret_env.as_deref().unwrap_or(secret),
                            profile.session_token_env.as_deref().unwrap_or(token),
                        )?),
                    };
                let region = self.region.clone().or(profile.region);
                let checksum = self.checksum.or(profile.checksum);
                let store = if scheme == Scheme::S3 {
                    if self.signature_version.or(profile.signature_version) == Some(SigArg::V1) {
                        return Err(Usage("s3:// signs with AWS SigV4 only; drop --signature-version v1".into()));
                    }
                    let mut b = HttpStore::s3().endpoint(endpoint.clone()).credentials_provider(creds);
                    if checksum == Some(ChecksumArg::Md5) {
                        b = b.checksum(S3Checksum::ContentMd5);
                    }
                    if let Some(r) = region {
                        b = b.region(r);
                    }
                    if let Some(l) = &self.limits {
                        b = b.upload_limit(l.up.clone()).download_limit(l.down.clone());
                    }
                    b = b.pacer(pacer_for(&endpoint, self.tpslimit));
                    opened(b.build().map_err(|e| Usage(explain(&e)))?, endpoint)
                } else {
                    let version = match self.signature_version.or(profile.signature_version) {
                        Some(SigArg::V1) => SignatureVersion::V1,
                        Some(SigArg::V4) | None => SignatureVersion::V4,
                    };
                    if checksum == Some(ChecksumArg::Crc32c) {
                        return Err(Usage(
                            "oss:// checks every body by its CRC-64; --checksum crc32c is for s3:// (md5 adds Content-MD5)".into(),
                        ));
                    }
                    let mut b = HttpStore::oss()
                        .endpoint(endpoint.clone())
                        .credentials_provider(creds)
                        .signature_version(version)
                        .content_md5(checksum == Some(ChecksumArg::Md5))
                        .traffic_limit(self.traffic_limit);
                    if let Some(r) = region {
                        b = b.region(r);
                    }
                    if let Some(l) = &self.limits {
                        b = b.upload_limit(l.up.clone()).download_limit(l.down.clone());
                    }
                    b = b.pacer(pacer_for(&endpoint, self.tpslimit));
                    opened(b.build().map_err(|e| Usage(explain(&e)))?, endpoint)
                };
                Ok(store)
            }
        }
    }

    /// Opens the store and checks that `bucket` exists there — which also proves the endpoint answers and the
    /// credentials are accepted — before any byte moves.
    pub(crate) async fn open_bucket(&self, scheme: Scheme, bucket: &str) -> Result<Opened, Usage> {
        let store = self.open(scheme)?;
        check_bucket(&store, bucket).await?;
        Ok(store)
    }
}

/// Fails with a usage error unless `bucket` exists in `store` and answers.
/// One listing of at most one key, as the engine checks a job's buckets: every S3-compatible server answers it
/// (s3s-fs has no GetBucketVersioning, which this used to ask). A key that may write but not list cannot tell,
/// and goes on.
pub(crate) async fn check_bucket(store: &Opened, bucket: &str) -> Result<(), Usage> {
    use transfer_engine::ErrorKind;
    let one = transfer_engine::store::ListRequest::default().max_keys(Some(1));
    // Retried as any request is (a 503, a reset), but briefly: this is the first thing a command does, and an
    // endpoint that cannot be reached should say so in seconds.
    let policy =
        transfer_engine::run::RetryPolicy::default().max_attempts(4).max_elapsed(std::time::Duration::from_secs(20));
    let listed = policy.run("ListObjects", |_| store.objects.list_objects(bucket, &one)).await;
    match listed {
        Ok(_) => Ok(()),
        // The key may only write, or the server has no listing: the job finds out by doing.
        Err(e) if matches!(e.kind(), ErrorKind::AccessDenied | ErrorKind::Unsupported) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BucketNotFound => Err(Usage(format!(
            "bucket {bucket:?} does not exist at {}; create it first (or pass --create-bucket)",
            store.what
        ))),
        Err(e) => Err(Usage(format!("cannot use bucket {bucket:?} at {}: {}", store.what, explain(&e)))),
    }
}

/// The error, with what a person can change to fix it when the error says.
pub(crate) fn explain(e: &transfer_engine::Error) -> String {
    let message = e.to_string();
    match hint(e) {
        Some(h) => format!("{message}; {h}"),
        None => message,
    }
}

/// What a person can change to fix an error of this kind, when there is such a thing.
pub(crate) fn hint(e: &transfer_engine::Error) -> Option<&'static str> {
    use transfer_engine::ErrorKind;
    Some(match e.kind() {
        ErrorKind::Credentials => {
            "check the credentials (OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET / OSS_SESSION_TOKEN, AWS_ACCESS_KEY_ID / \
             AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN for s3://, the variables the --profile names, or the \
             --credentials-file and whether what renews it still runs), --region and --signature-version"
        }
        ErrorKind::AccessDenied => "the key may not do this here: check its policy, or use another --profile",
        ErrorKind::ClockSkew => "this machine's clock is off by more than 15 minutes: fix it (NTP)",
        ErrorKind::BucketNotFound => "check the bucket's name, or pass --create-bucket",
        ErrorKind::InsufficientStorage => {
            "the destination has no room: free space there (delete objects, or abort unfinished uploads with \
             `transfer cleanup`), then run the job again"
        }
        ErrorKind::Transport => "check --endpoint (or TRANSFER_ENDPOINT, or the profile's endpoint) and the network",
        // The server refused a value it was sent: part sizes are the values a person picks.
        ErrorKind::InvalidInput if e.service_error().is_some() => {
            "the server refused a value of the request (see its message): a --part-size, --storage-class, tag or \
             metadata value"
        }
        ErrorKind::InvalidInput if e.message().contains("needs a region") => {
            "give --region (or TRANSFER_REGION), or --src-region for a source on another endpoint or dialect"
        }
        _ => return None,
    })
}

/// One `LocalStore` per root in this process: the store holds an exclusive lock on its root, and a copy from
/// one local bucket to another must share it.
fn open_local(root: &Path) -> Result<LocalStore, Usage> {
    use std::sync::Mutex;
    static OPEN: Mutex<Vec<(PathBuf, LocalStore)>> = Mutex::new(Vec::new());
    let root = std::path::absolute(root)?;
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = open.iter().find(|(r, _)| *r == root) {
        return Ok(s.clone());
    }
    let store = LocalStore::open(&root).map_err(|e| Usage(format!("local store at {}: {e}", root.display())))?;
    open.push((root, store.clone()));
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_options_replace_the_destinations() {
        let dst = StoreArgs { endpoint: Some("http://a".into()), region: Some("r1".into()), ..Default::default() };
        let same = SrcStoreArgs::default().over(&dst, true);
        assert_eq!((same.endpoint.as_deref(), same.region.as_deref()), (Some("http://a"), Some("r1")));
        let other = SrcStoreArgs { src_endpoint: Some("http://b".into()), ..Default::default() }.over(&dst, true);
        assert_eq!((other.endpoint.as_deref(), other.region.as_deref()), (Some("http://b"), Some("r1")));
        let profiled = SrcStoreArgs { src_profile: Some("p".into()), ..Default::default() }.over(&dst, true);
        assert_eq!((profiled.endpoint, profiled.region, profiled.profile.as_deref()), (None, None, Some("p")));
        // Across dialects only the endpoint carries over.
        let dst = StoreArgs { checksum: Some(ChecksumArg::Crc32c), profile: Some("s3p".into()), ..dst };
        let across = SrcStoreArgs::default().over(&dst, false);
        assert_eq!(
            (across.endpoint.as_deref(), across.region, across.profile, across.checksum),
            (Some("http://a"), None, None, None)
        );
        let given = SrcStoreArgs { src_region: Some("r2".into()), ..Default::default() }.over(&dst, false);
        assert_eq!(given.region.as_deref(), Some("r2"));
    }

    #[test]
    fn profiles_parse_and_refuse_unknown_fields() {
        let c: ConfigFile = toml::from_str(
            "[profiles.a]\nendpoint = \"http://x\"\nsignature_version = \"v1\"\naccess_key_id_env = \"K\"\n",
        )
        .unwrap();
        assert_eq!(c.profiles["a"].signature_version, Some(SigArg::V1));
        let bad = toml::from_str::<ConfigFile>("[profiles.a]\naccess_key_secret = \"s\"\n").unwrap_err();
        assert!(bad.message().contains("unknown field"), "{bad}");
    }
}
