//! Statistics over bucketed streams: the baseline (per stream, per slot of the week), scoring
//! of buckets against it (expected value, z, the 0–100 normalization and anomaly flags), and
//! correlations between external events and streams.
//!
//! The mapping users read, in one place:
//! - `z = (value − expected) / σ`, where σ combines Poisson counting noise, the day-to-day
//!   variation seen in the history, and the uncertainty of the baseline's own mean;
//! - `normalized = clamp(50 + 10·z, 0, 100)`: 50 is the expectation, each σ moves it by ten
//!   points, so 70 and 30 are two σ away and 80 and 20 three;
//! - a bucket is `warning` at |z| ≥ 2 and `critical` at |z| ≥ 3, but a flag is only raised when
//!   the bucket *and the one before it* reach that level (two in a row), so one noisy bucket
//!   never pages anyone;
//! - sparse count streams (fewer than [`score::SPARSE_EXPECTED_EVENTS`] expected events a
//!   bucket) are scored on a rolling sum over as many buckets as it takes to expect that many.

pub mod baseline;
pub mod correlation;
pub mod score;

pub use baseline::{Baseline, BucketMatrix};
pub use score::{AnomalyFlag, BucketScore, ScoreTable, Scorer};
