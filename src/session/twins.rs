//! Counterfactual twins: the measurement behind ground truth and the per-bucket labels.
//!
//! A twin is the session's core as it was at the start of an item's bucket, with the command
//! that made the item suppressed, run over the item's window into its own accumulator. Both
//! branches share every random draw until the item changes something, so an item that changes
//! nothing (a red herring) measures exactly zero.
//!
//! Effects outlast an item's window (a support backlog drains for hours after an outage), so a
//! twin does not stop at the window's end: it goes on, bucket by bucket as the run closes them,
//! until no stream the item moved has been beyond its noise band two buckets in a row for
//! [`CONVERGED_AFTER_MS`] (and [`CONVERGED_AFTER_BUCKETS`]) (the tail has converged), or until the truth horizon past the
//! window, or the run's end.

use super::buckets::RunCollector;
use super::core::Core;
use super::SessionSetup;
use crate::engine::VirtualTimeMs;
use crate::scenario::timeline::PlanItem;

/// How long every stream an item moved must stay inside its noise band, in a row, for its
/// effect to count as over (the tail's end)…
pub const CONVERGED_AFTER_MS: VirtualTimeMs = 60 * 60 * 1000;
/// …and in at least this many buckets (an hour is a single bucket of a coarse run).
pub const CONVERGED_AFTER_BUCKETS: usize = 3;

/// z of a bucket's noise band: a difference beyond this many standard deviations of chance is
/// significant (the item's doing).
pub const BAND_Z: f64 = 3.0;
/// The band of a gauge is at least this share of the counterfactual reading…
pub const GAUGE_BAND_SHARE: f64 = 0.05;
/// …and at least this many units.
pub const GAUGE_BAND_FLOOR: f64 = 1.0;
/// Buckets (this one and the ones before it) over which the drift between the counterfactual
/// branches is pooled: two noise twins give too few differences in one bucket.
const DRIFT_POOL_BUCKETS: usize = 5;

/// How a twin's tail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailEnd {
    /// Still running: the run has not closed the buckets the twin needs to decide.
    Open,
    /// Every stream the item moved stayed inside its band for [`CONVERGED_AFTER_MS`].
    Converged,
    /// Cut at the truth horizon past the item's window.
    Horizon,
    /// Cut at the run's end.
    RunEnd,
}

impl TailEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            TailEnd::Open => "open",
            TailEnd::Converged => "converged",
            TailEnd::Horizon => "horizon",
            TailEnd::RunEnd => "runEnd",
        }
    }
}

/// The twin branch of one item, over buckets `[first_bucket, end_bucket)`.
pub struct TwinMeasurement {
    /// Index of the item in the session's items.
    pub item: usize,
    pub first_bucket: usize,
    /// One past the last bucket the branches have run (the window, then the tail as it grows).
    pub end_bucket: usize,
    /// One past the item's window (where truth's summary figures stop).
    pub window_end_bucket: usize,
    pub twin: RunCollector,
    /// The counterfactual on other random paths, over the same buckets; empty when the item
    /// changes nothing the model reads (its twin equals the run).
    pub noise: Vec<RunCollector>,
    pub tail_end: TailEnd,
    /// The item changes nothing the model reads ([`PlanItem::changes_nothing_the_model_reads`]):
    /// no branch is simulated, and `twin` takes the run's buckets as they close.
    identical_to_run: bool,
    /// The branches where they stopped (twin, then noise twins), while the tail is open.
    branches: Vec<Core>,
    /// The next bucket to compare with the run; per stream, whether its last compared bucket
    /// was significant; whether any stream has been significant two buckets in a row (moved);
    /// and how many buckets in a row no stream has.
    next_checked_bucket: usize,
    significant_before: Vec<bool>,
    any_moved: bool,
    quiet_buckets: usize,
    /// The tail stops here at the latest (the horizon past the window, or the run's end), and
    /// whether that is the horizon.
    cap_bucket: usize,
    cap_is_horizon: bool,
    /// The run's end: the last bucket may be partial.
    until_ms: VirtualTimeMs,
    bucket_ms: u64,
}

/// The measurement of an item that changes nothing the model reads
/// ([`PlanItem::changes_nothing_the_model_reads`]): its twin would be the run itself, so none is
/// simulated. It measures exactly zero, as a simulated twin would, at no cost.
pub(super) fn identical_twin(
    fork_time: VirtualTimeMs,
    index: usize,
    item: &PlanItem,
    until_ms: VirtualTimeMs,
    setup: &SessionSetup,
) -> TwinMeasurement {
    let mut measurement = measurement_frame(fork_time, Vec::new(), index, item, until_ms, setup);
    measurement.identical_to_run = true;
    measurement
}

/// Runs `twin` (forked at the start of the item's bucket, the item suppressed) and its noise
/// twins to the end of the item's window, cut at `until_ms`, each branch on a thread of its
/// own (they share nothing, so the figures do not depend on how the threads run); the tail
/// runs later, as the run closes buckets ([`TwinMeasurement::follow_run`]).
pub(super) fn run_twin(
    twin: Core,
    noise_twins: Vec<Core>,
    index: usize,
    item: &PlanItem,
    until_ms: VirtualTimeMs,
    setup: &SessionSetup,
) -> TwinMeasurement {
    let fork_time = twin.now();
    let branches: Vec<Core> = std::iter::once(twin).chain(noise_twins).collect();
    let mut measurement = measurement_frame(fork_time, branches, index, item, until_ms, setup);
    let end_time = (measurement.end_bucket as u64 * setup.bucket_ms).min(until_ms);
    measurement.advance_branches_to(end_time);
    measurement
}

/// A measurement of `item` forked at `fork_time` whose branches have not run yet.
fn measurement_frame(
    fork_time: VirtualTimeMs,
    branches: Vec<Core>,
    index: usize,
    item: &PlanItem,
    until_ms: VirtualTimeMs,
    setup: &SessionSetup,
) -> TwinMeasurement {
    let (catalog, bucket_ms) = (&*setup.catalog, setup.bucket_ms);
    let horizon_ms = setup.truth_horizon_ms;
    let n_buckets = until_ms.div_ceil(bucket_ms) as usize;
    let window_end = item.window_end_ms.min(until_ms).max(fork_time + 1);
    let end_bucket = (window_end.div_ceil(bucket_ms) as usize).min(n_buckets);
    let cap_time = item.window_end_ms.saturating_add(horizon_ms).min(until_ms);
    let cap_bucket = (cap_time.div_ceil(bucket_ms) as usize).clamp(end_bucket, n_buckets);
    let cap_is_horizon = cap_time < until_ms;
    let noise = (1..branches.len())
        .map(|_| RunCollector::new(catalog, bucket_ms, n_buckets))
        .collect();
    let first_bucket = (fork_time / bucket_ms) as usize;
    TwinMeasurement {
        item: index,
        first_bucket,
        end_bucket,
        window_end_bucket: end_bucket,
        twin: RunCollector::new(catalog, bucket_ms, n_buckets),
        noise,
        tail_end: TailEnd::Open,
        identical_to_run: false,
        branches,
        next_checked_bucket: first_bucket,
        significant_before: vec![false; catalog.streams.len()],
        any_moved: false,
        quiet_buckets: 0,
        cap_bucket,
        cap_is_horizon,
        until_ms,
        bucket_ms,
    }
}

/// Advances a branch to `end_time` as the session advances its own core: bucket by bucket,
/// drawing the background a day ahead at each boundary, so a branch that runs for days gets
/// the same background events as the run (and never waits on a draw that is overdue).
fn advance_branch(
    branch: &mut Core,
    end_time: VirtualTimeMs,
    collector: &mut RunCollector,
    bucket_ms: u64,
) {
    while branch.now() < end_time {
        let now = branch.now();
        if now % bucket_ms == 0 {
            branch.draw_background(now);
        }
        let next_boundary = (now / bucket_ms + 1) * bucket_ms;
        branch.advance_to(next_boundary.min(end_time), collector, &mut Vec::new());
    }
}

impl TwinMeasurement {
    /// The noise band of `stream` in `bucket`: a difference between the run and the twin
    /// beyond it is significant. The larger of a floor (three Poisson standard deviations of the
    /// counterfactual count; for a gauge 5 % of its reading and at least one unit) and three
    /// standard deviations of the drift between the counterfactual branches over this bucket
    /// and the four before it (how far parted random paths differ by chance).
    pub fn band(&self, bucket: usize, stream: usize) -> f64 {
        let counterfactual = self.twin.bucket_value(bucket, stream).unwrap_or(0.0);
        let floor = if self.twin.is_gauge(stream) {
            (GAUGE_BAND_SHARE * counterfactual.abs()).max(GAUGE_BAND_FLOOR)
        } else {
            BAND_Z * counterfactual.max(1.0).sqrt()
        };
        if self.noise.is_empty() {
            return floor;
        }
        let from = bucket
            .saturating_sub(DRIFT_POOL_BUCKETS - 1)
            .max(self.first_bucket);
        let mut sum_squares = 0.0;
        let mut n = 0usize;
        for pooled in from..=bucket {
            let Some(twin_value) = self.twin.bucket_value(pooled, stream) else {
                continue;
            };
            for noise in &self.noise {
                if let Some(noise_value) = noise.bucket_value(pooled, stream) {
                    sum_squares += (twin_value - noise_value).powi(2);
                    n += 1;
                }
            }
        }
        let drift = if n == 0 {
            0.0
        } else {
            (sum_squares / n as f64).sqrt()
        };
        floor.max(BAND_Z * drift)
    }

    /// The difference (run − twin) of `stream` in `bucket`: `None` for a gauge that did not
    /// report in one of the branches (a count that saw no event counts 0).
    pub fn delta(&self, actual: &RunCollector, bucket: usize, stream: usize) -> Option<f64> {
        let gauge = self.twin.is_gauge(stream);
        let a = actual.bucket_value(bucket, stream);
        let b = self.twin.bucket_value(bucket, stream);
        match (a, b) {
            (Some(a), Some(b)) => Some(a - b),
            _ if !gauge => Some(a.unwrap_or(0.0) - b.unwrap_or(0.0)),
            _ => None,
        }
    }

    /// Follows the run up to `closed_buckets` (the buckets whose values are final): compares
    /// each newly closed bucket of the window and tail with the twin, and runs the branches one
    /// bucket further while the tail has not converged.
    pub(super) fn follow_run(&mut self, actual: &RunCollector, closed_buckets: usize) {
        let converged_after =
            (CONVERGED_AFTER_MS.div_ceil(self.bucket_ms) as usize).max(CONVERGED_AFTER_BUCKETS);
        while self.tail_end == TailEnd::Open && self.next_checked_bucket < closed_buckets {
            let bucket = self.next_checked_bucket;
            if self.identical_to_run {
                self.twin.copy_bucket_from(actual, bucket);
                self.end_bucket = self.end_bucket.max(bucket + 1);
            } else if bucket >= self.end_bucket {
                if bucket >= self.cap_bucket {
                    self.close_tail();
                    break;
                }
                self.run_branches_one_bucket();
            }
            // A stream breaks the quiet only when it is beyond its band two buckets in a row:
            // with fifty streams, one bucket beyond a 3σ band happens by chance every few
            // buckets, two in a row on the same stream rarely.
            let mut quiet = true;
            for stream in 0..self.significant_before.len() {
                let significant = self
                    .delta(actual, bucket, stream)
                    .is_some_and(|delta| delta.abs() > self.band(bucket, stream));
                if significant && self.significant_before[stream] {
                    self.any_moved = true;
                    quiet = false;
                }
                self.significant_before[stream] = significant;
            }
            self.quiet_buckets = if quiet { self.quiet_buckets + 1 } else { 0 };
            self.next_checked_bucket += 1;
            let past_window = self.next_checked_bucket >= self.window_end_bucket;
            if past_window && (!self.any_moved || self.quiet_buckets >= converged_after) {
                self.tail_end = TailEnd::Converged;
                self.branches.clear();
            }
        }
    }

    fn run_branches_one_bucket(&mut self) {
        let end_time = ((self.end_bucket as u64 + 1) * self.bucket_ms).min(self.until_ms);
        self.advance_branches_to(end_time);
        self.end_bucket += 1;
    }

    /// Runs every branch to `end_time`, the twin on this thread and each noise twin on a
    /// scoped thread of its own (the machine's other cores; each branch owns its core and
    /// collector, so the result is the same whatever the scheduling).
    fn advance_branches_to(&mut self, end_time: VirtualTimeMs) {
        let bucket_ms = self.bucket_ms;
        let mut collectors = std::iter::once(&mut self.twin).chain(self.noise.iter_mut());
        let mut pairs = self.branches.iter_mut().zip(&mut collectors);
        let Some((twin_branch, twin_collector)) = pairs.next() else {
            return;
        };
        std::thread::scope(|scope| {
            for (branch, collector) in pairs {
                scope.spawn(move || advance_branch(branch, end_time, collector, bucket_ms));
            }
            advance_branch(twin_branch, end_time, twin_collector, bucket_ms);
        });
    }

    /// The tail reached its cap: the horizon, or the run's end.
    fn close_tail(&mut self) {
        self.tail_end = if self.cap_is_horizon {
            TailEnd::Horizon
        } else {
            TailEnd::RunEnd
        };
        self.branches.clear();
    }

    /// The run ended: a tail still open ends here.
    pub(super) fn end_with_run(&mut self, actual: &RunCollector, run_buckets: usize) {
        self.follow_run(actual, run_buckets);
        if self.tail_end == TailEnd::Open {
            if self.next_checked_bucket >= self.cap_bucket {
                self.close_tail();
            } else {
                self.tail_end = TailEnd::RunEnd;
                self.branches.clear();
            }
        }
    }
}
