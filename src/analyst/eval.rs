//! Evaluation: how well a run's recommendations match its ground truth (`truth.json`).
//!
//! Definitions (also printed with `marketsim eval --help`):
//! - a *true cause* is a truth item that is not a red herring and materially moved at least one
//!   stream: by [`MATERIAL_CHANGE`] or more relative to its counterfactual twin, and outside the
//!   drift band truth measured with its noise twin (`material: true`);
//! - a *scripted cause* is a true cause the script put on the timeline (not background);
//! - a recommendation *names* an item when its `relatedEvents` holds the item's id, or, for a
//!   scenario, the id of an event the scenario injected;
//! - a named id is *correct* when it is a true cause (or an event of one) and a recommendation
//!   that names it also lists, in `affectedStreams`, a stream that cause materially moved — a
//!   right name with the wrong streams is not a correct diagnosis;
//! - cause precision = correct named ids / all named ids;
//!   cause recall = scripted causes named / scripted causes that can be named (events, and
//!   scenarios that inject at least one event);
//! - a scripted scenario that injects no event has no id on the dashboard to name: it is *found
//!   by its streams* when a recommendation made between its start and its settling lists a
//!   stream it materially moved; reported apart, as "found by streams";
//! - red herrings blamed = named ids that are red herrings / all named ids;
//! - stream precision and recall compare the union of `affectedStreams` with the streams the
//!   true causes materially moved;
//! - time to first correct recommendation = from the cause's start to the first recommendation
//!   that names it;
//! - false alarms (from a run directory's `series.csv`): warning and critical stream-buckets
//!   outside the measured effects of real causes (a stream a non-red-herring item measurably
//!   moved, within that item's window), as a share of all scored stream-buckets outside them,
//!   and recommendations per week.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::recommendation::Recommendation;
use super::AnalystCall;
use crate::stats::AnomalyFlag;

/// The smallest relative change (vs the counterfactual) that counts as a real effect. Truth's
/// `material` already separates an effect from random drift, so this floor only leaves out
/// changes too small to act on. It was 10 % while truth had no drift band; at 10 % a competitor's
/// price cut that takes 9–10 % off every demand stream (tight intervals, all material) counted as
/// moving nothing but a drifting queue, and a recommendation naming it for the demand drop as
/// wrong.
pub const MATERIAL_CHANGE: f64 = 0.05;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TruthMeasured {
    pub stream: String,
    pub relative_delta: f64,
    #[serde(default)]
    pub peak_delta: f64,
    /// Outside the drift band of the noise twin (absent in older files: taken as material).
    #[serde(default = "material_by_default")]
    pub material: bool,
}

fn material_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TruthEntry {
    pub id: String,
    pub kind: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub origin: String,
    pub name: String,
    pub start: String,
    pub active_until: String,
    pub settled_at: String,
    pub red_herring: bool,
    /// The window ground truth measured the item over (absent in files of older versions).
    #[serde(default)]
    pub window_start: String,
    #[serde(default)]
    pub window_end: String,
    pub measured: Vec<TruthMeasured>,
}

/// The part of `truth.json` the evaluation and the report read.
#[derive(Debug, Clone, Deserialize)]
pub struct TruthFile {
    pub format: String,
    pub items: Vec<TruthEntry>,
}

impl TruthEntry {
    fn material_streams(&self) -> impl Iterator<Item = &str> {
        self.measured
            .iter()
            .filter(|m| m.material && m.relative_delta.abs() >= MATERIAL_CHANGE)
            .map(|m| m.stream.as_str())
    }

    fn is_true_cause(&self) -> bool {
        !self.red_herring && self.material_streams().next().is_some()
    }

    /// Whether `event` was injected by this scenario.
    fn injected(&self, event: &TruthEntry) -> bool {
        self.kind == "scenario"
            && event.kind == "event"
            && event.origin == format!("scenario:{}", self.reference)
            && event.start >= self.start
            && event.start <= self.active_until
    }
}

/// Time from a cause's start to the first recommendation naming it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CauseLatency {
    pub cause: String,
    #[serde(rename = "ref")]
    pub reference: String,
    /// `None` when no recommendation named it.
    pub first_correct_after_ms: Option<i64>,
}

/// The scores of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvaluation {
    pub run: String,
    pub analyst: String,
    pub recommendations: usize,
    pub scripted_causes: usize,
    pub scripted_causes_named: usize,
    /// Scripted scenarios that inject no event (no id to name), and those found by streams.
    pub unnamable_causes: usize,
    pub unnamable_causes_found: usize,
    pub named_ids: usize,
    pub named_correct: usize,
    pub red_herrings_blamed: usize,
    pub predicted_streams: usize,
    pub true_streams: usize,
    pub streams_correct: usize,
    pub causes: Vec<CauseLatency>,
    /// When the recommendations came from more than one source (an LLM analyst that fell back
    /// to rules for some analyses): the figures of each source's recommendations alone.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_source: BTreeMap<String, SourceEvaluation>,
    /// For an analyst that records its calls (the LLM analyst): how the model answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<CallFigures>,
    /// Set when the run's scored series was read (`marketsim eval` on a run directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_alarms: Option<FalseAlarms>,
}

/// The recommendations of one source (`llm`, `rules-fallback`) in a run, scored alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceEvaluation {
    pub recommendations: usize,
    pub named_ids: usize,
    pub named_correct: usize,
    pub red_herrings_blamed: usize,
}

/// How a run's model calls went, from the call records of `recommendations.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallFigures {
    pub analyses: usize,
    /// Analyses the model answered with a reply that passed validation.
    pub answered_by_model: usize,
    /// Of those, answers with a recommendation whose cause the evidence rules rejected (it
    /// was replaced by the rules' answer for its streams; the rest of the answer was kept).
    pub partly_replaced: usize,
    /// Analyses answered by rules, counted by reason (numbers and quoted names taken out, so
    /// "timed out after 30000 ms" and "timed out after 12000 ms" count as one reason).
    pub fallback_reasons: BTreeMap<String, usize>,
    /// Over the calls that reached the model.
    pub prompt_tokens_p50: Option<u32>,
    pub prompt_tokens_max: Option<u32>,
    pub latency_ms_p50: Option<u64>,
    pub latency_ms_p99: Option<u64>,
}

/// [`CallFigures`] of `calls`; `None` for an analyst that records none.
pub fn call_figures(calls: &[AnalystCall]) -> Option<CallFigures> {
    if calls.is_empty() {
        return None;
    }
    let mut fallback_reasons = BTreeMap::new();
    for call in calls.iter().filter(|call| call.source != "llm") {
        let reason = call.reason.as_deref().unwrap_or("no reason recorded");
        *fallback_reasons.entry(reason_kind(reason)).or_insert(0) += 1;
    }
    let mut prompt_tokens: Vec<u32> = calls.iter().filter_map(|c| c.prompt_tokens).collect();
    let mut latencies: Vec<u64> = calls.iter().filter_map(|c| c.latency_ms).collect();
    prompt_tokens.sort_unstable();
    latencies.sort_unstable();
    Some(CallFigures {
        analyses: calls.len(),
        answered_by_model: calls.iter().filter(|call| call.source == "llm").count(),
        partly_replaced: calls
            .iter()
            .filter(|call| {
                call.source == "llm"
                    && call
                        .reason
                        .as_deref()
                        .is_some_and(|reason| reason.contains(EVIDENCE_REJECTION))
            })
            .count(),
        fallback_reasons,
        prompt_tokens_p50: nearest_rank(&prompt_tokens, 50),
        prompt_tokens_max: prompt_tokens.last().copied(),
        latency_ms_p50: nearest_rank(&latencies, 50),
        latency_ms_p99: nearest_rank(&latencies, 99),
    })
}

/// What the LLM analyst's call record says of a recommendation it replaced (see
/// `LlmAnalyst::hold_to_evidence`).
pub const EVIDENCE_REJECTION: &str = "names a cause the evidence rules reject";

/// The nearest-rank percentile of sorted `values`.
fn nearest_rank<T: Copy>(values: &[T], percent: usize) -> Option<T> {
    let rank = (values.len() * percent).div_ceil(100).max(1);
    values.get(rank - 1).copied()
}

/// A fallback reason without its particulars: the part before any parenthesis, with quoted
/// names and numbers replaced, so reasons of one kind count together.
fn reason_kind(reason: &str) -> String {
    let head = reason.split(" (").next().unwrap_or(reason);
    let mut kind = String::new();
    let mut in_quote = false;
    for character in head.chars() {
        match character {
            '`' => {
                if !in_quote {
                    kind.push('…');
                }
                in_quote = !in_quote;
            }
            _ if in_quote => {}
            digit if digit.is_ascii_digit() => {
                if !kind.ends_with('N') {
                    kind.push('N');
                }
            }
            other => kind.push(other),
        }
    }
    kind.trim().to_string()
}

/// The false-alarm side of a run: flags and recommendations where no real cause was at work.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FalseAlarms {
    /// Scored stream-buckets outside the measured effects of real causes.
    pub quiet_stream_buckets: usize,
    pub warning: usize,
    pub critical: usize,
    pub days: f64,
    pub recommendations: usize,
}

/// Counts the flags of `rows` — (stream, bucket start in Unix ms, flag) — that fall outside the
/// measured effects of `truth`'s real causes; `days` is the run's length.
pub fn count_false_alarms<'a>(
    truth: &TruthFile,
    rows: impl Iterator<Item = (&'a str, i64, AnomalyFlag)>,
    days: f64,
    recommendations: usize,
) -> FalseAlarms {
    let effects: Vec<(&str, i64, i64)> = truth
        .items
        .iter()
        .filter(|item| !item.red_herring)
        .filter_map(|item| Some((item, millis(&item.window_start)?, millis(&item.window_end)?)))
        .flat_map(|(item, start, end)| {
            item.measured
                .iter()
                .map(move |m| (m.stream.as_str(), start, end))
        })
        .collect();
    let mut counts = FalseAlarms {
        quiet_stream_buckets: 0,
        warning: 0,
        critical: 0,
        days,
        recommendations,
    };
    for (stream, at, flag) in rows {
        let in_effect = effects
            .iter()
            .any(|(moved, start, end)| *moved == stream && at >= *start && at < *end);
        if in_effect {
            continue;
        }
        counts.quiet_stream_buckets += 1;
        match flag {
            AnomalyFlag::Warning => counts.warning += 1,
            AnomalyFlag::Critical => counts.critical += 1,
            AnomalyFlag::Normal => {}
        }
    }
    counts
}

/// A flag count's share of the quiet stream-buckets, summed over the runs that have them (to
/// five decimals: the targets are fractions of a percent).
fn alarm_ratio(runs: &[RunEvaluation], count: fn(&FalseAlarms) -> usize) -> Option<f64> {
    let alarms = runs.iter().filter_map(|r| r.false_alarms.as_ref());
    let (flagged, total) = alarms.fold((0, 0), |(f, t), a| {
        (f + count(a), t + a.quiet_stream_buckets)
    });
    (total > 0).then(|| ((flagged as f64 / total as f64) * 100_000.0).round() / 100_000.0)
}

fn ratio(numerator: usize, denominator: usize) -> Option<f64> {
    (denominator > 0).then(|| ((numerator as f64 / denominator as f64) * 1_000.0).round() / 1_000.0)
}

/// Precision, recall and rates over a set of runs (micro-averaged: sums first, then ratios).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scores {
    pub cause_precision: Option<f64>,
    pub cause_recall: Option<f64>,
    /// Scenarios with no id to name, found by their streams.
    pub found_by_streams: Option<f64>,
    pub red_herring_rate: Option<f64>,
    pub stream_precision: Option<f64>,
    pub stream_recall: Option<f64>,
    /// Mean over named scripted causes.
    pub mean_time_to_first_correct_ms: Option<i64>,
    /// Warning and critical shares of the stream-buckets outside real effects, and
    /// recommendations per week, over the runs whose series was read.
    pub quiet_warning_rate: Option<f64>,
    pub quiet_critical_rate: Option<f64>,
    pub recommendations_per_week: Option<f64>,
}

impl Scores {
    pub fn of(runs: &[RunEvaluation]) -> Scores {
        let sum = |f: fn(&RunEvaluation) -> usize| runs.iter().map(f).sum::<usize>();
        let latencies: Vec<i64> = runs
            .iter()
            .flat_map(|r| r.causes.iter().filter_map(|c| c.first_correct_after_ms))
            .collect();
        Scores {
            cause_precision: ratio(sum(|r| r.named_correct), sum(|r| r.named_ids)),
            cause_recall: ratio(sum(|r| r.scripted_causes_named), sum(|r| r.scripted_causes)),
            found_by_streams: ratio(
                sum(|r| r.unnamable_causes_found),
                sum(|r| r.unnamable_causes),
            ),
            red_herring_rate: ratio(sum(|r| r.red_herrings_blamed), sum(|r| r.named_ids)),
            stream_precision: ratio(sum(|r| r.streams_correct), sum(|r| r.predicted_streams)),
            stream_recall: ratio(sum(|r| r.streams_correct), sum(|r| r.true_streams)),
            mean_time_to_first_correct_ms: (!latencies.is_empty())
                .then(|| latencies.iter().sum::<i64>() / latencies.len() as i64),
            quiet_warning_rate: alarm_ratio(runs, |a| a.warning),
            quiet_critical_rate: alarm_ratio(runs, |a| a.critical),
            recommendations_per_week: {
                let alarms = runs.iter().filter_map(|r| r.false_alarms.as_ref());
                let (recommendations, days) =
                    alarms.fold((0, 0.0), |(n, d), a| (n + a.recommendations, d + a.days));
                (days > 0.0).then(|| (recommendations as f64 / days * 7.0 * 10.0).round() / 10.0)
            },
        }
    }
}

/// `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalReport {
    pub format: &'static str,
    pub material_change: f64,
    pub runs: Vec<RunEvaluation>,
    pub overall: Scores,
}

fn millis(timestamp: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Scores one run's recommendations against its truth, and each source's alone when they come
/// from more than one.
pub fn evaluate_run(
    run: &str,
    analyst: &str,
    truth: &TruthFile,
    recommendations: &[Recommendation],
) -> RunEvaluation {
    let mut evaluation = evaluate_recommendations(run, analyst, truth, recommendations);
    let sources: BTreeSet<&str> = recommendations.iter().map(|r| r.source.as_str()).collect();
    if sources.len() > 1 {
        for source in sources {
            let of_source: Vec<Recommendation> = recommendations
                .iter()
                .filter(|r| r.source == source)
                .cloned()
                .collect();
            let alone = evaluate_recommendations(run, analyst, truth, &of_source);
            evaluation.by_source.insert(
                source.to_string(),
                SourceEvaluation {
                    recommendations: alone.recommendations,
                    named_ids: alone.named_ids,
                    named_correct: alone.named_correct,
                    red_herrings_blamed: alone.red_herrings_blamed,
                },
            );
        }
    }
    evaluation
}

fn evaluate_recommendations(
    run: &str,
    analyst: &str,
    truth: &TruthFile,
    recommendations: &[Recommendation],
) -> RunEvaluation {
    let named: BTreeSet<&str> = recommendations
        .iter()
        .flat_map(|r| r.related_events.iter().map(String::as_str))
        .collect();
    let find = |id: &str| truth.items.iter().find(|i| i.id == id);
    // The streams a named item (and, for an event a scenario injected, that scenario) moved.
    fn moved_by<'a>(truth: &'a TruthFile, item: &'a TruthEntry) -> BTreeSet<&'a str> {
        let mut streams: BTreeSet<&str> = item.material_streams().collect();
        for parent in truth.items.iter().filter(|parent| parent.injected(item)) {
            streams.extend(parent.material_streams());
        }
        streams
    }
    let is_correct = |id: &str| {
        let Some(item) = find(id) else {
            return false;
        };
        let is_cause = !item.red_herring
            && (item.is_true_cause()
                || truth
                    .items
                    .iter()
                    .any(|parent| parent.is_true_cause() && parent.injected(item)));
        if !is_cause {
            return false;
        }
        let moved = moved_by(truth, item);
        recommendations
            .iter()
            .filter(|r| r.related_events.iter().any(|named| named == id))
            .any(|r| {
                r.affected_streams
                    .iter()
                    .any(|stream| moved.contains(stream.as_str()))
            })
    };
    let named_correct = named.iter().filter(|id| is_correct(id)).count();
    let red_herrings_blamed = named
        .iter()
        .filter(|id| find(id).is_some_and(|i| i.red_herring))
        .count();
    let names_item = |recommendation: &Recommendation, item: &TruthEntry| {
        recommendation
            .related_events
            .iter()
            .any(|id| id == &item.id || find(id).is_some_and(|event| item.injected(event)))
    };
    let injects_events = |item: &TruthEntry| truth.items.iter().any(|event| item.injected(event));
    let unnamable: Vec<&TruthEntry> = truth
        .items
        .iter()
        .filter(|i| {
            i.origin == "script" && i.kind == "scenario" && i.is_true_cause() && !injects_events(i)
        })
        .collect();
    let unnamable_causes_found = unnamable
        .iter()
        .filter(|item| {
            let (start, end) = (millis(&item.start), millis(&item.settled_at));
            let moved: BTreeSet<&str> = item.material_streams().collect();
            recommendations.iter().any(|r| {
                let at = millis(&r.timestamp);
                at.zip(start).is_some_and(|(at, start)| at >= start)
                    && at.zip(end).is_some_and(|(at, end)| at <= end)
                    && r.affected_streams
                        .iter()
                        .any(|stream| moved.contains(stream.as_str()))
            })
        })
        .count();
    let causes: Vec<CauseLatency> = truth
        .items
        .iter()
        .filter(|i| i.origin == "script" && i.is_true_cause())
        .filter(|i| i.kind != "scenario" || injects_events(i))
        .map(|item| {
            let start = millis(&item.start);
            let first = recommendations
                .iter()
                .filter(|r| names_item(r, item))
                .filter_map(|r| millis(&r.timestamp))
                .min();
            CauseLatency {
                cause: item.id.clone(),
                reference: item.reference.clone(),
                first_correct_after_ms: first.zip(start).map(|(f, s)| f - s),
            }
        })
        .collect();
    let predicted: BTreeSet<&str> = recommendations
        .iter()
        .flat_map(|r| r.affected_streams.iter().map(String::as_str))
        .collect();
    let true_streams: BTreeSet<&str> = truth
        .items
        .iter()
        .filter(|i| !i.red_herring)
        .flat_map(|i| i.material_streams())
        .collect();
    RunEvaluation {
        run: run.to_string(),
        analyst: analyst.to_string(),
        recommendations: recommendations.len(),
        scripted_causes: causes.len(),
        scripted_causes_named: causes
            .iter()
            .filter(|c| c.first_correct_after_ms.is_some())
            .count(),
        unnamable_causes: unnamable.len(),
        unnamable_causes_found,
        named_ids: named.len(),
        named_correct,
        red_herrings_blamed,
        predicted_streams: predicted.len(),
        true_streams: true_streams.len(),
        streams_correct: predicted.intersection(&true_streams).count(),
        causes,
        by_source: BTreeMap::new(),
        calls: None,
        false_alarms: None,
    }
}

pub const EVAL_FORMAT: &str = "marketsim-eval/1";

pub fn report(runs: Vec<RunEvaluation>) -> EvalReport {
    EvalReport {
        format: EVAL_FORMAT,
        material_change: MATERIAL_CHANGE,
        overall: Scores::of(&runs),
        runs,
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{:.0} %", v * 100.0))
}

/// A share to two decimals of a percent (`0.05 %`), for the false-alarm rates.
fn fine_percent(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{:.2} %", v * 100.0))
}

/// The table `marketsim eval` prints.
pub fn render_table(report: &EvalReport) -> String {
    let mut lines = vec![format!(
        "{:<24} {:>5} {:>14} {:>8} {:>9} {:>7} {:>7} {:>10} {:>14} {:>7} {:>7} {:>7}",
        "run",
        "recs",
        "causes named",
        "cause P",
        "herrings",
        "strm P",
        "strm R",
        "first hit",
        "found by strm",
        "quiet W",
        "quiet C",
        "recs/wk"
    )];
    let row = |name: &str, scores: &Scores, recs: usize, named: String, found: String| {
        format!(
            "{:<24} {:>5} {:>14} {:>8} {:>9} {:>7} {:>7} {:>10} {:>14} {:>7} {:>7} {:>7}",
            name,
            recs,
            named,
            percent(scores.cause_precision),
            percent(scores.red_herring_rate),
            percent(scores.stream_precision),
            percent(scores.stream_recall),
            scores
                .mean_time_to_first_correct_ms
                .map_or("-".to_string(), |ms| format!(
                    "{:.1} h",
                    ms as f64 / 3_600_000.0
                )),
            found,
            fine_percent(scores.quiet_warning_rate),
            fine_percent(scores.quiet_critical_rate),
            scores
                .recommendations_per_week
                .map_or("-".to_string(), |n| format!("{n:.1}")),
        )
    };
    for run in &report.runs {
        let scores = Scores::of(std::slice::from_ref(run));
        let name = run_name(run);
        lines.push(row(
            &name,
            &scores,
            run.recommendations,
            format!("{}/{}", run.scripted_causes_named, run.scripted_causes),
            format!("{}/{}", run.unnamable_causes_found, run.unnamable_causes),
        ));
    }
    let total_named: usize = report.runs.iter().map(|r| r.scripted_causes_named).sum();
    let total_causes: usize = report.runs.iter().map(|r| r.scripted_causes).sum();
    lines.push(row(
        "overall",
        &report.overall,
        report.runs.iter().map(|r| r.recommendations).sum(),
        format!(
            "{total_named}/{total_causes} ({})",
            percent(report.overall.cause_recall)
        ),
        format!(
            "{}/{}",
            report
                .runs
                .iter()
                .map(|r| r.unnamable_causes_found)
                .sum::<usize>(),
            report
                .runs
                .iter()
                .map(|r| r.unnamable_causes)
                .sum::<usize>()
        ),
    ));
    if let Some(sources) = render_sources(report) {
        lines.push(sources);
    }
    lines.extend(render_calls(report));
    lines.join("\n") + "\n"
}

/// The run directory's own name: the tables are for people; eval.json keeps the path.
fn run_name(run: &RunEvaluation) -> String {
    std::path::Path::new(&run.run)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.run.clone())
}

/// A table of the model calls of the runs that record them: analyses answered by the model,
/// prompt tokens, latency, and the fallback reasons.
fn render_calls(report: &EvalReport) -> Vec<String> {
    let runs: Vec<(&RunEvaluation, &CallFigures)> = report
        .runs
        .iter()
        .filter_map(|run| run.calls.as_ref().map(|calls| (run, calls)))
        .collect();
    if runs.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![
        String::new(),
        format!(
            "{:<24} {:>14} {:>10} {:>18} {:>16}  fallback reasons",
            "model calls", "answered", "cause repl", "prompt tok p50/max", "latency p50/p99"
        ),
    ];
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut analyses, mut answered, mut replaced) = (0, 0, 0);
    for (run, calls) in &runs {
        analyses += calls.analyses;
        answered += calls.answered_by_model;
        replaced += calls.partly_replaced;
        for (reason, count) in &calls.fallback_reasons {
            *totals.entry(reason.as_str()).or_insert(0) += count;
        }
        let name = run_name(run);
        let reasons: Vec<String> = calls
            .fallback_reasons
            .iter()
            .map(|(reason, count)| format!("{count}× {reason}"))
            .collect();
        lines.push(format!(
            "{:<24} {:>14} {:>10} {:>18} {:>16}  {}",
            name,
            format!(
                "{}/{} ({})",
                calls.answered_by_model,
                calls.analyses,
                percent(ratio(calls.answered_by_model, calls.analyses))
            ),
            calls.partly_replaced,
            format!(
                "{}/{}",
                or_dash(calls.prompt_tokens_p50.map(|n| n.to_string())),
                or_dash(calls.prompt_tokens_max.map(|n| n.to_string()))
            ),
            format!(
                "{}/{}",
                or_dash(
                    calls
                        .latency_ms_p50
                        .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                ),
                or_dash(
                    calls
                        .latency_ms_p99
                        .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                )
            ),
            reasons.join("; ")
        ));
    }
    let reasons: Vec<String> = totals
        .iter()
        .map(|(reason, count)| format!("{count}× {reason}"))
        .collect();
    lines.push(format!(
        "{:<24} {:>14} {:>10} {:>18} {:>16}  {}",
        "overall",
        format!(
            "{answered}/{analyses} ({})",
            percent(ratio(answered, analyses))
        ),
        replaced,
        "",
        "",
        reasons.join("; ")
    ));
    lines
}

/// "by source: llm 12 recs (40 %), cause P 50 %, herrings 0 %; rules-fallback …" over the runs
/// whose recommendations came from more than one source; `None` when none did.
fn render_sources(report: &EvalReport) -> Option<String> {
    let mut totals: BTreeMap<&str, SourceEvaluation> = BTreeMap::new();
    for run in &report.runs {
        for (source, figures) in &run.by_source {
            let total = totals.entry(source.as_str()).or_default();
            total.recommendations += figures.recommendations;
            total.named_ids += figures.named_ids;
            total.named_correct += figures.named_correct;
            total.red_herrings_blamed += figures.red_herrings_blamed;
        }
    }
    let all: usize = totals.values().map(|t| t.recommendations).sum();
    (!totals.is_empty()).then(|| {
        let parts: Vec<String> = totals
            .iter()
            .map(|(source, t)| {
                format!(
                    "{source} {} recs ({}), cause P {}, herrings {}",
                    t.recommendations,
                    percent(ratio(t.recommendations, all)),
                    percent(ratio(t.named_correct, t.named_ids)),
                    percent(ratio(t.red_herrings_blamed, t.named_ids)),
                )
            })
            .collect();
        format!("by source: {}", parts.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{count_false_alarms, evaluate_run, Recommendation, TruthFile};
    use crate::stats::AnomalyFlag;

    fn truth() -> TruthFile {
        let item = |id: &str,
                    kind: &str,
                    reference: &str,
                    origin: &str,
                    moved: &[&str],
                    herring| {
            json!({
                "id": id, "kind": kind, "ref": reference, "origin": origin, "name": reference,
                "start": "2025-03-03T10:00:00.000Z", "activeUntil": "2025-03-03T14:00:00.000Z",
                "settledAt": "2025-03-03T16:00:00.000Z", "redHerring": herring,
                "windowStart": "2025-03-03T10:00:00.000Z", "windowEnd": "2025-03-03T16:00:00.000Z",
                "measured": moved.iter().map(|stream| json!({"stream": stream, "relativeDelta": 0.5})).collect::<Vec<_>>(),
            })
        };
        serde_json::from_value(json!({
            "format": "marketsim-truth/1",
            "items": [
                item("mod_001", "scenario", "inline-shortage", "script", &["session.booking.expired"], false),
                item("evt_001", "event", "cdn-slowdown", "script", &["platform.api.latency"], false),
                item("evt_002", "event", "newspaper-feature", "background", &[], true),
            ],
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn recommendation(at: &str, streams: &[&str], events: &[&str]) -> Recommendation {
        serde_json::from_value(json!({
            "id": "rec", "priority": "warning", "title": "t", "description": "d", "impact": "i",
            "cause": "c", "actions": [], "affectedStreams": streams, "relatedEvents": events,
            "confidence": 50, "timestamp": at, "status": "active", "source": "rules",
            "key": "k", "lastSeen": at,
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_named_cause_is_correct_only_with_a_stream_it_moved() {
        let truth = truth();
        let right = [recommendation(
            "2025-03-03T11:00:00.000Z",
            &["platform.api.latency"],
            &["evt_001"],
        )];
        let wrong_streams = [recommendation(
            "2025-03-03T11:00:00.000Z",
            &["customer.tutor.search"],
            &["evt_001"],
        )];
        assert_eq!(evaluate_run("r", "rules", &truth, &right).named_correct, 1);
        let scored = evaluate_run("r", "rules", &truth, &wrong_streams);
        assert_eq!((scored.named_ids, scored.named_correct), (1, 0));
        // Naming it still counts for recall: the id was found, the diagnosis was not.
        assert_eq!(scored.scripted_causes_named, 1);
    }

    #[test]
    fn a_scenario_with_no_event_to_name_is_found_by_its_streams_in_its_window() {
        let truth = truth();
        let in_window = [recommendation(
            "2025-03-03T12:00:00.000Z",
            &["session.booking.expired"],
            &[],
        )];
        let too_late = [recommendation(
            "2025-03-04T12:00:00.000Z",
            &["session.booking.expired"],
            &[],
        )];
        let other_stream = [recommendation(
            "2025-03-03T12:00:00.000Z",
            &["platform.api.latency"],
            &[],
        )];
        for (recommendations, found) in [(&in_window, 1), (&too_late, 0), (&other_stream, 0)] {
            let scored = evaluate_run("r", "rules", &truth, recommendations);
            assert_eq!(
                (scored.unnamable_causes, scored.unnamable_causes_found),
                (1, found)
            );
            // It is not among the causes that can be named by id.
            assert_eq!(scored.scripted_causes, 1);
        }
    }

    #[test]
    fn flags_inside_a_real_effect_are_not_false_alarms() {
        let truth = truth();
        let at = |time: &str| {
            chrono::DateTime::parse_from_rfc3339(time)
                .map(|t| t.timestamp_millis())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let rows = [
            // In mod_001's window, on the stream it moved: its effect, not an alarm.
            (
                "session.booking.expired",
                at("2025-03-03T12:00:00Z"),
                AnomalyFlag::Critical,
            ),
            // The same stream after the window: an alarm.
            (
                "session.booking.expired",
                at("2025-03-03T18:00:00Z"),
                AnomalyFlag::Critical,
            ),
            // A stream only the red herring "moved" (nothing): an alarm.
            (
                "platform.page.view",
                at("2025-03-03T12:00:00Z"),
                AnomalyFlag::Warning,
            ),
            (
                "platform.page.view",
                at("2025-03-03T13:00:00Z"),
                AnomalyFlag::Normal,
            ),
        ];
        let alarms = count_false_alarms(&truth, rows.into_iter(), 1.0, 2);
        assert_eq!(
            (alarms.quiet_stream_buckets, alarms.warning, alarms.critical),
            (3, 1, 1)
        );
    }
}
