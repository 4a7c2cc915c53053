//! Every mapping change is a debug-level `tracing` span named after the step, with its
//! address, size and (where there is one) handle; the spans are checked field by field with
//! a recording subscriber installed for the test's thread only.
//!
//! Each test runs in a child process with one test thread: tracing caches each callsite's
//! interest globally, and callsites first hit by the parallel tests' threads while no
//! subscriber wanted them went unrecorded now and then (seen on the H200 in full runs).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cuda_vmm::{AccessFlags, Allocation, AllocationProps, Cuda, GranularityKind, Reservation};
use cuda_vmm_alloc::{ChunkPool, PoolConfig, SparseArray, SparseConfig};
use cuda_vmm_tests::helpers::{run_child, TestResult};
use cuda_vmm_tests::test_name;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A span as recorded: its name and every field's value, as text.
type Recorded = (String, BTreeMap<String, String>);

/// Records every span's name and fields (including ones recorded later).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Recorded>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

/// Where a span's entry is in the recorder's list (kept in the span's extensions).
struct Index(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push((attrs.metadata().name().to_string(), fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Index(spans.len() - 1));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let extensions = span.extensions();
        let Some(Index(i)) = extensions.get::<Index>() else {
            return;
        };
        let mut spans = self.0.lock().unwrap();
        values.record(&mut Fields(&mut spans[*i].1));
    }
}

impl Recorder {
    /// Runs `f` with this recorder as the thread's subscriber; returns the spans.
    /// Recorders run one at a time, and each asks every callsite for its interest again
    /// once it is in place (callsites registered earlier may have cached "never").
    fn run(f: impl FnOnce() -> TestResult) -> Result<Vec<Recorded>, Box<dyn std::error::Error>> {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let recorder = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(recorder.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            f()
        })?;
        let spans = recorder.0.lock().unwrap().clone();
        Ok(spans)
    }
}

fn fields(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

#[test]
fn safe_layer_calls_are_spans_with_address_size_and_handle() -> TestResult {
    let _memory = crate::memory_shared();
    let test = test_name!(safe_layer_calls_are_spans_with_address_size_and_handle_child);
    run_child(&test, |c| {
        c.env(crate::lifetime::CHILD_ENV, &test);
    })?;
    Ok(())
}

#[test]
#[ignore = "child process of the test of the same name"]
fn safe_layer_calls_are_spans_with_address_size_and_handle_child() -> TestResult {
    if std::env::var(crate::lifetime::CHILD_ENV).is_err() {
        return Ok(());
    }
    let cuda = Cuda::new()?;
    // Releases complete on the caller's thread, whose spans are collected.
    cuda.set_max_pending_release_bytes(0);
    let device = cuda.device(0)?;
    let props = AllocationProps::device(&device);
    let g = device.granularity(&props, GranularityKind::Minimum)?;
    let mut ids = (0, 0);
    let spans = Recorder::run(|| {
        let range = Reservation::new(&device, 4 * g, Default::default())?;
        let chunk = Allocation::new(&device, 2 * g, &props)?;
        let mapping = range.map(g, &chunk, 0, 2 * g)?;
        range.set_access(g, 2 * g, &[(&device, AccessFlags::ReadWrite)])?;
        ids = (range.ptr(), chunk.raw_handle());
        drop(mapping);
        drop(chunk);
        drop(range);
        Ok(())
    })?;
    let (base, handle) = ids;
    let size = |n: usize| (n * g).to_string();
    let expected = vec![
        (
            "cuMemAddressReserve".to_string(),
            fields(&[("size", size(4)), ("address", hex(base))]),
        ),
        (
            "cuMemCreate".to_string(),
            fields(&[("size", size(2)), ("handle", hex(handle))]),
        ),
        (
            "cuMemMap".to_string(),
            fields(&[
                ("address", hex(base + g as u64)),
                ("size", size(2)),
                ("handle", hex(handle)),
            ]),
        ),
        (
            "cuMemSetAccess".to_string(),
            fields(&[
                ("address", hex(base + g as u64)),
                ("size", size(2)),
                ("devices", "1".into()),
            ]),
        ),
        (
            "cuMemUnmap".to_string(),
            fields(&[("address", hex(base + g as u64)), ("size", size(2))]),
        ),
        (
            "cuMemRelease".to_string(),
            fields(&[("handle", hex(handle)), ("size", size(2))]),
        ),
        (
            "cuMemAddressFree".to_string(),
            fields(&[("address", hex(base)), ("size", size(4))]),
        ),
    ];
    assert_eq!(spans, expected);
    Ok(())
}

#[test]
fn pool_commits_and_decommits_are_spans_with_hits_and_misses() -> TestResult {
    let _memory = crate::memory_shared();
    let test = test_name!(pool_commits_and_decommits_are_spans_with_hits_and_misses_child);
    run_child(&test, |c| {
        c.env(crate::lifetime::CHILD_ENV, &test);
    })?;
    Ok(())
}

#[test]
#[ignore = "child process of the test of the same name"]
fn pool_commits_and_decommits_are_spans_with_hits_and_misses_child() -> TestResult {
    if std::env::var(crate::lifetime::CHILD_ENV).is_err() {
        return Ok(());
    }
    let cuda = Cuda::new()?;
    // Releases complete on the caller's thread, whose spans are collected.
    cuda.set_max_pending_release_bytes(0);
    let device = cuda.device(0)?;
    let pool = ChunkPool::new(&device, PoolConfig::default())?;
    let tile = pool.chunk_size();
    let mut base = 0;
    let spans = Recorder::run(|| {
        let config = SparseConfig {
            pool: Some(pool.clone()),
            ..SparseConfig::default()
        };
        let mut array = SparseArray::<u8>::new(&device, 8 * tile, config)?;
        base = array.ptr();
        array.commit(tile..3 * tile)?;
        array.decommit(tile..3 * tile)?;
        array.commit(0..tile)?;
        Ok(())
    })?;
    let steps: Vec<&Recorded> = spans
        .iter()
        .filter(|(name, _)| {
            matches!(name.as_str(), "commit" | "decommit") || name.starts_with("chunk_pool.")
        })
        .collect();
    let t = |n: usize| (n * tile).to_string();
    let at = |n: usize| hex(base + (n * tile) as u64);
    let expected: Vec<Recorded> = vec![
        (
            "commit".into(),
            fields(&[
                ("address", at(1)),
                ("size", t(2)),
                ("chunks", "2".into()),
                ("pooled", "true".into()),
            ]),
        ),
        (
            "chunk_pool.take".into(),
            fields(&[
                ("chunks", "2".into()),
                ("size", t(1)),
                ("hits", "0".into()),
                ("misses", "2".into()),
            ]),
        ),
        (
            "decommit".into(),
            fields(&[("address", at(1)), ("size", t(2)), ("chunks", "2".into())]),
        ),
    ];
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "commit",
            "chunk_pool.take",
            "decommit",
            "chunk_pool.recycle",
            "chunk_pool.recycle",
            "commit",
            "chunk_pool.take",
            "decommit", // the array's drop
            "chunk_pool.recycle",
        ]
    );
    let owned: Vec<Recorded> = steps[..3].iter().map(|s| (*s).clone()).collect();
    assert_eq!(owned, expected);
    for recycle in [3, 4, 8] {
        assert_eq!(steps[recycle].1["cached"], "true");
    }
    let hit = &steps[6].1;
    assert_eq!((hit["hits"].as_str(), hit["misses"].as_str()), ("1", "0"));
    assert_eq!(steps[5].1["address"], at(0));
    Ok(())
}
