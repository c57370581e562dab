//! The seed's `Recommendation` and `RecommendedAction`, and the book that keeps them over a run:
//! de-duplicated by what they diagnose, resolved when their anomalies clear or when someone
//! takes an action (the seed's fake execution, recorded with its time).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Normal,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendedAction {
    pub id: String,
    pub label: String,
    pub description: String,
    pub expected_impact: String,
    pub time_to_effect: String,
}

/// How a recommendation was resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolution {
    /// `action` (someone took one of its actions) or `cleared` (its anomalies went back to
    /// normal).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    pub note: String,
}

/// The seed's `Recommendation`, plus where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub id: String,
    pub priority: Priority,
    pub title: String,
    pub description: String,
    pub impact: String,
    pub cause: String,
    pub actions: Vec<RecommendedAction>,
    pub affected_streams: Vec<String>,
    pub related_events: Vec<String>,
    /// 0–100.
    pub confidence: u8,
    pub timestamp: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// `rules`, `llm`, or `rules-fallback` (the LLM failed; `fallbackReason` says why).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// What the recommendation diagnoses, e.g. `supply-shortfall`; recommendations with the
    /// same key are one recommendation while it is active.
    pub key: String,
    /// When it was last confirmed by a fresh analysis.
    pub last_seen: String,
}

/// Errors of the take-action workflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no recommendation `{0}`")]
    UnknownRecommendation(String),
    #[error("recommendation `{0}` is already resolved")]
    AlreadyResolved(String),
    #[error("recommendation `{recommendation}` has no action `{action}` (it has: {available})")]
    UnknownAction {
        recommendation: String,
        action: String,
        available: String,
    },
}

/// The take-action checks: `id` exists, is still active, and offers `action_id`. Returns the
/// recommendation's index and the action's label.
pub fn check_resolvable(
    recommendations: &[Recommendation],
    id: &str,
    action_id: &str,
) -> Result<(usize, String), ResolveError> {
    let index = recommendations
        .iter()
        .position(|r| r.id == id)
        .ok_or_else(|| ResolveError::UnknownRecommendation(id.to_string()))?;
    let recommendation = &recommendations[index];
    if recommendation.status == Status::Resolved {
        return Err(ResolveError::AlreadyResolved(id.to_string()));
    }
    let Some(action) = recommendation.actions.iter().find(|a| a.id == action_id) else {
        return Err(ResolveError::UnknownAction {
            recommendation: id.to_string(),
            action: action_id.to_string(),
            available: recommendation
                .actions
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    Ok((index, action.label.clone()))
}

/// Every recommendation of a run or session, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecommendationBook {
    pub recommendations: Vec<Recommendation>,
}

/// A cleared recommendation whose finding returns within this many hours is reopened.
pub const REOPEN_WITHIN_HOURS: f64 = 24.0;

/// Hours from ISO 8601 instant `from` to `to`; `None` when either does not parse.
fn hours_between(from: &str, to: &str) -> Option<f64> {
    let from = chrono::DateTime::parse_from_rfc3339(from).ok()?;
    let to = chrono::DateTime::parse_from_rfc3339(to).ok()?;
    Some((to - from).num_milliseconds() as f64 / 3_600_000.0)
}

impl RecommendationBook {
    /// Adds fresh recommendations made at `timestamp`: one whose key matches an active
    /// recommendation updates it (streams and events merged, priority and confidence raised);
    /// any other becomes a new recommendation with the next id.
    pub fn merge(&mut self, fresh: Vec<Recommendation>, timestamp: &str) {
        for mut recommendation in fresh {
            // The same diagnosis is the same recommendation while it is active, unless it now
            // names a cause the active one did not: that is a new finding.
            let same_finding = |r: &Recommendation| {
                r.key == recommendation.key
                    && recommendation
                        .related_events
                        .iter()
                        .all(|e| r.related_events.contains(e))
            };
            // A finding whose streams calmed down for a few buckets and then flared up again
            // is the same finding: it is reopened rather than raised anew.
            let reopenable = |r: &Recommendation| {
                r.status == Status::Resolved
                    && r.resolution.as_ref().is_some_and(|x| x.kind == "cleared")
                    && r.resolved_at
                        .as_deref()
                        .and_then(|at| hours_between(at, timestamp))
                        .is_some_and(|hours| hours <= REOPEN_WITHIN_HOURS)
            };
            let index = self
                .recommendations
                .iter()
                .position(|r| r.status == Status::Active && same_finding(r))
                .or_else(|| {
                    self.recommendations
                        .iter()
                        .rposition(|r| reopenable(r) && same_finding(r))
                });
            if let Some(index) = index {
                let reopened = &mut self.recommendations[index];
                reopened.status = Status::Active;
                reopened.resolved_at = None;
                reopened.resolution = None;
            }
            let existing = index.map(|index| &mut self.recommendations[index]);
            match existing {
                Some(active) => {
                    for stream in recommendation.affected_streams {
                        if !active.affected_streams.contains(&stream) {
                            active.affected_streams.push(stream);
                        }
                    }
                    for event in recommendation.related_events {
                        if !active.related_events.contains(&event) {
                            active.related_events.push(event);
                        }
                    }
                    if active.cause.is_empty() {
                        active.cause = recommendation.cause;
                    }
                    active.priority = active.priority.max(recommendation.priority);
                    active.confidence = active.confidence.max(recommendation.confidence);
                    active.last_seen = timestamp.to_string();
                }
                None => {
                    let number = self.recommendations.len() + 1;
                    recommendation.id = format!("rec_{number:03}");
                    for (index, action) in recommendation.actions.iter_mut().enumerate() {
                        action.id = format!("act_{number:03}_{}", index + 1);
                    }
                    recommendation.timestamp = timestamp.to_string();
                    recommendation.last_seen = timestamp.to_string();
                    recommendation.status = Status::Active;
                    self.recommendations.push(recommendation);
                }
            }
        }
    }

    /// The take-action workflow: marks `id` resolved by `action_id` at `timestamp`.
    pub fn resolve(
        &mut self,
        id: &str,
        action_id: &str,
        timestamp: &str,
    ) -> Result<(), ResolveError> {
        let (index, label) = check_resolvable(&self.recommendations, id, action_id)?;
        let recommendation = &mut self.recommendations[index];
        let note = format!("{label} (simulated execution)");
        recommendation.status = Status::Resolved;
        recommendation.resolved_at = Some(timestamp.to_string());
        recommendation.resolution = Some(Resolution {
            kind: "action".to_string(),
            action_id: Some(action_id.to_string()),
            note,
        });
        Ok(())
    }

    /// Resolves active recommendations none of whose streams is `still_anomalous`.
    pub fn clear_resolved(&mut self, still_anomalous: impl Fn(&str) -> bool, timestamp: &str) {
        for recommendation in &mut self.recommendations {
            if recommendation.status == Status::Active
                && !recommendation
                    .affected_streams
                    .iter()
                    .any(|s| still_anomalous(s))
            {
                recommendation.status = Status::Resolved;
                recommendation.resolved_at = Some(timestamp.to_string());
                recommendation.resolution = Some(Resolution {
                    kind: "cleared".to_string(),
                    action_id: None,
                    note: "its streams have been back to normal for a while".to_string(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recommendation(key: &str, streams: &[&str], events: &[&str]) -> Recommendation {
        Recommendation {
            id: String::new(),
            priority: Priority::Warning,
            title: key.to_string(),
            description: String::new(),
            impact: String::new(),
            cause: String::new(),
            actions: vec![RecommendedAction {
                id: String::new(),
                label: "Do it".to_string(),
                description: String::new(),
                expected_impact: String::new(),
                time_to_effect: "now".to_string(),
            }],
            affected_streams: streams.iter().map(|s| s.to_string()).collect(),
            related_events: events.iter().map(|s| s.to_string()).collect(),
            confidence: 50,
            timestamp: String::new(),
            status: Status::Active,
            resolved_at: None,
            resolution: None,
            source: "rules".to_string(),
            fallback_reason: None,
            key: key.to_string(),
            last_seen: String::new(),
        }
    }

    #[test]
    fn the_same_diagnosis_merges_a_new_cause_does_not_and_actions_resolve() {
        let mut book = RecommendationBook::default();
        book.merge(vec![recommendation("supply", &["a"], &["evt_1"])], "t1");
        book.merge(vec![recommendation("supply", &["b"], &["evt_1"])], "t2");
        assert_eq!(book.recommendations.len(), 1);
        assert_eq!(book.recommendations[0].affected_streams, ["a", "b"]);
        assert_eq!(book.recommendations[0].last_seen, "t2");
        book.merge(vec![recommendation("supply", &["a"], &["evt_2"])], "t3");
        assert_eq!(book.recommendations.len(), 2);
        assert_eq!(book.recommendations[1].id, "rec_002");
        assert_eq!(book.recommendations[1].actions[0].id, "act_002_1");

        assert_eq!(
            book.resolve("rec_001", "act_009", "t4"),
            Err(ResolveError::UnknownAction {
                recommendation: "rec_001".to_string(),
                action: "act_009".to_string(),
                available: "act_001_1".to_string(),
            })
        );
        assert_eq!(book.resolve("rec_001", "act_001_1", "t4"), Ok(()));
        assert_eq!(book.recommendations[0].status, Status::Resolved);
        assert_eq!(book.recommendations[0].resolved_at.as_deref(), Some("t4"));
        assert_eq!(
            book.resolve("rec_001", "act_001_1", "t5"),
            Err(ResolveError::AlreadyResolved("rec_001".to_string()))
        );
        // A resolved diagnosis that comes back is a new recommendation.
        book.merge(vec![recommendation("supply", &["a"], &["evt_1"])], "t6");
        assert_eq!(book.recommendations.len(), 3);
        book.clear_resolved(|_| false, "t7");
        assert!(book
            .recommendations
            .iter()
            .all(|r| r.status != Status::Active));
    }
}
