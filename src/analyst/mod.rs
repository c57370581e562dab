//! Analysis of a run: score every bucket against the baseline, find anomaly episodes and
//! correlations, and walk through the run bucket by bucket asking an analyst for
//! recommendations whenever a new anomaly appears — with only what was known at that moment.
//!
//! Analysts: [`rules::RulesAnalyst`] (default, offline, deterministic) and [`llm::LlmAnalyst`]
//! (any OpenAI-compatible endpoint, falling back to the rules analyst visibly). Both read the
//! same [`context::AnalysisContext`]; [`eval`] scores their recommendations against ground
//! truth.

pub mod context;
pub mod eval;
pub mod llm;
pub mod recommendation;
pub mod rules;
pub mod targets;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::market::director::RecordKind;
use crate::market::director::TimelineRecord;
use crate::market::{Catalog, Epoch};
use crate::scenario::timeline::{PlanItem, PlanSubject};
use crate::stats::baseline::{Baseline, BaselineSource, BucketMatrix};
use crate::stats::correlation::{
    anomaly_episodes, event_stream_shifts, AnomalyEpisode, EventCorrelation,
};
use crate::stats::score::{CRITICAL_Z, POINTS_PER_SIGMA, WARNING_Z};
use crate::stats::{AnomalyFlag, ScoreTable, Scorer};
use context::{ContextEvent, RunView};
use recommendation::{Recommendation, RecommendationBook};

pub const ANOMALIES_FORMAT: &str = "marketsim-anomalies/1";
pub const RECOMMENDATIONS_FORMAT: &str = "marketsim-recommendations/1";
/// A recommendation is resolved as cleared when none of its streams has been flagged for this
/// many buckets.
pub const CLEAR_AFTER_BUCKETS: usize = 3;

/// Something that turns a context into recommendations.
/// Analysts are `Send`: a live session runs a slow one on its own thread.
pub trait Analyst: Send {
    /// `rules` or `llm`.
    fn name(&self) -> &'static str;
    fn analyze(&mut self, context: &context::AnalysisContext) -> Vec<Recommendation>;
    /// What happened on each call (for `recommendations.json`); empty for analysts with
    /// nothing to report.
    fn calls(&self) -> Vec<AnalystCall> {
        Vec::new()
    }
    /// The model, for analysts that use one.
    fn model(&self) -> Option<String> {
        None
    }
    /// How many times a run may ask this analyst (a language model costs a call each time).
    fn max_analyses(&self) -> usize {
        usize::MAX
    }
}

/// One call of an analyst that can fail over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalystCall {
    pub at: String,
    /// `llm` or `rules-fallback`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    /// For a call that reached the model: the prompt's tokens (as the server counted them, or
    /// as estimated when it did not say), the reply's, and the whole call's wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// How the scores were computed, for readers of `anomalies.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoringRules {
    pub normalization: &'static str,
    pub warning_z: f64,
    pub critical_z: f64,
    pub points_per_sigma: f64,
    pub persistence: &'static str,
    /// Streams scored on a rolling window, and its length in buckets.
    pub sparse_windows: BTreeMap<String, usize>,
}

/// `anomalies.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnomaliesFile {
    pub format: &'static str,
    pub baseline: BaselineSource,
    pub scoring: ScoringRules,
    pub episodes: Vec<AnomalyEpisode>,
    /// For each external event, the streams that moved after it.
    pub event_correlations: Vec<EventCorrelation>,
}

/// `recommendations.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationsFile {
    pub format: String,
    /// What answered, not only what was asked: `rules`, `llm`, or for an LLM analyst that fell
    /// back, `llm+rules-fallback` (some analyses each) or `rules-fallback` (the model answered
    /// none). See [`answered_label`].
    pub analyst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How many times the analyst was asked.
    pub analyses: usize,
    /// Analyses answered by each source (`llm`, `rules-fallback`), for analysts that record
    /// their calls.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub answered_by: BTreeMap<String, usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<AnalystCall>,
    pub recommendations: Vec<Recommendation>,
}

/// How many analyses each source answered, from an analyst's call records.
pub fn answered_by(calls: &[AnalystCall]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for call in calls {
        *counts.entry(call.source.clone()).or_insert(0) += 1;
    }
    counts
}

/// The `analyst` label of `recommendations.json`: the analyst's name when it answered every
/// analysis itself (or records no calls); otherwise what did — `rules-fallback` when the model
/// answered none, `llm+rules-fallback` when it answered some. A run labelled `llm` whose every
/// recommendation came from the fallback would mislead whoever compares analysts.
pub fn answered_label(analyst: &str, calls: &[AnalystCall]) -> String {
    let by_self = calls.iter().filter(|call| call.source == analyst).count();
    if calls.is_empty() || by_self == calls.len() {
        analyst.to_string()
    } else if by_self == 0 {
        "rules-fallback".to_string()
    } else {
        format!("{analyst}+rules-fallback")
    }
}

/// What analyzing a run produced.
pub struct RunAnalysis {
    pub scores: ScoreTable,
    pub anomalies: AnomaliesFile,
    pub recommendations: RecommendationsFile,
}

/// The external events of a run, as the dashboard sees them, in time order.
pub fn context_events(
    epoch: Epoch,
    items: &[PlanItem],
    records: &[TimelineRecord],
) -> Vec<ContextEvent> {
    records
        .iter()
        .filter_map(|record| {
            let RecordKind::EventFired { instance } = record.kind else {
                return None;
            };
            let item = items.get(instance)?;
            let PlanSubject::Event(event) = &item.subject else {
                return None;
            };
            Some(ContextEvent {
                id: item.instance_id.clone(),
                timestamp: epoch.format(record.time),
                kind: event.kind,
                title: event.title.clone(),
                description: event.description.clone(),
                severity: event.severity,
                expected_impact: event.expected_impact.clone(),
                time_ms: record.time,
            })
        })
        .collect()
}

/// A run's bucket values scored against a baseline, with the stream names and domains the
/// context speaks of: what every analysis starts from, in a run or from a run's files.
pub struct ScoredRun {
    pub names: Vec<String>,
    pub domains: Vec<String>,
    pub values: BucketMatrix,
    pub scores: ScoreTable,
    /// The scorer's rolling-window length per stream.
    pub window_lengths: Vec<usize>,
}

impl ScoredRun {
    /// Scores `values` (whose streams are the catalog's, in order) bucket by bucket.
    pub fn new(catalog: &Catalog, baseline: &Baseline, epoch: Epoch, values: BucketMatrix) -> Self {
        let mut scorer = Scorer::new(
            catalog,
            std::sync::Arc::new(baseline.clone()),
            epoch,
            values.bucket_ms,
        );
        let scores = scorer.score_matrix(&values);
        ScoredRun {
            names: catalog.streams.iter().map(|s| s.name.clone()).collect(),
            domains: catalog.streams.iter().map(|s| s.domain.clone()).collect(),
            window_lengths: scorer.window_lengths(),
            values,
            scores,
        }
    }

    pub fn view<'a>(
        &'a self,
        epoch: Epoch,
        baseline: &'a Baseline,
        events: &'a [ContextEvent],
    ) -> RunView<'a> {
        RunView {
            stream_names: &self.names,
            stream_domains: &self.domains,
            epoch,
            bucket_ms: self.values.bucket_ms,
            values: &self.values,
            scores: &self.scores,
            baseline,
            events,
        }
    }
}

/// Analyzes a finished run: scores, episodes, correlations, and the analyst's recommendations.
/// `values` are the run's buckets (streams in catalog order), `events` its external events.
pub fn analyze_run(
    catalog: &Catalog,
    epoch: Epoch,
    values: BucketMatrix,
    events: &[ContextEvent],
    baseline: &Baseline,
    analyst: &mut dyn Analyst,
) -> RunAnalysis {
    let run = ScoredRun::new(catalog, baseline, epoch, values);
    let anomalies = anomalies_file(&run, epoch, events, baseline);
    let recommendations = recommend_over_run(&run.view(epoch, baseline, events), analyst);
    RunAnalysis {
        scores: run.scores,
        anomalies,
        recommendations,
    }
}

/// `anomalies.json` of a scored run: episodes, event correlations, and the scoring rules.
pub fn anomalies_file(
    run: &ScoredRun,
    epoch: Epoch,
    events: &[ContextEvent],
    baseline: &Baseline,
) -> AnomaliesFile {
    let bucket_ms = run.values.bucket_ms;
    let (names, values, scores) = (&run.names, &run.values, &run.scores);
    let format_time = |bucket: usize| epoch.format(bucket as u64 * bucket_ms);
    let episodes = anomaly_episodes(scores, values, names, &format_time);
    let last_bucket = scores.n_buckets().saturating_sub(1);
    let event_correlations = events
        .iter()
        .filter_map(|event| {
            let streams = event_stream_shifts(
                scores,
                names,
                (event.time_ms / bucket_ms) as usize,
                event.time_ms,
                bucket_ms,
                last_bucket,
            );
            (!streams.is_empty()).then(|| EventCorrelation {
                event_id: event.id.clone(),
                streams,
            })
        })
        .collect();
    let sparse_windows = names
        .iter()
        .zip(&run.window_lengths)
        .filter(|(_, length)| **length > 1)
        .map(|(name, length)| (name.clone(), *length))
        .collect();
    AnomaliesFile {
        format: ANOMALIES_FORMAT,
        baseline: baseline.source.clone(),
        scoring: ScoringRules {
            normalization: "normalized = clamp(50 + 10·z, 0, 100); z = (value − expected) / σ",
            warning_z: WARNING_Z,
            critical_z: CRITICAL_Z,
            points_per_sigma: POINTS_PER_SIGMA,
            persistence: "a flag needs two consecutive buckets at that level, on the same side",
            sparse_windows,
        },
        episodes,
        event_correlations,
    }
}

/// [`walk_run`] and what it produced, as `recommendations.json` holds it.
pub fn recommend_over_run(view: &RunView, analyst: &mut dyn Analyst) -> RecommendationsFile {
    let (book, analyses) = walk_run(view, analyst);
    let calls = analyst.calls();
    RecommendationsFile {
        format: RECOMMENDATIONS_FORMAT.to_string(),
        analyst: answered_label(analyst.name(), &calls),
        model: analyst.model(),
        analyses,
        answered_by: answered_by(&calls),
        calls,
        recommendations: book.recommendations,
    }
}

/// Walks the run bucket by bucket: asks the analyst whenever a stream becomes flagged (at most
/// [`Analyst::max_analyses`] times), merges what it says into the book, and resolves recommendations
/// whose streams have calmed down.
pub fn walk_run(view: &RunView, analyst: &mut dyn Analyst) -> (RecommendationBook, usize) {
    let max_analyses = analyst.max_analyses();
    let mut walk = Walk::new(view.stream_names.len());
    for bucket in 0..view.scores.n_buckets() {
        if walk.observe(view, bucket) && walk.analyses < max_analyses {
            let context = view.context_at(bucket);
            walk.analyses += 1;
            let fresh = analyst.analyze(&context);
            walk.merge(view, bucket, fresh);
        }
        walk.clear(view, bucket);
    }
    (walk.book, walk.analyses)
}

/// Where a walk through a run's buckets is: the recommendations so far and which streams were
/// flagged. A finished run walks every bucket at once; a live session one bucket as it closes;
/// both make the same recommendations.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    pub book: RecommendationBook,
    /// How many times the analyst was asked.
    pub analyses: usize,
    previously_flagged: Vec<bool>,
    last_flagged: Vec<Option<usize>>,
}

impl Walk {
    pub fn new(n_streams: usize) -> Self {
        Walk {
            book: RecommendationBook::default(),
            analyses: 0,
            previously_flagged: vec![false; n_streams],
            last_flagged: vec![None; n_streams],
        }
    }

    /// Takes in bucket `bucket`'s flags; true when a stream became flagged (an analysis is due).
    pub fn observe(&mut self, view: &RunView, bucket: usize) -> bool {
        let mut new_onset = false;
        for (stream, previous) in self.previously_flagged.iter_mut().enumerate() {
            let flagged = view
                .scores
                .get(bucket, stream)
                .is_some_and(|s| s.flag != AnomalyFlag::Normal);
            if flagged {
                new_onset |= !*previous;
                self.last_flagged[stream] = Some(bucket);
            }
            *previous = flagged;
        }
        new_onset
    }

    /// Merges what an analyst said after bucket `bucket` into the book.
    pub fn merge(&mut self, view: &RunView, bucket: usize, fresh: Vec<Recommendation>) {
        let now = view.epoch.format((bucket as u64 + 1) * view.bucket_ms);
        self.book.merge(fresh, &now);
    }

    /// Resolves recommendations none of whose streams was flagged in the last
    /// [`CLEAR_AFTER_BUCKETS`] buckets up to `bucket`.
    pub fn clear(&mut self, view: &RunView, bucket: usize) {
        let now = view.epoch.format((bucket as u64 + 1) * view.bucket_ms);
        let last_flagged = &self.last_flagged;
        let recently_flagged = |name: &str| {
            view.stream_names
                .iter()
                .position(|n| n == name)
                .and_then(|stream| last_flagged[stream])
                .is_some_and(|b| bucket - b < CLEAR_AFTER_BUCKETS)
        };
        self.book.clear_resolved(recently_flagged, &now);
    }
}
