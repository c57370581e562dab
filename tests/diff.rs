//! `marketsim diff`: exit codes (0 same, 1 different, 2 error), the first divergence of a
//! changed seed, the tolerance rule, and errors naming the file for directories that are not
//! complete runs of this format.

use std::fs;
use std::path::Path;

use crate::support::{marketsim, run_script, stderr, stdout, temp_dir};

/// One simulated day of the short fixture: 24 hourly buckets, quick to run.
fn run_short(out: &Path, extra: &[&str]) {
    let mut args = vec!["--duration", "1d"];
    args.extend_from_slice(extra);
    let output = run_script("fixtures/scripts/short.yaml", out, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

fn copy_run(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in fs::read_dir(from).into_iter().flatten().flatten() {
        let target = to.join(entry.file_name());
        fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn diff(a: &Path, b: &Path, extra: &[&str]) -> std::process::Output {
    let (a, b) = (a.to_string_lossy(), b.to_string_lossy());
    let mut args = vec!["diff", &*a, &*b];
    args.extend_from_slice(extra);
    marketsim(&args)
}

#[test]
fn identical_runs_exit_0() {
    let dir = temp_dir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_short(&a, &[]);
    run_short(&b, &[]);

    let output = diff(&a, &b, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with("identical: 50 streams, 24 buckets"),
        "{text}"
    );

    let output = diff(&a, &b, &["--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["verdict"], "identical");
    assert_eq!(report["counts"]["identical"], 50);
    assert_eq!(report["metadata"], serde_json::json!([]));
}

#[test]
fn a_changed_seed_exits_1_and_names_the_first_divergence() {
    let dir = temp_dir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_short(&a, &[]);
    run_short(&b, &["--seed", "8"]);

    let output = diff(&a, &b, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output).replace(&*dir.path().to_string_lossy(), "<tmp>");
    assert!(text.starts_with("different: "), "{text}");
    insta::assert_snapshot!(text);

    // The JSON document carries the same content, keys in a stable order, and with --series
    // both runs' aligned buckets.
    let output = diff(&a, &b, &["--json", "--series"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = report
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        [
            "format",
            "verdict",
            "tolerance",
            "differentScripts",
            "a",
            "b",
            "metadata",
            "structure",
            "counts",
            "streams",
            "largestDeltas",
            "timeline",
            "series"
        ]
    );
    assert_eq!(report["verdict"], "different");
    assert_eq!(report["differentScripts"], false);
    assert_eq!(
        report["metadata"],
        serde_json::json!([{"field": "seed", "a": "7", "b": "8"}])
    );
    let search = report["streams"]
        .as_array()
        .and_then(|streams| {
            streams
                .iter()
                .find(|s| s["name"] == "customer.tutor.search")
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(search["status"], "different");
    assert_eq!(
        search["firstDivergence"]["timestamp"],
        "2025-03-03T00:00:00.000Z"
    );
    assert_eq!(
        report["series"]["timestamps"].as_array().map(Vec::len),
        Some(24)
    );
    assert_eq!(
        report["series"]["streams"].as_array().map(Vec::len),
        Some(50)
    );
}

#[test]
fn runs_of_different_scripts_say_so_right_after_the_verdict() {
    let dir = temp_dir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_short(&a, &[]);
    let output = marketsim(&[
        "run",
        "fixtures/scripts/backdated.yaml",
        "--out",
        &b.to_string_lossy(),
        "--duration",
        "1d",
        "--no-truth",
        "--quiet",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = diff(&a, &b, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().take(2).collect();
    assert!(lines[0].starts_with("different: "), "{text}");
    assert!(
        lines[1].starts_with("runs of different scripts: A ran fixtures/scripts/short.yaml ")
            && lines[1].contains(", B ran fixtures/scripts/backdated.yaml "),
        "{text}"
    );
}

/// The tolerance rule on a run whose series was edited by hand: one bucket of
/// customer.tutor.search raised by 3 %, so totals and fingerprints still agree and only that
/// bucket differs.
#[test]
fn tolerance_ignores_small_bucket_differences() {
    let dir = temp_dir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_short(&a, &[]);
    copy_run(&a, &b);
    let series_path = b.join("series.csv");
    let mut edited = 0;
    let lines: Vec<String> = read(&series_path)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let value: f64 = fields.get(2).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            // At least 100 events, so 3 % is a whole number of them.
            if edited == 0 && fields.get(1) == Some(&"customer.tutor.search") && value >= 100.0 {
                edited += 1;
                let raised = (value * 1.03).round() as u64;
                format!("{},{},{raised},,,,", fields[0], fields[1])
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_eq!(edited, 1);
    write(&series_path, &(lines.join("\n") + "\n"));

    let exact = diff(&a, &b, &[]);
    assert_eq!(exact.status.code(), Some(1), "{}", stderr(&exact));
    assert!(stdout(&exact).starts_with("different: 1 of 50 streams (exact comparison)"));

    let tolerant = diff(&a, &b, &["--tolerance", "5%"]);
    assert_eq!(tolerant.status.code(), Some(0), "{}", stderr(&tolerant));
    assert_eq!(
        stdout(&tolerant).lines().next(),
        Some("identical within tolerance 5%: 1 of 50 streams differ, none beyond it")
    );

    let strict = diff(&a, &b, &["--tolerance", "0.02"]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));

    let bad = diff(&a, &b, &["--tolerance", "2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--tolerance"), "{}", stderr(&bad));
}

/// Each broken copy of a good run is refused with exit code 2 and a message that names the
/// file (and line where there is one).
#[test]
fn broken_runs_exit_2_naming_the_file() {
    let dir = temp_dir();
    let good = dir.path().join("good");
    run_short(&good, &[]);

    type Breakage = fn(&Path);
    let cases: [(&str, Breakage); 6] = [
        ("truncated-series", |run| {
            // Cut in the middle of a line halfway through the file.
            let text = read(&run.join("series.csv"));
            let middle = text.len() / 2;
            let line_start = text[..middle].rfind('\n').map_or(0, |i| i + 1);
            write(&run.join("series.csv"), &text[..line_start + 30]);
        }),
        ("series-missing-rows", |run| {
            // Cut at a line break: every line is whole, the last buckets are missing.
            let text = read(&run.join("series.csv"));
            let cut = text[..text.len() / 2].rfind('\n').map_or(0, |i| i + 1);
            write(&run.join("series.csv"), &text[..cut]);
        }),
        ("truncated-summary", |run| {
            let text = read(&run.join("summary.json"));
            write(&run.join("summary.json"), &text[..text.len() / 2]);
        }),
        ("other-format", |run| {
            let text = read(&run.join("summary.json"));
            write(
                &run.join("summary.json"),
                &text.replace("\"marketsim-run/1\"", "\"marketsim-run/2\""),
            );
        }),
        ("not-a-run", |run| {
            fs::remove_file(run.join("summary.json")).unwrap_or_else(|e| panic!("{e}"));
        }),
        ("missing-timeline", |run| {
            fs::remove_file(run.join("timeline.json")).unwrap_or_else(|e| panic!("{e}"));
        }),
    ];
    let mut messages = String::new();
    for (name, breakage) in cases {
        let broken = dir.path().join(name);
        copy_run(&good, &broken);
        breakage(&broken);
        let output = diff(&good, &broken, &[]);
        let message = stderr(&output).replace(&*dir.path().to_string_lossy(), "<tmp>");
        assert_eq!(output.status.code(), Some(2), "{name}: {message}");
        assert!(
            message.contains(&format!("<tmp>/{name}")),
            "{name}: {message}"
        );
        messages.push_str(&format!("{name}:\n{message}\n"));
    }
    let missing = dir.path().join("nowhere");
    let output = diff(&good, &missing, &[]);
    assert_eq!(output.status.code(), Some(2));
    messages.push_str(&format!(
        "nowhere:\n{}",
        stderr(&output).replace(&*dir.path().to_string_lossy(), "<tmp>")
    ));
    insta::assert_snapshot!(messages);
}
