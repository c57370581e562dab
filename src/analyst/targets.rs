//! The targets issue 13 sets for the analyst on fresh random scripts, in one place: the
//! generalization test enforces them, `marketsim eval --targets` prints them beside the overall
//! figures (which is how `cargo xtask eval-random`, kept free of the library, shows them).

use super::eval::Scores;

/// Which side of its bound a figure must stay on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    AtLeast,
    AtMost,
}

/// Whether `value` is on the right side of a target.
pub fn meets(target: &Target, value: f64) -> bool {
    match target.bound {
        Bound::AtLeast => value >= target.value,
        Bound::AtMost => value <= target.value,
    }
}

/// One target over the overall [`Scores`] of an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// As the eval table and the issue say it.
    pub label: &'static str,
    /// The figure's key in `eval.json`'s `overall`, for readers of the file.
    pub key: &'static str,
    pub bound: Bound,
    pub value: f64,
    pub figure: fn(&Scores) -> Option<f64>,
}

/// Issue 13's targets on fresh random scripts.
pub const GENERALIZATION_TARGETS: &[Target] = &[
    Target {
        label: "cause precision",
        key: "causePrecision",
        bound: Bound::AtLeast,
        value: 0.85,
        figure: |s| s.cause_precision,
    },
    Target {
        label: "cause recall",
        key: "causeRecall",
        bound: Bound::AtLeast,
        value: 0.85,
        figure: |s| s.cause_recall,
    },
    Target {
        label: "red herrings blamed",
        key: "redHerringRate",
        bound: Bound::AtMost,
        value: 0.05,
        figure: |s| s.red_herring_rate,
    },
    Target {
        label: "stream precision",
        key: "streamPrecision",
        bound: Bound::AtLeast,
        value: 0.80,
        figure: |s| s.stream_precision,
    },
    Target {
        label: "stream recall",
        key: "streamRecall",
        bound: Bound::AtLeast,
        value: 0.80,
        figure: |s| s.stream_recall,
    },
];

/// A target checked against one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct TargetCheck {
    pub target: Target,
    /// `None` when the runs gave nothing to measure it on (no cause named, say).
    pub measured: Option<f64>,
    /// A figure that could not be measured is not met: a set that names no cause has not shown
    /// that its causes are right.
    pub met: bool,
}

/// Checks every target against `scores`.
pub fn check_targets(scores: &Scores) -> Vec<TargetCheck> {
    GENERALIZATION_TARGETS
        .iter()
        .map(|target| {
            let measured = (target.figure)(scores);
            let met = measured.is_some_and(|value| meets(target, value));
            TargetCheck {
                target: *target,
                measured,
                met,
            }
        })
        .collect()
}

/// The targets beside the measured figures, one line each, with met / not met.
pub fn render_targets(scores: &Scores) -> String {
    let mut text = String::from("targets (issue 13, on fresh random scripts):\n");
    for check in check_targets(scores) {
        let bound = match check.target.bound {
            Bound::AtLeast => "≥",
            Bound::AtMost => "≤",
        };
        let measured = check
            .measured
            .map_or("-".to_string(), |v| format!("{:.0} %", v * 100.0));
        text.push_str(&format!(
            "  {:<20} {:>6}   target {bound} {:>3.0} %   {}\n",
            check.target.label,
            measured,
            check.target.value * 100.0,
            if check.met { "met" } else { "not met" }
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(precision: Option<f64>, herrings: Option<f64>) -> Scores {
        Scores {
            cause_precision: precision,
            cause_recall: Some(0.9),
            found_by_streams: None,
            red_herring_rate: herrings,
            stream_precision: Some(0.8),
            stream_recall: Some(0.81),
            mean_time_to_first_correct_ms: None,
            quiet_warning_rate: None,
            quiet_critical_rate: None,
            recommendations_per_week: None,
        }
    }

    #[test]
    fn bounds_are_inclusive_and_a_missing_figure_is_not_met() {
        let met = |s: &Scores| check_targets(s).iter().map(|c| c.met).collect::<Vec<_>>();
        assert_eq!(
            met(&scores(Some(0.85), Some(0.05))),
            [true, true, true, true, true]
        );
        assert_eq!(
            met(&scores(Some(0.84), Some(0.06))),
            [false, true, false, true, true]
        );
        assert!(!met(&scores(None, None))[0]);
        assert!(render_targets(&scores(None, Some(0.0))).contains("not met"));
    }
}
