//! Counterfactual twins: the measurement behind ground truth.
//!
//! A twin is the session's core as it was at the start of an item's bucket, with the command
//! that made the item suppressed, run over the item's window into its own accumulator. Both
//! branches share every random draw until the item changes something, so an item that changes
//! nothing (a red herring) measures exactly zero.

use super::buckets::RunCollector;
use super::core::Core;
use crate::engine::VirtualTimeMs;
use crate::market::Catalog;
use crate::scenario::timeline::PlanItem;

/// The twin branch of one item, over buckets `[first_bucket, end_bucket)`.
pub struct TwinMeasurement {
    /// Index of the item in the session's items.
    pub item: usize,
    pub first_bucket: usize,
    pub end_bucket: usize,
    pub twin: RunCollector,
    /// The counterfactual on other random paths, over the same buckets; empty when the item
    /// changes nothing the model reads (its twin equals the run).
    pub noise: Vec<RunCollector>,
}

/// Runs `twin` (forked at the start of the item's bucket, the item suppressed) to the end of the
/// item's window, cut at `until_ms`, and its noise twin over the same buckets.
pub(super) fn run_twin(
    twin: Core,
    noise_twins: Vec<Core>,
    index: usize,
    item: &PlanItem,
    until_ms: VirtualTimeMs,
    catalog: &Catalog,
    bucket_ms: u64,
) -> TwinMeasurement {
    let fork_time = twin.now();
    let n_buckets = until_ms.div_ceil(bucket_ms) as usize;
    let window_end = item.window_end_ms.min(until_ms).max(fork_time + 1);
    let end_bucket = (window_end.div_ceil(bucket_ms) as usize).min(n_buckets);
    let end_time = (end_bucket as u64 * bucket_ms).min(until_ms);
    let run_branch = |mut branch: Core| {
        let mut collector = RunCollector::new(catalog, bucket_ms, n_buckets);
        if end_time > fork_time {
            branch.advance_to(end_time, &mut collector, &mut Vec::new());
        }
        collector
    };
    TwinMeasurement {
        item: index,
        first_bucket: (fork_time / bucket_ms) as usize,
        end_bucket,
        twin: run_branch(twin),
        noise: noise_twins.into_iter().map(run_branch).collect(),
    }
}
