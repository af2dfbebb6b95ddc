//! The part planner: how an object is cut into parts before any byte moves.
//!
//! # What it decides
//! [`plan_object`] (uploads) and [`plan_copy`] (server-side copies) turn an object size, the store's
//! [`Capabilities`] and the user's [`PlanOptions`] into an [`ObjectPlan`]: either one request
//! ([`Method::Single`]: PutObject, or CopyObject for a copy) or a multipart upload with a fixed part size
//! ([`Method::Multipart`]: UploadPart, or UploadPartCopy). Both go through one planning function; only the
//! threshold, the single-request limit, the preferred part size and the memory constraint differ.
//!
//! # Guarantees
//! For every plan that is returned:
//! - the parts cover `[0, size)` exactly, in order, with no gap and no overlap, numbered `1..=n`;
//! - `n <= caps.max_parts`;
//! - every part but the last is at least `caps.min_part_size` and at most `caps.max_part_size` (the last one is
//!   at most `max_part_size` too and may be shorter than the minimum, which every store allows);
//! - a single PutObject never exceeds `caps.max_put_size`, a single CopyObject never exceeds `caps.max_copy_size`;
//!   a zero-byte object is one empty part, never multipart;
//! - a plan only depends on its inputs, so a resumed transfer that plans again with the same inputs gets the same
//!   parts (part `k` is always [`ObjectPlan::part`]`(k)`).
//!
//! Impossible work is refused with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) **before any byte
//! moves**: an object larger than `max_parts * max_part_size`, and nonsensical options (a part size of 0, a
//! memory budget smaller than one part, no request allowed in flight). The message names the size or the option
//! and the limit.
//!
//! # How the part size is chosen
//! 1. Start from the preferred size ([`PlanOptions::preferred_part_size`], or
//!    [`PlanOptions::copy_part_size`] for copies), raised to `min_part_size` and capped at `max_part_size`.
//! 2. Double it, as oss2's [`determine_part_size`] does, until the object fits in `max_parts` parts — with the
//!    dialect's limits in place of oss2's constants (10,000 parts, 100 KiB) — and cap it at `max_part_size`.
//! 3. Uploads only: **one part is buffered in memory per in-flight request** (a part must be re-sent whole when
//!    a request fails, and its CRC-64 is computed before it is sent), so `part_size * max_in_flight` is what an
//!    upload holds. When that exceeds [`PlanOptions::memory_budget`], the part size shrinks to
//!    `memory_budget / max_in_flight`, but never below the smallest size that still fits the object in
//!    `max_parts` parts (and never below `min_part_size`). When even that smallest size does not fit the budget
//!    `max_in_flight` times, the plan keeps it and the scheduler runs fewer parts at once:
//!    [`ObjectPlan::buffered_in_flight`] says how many.
//!
//! Copies hold no bytes (the store copies server-side), so they have no memory constraint.
//!
//! # When a copy is one CopyObject
//! A copy goes multipart from the same size an upload does ([`PlanOptions::multipart_threshold`], 64 MiB),
//! unless [`PlanOptions::copy_threshold`] says otherwise, and always above the largest object the destination's
//! CopyObject takes ([`Capabilities::max_copy_size`]: OSS 1 GiB, S3 5 GiB; a threshold above it is lowered to
//! it, [`PlanOptions::copy_threshold_for`]). One CopyObject is a single request the server works through alone;
//! UploadPartCopy parts run `max_in_flight` at once and resume part by part: on Garage a 1 GiB copy took 4.5 s
//! as one CopyObject and 2.1 s as 64 MiB parts (`benches/RESULTS.md` has the peers' figures). The AWS CLI
//! (8 MiB) and ossutil (100 MiB) switch to UploadPartCopy early too.

use crate::error::{Error, Result};
use crate::store::Capabilities;
use std::fmt;

#[cfg(test)]
mod tests;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// oss2's default part size (`defaults.part_size`), used by [`determine_part_size`] when `preferred` is 0.
pub const OSS2_PART_SIZE: u64 = 10 * MIB;
/// oss2's largest part count (`defaults.max_part_count`).
pub const OSS2_MAX_PART_COUNT: u64 = 10_000;
/// oss2's smallest part size (`defaults.min_part_size`).
pub const OSS2_MIN_PART_SIZE: u64 = 100 * KIB;

/// oss2's `determine_part_size(total, preferred)`, exactly: if `total < preferred` the answer is `total`;
/// otherwise `preferred` is doubled while `preferred * 10_000 < total` or `preferred < 100 KiB`.
///
/// As in oss2, a `preferred` of 0 means the default, 10 MiB. Examples (preferred 10 MiB): 10 GiB → 10 MiB,
/// 100 GiB → 20 MiB, 1 TiB → 160 MiB, 48.8 TiB → 5120 MiB. The result can exceed OSS's 5 GiB part limit for
/// objects OSS cannot store; [`plan_object`] applies the limits.
pub fn determine_part_size(total: u64, preferred: u64) -> u64 {
    let preferred = if preferred == 0 { OSS2_PART_SIZE } else { preferred };
    grow_part_size(total, preferred, OSS2_MAX_PART_COUNT, OSS2_MIN_PART_SIZE)
}

/// oss2's doubling with the part-count and minimum-size limits as parameters. Saturates instead of overflowing.
fn grow_part_size(total: u64, preferred: u64, max_parts: u64, min_part_size: u64) -> u64 {
    let mut p = preferred.max(1);
    if total < p {
        return total;
    }
    while p.saturating_mul(max_parts) < total || p < min_part_size {
        p = p.saturating_mul(2);
    }
    p
}

/// What the planner may choose. [`Default`] gives the values documented on each field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanOptions {
    /// Part size to start from for uploads; default 8 MiB. Raised to the store's minimum part size, doubled when
    /// the object would need too many parts, shrunk to fit [`memory_budget`](Self::memory_budget).
    pub preferred_part_size: u64,
    /// Uploads of at least this many bytes go multipart; default 64 MiB. Smaller ones are one PutObject (unless
    /// larger than the store's single-request limit).
    pub multipart_threshold: u64,
    /// Bytes an upload may hold in part buffers (one part per in-flight request); default 256 MiB.
    pub memory_budget: u64,
    /// Requests of one object in flight at once; default 8.
    pub max_in_flight: usize,
    /// Copies of at least this many bytes use UploadPartCopy; smaller ones are one CopyObject. Default `None`: the
    /// [`multipart_threshold`](Self::multipart_threshold), as for uploads. Either way it is lowered to the
    /// destination store's [`Capabilities::max_copy_size`]: an object larger than one CopyObject takes always
    /// goes as UploadPartCopy ([`copy_threshold_for`](Self::copy_threshold_for) gives the threshold that applies
    /// to a store).
    pub copy_threshold: Option<u64>,
    /// Part size to start from for UploadPartCopy; default 64 MiB.
    pub copy_part_size: u64,
}

setters!(PlanOptions {
    preferred_part_size: u64,
    multipart_threshold: u64,
    memory_budget: u64,
    max_in_flight: usize,
    copy_threshold: Option<u64>,
    copy_part_size: u64,
});

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            preferred_part_size: 8 * MIB,
            multipart_threshold: 64 * MIB,
            memory_budget: 256 * MIB,
            max_in_flight: 8,
            copy_threshold: None,
            copy_part_size: 64 * MIB,
        }
    }
}

impl PlanOptions {
    /// The copy threshold that applies to a store with `caps`: copies of at least this many bytes use
    /// UploadPartCopy. It is [`copy_threshold`](Self::copy_threshold) (or, unset, the
    /// [`multipart_threshold`](Self::multipart_threshold)) lowered to one byte more than `caps.max_copy_size`. So
    /// `copy_threshold_for(caps) < t` says that the store's CopyObject limit overrides the threshold `t`.
    pub fn copy_threshold_for(&self, caps: &Capabilities) -> u64 {
        let limit = caps.max_copy_size.saturating_add(1);
        self.copy_threshold.unwrap_or(self.multipart_threshold).min(limit)
    }
}

/// How an object is transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// One request (PutObject, or CopyObject for a copy) carrying the whole object.
    Single,
    /// A multipart upload (UploadPart, or UploadPartCopy): `parts` parts of `part_size` bytes, the last one
    /// possibly shorter.
    Multipart {
        /// Size of every part but the last.
        part_size: u64,
        /// Number of parts, at least 1.
        parts: u32,
    },
}

/// One part of a plan: bytes `offset..offset + len` of the object, sent as part `number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Part {
    /// Part number, from 1.
    pub number: u32,
    /// First byte of the part within the object.
    pub offset: u64,
    /// Length in bytes (0 only for the single part of an empty object).
    pub len: u64,
}

impl Part {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The plan for one object. See the [module docs](self) for what it guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectPlan {
    /// Object size in bytes.
    pub size: u64,
    /// Single request or multipart.
    pub method: Method,
}

impl ObjectPlan {
    /// Number of parts (1 for [`Method::Single`]).
    pub fn part_count(&self) -> u32 {
        match self.method {
            Method::Single => 1,
            Method::Multipart { parts, .. } => parts,
        }
    }

    /// Size of every part but the last (the whole size for [`Method::Single`]).
    pub fn part_size(&self) -> u64 {
        match self.method {
            Method::Single => self.size,
            Method::Multipart { part_size, .. } => part_size,
        }
    }

    /// Part `number` (1-based), or `None` outside `1..=part_count()`.
    pub fn part(&self, number: u32) -> Option<Part> {
        let n = self.part_count();
        if number == 0 || number > n {
            return None;
        }
        let offset = u64::from(number - 1) * self.part_size();
        let len = if number == n { self.size - offset } else { self.part_size() };
        Some(Part { number, offset, len })
    }

    /// Every part, in order.
    pub fn parts(&self) -> impl Iterator<Item = Part> {
        let plan = *self;
        (1..=plan.part_count()).filter_map(move |k| plan.part(k))
    }

    /// How many parts of this plan an upload may have in flight at once when each holds its part in memory:
    /// `opts.max_in_flight`, lowered to what `opts.memory_budget` can buffer, and at least 1. It is below
    /// `max_in_flight` only when the object is so large that the smallest part size fitting `max_parts` does not
    /// fit the budget `max_in_flight` times.
    pub fn buffered_in_flight(&self, opts: &PlanOptions) -> usize {
        let per_part = self.part_size().max(1);
        let fits = usize::try_from(opts.memory_budget / per_part).unwrap_or(usize::MAX);
        fits.min(opts.max_in_flight).max(1)
    }
}

/// Plans the upload of an object of `size` bytes to a store with `caps`.
///
/// Below [`PlanOptions::multipart_threshold`] (and within `caps.max_put_size`) the object is one PutObject;
/// otherwise it is a multipart upload whose part size fits the store's limits and, when possible, the memory
/// budget. Errors, before anything is sent: the object is larger than `max_parts * max_part_size`, or
/// `opts` has a part size of 0, a memory budget below `caps.min_part_size`, or `max_in_flight` of 0.
pub fn plan_object(size: u64, caps: &Capabilities, opts: &PlanOptions) -> Result<ObjectPlan> {
    plan(size, caps, &Flavor::upload(caps, opts))
}

/// Plans a server-side copy of an object of `size` bytes within a store with `caps`.
///
/// An object of at most `caps.max_copy_size` bytes, and below the copy threshold (the multipart threshold
/// unless [`PlanOptions::copy_threshold`] is set), is one CopyObject ([`PlanOptions::copy_threshold_for`]);
/// otherwise UploadPartCopy parts sized from
/// [`PlanOptions::copy_part_size`]. There is no memory constraint: the bytes
/// never pass through this process. Errors as [`plan_object`], except that the memory budget is not checked.
pub fn plan_copy(size: u64, caps: &Capabilities, opts: &PlanOptions) -> Result<ObjectPlan> {
    plan(
        size,
        caps,
        &Flavor {
            operation: "copy",
            threshold: opts.copy_threshold_for(caps),
            max_single: caps.max_copy_size,
            preferred: opts.copy_part_size,
            preferred_option: "copy_part_size",
            max_in_flight: opts.max_in_flight,
            memory_budget: None,
        },
    )
}

/// How often the part size of a stream of unknown length doubles: every `max_parts / STREAM_DOUBLING_STEPS`
/// parts (every 500 of OSS's and S3's 10,000).
const STREAM_DOUBLING_STEPS: u32 = 20;

/// The parts of a stream: bytes whose length is known only once they end (`tar | zstd` on a pipe), or known
/// ahead by the caller. See [`plan_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamPlan {
    /// The caller said how long the stream is: the [plan of a file](plan_object) of that size, and a stream
    /// of another length fails before anything is published.
    Sized(ObjectPlan),
    /// The length is unknown: part `k` (from 1) is `first` bytes doubled every `every` parts, at most
    /// `largest`. The stream is one PutObject when it ends within the first part.
    Growing {
        /// The first parts' size: the preferred part size, within the store's limits.
        first: u64,
        /// The largest part: half the memory budget (one part in flight while the next is read), within the
        /// store's limits and never below `first`.
        largest: u64,
        /// Parts per doubling.
        every: u32,
        /// The store's part limit.
        max_parts: u32,
    },
}

impl StreamPlan {
    /// The size of part `number` (from 1): the bytes read for it before it is sent (fewer only for the last).
    /// `None` past the last part the plan allows.
    pub fn part_len(&self, number: u32) -> Option<u64> {
        match *self {
            StreamPlan::Sized(plan) => plan.part(number).map(|p| p.len),
            StreamPlan::Growing { first, largest, every, max_parts } => {
                if number == 0 || number > max_parts {
                    return None;
                }
                let doublings = (number - 1) / every;
                Some(first.checked_shl(doublings).unwrap_or(u64::MAX).min(largest))
            }
        }
    }

    /// The largest stream this plan takes: the sum of every part it allows (for a sized plan, its size).
    pub fn capacity(&self) -> u64 {
        match *self {
            StreamPlan::Sized(plan) => plan.size,
            StreamPlan::Growing { max_parts, .. } => {
                (1..=max_parts).map(|k| self.part_len(k).unwrap_or(0)).fold(0u64, u64::saturating_add)
            }
        }
    }
}

/// Plans the upload of a stream to a store with `caps`: with `expected` (the caller knows the length), the plan
/// of a file of that size ([`plan_object`]); else parts that grow as the stream goes, so the store's part limit
/// does not cap it at `max_parts` times the first part's size as a fixed part size would (rclone `rcat`'s
/// 5 MiB parts end a stream at 48.8 GiB, `aws s3 cp -`'s 8 MiB at about 80 GiB). With the default options
/// (8 MiB parts, a 256 MiB budget) parts double every 500 from 8 MiB to 128 MiB: 1,084,000 MiB (1.03 TiB) in
/// 10,000 parts; a larger [`PlanOptions::memory_budget`] takes larger streams. Errors as [`plan_object`].
pub fn plan_stream(expected: Option<u64>, caps: &Capabilities, opts: &PlanOptions) -> Result<StreamPlan> {
    if let Some(size) = expected {
        return plan_object(size, caps, opts).map(StreamPlan::Sized);
    }
    check_capabilities(caps)?;
    check_options(caps, &Flavor::upload(caps, opts))?;
    let first = opts.preferred_part_size.clamp(caps.min_part_size, caps.max_part_size.min(caps.max_put_size));
    let largest = (opts.memory_budget / 2).clamp(first, caps.max_part_size);
    let every = (caps.max_parts / STREAM_DOUBLING_STEPS).max(1);
    Ok(StreamPlan::Growing { first, largest, every, max_parts: caps.max_parts })
}

/// What distinguishes one kind of transfer from another for the planner.
struct Flavor {
    /// "upload" or "copy", for messages.
    operation: &'static str,
    /// Sizes at or above this go multipart.
    threshold: u64,
    /// The largest object one request (PutObject, CopyObject) takes; larger ones go multipart.
    max_single: u64,
    /// Part size to start from.
    preferred: u64,
    /// The `PlanOptions` field `preferred` came from, for messages.
    preferred_option: &'static str,
    /// Requests in flight at once.
    max_in_flight: usize,
    /// `Some(budget)` when every in-flight request buffers its part in memory.
    memory_budget: Option<u64>,
}

impl Flavor {
    /// An upload's: bytes this process holds, one part per request in flight.
    fn upload(caps: &Capabilities, opts: &PlanOptions) -> Flavor {
        Flavor {
            operation: "upload",
            threshold: opts.multipart_threshold,
            max_single: caps.max_put_size,
            preferred: opts.preferred_part_size,
            preferred_option: "preferred_part_size",
            max_in_flight: opts.max_in_flight,
            memory_budget: Some(opts.memory_budget),
        }
    }
}

/// The one planning function behind [`plan_object`] and [`plan_copy`].
fn plan(size: u64, caps: &Capabilities, s: &Flavor) -> Result<ObjectPlan> {
    check_capabilities(caps)?;
    check_options(caps, s)?;

    let max_parts = u64::from(caps.max_parts);
    let capacity = max_parts.saturating_mul(caps.max_part_size);
    if size > capacity {
        return Err(Error::invalid(format!(
            "cannot {op} an object of {size}: the store holds at most {capacity} per object \
             ({max_parts} parts of at most {part}); nothing was sent",
            op = s.operation,
            size = Bytes(size),
            capacity = Bytes(capacity),
            part = Bytes(caps.max_part_size),
        ))
        .with_context("size", size));
    }

    if size == 0 || (size < s.threshold && size <= s.max_single) {
        return Ok(ObjectPlan { size, method: Method::Single });
    }

    // The smallest part size that fits the object in max_parts parts (and is allowed as a non-last part).
    let smallest = size.div_ceil(max_parts).max(caps.min_part_size);
    let preferred = s.preferred.clamp(caps.min_part_size, caps.max_part_size);
    let mut part_size = grow_part_size(size, preferred, max_parts, caps.min_part_size).min(caps.max_part_size);

    if let Some(budget) = s.memory_budget {
        let in_flight = s.max_in_flight as u64;
        if part_size.saturating_mul(in_flight) > budget {
            // Shrink to the budget, but not below what fits max_parts; if the budget is too small for even that,
            // keep `smallest` and let the scheduler run fewer parts at once (ObjectPlan::buffered_in_flight).
            part_size = part_size.min((budget / in_flight).max(smallest));
        }
    }

    let part_size = part_size.min(size);
    let parts = size.div_ceil(part_size);
    debug_assert!(parts <= max_parts);
    let parts = u32::try_from(parts).map_err(|_| Error::invalid("part count overflows u32"))?;
    Ok(ObjectPlan { size, method: Method::Multipart { part_size, parts } })
}

fn check_capabilities(caps: &Capabilities) -> Result<()> {
    if caps.max_parts == 0 || caps.min_part_size == 0 || caps.min_part_size > caps.max_part_size {
        return Err(Error::invalid(format!(
            "store capabilities are inconsistent: max_parts {}, min_part_size {}, max_part_size {}; \
             a store needs at least one part and 0 < min_part_size <= max_part_size",
            caps.max_parts, caps.min_part_size, caps.max_part_size
        )));
    }
    Ok(())
}

fn check_options(caps: &Capabilities, s: &Flavor) -> Result<()> {
    if s.preferred == 0 {
        return Err(Error::invalid(format!(
            "PlanOptions::{} is 0: set it to a positive size (anything below the store's minimum part size, {}, \
             is raised to it)",
            s.preferred_option,
            Bytes(caps.min_part_size)
        )));
    }
    if s.max_in_flight == 0 {
        return Err(Error::invalid(
            "PlanOptions::max_in_flight is 0: nothing could ever be sent; set it to at least 1",
        ));
    }
    if let Some(budget) = s.memory_budget {
        if budget < caps.min_part_size {
            return Err(Error::invalid(format!(
                "PlanOptions::memory_budget is {}, smaller than one part (the store's minimum part size is {}): \
                 raise memory_budget to at least {} (one part is buffered per in-flight request)",
                Bytes(budget),
                Bytes(caps.min_part_size),
                caps.min_part_size
            )));
        }
    }
    Ok(())
}

/// A byte count for messages: `5368709120 bytes (5 GiB)`.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        write!(f, "{n} bytes")?;
        const UNITS: [(&str, u64); 5] =
            [("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        if let Some((name, unit)) = UNITS.iter().find(|(_, u)| n >= *u) {
            if n.is_multiple_of(*unit) {
                write!(f, " ({} {name})", n / unit)?;
            } else {
                write!(f, " ({:.1} {name})", n as f64 / *unit as f64)?;
            }
        }
        Ok(())
    }
}
