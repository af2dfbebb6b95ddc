//! Integration tests of the `transfer` workspace. One test binary (ripgrep's pattern); each module is one area.

/// Shared helpers: start `transfer serve` on 127.0.0.1:0 and build clients for it.
mod util;

/// `transfer serve` as a process: the announced address, signals, missing credentials.
mod serve;

/// The flows of the two seed documents, through our own OSS client against `transfer serve`.
mod seed_flows;

/// Bad input: each refusal gets OSS's error and changes nothing on disk.
mod bad_input;

/// Faults injected between client and server by a proxy; requests retried on their own still succeed.
mod faults;

/// The resumable engine through its library API against `transfer serve`.
mod engine;

/// The server-side copy driver: metadata and tags kept or replaced on both paths, versions, resume, a changed source.
mod copy;

/// Choosing what moves: the overwrite policy, include/exclude filters and dry runs.
mod select;

/// The `transfer cp` command line through the built binary.
mod cli;

/// The other commands through the built binary: resume after a kill, jobs, cleanup, stat, tag, profiles, output.
mod cli_ops;

/// The everyday commands (ls, du, rm, cat, mb, rb) through the built binary against every target.
mod cli_bucket;

/// The S3 dialect client against moto's S3 server where only moto can tell (the rest is in `conformance`).
mod s3_moto;

/// `transfer serve` answering the S3 dialect (AWS SigV4, `x-amz-*`) on the port that serves OSS.
mod serve_s3;

/// s3:// addresses through the built binary, against `transfer serve` (S3 dialect) and moto.
mod cli_s3;

/// Downloads through the built binary: restores byte-identical with mtimes, resume after a kill, unsafe keys.
mod cli_download;

/// `transfer sync` through the built binary: what a re-run sends, deletions and their guards, resume.
mod cli_sync;

/// `transfer cp - URL`: a stream on stdin into one object, against every target.
mod cli_stream;

/// Jobs that share the network: one pacer per endpoint against throttling, `--tpslimit`.
mod cli_pacing;

/// `transfer shard`: plan, run as an Indexed Job's processes would (twins, a kill), merge.
mod cli_shard;

/// `deploy/slurm/transfer-migration.sh` on a one-node Slurm cluster (`scripts/slurm`): plan, array, merge.
mod shard_slurm;

/// `deploy/kubernetes/`: the manifests parse and hold the Indexed Job contract `transfer shard` relies on.
mod deploy;

/// Listings of more than two pages, with keys that need encoding, through copy, download and sync on every target.
mod listing_scale;

/// SIGKILL in the windows after Complete: before the tags, before the ledger's record.
mod cli_crash;

/// Copies between two stores through the built binary: metadata, tags, and resume after a kill.
mod cli_relay;

/// The README's commands as written: the main job, serve, and the migration walk-through.
mod readme;

/// SIGKILLs at random moments of a multipart upload and copy, with and without the ledger's log: what is sent
/// again is at most what was in flight.
mod soak;
