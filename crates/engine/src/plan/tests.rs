use super::*;
use crate::ErrorKind;
use proptest::prelude::*;

const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;
const OSS: Capabilities = Capabilities::OSS;

fn caps(max_parts: u32, min_part_size: u64, max_part_size: u64, max_put_size: u64) -> Capabilities {
    Capabilities { max_parts, min_part_size, max_part_size, max_put_size, ..Capabilities::OSS }
}

fn refusal(r: Result<ObjectPlan>) -> String {
    let e = r.expect_err("the plan should be refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(!e.is_retryable());
    e.to_string()
}

// ---- determine_part_size: the reference table (oss-api.md 8.1, 8.4) and the seed's calls ----

#[test]
fn determine_part_size_reproduces_the_reference_table() {
    let p = 10 * MIB;
    assert_eq!(determine_part_size(150 * MIB, p), 10 * MIB);
    assert_eq!(determine_part_size(GIB, p), 10 * MIB);
    assert_eq!(determine_part_size(10 * GIB, p), 10 * MIB);
    assert_eq!((10 * GIB).div_ceil(determine_part_size(10 * GIB, p)), 1024);
    assert_eq!(determine_part_size(100 * GIB, p), 20 * MIB);
    assert_eq!((100 * GIB).div_ceil(20 * MIB), 5120);
    assert_eq!(determine_part_size(TIB, p), 160 * MIB);
    assert_eq!(TIB.div_ceil(160 * MIB), 6554);
    // 48.8 TiB, as oss2's `int(48.8 * 1024**4)`.
    let big = (488 * TIB) / 10;
    assert_eq!(determine_part_size(big, p), 5120 * MIB);
    assert_eq!(big.div_ceil(5120 * MIB), 9995);
    // preferred 0 means oss2's default, 10 MiB (`if not preferred_size`).
    assert_eq!(determine_part_size(TIB, 0), 160 * MIB);
}

#[test]
fn determine_part_size_with_the_seeds_preferred_size() {
    // The seed calls determine_part_size(total_size, preferred_size=100 * 1024).
    let p = 100 * KIB;
    assert_eq!(determine_part_size(0, p), 0);
    assert_eq!(determine_part_size(1, p), 1);
    assert_eq!(determine_part_size(100 * KIB - 1, p), 100 * KIB - 1);
    assert_eq!(determine_part_size(100 * KIB, p), 100 * KIB);
    assert_eq!(determine_part_size(10 * MIB, p), 100 * KIB);
    // 100 KiB * 10,000 = 1,024,000,000 bytes: up to that, 100 KiB parts.
    assert_eq!(determine_part_size(1_024_000_000, p), 100 * KIB);
    assert_eq!(determine_part_size(1_024_000_001, p), 200 * KIB);
    assert_eq!(determine_part_size(GIB, p), 200 * KIB);
    assert_eq!(determine_part_size(10 * GIB, p), 1600 * KIB);
    assert_eq!(determine_part_size(TIB, p), 200 * MIB); // 100 KiB x 2048
}

#[test]
fn determine_part_size_raises_small_preferences_to_100_kib() {
    assert_eq!(determine_part_size(MIB, 1), 128 * KIB); // 1, 2, 4, ..., 131072
    assert_eq!(determine_part_size(MIB, 3 * KIB), 192 * KIB);
    assert_eq!(determine_part_size(10, 100), 10);
}

// ---- plan_object / plan_copy: examples ----

#[test]
fn small_objects_are_single_requests() {
    let o = PlanOptions::default();
    for size in [0, 1, 5 * MIB, 64 * MIB - 1] {
        let plan = plan_object(size, &OSS, &o).unwrap();
        assert_eq!(plan.method, Method::Single, "{size}");
        assert_eq!(plan.parts().collect::<Vec<_>>(), vec![Part { number: 1, offset: 0, len: size }]);
    }
}

#[test]
fn zero_bytes_is_single_even_with_a_zero_threshold() {
    let o = PlanOptions { multipart_threshold: 0, copy_threshold: Some(0), ..PlanOptions::default() };
    for plan in [plan_object(0, &OSS, &o).unwrap(), plan_copy(0, &OSS, &o).unwrap()] {
        assert_eq!(plan.method, Method::Single);
        assert_eq!(plan.part(1), Some(Part { number: 1, offset: 0, len: 0 }));
        assert_eq!(plan.part(2), None);
        assert_eq!(plan.parts().count(), 1);
    }
}

#[test]
fn threshold_is_inclusive() {
    let o = PlanOptions::default();
    let plan = plan_object(64 * MIB, &OSS, &o).unwrap();
    assert_eq!(plan.method, Method::Multipart { part_size: 8 * MIB, parts: 8 });
    let last = plan.part(8).unwrap();
    assert_eq!((last.offset, last.len), (56 * MIB, 8 * MIB));
    assert_eq!(plan.part(0), None);
    assert_eq!(plan.part(9), None);
}

#[test]
fn objects_over_the_single_request_limit_go_multipart_below_the_threshold() {
    let o = PlanOptions { multipart_threshold: u64::MAX, ..PlanOptions::default() };
    let plan = plan_object(5 * GIB + 1, &OSS, &o).unwrap();
    assert!(matches!(plan.method, Method::Multipart { .. }));
    assert_eq!(plan_object(5 * GIB, &OSS, &o).unwrap().method, Method::Single);
}

#[test]
fn part_size_doubles_with_the_store_limits() {
    // Budget large enough not to interfere: oss2's doubling from 8 MiB with OSS's 10,000 parts.
    let o = PlanOptions { memory_budget: u64::MAX, ..PlanOptions::default() };
    let ps = |size| plan_object(size, &OSS, &o).unwrap().part_size();
    assert_eq!(ps(10 * GIB), 8 * MIB);
    assert_eq!(ps(100 * GIB), 16 * MIB);
    assert_eq!(ps(TIB), 128 * MIB);
    // Doubling would give 8 GiB; capped at the 5 GiB part limit, which still fits.
    let big = (488 * TIB) / 10;
    assert_eq!(ps(big), 5 * GIB);
    assert_eq!(plan_object(big, &OSS, &o).unwrap().part_count(), 9995);
}

#[test]
fn the_store_limits_replace_oss2s_constants() {
    let c = caps(100, MIB, 64 * MIB, 32 * MIB);
    let o = PlanOptions { preferred_part_size: KIB, multipart_threshold: 0, ..PlanOptions::default() };
    // Raised to the 1 MiB minimum, then doubled until 100 parts suffice.
    let plan = plan_object(1000 * MIB, &c, &o).unwrap();
    assert_eq!(plan.method, Method::Multipart { part_size: 16 * MIB, parts: 63 });
    let plan = plan_object(10 * MIB, &c, &o).unwrap();
    assert_eq!(plan.method, Method::Multipart { part_size: MIB, parts: 10 });
}

#[test]
fn small_preferred_part_size_is_raised_to_the_minimum() {
    let o = PlanOptions { preferred_part_size: 1, ..PlanOptions::default() };
    let plan = plan_object(100 * MIB, &OSS, &o).unwrap();
    assert_eq!(plan.part_size(), 100 * KIB);
}

#[test]
fn memory_budget_shrinks_parts() {
    // 1 TiB would get 128 MiB parts; 8 in flight of 128 MiB is 1 GiB > 256 MiB. Smallest fitting 10,000 parts
    // is ceil(1 TiB / 10,000) = 109,951,163 bytes > 32 MiB, so the plan keeps that and runs fewer at once.
    let o = PlanOptions::default();
    let plan = plan_object(TIB, &OSS, &o).unwrap();
    assert_eq!(plan.part_size(), TIB.div_ceil(10_000));
    assert_eq!(plan.part_count(), 10_000);
    assert_eq!(plan.buffered_in_flight(&o), 2);

    // Preferred 64 MiB on 1 GiB: 8 x 64 MiB = 512 MiB > 256 MiB budget, so 32 MiB parts and all 8 in flight.
    let o = PlanOptions { preferred_part_size: 64 * MIB, ..PlanOptions::default() };
    let plan = plan_object(GIB, &OSS, &o).unwrap();
    assert_eq!(plan.method, Method::Multipart { part_size: 32 * MIB, parts: 32 });
    assert_eq!(plan.buffered_in_flight(&o), 8);
}

#[test]
fn copies_use_their_own_threshold_and_part_size_and_no_memory_budget() {
    let o = PlanOptions { copy_threshold: Some(GIB), memory_budget: MIB, ..PlanOptions::default() };
    assert_eq!(plan_copy(GIB - 1, &OSS, &o).unwrap().method, Method::Single);
    assert_eq!(plan_copy(GIB, &OSS, &o).unwrap().method, Method::Multipart { part_size: 64 * MIB, parts: 16 });
    assert_eq!(plan_copy(TIB, &OSS, &o).unwrap().part_size(), 128 * MIB);
    // The memory budget is irrelevant to copies, even a nonsensical one.
    let o = PlanOptions { memory_budget: 0, ..PlanOptions::default() };
    assert!(plan_copy(TIB, &OSS, &o).is_ok());
}

#[test]
fn without_a_copy_threshold_copies_go_multipart_from_the_upload_threshold_within_the_stores_limit() {
    let o = PlanOptions::default();
    assert_eq!((o.copy_threshold, o.multipart_threshold), (None, 64 * MIB));
    let s3 = Capabilities::S3;
    assert_eq!((OSS.max_copy_size, s3.max_copy_size), (GIB, 5 * GIB));
    assert_eq!((o.copy_threshold_for(&OSS), o.copy_threshold_for(&s3)), (64 * MIB, 64 * MIB));
    // One CopyObject below 64 MiB, UploadPartCopy in 64 MiB parts from there, on both dialects.
    for caps in [&OSS, &s3] {
        assert_eq!(plan_copy(64 * MIB - 1, caps, &o).unwrap().method, Method::Single);
        assert_eq!(plan_copy(GIB, caps, &o).unwrap().method, Method::Multipart { part_size: 64 * MIB, parts: 16 });
    }
    // The upload threshold moves the copy one too.
    let low = PlanOptions { multipart_threshold: 8 * MIB, ..PlanOptions::default() };
    assert!(matches!(plan_copy(8 * MIB, &s3, &low).unwrap().method, Method::Multipart { .. }));
    assert_eq!(plan_copy(8 * MIB - 1, &s3, &low).unwrap().method, Method::Single);
    // The store's CopyObject limit caps it: a store declaring 300 KiB copies a 300 KiB + 1 object in parts.
    let tiny = Capabilities { max_copy_size: 300 * KIB, ..Capabilities::OSS };
    assert_eq!(o.copy_threshold_for(&tiny), 300 * KIB + 1);
    assert_eq!(plan_copy(300 * KIB, &tiny, &o).unwrap().method, Method::Single);
    assert_eq!(plan_copy(300 * KIB + 1, &tiny, &o).unwrap().part_count(), 1);
    assert!(matches!(plan_copy(300 * KIB + 1, &tiny, &o).unwrap().method, Method::Multipart { .. }));
    // Whatever the store declares, uploads keep their own threshold and limit.
    assert_eq!(plan_object(MIB, &tiny, &o).unwrap().method, Method::Single);
    // A store without CopyObject at all still copies an empty object with one request.
    let none = Capabilities { max_copy_size: 0, ..Capabilities::OSS };
    assert_eq!(plan_copy(0, &none, &o).unwrap().method, Method::Single);
    assert!(matches!(plan_copy(1, &none, &o).unwrap().method, Method::Multipart { parts: 1, .. }));
}

#[test]
fn an_explicit_copy_threshold_wins_below_the_stores_limit_and_is_lowered_to_it_above() {
    let s3 = Capabilities::S3;
    let o = PlanOptions { copy_threshold: Some(8 * MIB), copy_part_size: 8 * MIB, ..PlanOptions::default() };
    assert_eq!(o.copy_threshold_for(&s3), 8 * MIB);
    assert_eq!(plan_copy(8 * MIB - 1, &s3, &o).unwrap().method, Method::Single);
    assert_eq!(plan_copy(GIB, &s3, &o).unwrap().method, Method::Multipart { part_size: 8 * MIB, parts: 128 });
    // 4 GiB: within S3's limit, above OSS's (lowered to it there).
    let o = PlanOptions { copy_threshold: Some(4 * GIB), ..PlanOptions::default() };
    assert_eq!((o.copy_threshold_for(&s3), o.copy_threshold_for(&OSS)), (4 * GIB, GIB + 1));
    assert_eq!(plan_copy(2 * GIB, &s3, &o).unwrap().method, Method::Single);
    assert!(matches!(plan_copy(4 * GIB, &s3, &o).unwrap().method, Method::Multipart { .. }));
    assert!(matches!(plan_copy(2 * GIB, &OSS, &o).unwrap().method, Method::Multipart { .. }));
    assert_eq!(plan_copy(GIB, &OSS, &o).unwrap().method, Method::Single);
    // Even the largest threshold never makes a CopyObject the store refuses.
    let o = PlanOptions { copy_threshold: Some(u64::MAX), ..PlanOptions::default() };
    assert_eq!(o.copy_threshold_for(&s3), 5 * GIB + 1);
    assert!(matches!(plan_copy(5 * GIB + 1, &s3, &o).unwrap().method, Method::Multipart { .. }));
    let unlimited = Capabilities { max_copy_size: u64::MAX, ..Capabilities::S3 };
    assert_eq!(o.copy_threshold_for(&unlimited), u64::MAX);
    assert_eq!(PlanOptions::default().copy_threshold_for(&unlimited), 64 * MIB);
}

// ---- refusals ----

#[test]
fn refuses_objects_the_store_cannot_hold() {
    let o = PlanOptions::default();
    let limit = 10_000 * 5 * GIB;
    assert!(plan_object(limit, &OSS, &o).is_ok());
    let msg = refusal(plan_object(limit + 1, &OSS, &o));
    assert!(msg.contains(&(limit + 1).to_string()), "{msg}");
    assert!(msg.contains(&limit.to_string()) && msg.contains("10000 parts"), "{msg}");
    assert!(msg.contains("upload"), "{msg}");
    let msg = refusal(plan_copy(60 * TIB, &OSS, &o));
    assert!(msg.contains(&(60 * TIB).to_string()) && msg.contains("copy"), "{msg}");
}

#[test]
fn refuses_a_zero_part_size() {
    let o = PlanOptions { preferred_part_size: 0, ..PlanOptions::default() };
    let msg = refusal(plan_object(GIB, &OSS, &o));
    assert!(msg.contains("preferred_part_size") && msg.contains("positive"), "{msg}");
    // Refused even when the object would be a single request: the options are wrong, not the object.
    refusal(plan_object(1, &OSS, &o));
    let o = PlanOptions { copy_part_size: 0, ..PlanOptions::default() };
    let msg = refusal(plan_copy(GIB, &OSS, &o));
    assert!(msg.contains("copy_part_size"), "{msg}");
}

#[test]
fn refuses_a_memory_budget_below_one_part() {
    let o = PlanOptions { memory_budget: 100 * KIB - 1, ..PlanOptions::default() };
    let msg = refusal(plan_object(GIB, &OSS, &o));
    assert!(msg.contains("memory_budget") && msg.contains("102400"), "{msg}");
    let o = PlanOptions { memory_budget: 100 * KIB, ..PlanOptions::default() };
    let plan = plan_object(GIB, &OSS, &o).unwrap();
    assert_eq!(plan.buffered_in_flight(&o), 1);
}

#[test]
fn refuses_no_request_in_flight() {
    let o = PlanOptions { max_in_flight: 0, ..PlanOptions::default() };
    let msg = refusal(plan_object(GIB, &OSS, &o));
    assert!(msg.contains("max_in_flight") && msg.contains("at least 1"), "{msg}");
    let msg = refusal(plan_copy(GIB, &OSS, &o));
    assert!(msg.contains("max_in_flight"), "{msg}");
}

#[test]
fn refuses_inconsistent_capabilities() {
    let o = PlanOptions::default();
    let msg = refusal(plan_object(GIB, &caps(0, MIB, GIB, GIB), &o));
    assert!(msg.contains("max_parts"), "{msg}");
    let msg = refusal(plan_object(GIB, &caps(10, 2 * MIB, MIB, GIB), &o));
    assert!(msg.contains("min_part_size"), "{msg}");
}

// ---- properties ----

/// Checks every guarantee of the module docs on a plan that succeeded.
fn check_plan(plan: &ObjectPlan, size: u64, caps: &Capabilities, threshold: u64, max_single: u64) {
    assert_eq!(plan.size, size);
    let parts: Vec<Part> = plan.parts().collect();
    let n = parts.len();
    assert!(n >= 1);
    assert_eq!(n as u32, plan.part_count());
    assert!(n as u64 <= u64::from(caps.max_parts), "{n} parts > {}", caps.max_parts);
    let mut next = 0;
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p.number as usize, i + 1, "numbers are 1..=n");
        assert_eq!(p.offset, next, "no gap, no overlap");
        next = p.end();
        assert_eq!(plan.part(p.number), Some(*p), "part(k) agrees with parts()");
        if i + 1 < n {
            assert!(p.len >= caps.min_part_size, "part {} of {} < min", p.number, p.len);
        }
        assert!(p.len <= caps.max_part_size || plan.method == Method::Single);
        assert!(p.len > 0 || size == 0);
    }
    assert_eq!(next, size, "parts cover [0, size)");
    assert_eq!(plan.part(0), None);
    assert_eq!(plan.part(n as u32 + 1), None);
    match plan.method {
        Method::Single => {
            assert!(size == 0 || size < threshold);
            assert!(size == 0 || size <= max_single);
        }
        Method::Multipart { part_size, parts } => {
            assert!(size > 0 && (size >= threshold || size > max_single));
            assert!(part_size >= 1 && part_size <= caps.max_part_size);
            assert_eq!(u64::from(parts), size.div_ceil(part_size));
        }
    }
}

fn check_memory(plan: &ObjectPlan, caps: &Capabilities, o: &PlanOptions) {
    if let Method::Multipart { part_size, .. } = plan.method {
        let smallest = plan.size.div_ceil(u64::from(caps.max_parts)).max(caps.min_part_size).min(plan.size);
        assert!(
            part_size.saturating_mul(o.max_in_flight as u64) <= o.memory_budget || part_size == smallest,
            "part size {part_size} x {} exceeds budget {} but is not the smallest fitting size {smallest}",
            o.max_in_flight,
            o.memory_budget
        );
        let k = plan.buffered_in_flight(o) as u64;
        assert!(k >= 1 && k <= o.max_in_flight as u64);
        assert!(k == 1 || part_size * k <= o.memory_budget);
    }
}

fn small_caps() -> impl Strategy<Value = Capabilities> {
    (1u32..=40, 1u64..=64 * KIB, 0u64..=256 * KIB, 0u64..=2 * MIB, 0u64..=2 * MIB)
        .prop_map(|(n, min, extra, put, copy)| Capabilities { max_copy_size: copy, ..caps(n, min, min + extra, put) })
}

fn options(max_size: u64) -> impl Strategy<Value = PlanOptions> {
    (1..=max_size, 0..=max_size, 0..=max_size * 4, 1usize..=16, proptest::option::of(0..=max_size), 1..=max_size)
        .prop_map(|(preferred, threshold, budget, in_flight, copy_threshold, copy_part)| PlanOptions {
            preferred_part_size: preferred,
            multipart_threshold: threshold,
            memory_budget: budget,
            max_in_flight: in_flight,
            copy_threshold,
            copy_part_size: copy_part,
        })
}

fn check_all(size: u64, caps: &Capabilities, o: &PlanOptions) {
    let capacity = u64::from(caps.max_parts) * caps.max_part_size;
    match plan_object(size, caps, o) {
        Ok(plan) => {
            assert!(o.memory_budget >= caps.min_part_size && size <= capacity);
            check_plan(&plan, size, caps, o.multipart_threshold, caps.max_put_size);
            check_memory(&plan, caps, o);
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(o.memory_budget < caps.min_part_size || size > capacity, "unexpected refusal: {e}");
        }
    }
    match plan_copy(size, caps, o) {
        Ok(plan) => {
            assert!(size <= capacity);
            check_plan(&plan, size, caps, o.copy_threshold_for(caps), caps.max_copy_size);
            // An explicit threshold is kept below the store's limit, and never lets a CopyObject exceed it.
            if let (Method::Single, Some(t)) = (plan.method, o.copy_threshold) {
                assert!(size == 0 || (size < t && size <= caps.max_copy_size));
            }
        }
        Err(e) => assert!(size > capacity, "unexpected refusal: {e}"),
    }
}

proptest! {
    #[test]
    fn prop_plans_hold_their_guarantees_on_oss(size in 0..=60 * TIB, o in options(8 * GIB)) {
        check_all(size, &OSS, &o);
    }

    #[test]
    fn prop_plans_hold_their_guarantees_on_oss_with_defaults(size in 0..=60 * TIB) {
        check_all(size, &OSS, &PlanOptions::default());
    }

    #[test]
    fn prop_plans_hold_their_guarantees_on_s3(size in 0..=60 * TIB, o in options(8 * GIB)) {
        check_all(size, &Capabilities::S3, &o);
        check_all(size, &Capabilities::S3, &PlanOptions::default());
    }

    #[test]
    fn prop_plans_hold_their_guarantees_with_small_limits(
        size in 0..=2 * MIB,
        caps in small_caps(),
        o in options(512 * KIB),
    ) {
        check_all(size, &caps, &o);
    }

    #[test]
    fn prop_determine_part_size_postconditions(total in 0..=60 * TIB, preferred in 1..=6 * GIB) {
        let p = determine_part_size(total, preferred);
        if total < preferred {
            prop_assert_eq!(p, total);
        } else {
            prop_assert!(p >= preferred && p >= OSS2_MIN_PART_SIZE);
            prop_assert!(p * OSS2_MAX_PART_COUNT >= total);
            // A power-of-two multiple of preferred, and the first one that satisfies both conditions.
            prop_assert_eq!(p % preferred, 0);
            prop_assert!((p / preferred).is_power_of_two());
            if p > preferred {
                let half = p / 2;
                prop_assert!(half * OSS2_MAX_PART_COUNT < total || half < OSS2_MIN_PART_SIZE);
            }
        }
    }
}

// ---- streams of unknown length ----

#[test]
fn a_stream_of_unknown_length_grows_its_parts_to_half_the_budget() {
    let plan = plan_stream(None, &OSS, &PlanOptions::default()).unwrap();
    let len = |k| plan.part_len(k).unwrap();
    assert_eq!((len(1), len(500)), (8 * MIB, 8 * MIB));
    assert_eq!((len(501), len(1001), len(1501)), (16 * MIB, 32 * MIB, 64 * MIB));
    assert_eq!((len(2001), len(10_000)), (128 * MIB, 128 * MIB));
    assert_eq!(plan.part_len(0), None);
    assert_eq!(plan.part_len(10_001), None);
    // What the docs promise for the defaults: 1,084,000 MiB.
    assert_eq!(plan.capacity(), 1_084_000 * MIB);
    // A larger budget takes larger streams, up to the store's part limit.
    let big = plan_stream(None, &OSS, &PlanOptions::default().memory_budget(64 * GIB)).unwrap();
    assert_eq!(big.part_len(10_000), Some(5 * GIB));
    assert!(big.capacity() > 25 * TIB);
}

#[test]
fn a_streams_parts_respect_the_store_and_a_small_budget() {
    // S3's 5 MiB minimum raises a smaller preference; a budget below two parts keeps the first size.
    let opts = PlanOptions::default().preferred_part_size(MIB).memory_budget(6 * MIB);
    let plan = plan_stream(None, &Capabilities::S3, &opts).unwrap();
    assert_eq!((plan.part_len(1), plan.part_len(9_999)), (Some(5 * MIB), Some(5 * MIB)));
    // Nonsense options are refused as for files.
    let e = plan_stream(None, &OSS, &PlanOptions::default().max_in_flight(0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn a_stream_of_known_length_is_planned_as_a_file() {
    let opts = PlanOptions::default();
    let plan = plan_stream(Some(100 * MIB), &OSS, &opts).unwrap();
    assert_eq!(plan, StreamPlan::Sized(plan_object(100 * MIB, &OSS, &opts).unwrap()));
    assert_eq!((plan.part_len(13), plan.part_len(14)), (Some(4 * MIB), None));
    assert_eq!(plan.capacity(), 100 * MIB);
    assert_eq!(plan_stream(Some(10), &OSS, &opts).unwrap().part_len(1), Some(10));
}
