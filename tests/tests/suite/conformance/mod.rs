//! The conformance suite: what the driver answers, entry point by entry point.
//!
//! The expected answers were recorded on a real H200 (driver 580, CUDA 13.0)
//! and the simulator must give the same ones. Every case runs in its own
//! process (this test binary re-run with a filter), so a case that poisons the
//! context or crashes cannot disturb the others.
//!
//! - `CUDA_VMM_BACKEND=sim|cuda` selects the backend (default: real if present).
//! - `CUDA_VMM_CONFORMANCE_RECORD=1` prints every answer as a table row
//!   instead of failing on the first mismatch.
//! - `CUDA_VMM_CONFORMANCE_CRASHING=1` also runs, on the real driver, the cases
//!   known to crash it (to re-check that they still do).
//!
//! Cases marked `guess!` expect the simulator's prediction of an answer no GPU has
//! recorded yet: they run on both backends like the others, and a mismatch on the real
//! driver fails the suite naming the case as unconfirmed (record the driver's answer
//! there and in the simulator's `answers.rs`, then make it a `case!`).

mod access_cases;
mod async_cases;
mod cases;
mod host_cases;
mod raw;
mod stream_cases;

use cuda_vmm_tests::helpers::child_command;
use cuda_vmm_tests::test_name;

use cuda_vmm_tests::{raw_driver, Backend};

use access_cases::*;
use async_cases::*;
use cases::*;
use host_cases::*;
use stream_cases::*;

/// How the real driver treats a case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnReal {
    /// The real driver gives the expected answer.
    Answers,
    /// The real driver crashes the process; only the simulator runs it, and
    /// the safe layer must make the call impossible.
    Crashes,
    /// The real driver's answer depends on timing (a race with the device);
    /// only the simulator, which makes the race deterministic, checks it.
    Races,
    /// The expected answer is the simulator's prediction, not yet recorded on a GPU:
    /// it runs on both backends, and a mismatch on the real driver is reported as an
    /// unconfirmed prediction.
    Unconfirmed,
}

struct Case {
    name: &'static str,
    run: fn(&Env) -> CaseResult,
    expect: &'static str,
    on_real: OnReal,
}

const fn case(name: &'static str, run: fn(&Env) -> CaseResult, expect: &'static str) -> Case {
    Case {
        name,
        run,
        expect,
        on_real: OnReal::Answers,
    }
}

const fn crashes(name: &'static str, run: fn(&Env) -> CaseResult, expect: &'static str) -> Case {
    Case {
        name,
        run,
        expect,
        on_real: OnReal::Crashes,
    }
}

const fn races(name: &'static str, run: fn(&Env) -> CaseResult, expect: &'static str) -> Case {
    Case {
        name,
        run,
        expect,
        on_real: OnReal::Races,
    }
}

// Kept for the next unconfirmed prediction: every `guess!` so far has been recorded.
#[allow(dead_code)]
const fn guess(name: &'static str, run: fn(&Env) -> CaseResult, expect: &'static str) -> Case {
    Case {
        name,
        run,
        expect,
        on_real: OnReal::Unconfirmed,
    }
}

/// `case!(name, "answer")`: the case `name`, run by the function of that name, which the
/// real driver answers with `answer`; `crashes!` and `races!` likewise for the cases only
/// the simulator runs ([`OnReal`]).
macro_rules! case {
    ($run:ident, $expect:expr) => {
        case(stringify!($run), $run, $expect)
    };
}

/// [`case!`] for a case that crashes the real driver.
macro_rules! crashes {
    ($run:ident, $expect:expr) => {
        crashes(stringify!($run), $run, $expect)
    };
}

/// [`case!`] for a case whose real-driver answer depends on timing.
macro_rules! races {
    ($run:ident, $expect:expr) => {
        races(stringify!($run), $run, $expect)
    };
}

/// [`case!`] for a case whose answer is the simulator's unconfirmed prediction.
#[allow(unused_macros)]
macro_rules! guess {
    ($run:ident, $expect:expr) => {
        guess(stringify!($run), $run, $expect)
    };
}

/// Every case with the answer the real driver gave (H200, driver 580 / CUDA 13.0;
/// the raw record is `h200-driver-580.tsv` beside this file).
#[rustfmt::skip]
const CASES: &[Case] = &[
    // reservations
    case!(reserve_zero_size, "CUDA_ERROR_INVALID_VALUE"),
    case!(reserve_size_not_granular, "CUDA_ERROR_INVALID_VALUE"),
    case!(reserve_alignment_not_power_of_two, "CUDA_ERROR_INVALID_VALUE"),
    case!(reserve_alignment_larger_power_of_two, "CUDA_SUCCESS aligned=true"),
    case!(reserve_huge_1tib, "CUDA_SUCCESS"),
    case!(reserve_huge_1pib, "CUDA_ERROR_OUT_OF_MEMORY"),
    case!(reserve_hint_free_is_honoured, "CUDA_SUCCESS honoured=true"),
    case!(reserve_hint_taken, "CUDA_SUCCESS honoured=false"),
    case!(reserve_hint_not_granular, "CUDA_ERROR_INVALID_VALUE honoured=false"),
    case!(reserve_nonzero_flags, "CUDA_ERROR_INVALID_VALUE"),
    case!(free_twice, "CUDA_ERROR_INVALID_VALUE"),
    case!(free_partial_head, "CUDA_ERROR_INVALID_VALUE"),
    case!(free_partial_tail, "CUDA_ERROR_INVALID_VALUE"),
    case!(free_never_reserved, "CUDA_ERROR_INVALID_VALUE"),
    case!(free_with_live_mapping, "CUDA_ERROR_INVALID_VALUE"),
    // physical allocations
    case!(create_zero_size, "CUDA_ERROR_INVALID_VALUE"),
    case!(create_size_not_granular, "CUDA_ERROR_INVALID_VALUE"),
    case!(create_bad_device_ordinal, "CUDA_ERROR_INVALID_DEVICE"),
    case!(create_bad_location_type, "CUDA_ERROR_INVALID_VALUE"),
    case!(create_bad_allocation_type, "CUDA_ERROR_INVALID_VALUE"),
    case!(create_unknown_handle_type_bits, "CUDA_SUCCESS"),
    case!(create_posix_fd_handle_type, "CUDA_SUCCESS"),
    case!(release_then_meminfo_restored, "create_took_at_least_size=true restored=true"),
    case!(create_more_than_device_memory, "CUDA_ERROR_OUT_OF_MEMORY"),
    case!(release_twice, "CUDA_ERROR_INVALID_VALUE"),
    crashes!(release_bogus_handle, "CUDA_ERROR_INVALID_VALUE"),
    crashes!(map_released_handle, "CUDA_ERROR_INVALID_VALUE"),
    case!(granularity_minimum, "CUDA_SUCCESS 2097152"),
    case!(granularity_recommended, "CUDA_SUCCESS 2097152"),
    case!(granularity_bad_option, "CUDA_ERROR_INVALID_VALUE"),
    case!(granularity_bad_device, "CUDA_SUCCESS"),
    // mapping
    case!(map_whole, "CUDA_SUCCESS"),
    case!(map_zero_size, "CUDA_ERROR_INVALID_VALUE"),
    case!(map_address_not_granular, "CUDA_ERROR_INVALID_VALUE"),
    case!(map_size_not_granular, "CUDA_ERROR_NOT_SUPPORTED"),
    case!(map_size_smaller_than_allocation, "CUDA_ERROR_NOT_SUPPORTED"),
    case!(map_size_larger_than_allocation, "CUDA_ERROR_NOT_SUPPORTED"),
    case!(map_nonzero_offset, "CUDA_ERROR_NOT_SUPPORTED"),
    case!(map_offset_not_granular, "CUDA_ERROR_NOT_SUPPORTED"),
    case!(map_offset_plus_size_past_allocation, "CUDA_ERROR_NOT_SUPPORTED"),
    case!(map_nonzero_flags, "CUDA_ERROR_INVALID_VALUE"),
    case!(map_past_reservation_end, "CUDA_SUCCESS"),
    case!(map_straddling_two_reservations, "CUDA_SUCCESS"),
    case!(map_unreserved_address, "CUDA_ERROR_INVALID_VALUE"),
    case!(map_over_mapped_range, "CUDA_ERROR_INVALID_VALUE"),
    case!(map_same_allocation_twice, "CUDA_SUCCESS"),
    case!(unmap_never_mapped, "CUDA_SUCCESS"),
    case!(unmap_twice, "CUDA_SUCCESS"),
    case!(unmap_partial, "CUDA_ERROR_INVALID_VALUE"),
    case!(unmap_spanning_two_mappings, "CUDA_SUCCESS"),
    case!(unmap_not_granular, "CUDA_ERROR_INVALID_VALUE"),
    // access
    case!(set_access_read_write, "CUDA_SUCCESS flags=3"),
    case!(set_access_read_only, "CUDA_SUCCESS get=CUDA_SUCCESS flags=1"),
    case!(get_access_before_set, "CUDA_SUCCESS flags=0"),
    case!(get_access_unmapped, "CUDA_ERROR_INVALID_VALUE"),
    case!(set_access_unmapped, "CUDA_ERROR_INVALID_VALUE"),
    case!(set_access_partly_mapped, "CUDA_ERROR_INVALID_VALUE"),
    case!(set_access_spanning_two_allocations, "CUDA_SUCCESS write=CUDA_SUCCESS read=CUDA_SUCCESS data_ok=true"),
    case!(set_access_bad_flags, "CUDA_ERROR_INVALID_VALUE"),
    case!(set_access_bad_device, "CUDA_ERROR_INVALID_VALUE"),
    case!(set_access_no_descriptors, "CUDA_ERROR_INVALID_VALUE"),
    case!(set_access_not_granular, "CUDA_ERROR_INVALID_VALUE"),
    case!(set_access_then_revoke, "CUDA_SUCCESS get=CUDA_SUCCESS flags=0"),
    // copies
    case!(copy_round_trip, "CUDA_SUCCESS CUDA_SUCCESS data_ok=true"),
    case!(copy_through_alias, "CUDA_SUCCESS aliased=true"),
    case!(copy_to_unmapped, "CUDA_ERROR_INVALID_VALUE"),
    case!(copy_from_unmapped, "CUDA_ERROR_INVALID_VALUE"),
    case!(copy_to_no_access, "CUDA_ERROR_INVALID_VALUE sync=CUDA_SUCCESS"),
    case!(copy_from_no_access, "CUDA_ERROR_INVALID_VALUE sync=CUDA_SUCCESS"),
    case!(copy_to_read_only, "CUDA_ERROR_INVALID_VALUE sync=CUDA_SUCCESS"),
    case!(copy_from_read_only, "CUDA_SUCCESS sync=CUDA_SUCCESS"),
    case!(memset_read_only, "CUDA_ERROR_INVALID_VALUE sync=CUDA_SUCCESS"),
    case!(copy_past_mapping_end, "CUDA_ERROR_INVALID_VALUE sync=CUDA_SUCCESS"),
    // lifetime, handles, sharing
    case!(release_while_mapped_keeps_data, "CUDA_SUCCESS read=CUDA_SUCCESS data_ok=true unmap=CUDA_SUCCESS"),
    case!(retain_from_mapped_address, "CUDA_SUCCESS same_handle=true release=CUDA_SUCCESS"),
    case!(retain_from_unmapped_address, "CUDA_ERROR_INVALID_VALUE"),
    case!(properties_from_handle, "CUDA_SUCCESS type=1 location_type=1 id=0 handle_types=0"),
    case!(export_without_requested_type, "CUDA_ERROR_INVALID_VALUE"),
    case!(export_import_posix_fd, "import=CUDA_SUCCESS aliased=true"),
    case!(properties_of_posix_fd_allocation, "CUDA_SUCCESS handle_types=1"),
    case!(properties_of_imported_handle, "CUDA_SUCCESS type=1 location_type=1 id=0 handle_types=0"),
    case!(import_bogus_fd, "CUDA_ERROR_UNKNOWN"),
    case!(import_non_cuda_fd, "CUDA_ERROR_UNKNOWN"),
    // devices and contexts
    case!(device_get_bad_ordinal, "CUDA_ERROR_INVALID_DEVICE"),
    case!(device_attribute_bad_device, "CUDA_ERROR_INVALID_DEVICE"),
    case!(device_vmm_supported, "CUDA_SUCCESS 1"),
    case!(no_context_reserve, "CUDA_SUCCESS"),
    case!(no_context_create, "CUDA_SUCCESS"),
    case!(no_context_map_and_set_access, "map=CUDA_SUCCESS set_access=CUDA_SUCCESS unmap=CUDA_SUCCESS"),
    case!(no_context_copy, "CUDA_ERROR_INVALID_CONTEXT"),
    case!(no_context_granularity, "CUDA_SUCCESS 2097152"),
    case!(no_context_mem_get_info, "CUDA_ERROR_INVALID_CONTEXT"),
    case!(context_is_current, "ctx_non_null=true"),
    // ---- asynchrony: recorded on the H200 (driver 580.159.04) like the rest.
    // streams and events
    case!(stream_idle_lifecycle, "create=CUDA_SUCCESS query=CUDA_SUCCESS sync=CUDA_SUCCESS destroy=CUDA_SUCCESS"),
    case!(stream_non_blocking_idle_lifecycle, "create=CUDA_SUCCESS query=CUDA_SUCCESS sync=CUDA_SUCCESS destroy=CUDA_SUCCESS"),
    case!(stream_create_bad_flags, "CUDA_ERROR_INVALID_VALUE"),
    case!(event_create_bad_flags, "interprocess_alone=CUDA_ERROR_INVALID_VALUE unknown_bit=CUDA_ERROR_INVALID_VALUE"),
    case!(event_never_recorded, "query=CUDA_SUCCESS sync=CUDA_SUCCESS destroy=CUDA_SUCCESS"),
    // context stack
    case!(ctx_push_pop, "push=CUDA_SUCCESS pop=CUDA_SUCCESS popped_same=true still_current=true"),
    case!(ctx_pop_empty_stack, "first=CUDA_SUCCESS popped_same=true second=CUDA_ERROR_INVALID_CONTEXT current_null=true"),
    case!(ctx_set_current_null_then_pop, "set_null=CUDA_SUCCESS pop=CUDA_ERROR_INVALID_CONTEXT"),
    // pinned host memory
    case!(host_alloc_zero_size, "CUDA_SUCCESS"),
    case!(free_host_bogus_pointer, "CUDA_ERROR_INVALID_VALUE"),
    // async copies: same checks as the synchronous ones
    case!(async_copy_to_unmapped, "CUDA_ERROR_INVALID_VALUE sync=CUDA_SUCCESS"),
    case!(async_copy_to_no_access, "CUDA_ERROR_INVALID_VALUE sync=CUDA_SUCCESS"),
    // unmap with work in flight poisons the context: host-to-device copies with
    // LAUNCH_FAILED, device-side work with ILLEGAL_ADDRESS. A synchronous pageable
    // HtoD returns with only its last staged piece in flight: on the H200 it raced
    // clean in this case (the issue measured a fault within 0-9 iterations). A pageable
    // async HtoD is staged the same way: it faulted in 7 of 8 runs on H200s. Only the
    // simulator, where both fault every time, checks them.
    races!(race_htod_async_pageable, "unmap=CUDA_SUCCESS stream_sync=CUDA_ERROR_LAUNCH_FAILED ctx_sync=CUDA_ERROR_LAUNCH_FAILED mem_get_info=CUDA_ERROR_LAUNCH_FAILED"),
    case!(race_htod_async_pinned, "unmap=CUDA_SUCCESS stream_sync=CUDA_ERROR_LAUNCH_FAILED ctx_sync=CUDA_ERROR_LAUNCH_FAILED mem_get_info=CUDA_ERROR_LAUNCH_FAILED"),
    case!(race_dtod_async, "unmap=CUDA_SUCCESS stream_sync=CUDA_ERROR_ILLEGAL_ADDRESS ctx_sync=CUDA_ERROR_ILLEGAL_ADDRESS mem_get_info=CUDA_ERROR_ILLEGAL_ADDRESS"),
    case!(race_memset_async, "unmap=CUDA_SUCCESS stream_sync=CUDA_ERROR_ILLEGAL_ADDRESS ctx_sync=CUDA_ERROR_ILLEGAL_ADDRESS mem_get_info=CUDA_ERROR_ILLEGAL_ADDRESS"),
    races!(race_htod_sync_legacy, "unmap=CUDA_SUCCESS stream_sync=CUDA_ERROR_LAUNCH_FAILED ctx_sync=CUDA_ERROR_LAUNCH_FAILED mem_get_info=CUDA_ERROR_LAUNCH_FAILED"),
    case!(race_control_stream_synced, "sync=CUDA_SUCCESS read=CUDA_SUCCESS data_ok=true unmap=CUDA_SUCCESS stream_sync=CUDA_SUCCESS ctx_sync=CUDA_SUCCESS mem_get_info=CUDA_SUCCESS"),
    case!(race_control_legacy_synced, "sync=CUDA_SUCCESS read=CUDA_SUCCESS data_ok=true unmap=CUDA_SUCCESS stream_sync=CUDA_SUCCESS ctx_sync=CUDA_SUCCESS mem_get_info=CUDA_SUCCESS"),
    // special stream handles (`stream_cases.rs`): null, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD
    case!(special_streams_idle, "null:query=CUDA_SUCCESS sync=CUDA_SUCCESS destroy=CUDA_ERROR_INVALID_HANDLE legacy:query=CUDA_SUCCESS sync=CUDA_SUCCESS destroy=CUDA_ERROR_INVALID_HANDLE per_thread:query=CUDA_SUCCESS sync=CUDA_SUCCESS destroy=CUDA_ERROR_INVALID_HANDLE"),
    case!(per_thread_stream_is_per_thread, "other_set=CUDA_SUCCESS other_query=CUDA_SUCCESS own_query=CUDA_ERROR_NOT_READY own_sync=CUDA_SUCCESS"),
    case!(legacy_waits_for_per_thread, "legacy_query=CUDA_ERROR_NOT_READY legacy_sync=CUDA_SUCCESS per_thread_after=CUDA_SUCCESS"),
    case!(per_thread_waits_for_legacy, "per_thread_query=CUDA_ERROR_NOT_READY per_thread_sync=CUDA_SUCCESS legacy_after=CUDA_SUCCESS"),
    case!(non_blocking_ignores_per_thread, "non_blocking_sync=CUDA_SUCCESS per_thread_query=CUDA_ERROR_NOT_READY per_thread_sync=CUDA_SUCCESS"),
    // ---- ranges and out-parameters (`access_cases.rs`): recorded on an H200,
    // driver 580.159.04. Note `set_access_with_hole`: the driver answers SUCCESS
    // for [A][hole][B] and grants A only; the safe layer refuses such ranges.
    // cuMemSetAccess over part of an allocation, several, a mix, holes
    case!(set_access_head_of_allocation, "CUDA_ERROR_INVALID_VALUE head=0 tail=0"),
    case!(set_access_tail_of_allocation, "CUDA_ERROR_INVALID_VALUE head=0 tail=0"),
    case!(set_access_whole_and_part, "CUDA_ERROR_INVALID_VALUE a=0 b_head=0 b_tail=0"),
    case!(set_access_part_and_whole, "CUDA_ERROR_INVALID_VALUE a_head=0 a_tail=0 b=0"),
    case!(set_access_three_allocations, "CUDA_SUCCESS a=3 b=3 c=3"),
    case!(set_access_with_hole, "CUDA_SUCCESS a=3 b=0"),
    case!(set_access_leading_hole, "CUDA_ERROR_INVALID_VALUE a=0"),
    case!(set_access_across_reservations, "CUDA_SUCCESS a=3 b=3"),
    case!(set_access_bad_descriptor_after_good, "CUDA_ERROR_INVALID_VALUE a=0"),
    case!(set_access_same_device_twice, "CUDA_SUCCESS a=1"),
    case!(set_access_past_reservation_end, "CUDA_ERROR_INVALID_VALUE a=0"),
    // cuMemGetAccess inside mappings, and its out-parameter
    case!(get_access_inside_allocation, "second_granule=3 unaligned=3 last_byte=3"),
    case!(get_access_unmapped_out_param, "CUDA_ERROR_INVALID_VALUE flags=zeroed"),
    case!(get_access_bad_device_out_param, "CUDA_ERROR_INVALID_DEVICE flags=untouched"),
    case!(get_access_bad_location_type_out_param, "CUDA_ERROR_INVALID_DEVICE flags=untouched"),
    case!(get_access_success_out_param, "CUDA_SUCCESS flags=zeroed"),
    // cuMemUnmap over part of an allocation, several, a mix, holes
    case!(unmap_whole_and_part, "CUDA_ERROR_INVALID_VALUE a_mapped=true b_mapped=true"),
    case!(unmap_part_and_whole, "CUDA_ERROR_INVALID_VALUE a_mapped=true b_mapped=true"),
    case!(unmap_middle_of_allocation, "CUDA_ERROR_INVALID_VALUE mapped=true"),
    case!(unmap_three_allocations, "CUDA_SUCCESS a_mapped=false b_mapped=false c_mapped=false"),
    case!(unmap_with_hole, "CUDA_SUCCESS a_mapped=false b_mapped=false"),
    case!(unmap_leading_hole, "CUDA_SUCCESS a_mapped=false"),
    case!(unmap_across_reservations, "CUDA_SUCCESS a_mapped=false b_mapped=false"),
    // cuMemMap against live mappings and holes
    case!(map_over_tail_of_mapping, "CUDA_ERROR_INVALID_VALUE a_mapped=true"),
    case!(map_over_two_mappings, "CUDA_ERROR_INVALID_VALUE a_mapped=true b_mapped=true"),
    case!(map_into_hole, "CUDA_SUCCESS set_access=CUDA_SUCCESS"),
    case!(map_into_hole_too_large, "CUDA_ERROR_INVALID_VALUE b_mapped=true"),
    // out-parameters pre-filled with a sentinel, after a failure
    case!(reserve_failure_out_param, "CUDA_ERROR_INVALID_VALUE ptr=untouched"),
    case!(create_failure_out_param, "CUDA_ERROR_INVALID_VALUE handle=untouched"),
    case!(retain_failure_out_param, "CUDA_ERROR_INVALID_VALUE handle=untouched"),
    case!(export_failure_out_param, "CUDA_ERROR_INVALID_VALUE fd=untouched"),
    case!(import_failure_out_param, "CUDA_ERROR_UNKNOWN handle=untouched"),
    case!(granularity_failure_out_param, "CUDA_ERROR_INVALID_VALUE granularity=untouched"),
    case!(address_range_failure_out_param, "CUDA_ERROR_NOT_FOUND base=zeroed size=zeroed"),
    // exported POSIX descriptors (issue 10: the driver's report no size)
    case!(exported_fd_reports_no_size, "fstat=0 size=0"),
    case!(import_same_fd_twice, "first=CUDA_SUCCESS second=CUDA_SUCCESS same_handle=false"),
    case!(import_after_exporter_released, "import=CUDA_SUCCESS read=CUDA_SUCCESS data_ok=true"),
    case!(import_dup_of_exported_fd, "CUDA_SUCCESS"),
    // ---- host locations (`host_cases.rs`): recorded on the H200 (driver 580.159.04,
    // CUDA 13). Note: HOST and HOST_NUMA memory behave the same for access (either
    // descriptor grants the host access to either, cuMemGetAccess answers at both), HOST
    // memory reports itself as HOST_NUMA node 0, and only cuMemCreate refuses
    // HOST_NUMA_CURRENT (its granularity is answered).
    case!(host_numa_vmm_attribute, "CUDA_SUCCESS 1"),
    case!(host_numa_id_attribute, "CUDA_SUCCESS 0"),
    case!(create_host_numa, "CUDA_SUCCESS"),
    case!(create_host, "CUDA_SUCCESS"),
    case!(create_host_numa_current, "CUDA_ERROR_INVALID_VALUE"),
    case!(host_numa_device_access_round_trip, "set_access=CUDA_SUCCESS write=CUDA_SUCCESS read=CUDA_SUCCESS data_ok=true"),
    case!(host_device_access_round_trip, "set_access=CUDA_SUCCESS write=CUDA_SUCCESS read=CUDA_SUCCESS data_ok=true"),
    case!(create_host_with_posix_fd, "CUDA_ERROR_INVALID_VALUE"),
    case!(create_host_numa_with_posix_fd, "CUDA_SUCCESS"),
    case!(create_host_numa_bad_id, "CUDA_ERROR_INVALID_VALUE"),
    case!(granularity_host_numa, "minimum=CUDA_SUCCESS 2097152 recommended=CUDA_SUCCESS 2097152"),
    case!(granularity_host, "minimum=CUDA_SUCCESS 2097152 recommended=CUDA_SUCCESS 2097152"),
    case!(granularity_host_numa_current, "CUDA_SUCCESS"),
    case!(properties_of_host_numa, "CUDA_SUCCESS location_type=3 id=0"),
    case!(properties_of_host, "CUDA_SUCCESS location_type=3 id=0"),
    case!(get_access_host_numa_memory, "before=CUDA_SUCCESS:0/CUDA_SUCCESS:0 after=CUDA_SUCCESS:3/CUDA_SUCCESS:0"),
    case!(get_access_host_location, "CUDA_SUCCESS"),
    case!(set_access_host_numa_desc_on_host_numa, "CUDA_SUCCESS get=CUDA_SUCCESS flags=3"),
    case!(set_access_host_numa_desc_on_device, "CUDA_ERROR_NOT_SUPPORTED"),
    case!(set_access_host_numa_desc_on_host, "CUDA_SUCCESS get=CUDA_SUCCESS flags=3"),
    case!(set_access_host_desc_on_host, "CUDA_SUCCESS get=CUDA_SUCCESS flags=3"),
    case!(set_access_host_desc_on_host_numa, "CUDA_SUCCESS get=CUDA_SUCCESS flags=3"),
    case!(host_numa_cpu_reads_with_host_access, "data_ok=true"),
    case!(host_memory_not_in_mem_get_info, "host_numa_unchanged=true host_unchanged=true"),
    // Not yet run on a GPU: the simulator's predictions.
    case!(set_access_host_desc_on_device, "CUDA_ERROR_NOT_SUPPORTED"),
];

const CASE_ENV: &str = "CUDA_VMM_CONFORMANCE_CASE";
const MARK: &str = "CONFORMANCE-ANSWER: ";

/// Child side: runs the one case named in `CUDA_VMM_CONFORMANCE_CASE` and
/// prints its answer. Ignored by default; the suite runs it per case.
#[test]
#[ignore = "run per case by `conformance::suite` in a child process"]
fn case_runner() {
    let name = std::env::var(CASE_ENV).expect("case_runner needs CUDA_VMM_CONFORMANCE_CASE");
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no conformance case named {name}"));
    let answer = env().and_then(|e| (case.run)(&e));
    match answer {
        Ok(a) => println!("\n{MARK}{a}"),
        Err(e) => println!("\n{MARK}SETUP FAILED: {e}"),
    }
}

/// Runs one case in a child process; returns its answer, or how it died.
fn run_isolated(case: &Case) -> String {
    let out = child_command(&test_name!(case_runner))
        .expect("current_exe")
        .env(CASE_ENV, case.name)
        .output()
        .expect("spawn conformance child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest may print "test name ... " on the same line before the answer.
    if let Some(line) = stdout
        .lines()
        .find_map(|l| l.find(MARK).map(|at| &l[at + MARK.len()..]))
    {
        return line.trim().to_string();
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = out.status.signal() {
            return format!("CRASHED (signal {sig})");
        }
    }
    format!(
        "NO ANSWER (exit {:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
    )
}

#[test]
fn suite() {
    let _memory = crate::memory_exclusive();
    let (_, backend) = raw_driver();
    let record = std::env::var_os("CUDA_VMM_CONFORMANCE_RECORD").is_some();
    let crashing = std::env::var_os("CUDA_VMM_CONFORMANCE_CRASHING").is_some();
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in CASES {
        if backend == Backend::RealDriver && case.on_real == OnReal::Crashes && !crashing {
            eprintln!(
                "conformance {:<40} skipped: crashes the real driver",
                case.name
            );
            continue;
        }
        if backend == Backend::RealDriver && case.on_real == OnReal::Races && !record {
            eprintln!(
                "conformance {:<40} skipped: a timing race on the real driver",
                case.name
            );
            continue;
        }
        let got = run_isolated(case);
        ran += 1;
        let expect = if backend == Backend::RealDriver && case.on_real == OnReal::Crashes {
            "CRASHED (signal 11)"
        } else {
            case.expect
        };
        let verdict = if got == expect { "ok" } else { "MISMATCH" };
        eprintln!("conformance {:<40} {verdict:<8} {got}", case.name);
        if record {
            println!("RECORD {}\t{}", case.name, got);
        }
        if got != expect {
            let unconfirmed =
                if backend == Backend::RealDriver && case.on_real == OnReal::Unconfirmed {
                    " (an unconfirmed prediction: record the driver's answer)"
                } else {
                    ""
                };
            failures.push(format!(
                "{}: expected `{expect}`, got `{got}`{unconfirmed}",
                case.name
            ));
        }
    }
    eprintln!(
        "conformance: {ran} cases run on {backend:?}, {} mismatches",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "conformance mismatches:\n{}",
        failures.join("\n")
    );
}
