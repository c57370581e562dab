//! A session's analysis: every bucket scored against the baseline as it closes, the walk that
//! asks the analyst when a stream becomes flagged, and the recommendations — with the
//! analyst's replies recorded, so a replay makes the same recommendations without asking again.
//!
//! The analyst runs one of three ways ([`AnalystRunner`]): in place (the rules, or any analyst
//! in a headless run, whose reply is merged in the bucket it was asked in); on its own thread
//! (a language model in a live session: the engine never waits for it, and a reply is merged in
//! the bucket that closes after it arrives); or from recorded replies (a replay).

use std::sync::mpsc;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::analyst::context::{AnalysisContext, ContextEvent, RunView};
use crate::analyst::recommendation::{Recommendation, ResolveError};
use crate::analyst::{
    answered_by, answered_label, Analyst, AnalystCall, RecommendationsFile, ScoredRun, Walk,
    RECOMMENDATIONS_FORMAT,
};
use crate::market::{Catalog, Epoch};
use crate::stats::baseline::{Baseline, BucketMatrix};
use crate::stats::{ScoreTable, Scorer};

/// One answer of the analyst, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalystReply {
    /// The bucket after which the analyst was asked.
    pub asked_after: usize,
    /// The bucket after which the answer was merged (the same one for an analyst asked in
    /// place; later for one on its own thread).
    pub merged_after: usize,
    pub recommendations: Vec<Recommendation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<AnalystCall>,
}

/// `analyst-replies.json`: what a replay needs to make the same recommendations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalystRepliesFile {
    pub format: String,
    pub analyst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The analyst's call budget (absent: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_analyses: Option<usize>,
    pub replies: Vec<AnalystReply>,
}

pub const ANALYST_REPLIES_FORMAT: &str = "marketsim-analyst-replies/1";

/// A reply on its way back from an analyst's thread.
pub struct BackgroundReply {
    asked_after: usize,
    recommendations: Vec<Recommendation>,
    call: Option<AnalystCall>,
}

/// How the analyst is asked.
pub enum AnalystRunner {
    /// Asked in place; the session waits for the answer.
    InPlace(Box<dyn Analyst>),
    /// On its own thread; the session never waits.
    Background {
        name: String,
        model: Option<String>,
        max_analyses: usize,
        requests: mpsc::Sender<(usize, AnalysisContext)>,
        replies: mpsc::Receiver<BackgroundReply>,
    },
    /// Answers recorded by an earlier session.
    Replay(AnalystRepliesFile),
}

impl AnalystRunner {
    /// Moves `analyst` to its own thread.
    pub fn background(mut analyst: Box<dyn Analyst>) -> AnalystRunner {
        let (request_sender, request_receiver) = mpsc::channel::<(usize, AnalysisContext)>();
        let (reply_sender, reply_receiver) = mpsc::channel();
        let name = analyst.name().to_string();
        let model = analyst.model();
        let max_analyses = analyst.max_analyses();
        std::thread::spawn(move || {
            for (asked_after, context) in request_receiver {
                let calls_before = analyst.calls().len();
                let recommendations = analyst.analyze(&context);
                let call = analyst.calls().get(calls_before).cloned();
                let reply = BackgroundReply {
                    asked_after,
                    recommendations,
                    call,
                };
                if reply_sender.send(reply).is_err() {
                    break;
                }
            }
        });
        AnalystRunner::Background {
            name,
            model,
            max_analyses,
            requests: request_sender,
            replies: reply_receiver,
        }
    }

    fn name(&self) -> String {
        match self {
            AnalystRunner::InPlace(analyst) => analyst.name().to_string(),
            AnalystRunner::Background { name, .. } => name.clone(),
            AnalystRunner::Replay(file) => file.analyst.clone(),
        }
    }

    fn model(&self) -> Option<String> {
        match self {
            AnalystRunner::InPlace(analyst) => analyst.model(),
            AnalystRunner::Background { model, .. } => model.clone(),
            AnalystRunner::Replay(file) => file.model.clone(),
        }
    }

    fn max_analyses(&self) -> usize {
        match self {
            AnalystRunner::InPlace(analyst) => analyst.max_analyses(),
            AnalystRunner::Background { max_analyses, .. } => *max_analyses,
            AnalystRunner::Replay(file) => file.max_analyses.unwrap_or(usize::MAX),
        }
    }
}

/// What closing one bucket did to the recommendations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecommendationChanges {
    /// Ids of recommendations opened, merged into or resolved.
    pub changed: Vec<String>,
}

/// The scored buckets, the walk and the analyst of a session.
pub struct SessionAnalysis {
    baseline: Arc<Baseline>,
    scorer: Scorer,
    run: ScoredRun,
    events: Vec<ContextEvent>,
    walk: Walk,
    runner: AnalystRunner,
    replies: Vec<AnalystReply>,
    epoch: Epoch,
}

impl SessionAnalysis {
    pub fn new(
        catalog: &Catalog,
        baseline: Arc<Baseline>,
        epoch: Epoch,
        bucket_ms: u64,
        runner: AnalystRunner,
    ) -> Self {
        let scorer = Scorer::new(catalog, Arc::clone(&baseline), epoch, bucket_ms);
        let values = BucketMatrix::new(epoch.unix_ms(), bucket_ms, catalog.streams.len(), 0);
        let run = ScoredRun {
            names: catalog.streams.iter().map(|s| s.name.clone()).collect(),
            domains: catalog.streams.iter().map(|s| s.domain.clone()).collect(),
            window_lengths: scorer.window_lengths(),
            scores: ScoreTable::empty(catalog.streams.len()),
            values,
        };
        SessionAnalysis {
            walk: Walk::new(catalog.streams.len()),
            baseline,
            scorer,
            run,
            events: Vec::new(),
            runner,
            replies: Vec::new(),
            epoch,
        }
    }

    /// Forgets every bucket (the session re-simulated its history); keeps baseline and analyst.
    pub fn restart(&mut self) {
        let n_streams = self.run.names.len();
        let bucket_ms = self.run.values.bucket_ms;
        self.scorer = self.scorer.restarted();
        self.run.values = BucketMatrix::new(self.epoch.unix_ms(), bucket_ms, n_streams, 0);
        self.run.scores = ScoreTable::empty(n_streams);
        self.events.clear();
        self.walk = Walk::new(n_streams);
        self.replies.clear();
    }

    pub fn baseline(&self) -> &Arc<Baseline> {
        &self.baseline
    }
    pub fn scores(&self) -> &ScoreTable {
        &self.run.scores
    }
    pub fn scored_run(&self) -> &ScoredRun {
        &self.run
    }
    pub fn events(&self) -> &[ContextEvent] {
        &self.events
    }
    pub fn recommendations(&self) -> &[Recommendation] {
        &self.walk.book.recommendations
    }
    pub fn replies(&self) -> &[AnalystReply] {
        &self.replies
    }

    /// Adds external events that fired (in time order).
    pub fn add_events(&mut self, events: impl IntoIterator<Item = ContextEvent>) {
        self.events.extend(events);
    }

    /// Scores the next bucket (`values`, one per stream), walks it, and asks the analyst if a
    /// stream became flagged.
    pub fn close_bucket(&mut self, values: &[Option<f64>]) -> RecommendationChanges {
        let bucket = self.run.values.n_buckets();
        let bucket_ms = self.run.values.bucket_ms;
        let scores = self.scorer.score_bucket(bucket as u64 * bucket_ms, values);
        self.run.values.push_bucket(values);
        self.run.scores.push_bucket(&scores);
        let before = self.walk.book.clone();
        let view = RunView {
            stream_names: &self.run.names,
            stream_domains: &self.run.domains,
            epoch: self.epoch,
            bucket_ms,
            values: &self.run.values,
            scores: &self.run.scores,
            baseline: &self.baseline,
            events: &self.events,
        };
        let max_analyses = self.runner.max_analyses();
        if self.walk.observe(&view, bucket) && self.walk.analyses < max_analyses {
            self.walk.analyses += 1;
            match &mut self.runner {
                AnalystRunner::InPlace(analyst) => {
                    let context = view.context_at(bucket);
                    let calls_before = analyst.calls().len();
                    let recommendations = analyst.analyze(&context);
                    let call = analyst.calls().get(calls_before).cloned();
                    self.replies.push(AnalystReply {
                        asked_after: bucket,
                        merged_after: bucket,
                        recommendations,
                        call,
                    });
                }
                AnalystRunner::Background { requests, .. } => {
                    // A closed channel means the thread is gone: the walk goes on without it.
                    let _ = requests.send((bucket, view.context_at(bucket)));
                }
                AnalystRunner::Replay(_) => {}
            }
        }
        // Merge what is ready now: the in-place answer, arrived background answers, or the
        // recorded answers merged after this bucket.
        let ready: Vec<AnalystReply> = match &mut self.runner {
            AnalystRunner::InPlace(_) => self
                .replies
                .last()
                .filter(|reply| reply.merged_after == bucket)
                .cloned()
                .into_iter()
                .collect(),
            AnalystRunner::Background { replies, .. } => {
                let arrived: Vec<AnalystReply> = replies
                    .try_iter()
                    .map(|reply| AnalystReply {
                        asked_after: reply.asked_after,
                        merged_after: bucket,
                        recommendations: reply.recommendations,
                        call: reply.call,
                    })
                    .collect();
                self.replies.extend(arrived.iter().cloned());
                arrived
            }
            AnalystRunner::Replay(file) => {
                // Kept as if answered now, so the replay's recommendations.json (call records
                // included) and analyst-replies.json are the recorded session's.
                let recorded: Vec<AnalystReply> = file
                    .replies
                    .iter()
                    .filter(|reply| reply.merged_after == bucket)
                    .cloned()
                    .collect();
                self.replies.extend(recorded.iter().cloned());
                recorded
            }
        };
        for reply in ready {
            self.walk.merge(&view, bucket, reply.recommendations);
        }
        self.walk.clear(&view, bucket);
        RecommendationChanges {
            changed: changed_ids(&before.recommendations, &self.walk.book.recommendations),
        }
    }

    /// The take-action workflow: resolves `recommendation` by `action` at virtual time `at`.
    pub fn resolve(
        &mut self,
        recommendation: &str,
        action: &str,
        at: &str,
    ) -> Result<(), ResolveError> {
        self.walk.book.resolve(recommendation, action, at)
    }

    /// `recommendations.json`.
    pub fn recommendations_file(&self) -> RecommendationsFile {
        let calls = match &self.runner {
            AnalystRunner::InPlace(analyst) => analyst.calls(),
            _ => self.replies.iter().filter_map(|r| r.call.clone()).collect(),
        };
        RecommendationsFile {
            format: RECOMMENDATIONS_FORMAT.to_string(),
            analyst: answered_label(&self.runner.name(), &calls),
            model: self.runner.model(),
            analyses: self.walk.analyses,
            answered_by: answered_by(&calls),
            calls,
            recommendations: self.walk.book.recommendations.clone(),
        }
    }

    /// `analyst-replies.json`.
    pub fn replies_file(&self) -> AnalystRepliesFile {
        AnalystRepliesFile {
            format: ANALYST_REPLIES_FORMAT.to_string(),
            analyst: self.runner.name(),
            model: self.runner.model(),
            max_analyses: Some(self.runner.max_analyses()).filter(|max| *max != usize::MAX),
            replies: self.replies.clone(),
        }
    }
}

/// Ids of recommendations that are new or differ between `before` and `after`.
fn changed_ids(before: &[Recommendation], after: &[Recommendation]) -> Vec<String> {
    after
        .iter()
        .enumerate()
        .filter(|(index, recommendation)| before.get(*index) != Some(recommendation))
        .map(|(_, recommendation)| recommendation.id.clone())
        .collect()
}
