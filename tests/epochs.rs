//! Runs whose epoch is not on the hour: every valid RFC 3339 start runs, and the marketplace it
//! simulates is the ordinary one, shifted. On the hour or not, every gauge reads in bucket 0.

use std::path::Path;

use marketsim::app::run::run_session;
use marketsim::engine::{NoSink, MS_PER_HOUR};
use marketsim::scenario::{RunPlan, Script};

use crate::support::{run_script, stderr, temp_dir};

/// Total events of a run directory's summary.
fn total_events(run: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(run.join("summary.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", run.display()));
    let summary: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("summary.json: {e}"));
    summary["totalEvents"]
        .as_u64()
        .unwrap_or_else(|| panic!("summary.json has no totalEvents"))
}

/// Each script in `fixtures/off-hour` runs a day, with ground truth, and simulates about as many
/// events as the same day started on the hour (it once ran away with infinite rates).
#[test]
fn starts_off_the_hour_run_like_starts_on_the_hour() {
    let out = temp_dir();
    let on_hour = out.path().join("on-hour");
    let reference = run_script(
        "fixtures/scripts/short.yaml",
        &on_hour,
        &["--duration", "1d"],
    );
    assert!(reference.status.success(), "{}", stderr(&reference));
    let reference_total = total_events(&on_hour) as f64;
    let mut checked = 0;
    insta::glob!("../fixtures/off-hour", "*.yaml", |path| {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let target = out.path().join(name.unwrap_or_default());
        let script = path.to_string_lossy();
        let output = run_script(&script, &target, &[]);
        assert!(output.status.success(), "{script}: {}", stderr(&output));
        let ratio = total_events(&target) as f64 / reference_total;
        assert!(
            (0.6..1.6).contains(&ratio),
            "{script}: {ratio:.2} times the events of a day started on the hour"
        );
        checked += 1;
    });
    assert_eq!(checked, 3, "fixtures/off-hour holds three scripts");
}

/// Every gauge has a reading in a run's first bucket, whether the run starts on the hour or not:
/// a gauge reads on the multiples of its interval from the epoch on (the hourly ad spend once
/// read first at the end of the first hour, and bucket 0 of every run started on the hour was
/// empty).
#[test]
fn every_gauge_reads_in_the_first_bucket() {
    for script in [
        "fixtures/scripts/short.yaml",
        "fixtures/off-hour/half-past.yaml",
        "fixtures/off-hour/midnight-india.yaml",
        "fixtures/off-hour/thirty-seconds.yaml",
    ] {
        let loaded = Script::load(Path::new(script)).unwrap_or_else(|e| panic!("{e}"));
        let plan = RunPlan::from_script(loaded, None, Some(2 * MS_PER_HOUR))
            .unwrap_or_else(|e| panic!("{e}"));
        let session = run_session(&plan, false, &mut NoSink, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{script}: {e}"));
        for stream in plan.catalog.streams.iter().filter(|s| s.origin.is_gauge()) {
            assert!(
                session
                    .collector()
                    .bucket_value(0, stream.id.index())
                    .is_some(),
                "{script}: {} has no reading in the first bucket",
                stream.name
            );
        }
    }
}
