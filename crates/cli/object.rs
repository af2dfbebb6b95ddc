//! One object's facts and tags: `transfer stat URL [--meta-only]` and `transfer tag get|put|delete URL`.

use crate::addr::Location;
use crate::bucket::{exit, Failure};
use crate::cp::parse_tags;
use crate::output::{human_bytes, OutputArgs};
use crate::remote::StoreArgs;
use crate::Usage;
use clap::{Args, Subcommand};
use serde_json::json;
use transfer_engine::ObjectRef;

/// The object a command addresses.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// oss://, s3:// or local://BUCKET/KEY.
    url: String,
    /// A specific version of the object (versioned buckets).
    #[arg(long)]
    version_id: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

impl Target {
    async fn open(&self) -> Result<(crate::remote::Opened, ObjectRef), Usage> {
        let (scheme, bucket, key) = match Location::parse(&self.url)? {
            Location::Remote { key, .. } if key.is_empty() || key.ends_with('/') => {
                return Err(Usage(format!("{}: name an object (oss://BUCKET/KEY), not a prefix", self.url)))
            }
            Location::Remote { scheme, bucket, key } => (scheme, bucket, key),
            Location::Path(_) => {
                return Err(Usage(format!("{}: name an object as oss://, s3:// or local://BUCKET/KEY", self.url)))
            }
        };
        let store = self.store.open_bucket(scheme, &bucket).await?;
        let mut obj = ObjectRef::new(bucket, key);
        if let Some(v) = &self.version_id {
            obj = obj.at_version(v.clone());
        }
        Ok((store, obj))
    }
}

/// Options of `transfer stat`.
#[derive(Debug, Args)]
pub(crate) struct StatArgs {
    #[command(flatten)]
    target: Target,
    /// Only the light facts (GetObjectMeta): size, ETag, last modified, CRC-64, version.
    #[arg(long)]
    meta_only: bool,
}

/// Options of `transfer tag`.
#[derive(Debug, Args)]
pub(crate) struct TagArgs {
    #[command(subcommand)]
    command: TagCommand,
}

#[derive(Debug, Subcommand)]
enum TagCommand {
    /// Print the object's tags.
    Get {
        #[command(flatten)]
        target: Target,
    },
    /// Replace the object's tags with these.
    Put {
        #[command(flatten)]
        target: Target,
        /// A tag (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Tags in header form: 'k1=v1&k2=v2' (percent-encode special characters).
        #[arg(long)]
        tagging: Option<String>,
    },
    /// Remove all of the object's tags.
    Delete {
        #[command(flatten)]
        target: Target,
    },
}

/// A request's error, naming the object.
fn failed(obj: &ObjectRef, e: transfer_engine::Error) -> Failure {
    Failure::Request(format!("{obj}: {}", crate::remote::explain(&e)))
}

/// Runs `transfer stat`.
pub(crate) async fn stat(args: StatArgs, out: OutputArgs) -> u8 {
    exit(
        async {
            let (store, obj) = args.target.open().await?;
            if args.meta_only {
                let m = store.objects.get_object_meta(&obj).await.map_err(|e| failed(&obj, e))?;
                let v = json!({
                    "bucket": obj.bucket, "key": obj.key, "size": m.size, "etag": m.etag,
                    "last_modified": rfc3339(m.last_modified), "last_access_time": m.last_access_time.map(rfc3339),
                    "version_id": m.version_id, "crc64": m.crc64.map(|c| c.to_string()),
                });
                print_facts(out, &v);
                return Ok(());
            }
            let h = store.objects.head_object(&obj).await.map_err(|e| failed(&obj, e))?;
            let standard: serde_json::Map<String, serde_json::Value> =
                h.metadata.standard().map(|(k, v)| (k.to_owned(), json!(v))).collect();
            let v = json!({
                "bucket": obj.bucket, "key": obj.key, "size": h.size, "etag": h.etag,
                "last_modified": rfc3339(h.last_modified),
                "crc64": h.crc64.map(|c| c.to_string()), "object_type": h.object_type.as_str(), "version_id": h.version_id,
                "tagging_count": h.tagging_count, "storage_class": h.metadata.storage_class.map(|c| c.as_str()),
                "headers": standard, "meta": h.metadata.user,
            });
            print_facts(out, &v);
            Ok(())
        }
        .await,
    )
}

/// A time in seconds since the epoch as RFC 3339 (`2026-12-07T01:17:00Z`).
pub(crate) fn rfc3339(secs: i64) -> String {
    let iso = transfer_engine::xml::iso8601(secs);
    iso.strip_suffix(".000Z").map_or(iso.clone(), |s| format!("{s}Z"))
}

/// Prints an object's facts as JSON, or as `name: value` lines.
fn print_facts(out: OutputArgs, v: &serde_json::Value) {
    if out.json {
        out!("{v}");
        return;
    }
    let obj = v.as_object().expect("facts are an object");
    for (name, value) in obj {
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::Object(m) if m.is_empty() => {}
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let prefix = if name == "meta" { "meta." } else { "" };
                    out!("{prefix}{k}: {}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
                }
            }
            serde_json::Value::String(s) => out!("{name}: {s}"),
            other if name == "size" => out!("{name}: {other} ({})", human_bytes(other.as_u64().unwrap_or(0))),
            other => out!("{name}: {other}"),
        }
    }
}

/// Runs `transfer tag`.
pub(crate) async fn tag(args: TagArgs, out: OutputArgs) -> u8 {
    exit(
        async {
            match args.command {
                TagCommand::Get { target } => {
                    let (store, obj) = target.open().await?;
                    let tags = store.objects.get_tagging(&obj).await.map_err(|e| failed(&obj, e))?;
                    if out.json {
                        let map: serde_json::Map<String, serde_json::Value> =
                            tags.iter().map(|t| (t.key.clone(), json!(t.value))).collect();
                        out!(
                            "{}",
                            json!({"bucket": obj.bucket, "key": obj.key, "version_id": obj.version_id, "tags": map})
                        );
                    } else {
                        // One tag a line in the tagging header's encoding: unambiguous whatever a key or value
                        // holds (`=`, `&`, spaces), and what --tagging takes back (join the lines with `&`).
                        let header = tags.to_header();
                        for pair in header.split('&').filter(|p| !p.is_empty()) {
                            out!("{pair}");
                        }
                    }
                }
                TagCommand::Put { target, tags, tagging } => {
                    let set = parse_tags(tagging.as_deref(), &tags)?;
                    if set.is_empty() {
                        return Err(Failure::Usage(
                            "tag put needs --tag KEY=VALUE or --tagging 'k=v&...' (to remove every tag: tag delete)"
                                .into(),
                        ));
                    }
                    let (store, obj) = target.open().await?;
                    store.objects.put_tagging(&obj, &set).await.map_err(|e| failed(&obj, e))?;
                    tracing::info!("{obj}: {} tags set", set.len());
                }
                TagCommand::Delete { target } => {
                    let (store, obj) = target.open().await?;
                    store.objects.delete_tagging(&obj).await.map_err(|e| failed(&obj, e))?;
                    tracing::info!("{obj}: tags removed");
                }
            }
            Ok(())
        }
        .await,
    )
}
