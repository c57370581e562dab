//! The recommendations part of `marketsim diff`: two runs' `recommendations.json` matched by
//! what each recommendation diagnoses and when it was first made, so a change of analyst,
//! model or rules shows as recommendations added, removed or changed.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::FieldDifference;
use crate::analyst::recommendation::Recommendation;
use crate::analyst::RecommendationsFile;
use crate::output::analysis::RECOMMENDATIONS_FILE;
use crate::output::read_json_file;
use crate::output::run_dir::OutputError;

/// One recommendation, as the diff lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationSummary {
    pub id: String,
    pub key: String,
    pub timestamp: String,
    pub title: String,
    pub priority: String,
    pub source: String,
    pub affected_streams: Vec<String>,
    pub related_events: Vec<String>,
}

impl RecommendationSummary {
    fn of(recommendation: &Recommendation) -> Self {
        RecommendationSummary {
            id: recommendation.id.clone(),
            key: recommendation.key.clone(),
            timestamp: recommendation.timestamp.clone(),
            title: recommendation.title.clone(),
            priority: label(&recommendation.priority),
            source: recommendation.source.clone(),
            affected_streams: recommendation.affected_streams.clone(),
            related_events: recommendation.related_events.clone(),
        }
    }
}

/// A recommendation both runs made (same key, first made at the same time) that differs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedRecommendation {
    pub key: String,
    pub timestamp: String,
    pub changes: Vec<FieldDifference>,
}

/// Both runs' recommendations compared. Matching is by `key` (what is diagnosed) and
/// `timestamp` (when it was first made): ids are numbered in order, so one recommendation more
/// early in a run would renumber every later one.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationsDiff {
    pub analyst_a: String,
    pub analyst_b: String,
    pub recommendations_a: usize,
    pub recommendations_b: usize,
    pub added: Vec<RecommendationSummary>,
    pub removed: Vec<RecommendationSummary>,
    pub changed: Vec<ChangedRecommendation>,
}

impl RecommendationsDiff {
    pub fn n_differences(&self) -> usize {
        self.added.len() + self.removed.len() + self.changed.len()
    }
}

/// A run's `recommendations.json`, `None` when the run was not analyzed.
pub fn read_recommendations(run: &Path) -> Result<Option<RecommendationsFile>, OutputError> {
    let path = run.join(RECOMMENDATIONS_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    read_json_file(&path).map(Some)
}

/// The comparison of two runs' recommendations.
pub fn diff_recommendations(
    a: &RecommendationsFile,
    b: &RecommendationsFile,
) -> RecommendationsDiff {
    let index = |file: &RecommendationsFile| -> BTreeMap<(String, String), usize> {
        file.recommendations
            .iter()
            .enumerate()
            .map(|(position, r)| ((r.key.clone(), r.timestamp.clone()), position))
            .collect()
    };
    let (index_a, index_b) = (index(a), index(b));
    let removed = a
        .recommendations
        .iter()
        .filter(|r| !index_b.contains_key(&(r.key.clone(), r.timestamp.clone())))
        .map(RecommendationSummary::of)
        .collect();
    let added = b
        .recommendations
        .iter()
        .filter(|r| !index_a.contains_key(&(r.key.clone(), r.timestamp.clone())))
        .map(RecommendationSummary::of)
        .collect();
    let mut changed = Vec::new();
    for recommendation_a in &a.recommendations {
        let Some(&position) = index_b.get(&(
            recommendation_a.key.clone(),
            recommendation_a.timestamp.clone(),
        )) else {
            continue;
        };
        let changes = field_changes(recommendation_a, &b.recommendations[position]);
        if !changes.is_empty() {
            changed.push(ChangedRecommendation {
                key: recommendation_a.key.clone(),
                timestamp: recommendation_a.timestamp.clone(),
                changes,
            });
        }
    }
    RecommendationsDiff {
        analyst_a: a.analyst.clone(),
        analyst_b: b.analyst.clone(),
        recommendations_a: a.recommendations.len(),
        recommendations_b: b.recommendations.len(),
        added,
        removed,
        changed,
    }
}

/// The fields that differ, in a fixed order; texts written by an analyst (description, impact,
/// cause, actions) count as one field, `text`, so a reworded answer shows once.
fn field_changes(a: &Recommendation, b: &Recommendation) -> Vec<FieldDifference> {
    let texts = |r: &Recommendation| {
        serde_json::json!([r.description, r.impact, r.cause, r.actions]).to_string()
    };
    let status = |r: &Recommendation| {
        format!(
            "{}{}",
            label(&r.status),
            r.resolved_at
                .as_ref()
                .map(|at| format!(" at {at}"))
                .unwrap_or_default()
        )
    };
    let fields = [
        ("title", a.title.clone(), b.title.clone()),
        ("priority", label(&a.priority), label(&b.priority)),
        ("source", a.source.clone(), b.source.clone()),
        (
            "affectedStreams",
            a.affected_streams.join(", "),
            b.affected_streams.join(", "),
        ),
        (
            "relatedEvents",
            a.related_events.join(", "),
            b.related_events.join(", "),
        ),
        (
            "confidence",
            a.confidence.to_string(),
            b.confidence.to_string(),
        ),
        ("status", status(a), status(b)),
        ("lastSeen", a.last_seen.clone(), b.last_seen.clone()),
    ];
    let mut changes: Vec<FieldDifference> = fields
        .into_iter()
        .filter(|(_, x, y)| x != y)
        .map(|(field, a, b)| FieldDifference {
            field: field.to_string(),
            a,
            b,
        })
        .collect();
    if texts(a) != texts(b) {
        // The descriptions' openings: enough to see what changed without the whole texts.
        let opening = |text: &str| match text.char_indices().nth(60) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_string(),
        };
        changes.push(FieldDifference {
            field: "text".to_string(),
            a: opening(&a.description),
            b: opening(&b.description),
        });
    }
    changes
}

/// A serde enum's JSON name (`critical`, `resolved`).
fn label<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}
