//! `marketsim report` and `diff --html`: the data block of a fixture run's report is
//! snapshotted; the page is self-contained and inlines the ECharts embedded in the binary from
//! any working directory; bad input exits 2. (The pages are opened in headless Chromium by
//! `cargo xtask e2e`, see web/tests.)

use std::path::Path;

use marketsim::{assets, report};

use crate::support::{marketsim, marketsim_in, run_script, stderr, stdout, temp_dir};

/// A few bytes of script in place of ECharts (`--echarts`), for the tests that check the
/// page's HTML and data block, not its drawing.
const STAND_IN: &str = "fixtures/report/echarts-stand-in.js";

fn analyzed_run(out: &Path, extra: &[&str]) {
    let mut args = vec!["--analyze", "--duration", "6h"];
    args.extend_from_slice(extra);
    let output = run_script("fixtures/scripts/short.yaml", out, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// The JSON between `<script type="application/json" id="report-data">` and `</script>`.
fn data_block(html: &str) -> serde_json::Value {
    let start_tag = r#"<script type="application/json" id="report-data">"#;
    let start = html
        .find(start_tag)
        .map(|i| i + start_tag.len())
        .unwrap_or(0);
    let end = html[start..]
        .find("</script>")
        .map(|i| start + i)
        .unwrap_or(start);
    serde_json::from_str(&html[start..end]).unwrap_or_else(|e| panic!("data block: {e}"))
}

#[test]
fn a_report_is_one_offline_file_and_its_data_block_matches_the_snapshot() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    analyzed_run(&run, &[]);
    let html_path = dir.path().join("report.html");
    let output = marketsim(&[
        "report",
        &run.to_string_lossy(),
        "-o",
        &html_path.to_string_lossy(),
        "--echarts",
        STAND_IN,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let html = std::fs::read_to_string(&html_path).unwrap_or_default();
    // Offline: nothing is fetched from anywhere.
    for needle in ["<script src", "<link", "http://", "https://cdn"] {
        assert!(!html.contains(needle), "the report references `{needle}`");
    }
    assert!(html.contains("A stand-in for the ECharts build"));
    // Seven domain charts and the heatmap (no scenarios, so no lifecycle chart).
    assert_eq!(html.matches(r#"class="chart"#).count(), 7 + 1);
    let data = data_block(&html);
    assert_eq!(data["streams"].as_array().map(Vec::len), Some(50));
    insta::assert_json_snapshot!("report_data_block", data);
}

#[test]
fn diff_html_overlays_both_runs_and_keeps_the_exit_code() {
    let dir = temp_dir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    analyzed_run(&a, &[]);
    analyzed_run(&b, &["--seed", "8"]);
    let html_path = dir.path().join("diff.html");
    let output = marketsim(&[
        "diff",
        &a.to_string_lossy(),
        &b.to_string_lossy(),
        "--html",
        &html_path.to_string_lossy(),
        "--echarts",
        STAND_IN,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let html = std::fs::read_to_string(&html_path).unwrap_or_default();
    let data = data_block(&html);
    assert_eq!(data["verdict"], "different");
    assert_eq!(data["series"]["streams"].as_array().map(Vec::len), Some(50));
}

#[test]
fn report_errors_exit_2_and_write_nothing() {
    let dir = temp_dir();
    let html_path = dir.path().join("report.html");
    let html = html_path.to_string_lossy().into_owned();
    let not_a_run = dir.path().to_string_lossy().into_owned();
    let output = marketsim(&["report", &not_a_run, "-o", &html, "--echarts", STAND_IN]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not a run directory"),
        "{}",
        stderr(&output)
    );

    let run = dir.path().join("run");
    analyzed_run(&run, &[]);
    let output = marketsim(&[
        "report",
        &run.to_string_lossy(),
        "-o",
        &html,
        "--echarts",
        "nowhere/echarts.min.js",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--echarts, nowhere/echarts.min.js"),
        "{}",
        stderr(&output)
    );
    assert!(!html_path.exists());
}

#[test]
fn a_report_inlines_the_embedded_echarts_with_no_web_folder_in_sight() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    analyzed_run(&run, &[]);
    // An empty working directory: no web/node_modules beside it, and the binary must not
    // need one.
    let elsewhere = temp_dir();
    let output = marketsim_in(
        elsewhere.path(),
        &["report", &run.to_string_lossy(), "-o", "report.html"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let html = std::fs::read_to_string(elsewhere.path().join("report.html")).unwrap_or_default();
    assert!(html.contains(&report::script_safe(assets::echarts_script())));
    assert!(!html.contains("A stand-in for the ECharts build"));
    // (ECharts itself holds URLs, of its licence and the SVG namespace, so only script tags
    // are checked here; the browser tests check that nothing is fetched.)
    assert!(!html.contains("<script src"));

    // The run against itself: the diff page is written whatever the verdict.
    let output = marketsim_in(
        elsewhere.path(),
        &[
            "diff",
            &run.to_string_lossy(),
            &run.to_string_lossy(),
            "--html",
            "diff.html",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let html = std::fs::read_to_string(elsewhere.path().join("diff.html")).unwrap_or_default();
    assert!(html.contains(&report::script_safe(assets::echarts_script())));
}

#[test]
fn the_long_version_names_the_embedded_echarts() {
    let output = marketsim(&["--version"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&format!("ECharts {} embedded", assets::ECHARTS_VERSION)),
        "{}",
        stdout(&output)
    );
}
