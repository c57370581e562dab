//! The analysis files of a run directory — `baseline.json`, `anomalies.json`,
//! `recommendations.json` — their names, and how the baseline is written and read back.

use std::path::Path;

use super::read_json_file as parse;
use super::run_dir::OutputError;
use crate::scenario::RunPlan;
use crate::stats::Baseline;

pub const BASELINE_FILE: &str = "baseline.json";
pub const ANOMALIES_FILE: &str = "anomalies.json";
pub const RECOMMENDATIONS_FILE: &str = "recommendations.json";
/// What a language model answered, so a replay makes the same recommendations without it.
pub const ANALYST_REPLIES_FILE: &str = "analyst-replies.json";

/// `baseline.json` with one line per stream, so it stays readable and diffable.
pub fn baseline_json(baseline: &Baseline) -> String {
    let header = Baseline {
        streams: Vec::new(),
        ..baseline.clone()
    };
    let lines: Vec<String> = baseline
        .streams
        .iter()
        .map(|s| format!("    {}", serde_json::to_string(s).unwrap_or_default()))
        .collect();
    let head = serde_json::to_string_pretty(&header).unwrap_or_default();
    let body = format!("[\n{}\n  ]", lines.join(",\n"));
    head.replacen("\"streams\": []", &format!("\"streams\": {body}"), 1) + "\n"
}

/// Reads a `baseline.json` and checks it fits the run.
pub fn load_baseline(path: &Path, plan: &RunPlan) -> Result<Baseline, OutputError> {
    let baseline: Baseline = parse(path)?;
    baseline
        .check_compatible(&plan.catalog, plan.script.bucket_ms)
        .map_err(|message| OutputError::Malformed {
            path: path.to_path_buf(),
            line: None,
            message,
        })?;
    Ok(baseline)
}
